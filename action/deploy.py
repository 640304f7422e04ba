"""Applying on GitHub: the pipeline's apply in promotion order, reported as deployments,
commit statuses (one `stackward` status, or one per environment with
`statuses: per-environment`), a comment on the pull request, the job summary and the log."""

from __future__ import annotations

import click

from action.context import Run
from action.pull_request import AGGREGATE, per_environment
from stackward.checks.validate import Report
from stackward.github.comment_body import ApplyRow, apply_comment
from stackward.output.github import annotation, stop_commands
from stackward.plan.refusals import Reviewed
from stackward.policy.input import PullRequest
from stackward.spec.model import Environment


def apply(
    run: Run,
    report: Report,
    sha: str,
    number: int | None,
    reviewed: dict[str, Reviewed],
    *,
    policies_ref: str | None = None,
    pull_request: PullRequest | None = None,
) -> int:
    """Apply the environments in `reviewed` (each held to its reviewed plan hash, or to nothing
    for a dispatch) at commit `sha`, gated by the policies at `policies_ref` (else the working
    tree's; `pull_request` in their input), and report on pull request `number` when there is one."""
    pipeline = run.pipeline
    run.output(environments=",".join(reviewed))
    if not report.ok:
        for diag in report.errors:
            click.echo(annotation(diag))
        message = (
            f"stackward: nothing applied: the specs at {sha[:7]} do not validate "
            f"({len(report.errors)} error(s)); see the run {run.ctx.run_url}"
        )
        run.say(message)
        if number is not None:
            run.client.comment(number, message)
        return 1
    environments = pipeline.select(
        report, [n for n in reviewed if n in {e.name for e in report.environments}]
    )
    deployments = {}

    def started(env: Environment) -> None:
        deployments[env.name] = run.client.deployment(sha, env.name, f"stackward apply {sha[:7]}")
        run.client.deployment_status(deployments[env.name], "in_progress", "applying", run.ctx.run_url)

    rows: list[ApplyRow] = []
    for applied in pipeline.apply(
        report, environments, reviewed, on_start=started, policies_ref=policies_ref, pull_request=pull_request
    ):
        name, deployment = applied.environment, deployments.get(applied.environment)
        if applied.skipped:
            rows.append(ApplyRow(name, "⏭️ skipped", "—", "an earlier environment failed"))
        elif applied.error is not None:
            detail = _first_reason(applied.error)
            run.say(f"stackward: {applied.error}")  # the whole reason in the log
            if deployment is not None:
                run.client.deployment_status(deployment, "failure", detail[:140], run.ctx.run_url)
            if per_environment(run):
                run.client.status(sha, f"stackward/{name}", "failure", detail, run.ctx.run_url)
            rows.append(ApplyRow(name, "❌ failed", "—", detail))
        else:
            result = applied.result
            summary = f"{len(result.applied)} change(s)" if result.changed else "no changes"
            if deployment is not None:
                run.client.deployment_status(deployment, "success", summary, run.ctx.run_url)
            if per_environment(run):
                run.client.status(sha, f"stackward/{name}", "success", f"applied: {summary}", run.ctx.run_url)
            rows.append(
                ApplyRow(
                    name, "✅ applied", summary, f"ledger entry {result.apply_id}" if result.apply_id else ""
                )
            )
    if rows and not per_environment(run):
        run.client.status(sha, AGGREGATE, *_aggregate(rows), run.ctx.run_url)
    body = apply_comment(sha, rows, run.ctx.run_url)
    if number is not None:
        run.client.comment(number, body)
    run.summary(body + "\n")
    run.say(stop_commands(body))
    failed = any(r.result == "❌ failed" for r in rows)
    run.output(
        **{
            "has-changes": str(any(r.summary not in ("—", "no changes") for r in rows)).lower(),
            "policy-passed": str(not failed).lower(),
        }
    )
    return 1 if failed else 0


def _aggregate(rows: list[ApplyRow]) -> tuple[str, str]:
    """The state and description of the one `stackward` status of an apply:
    '3 environments: 2 applied, 1 failed'."""
    words = {"✅ applied": "applied", "❌ failed": "failed", "⏭️ skipped": "skipped"}
    counts: dict[str, int] = {}
    for row in rows:
        word = words.get(row.result, row.result)
        counts[word] = counts.get(word, 0) + 1
    noun = "environment" if len(rows) == 1 else "environments"
    parts = ", ".join(f"{n} {word}" for word, n in counts.items())
    state = "failure" if counts.get("failed") or counts.get("skipped") else "success"
    return state, f"{len(rows)} {noun}: {parts}"


def _first_reason(error: Exception) -> str:
    """An error's first line, with the first item it lists when that line ends with a colon."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    first = lines[0] if lines else type(error).__name__
    if first.endswith(":") and len(lines) > 1:
        first = f"{first} {lines[1]}"
    return first[:300]
