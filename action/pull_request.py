"""pull_request: validate, plan the environments the PR touches, judge them by the base
branch's policies, set the commit status (one `stackward` context for the run by default, or one
`stackward/<env>` per environment with the `statuses: per-environment` input) and keep one plan
comment up to date. The API calls of a run stay fixed however many environments change."""

from __future__ import annotations

import click

from action.context import Run
from stackward.github import templates
from stackward.github.approvals import pull_request_context
from stackward.github.changed import changed_files, removed_environments, touched_environments
from stackward.github.comment_body import (
    EnvironmentOutcome,
    PullRequestOutcome,
    comment_bodies,
    job_summary,
)
from stackward.output.github import annotation, stop_commands
from stackward.pipeline import PlanOutcome
from stackward.policy.input import PullRequest

PLAN_ACTIONS = ("opened", "synchronize", "reopened", "ready_for_review")


def handle(run: Run) -> int:
    event = run.ctx.event
    pr = event["pull_request"]
    number = event.get("number") or pr["number"]
    if event["action"] == "closed":
        default = (event.get("repository") or {}).get("default_branch", "main")
        return closed(run, number, bool(pr.get("merged")), pr["base"].get("ref", default), default)
    if event["action"] not in PLAN_ACTIONS:
        run.say(f"stackward: pull request {event['action']}: nothing to plan")
        return 0
    head_sha, base_sha = pr["head"]["sha"], pr["base"]["sha"]
    head_repo = (pr["head"].get("repo") or {}).get("full_name")
    fork = head_repo != pr["base"]["repo"]["full_name"]
    report = run.validated()
    files = changed_files(report.repo.repo_root, base_sha, head_sha)
    names = run.selected(touched_environments(report.repo, report.environments, files, run.settings.policies))
    run.output(environments=",".join(names))
    pending_statuses(run, head_sha, names)
    notes = [templates.REMOVED.substitute(env=env) for env in removed_environments(report.repo, files)]
    if fork:
        notes.append(templates.FORK)
    if pr.get("draft"):
        notes.append(templates.DRAFT)
    checked_only = fork or run.settings.mode == "validate"
    context = pull_request_context(
        run.client, report.repo, report.environments, {**pr, "number": number}, policies=run.settings.policies
    )
    outcome = outcome_of(run, report, names, context, checked_only, notes)
    run.found(outcome.findings)
    existing = run.plan_comment(number)
    state = outcome.state(planned=not checked_only)
    run.client.upsert_comment(number, comment_bodies(outcome, state), existing)
    result_statuses(run, head_sha, outcome.environments)
    report_text = job_summary(outcome, plan_file=run.outputs["plan-file"])
    run.summary(report_text)
    run.say(stop_commands(report_text))  # the same report in the log, obeyed as no command
    for diag in outcome.findings:
        click.echo(annotation(diag))
    run.output(
        **{
            "has-changes": str(any(e.plan and e.plan.has_changes for e in outcome.environments)).lower(),
            "policy-passed": str(not any(e.deny for e in outcome.environments)).lower(),
        }
    )
    return 0 if outcome.passed else 1


AGGREGATE = "stackward"  # the one status context of a run (statuses: aggregate)


def per_environment(run: Run) -> bool:
    """Whether the run sets a status per environment (`stackward/<env>`) instead of one."""
    return run.settings.statuses == "per-environment"


def pending_statuses(run: Run, sha: str, names: list[str], description: str = "planning…") -> None:
    """The pending status(es) on `sha` at the start of a run: one `stackward` status (also when
    no environment changed, so that branch protection requiring it is answered), or one per
    environment. The first status write also tells the client whom the token acts as."""
    if per_environment(run):
        for name in names:
            run.client.status(sha, f"stackward/{name}", "pending", description, run.ctx.run_url)
        return
    count = _environments(len(names))
    run.client.status(
        sha, AGGREGATE, "pending", f"{description} {count}" if names else description, run.ctx.run_url
    )


def result_statuses(run: Run, sha: str, environments: list[EnvironmentOutcome]) -> None:
    """The final status(es) on `sha`: one `stackward` status summarising every environment
    (the per-environment table is in the plan comment), or one per environment."""
    if per_environment(run):
        for env in environments:
            run.client.status(
                sha,
                f"stackward/{env.name}",
                "success" if env.passed else "failure",
                env.description(),
                run.ctx.run_url,
            )
        return
    state = "success" if all(env.passed for env in environments) else "failure"
    run.client.status(sha, AGGREGATE, state, aggregate_description(environments), run.ctx.run_url)


def aggregate_description(environments: list[EnvironmentOutcome]) -> str:
    """One line for the aggregate status: '3 environments: 2 ready, 1 denied'."""
    if not environments:
        return "no environment changed"
    counts: dict[str, int] = {}
    for env in environments:
        word = env.verdict
        counts[word] = counts.get(word, 0) + 1
    parts = ", ".join(f"{n} {word}" for word, n in counts.items())
    return f"{_environments(len(environments))}: {parts}"


def _environments(count: int) -> str:
    return f"{count} environment{'' if count == 1 else 's'}"


def outcome_of(
    run: Run, report, names: list[str], pull: PullRequest, checked_only: bool, notes: list[str]
) -> PullRequestOutcome:
    """Validation findings, plans and policy findings of the touched environments, per
    environment, for the change from `pull.base_sha` to `pull.head_sha` (a pull request, or a
    merge queue's merge commit), judged by the policies at its base."""
    outcomes = {name: EnvironmentOutcome(name) for name in names}
    findings = [d for d in report.diagnostics if set(d.environments) & set(names)]
    for diag in findings:
        for env in diag.environments:
            if env in outcomes and diag.is_error:
                outcomes[env].validation_errors += 1
    valid = [e for e in report.environments if e.name in outcomes and not outcomes[e.name].validation_errors]
    planned = run.pipeline.plan(
        report,
        valid,
        compute=not checked_only,
        pull_request=pull if pull.number else None,
        policies_ref=pull.base_sha,
    )
    for name, item in planned.planned.items():
        if checked_only:
            continue
        outcomes[name].plan = None if item.plan.error else item.plan
        outcomes[name].error = item.plan.error
    if not checked_only and valid:
        run.write_plan(planned.plan, report)
    findings += _policy_findings(planned, outcomes, notes)
    return PullRequestOutcome(
        head_sha=pull.head_sha,
        environments=[outcomes[n] for n in names],
        findings=findings,
        notes=notes,
        blob_url=f"{run.ctx.server_url}/{run.ctx.repository}/blob/{pull.head_sha}",
        run_url=run.ctx.run_url,
        repo_root=str(report.repo.repo_root),
    )


def _policy_findings(planned: PlanOutcome, outcomes: dict[str, EnvironmentOutcome], notes: list[str]) -> list:
    """Count each environment's denies and warnings; a change to the policies becomes a note."""
    out = []
    for diag in planned.findings:
        if diag.code == "policy.changed":
            files = diag.message.split("(", 1)[1].split(")", 1)[0]
            notes.append(templates.POLICY_FILES.substitute(files=files))
            continue
        out.append(diag)
        for env in diag.environments:
            if env in outcomes:
                if diag.is_error:
                    outcomes[env].deny += 1
                elif diag.severity.value == "warning":
                    outcomes[env].warn += 1
    return out


def closed(run: Run, number: int, merged: bool, base: str, default: str) -> int:
    if merged and base == default:
        run.say(f"stackward: #{number} was merged; the push to {default} applies it")
        return 0
    if merged:
        run.say(
            f"stackward: #{number} was merged into {base}, not the default branch {default}: nothing is "
            f"applied for it; its changes are planned and applied when a pull request brings them to {default}"
        )
        return 0
    existing = run.plan_comment(number)
    if existing is None:
        run.say(f"stackward: #{number} closed without merging; there is no plan comment to update")
        return 0
    closed_state = existing.state.closing()
    body = closed_state.render(templates.CLOSED + "\n\n" + existing.body.split("-->\n", 1)[-1])
    run.client.upsert_comment(number, iter([body]), existing)
    run.say(f"stackward: #{number} closed without merging; its plan comment is marked closed")
    return 0
