"""The GitHub Action front-end: `stackward action`, run by action.yml (or locally with the
same GITHUB_* variables set).

- pull_request: validate, check policies (from the base branch), plan the environments the
  PR touches, set a commit status per environment and keep one plan comment up to date.
- push to the default branch: apply what the merged PR's last plan comment showed, in
  promotion order, and report back on the PR (comment, statuses, deployments).
- workflow_dispatch: plan or apply a named environment on demand.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from stackward.changed_environments import GitError, changed_files, removed_environments, touched_environments
from stackward.changes import EnvironmentPlan
from stackward.executors.terraform import TerraformError
from stackward.executors.zenml import ZenmlError
from stackward.github_client import GitHubClient, GitHubError
from stackward.output import comment_templates as templates
from stackward.output.github import annotation
from stackward.output.plan_text import render as render_plans
from stackward.output.pr_comment_body import (
    EnvironmentOutcome,
    PullRequestOutcome,
    comment_bodies,
    job_summary,
)
from stackward.planning import (
    ApplyRefused,
    Planned,
    apply_environment,
    plan_environment,
    plan_policy_findings,
    promotion_order,
)
from stackward.policy.check import PolicyOptions
from stackward.policy.input import PullRequest
from stackward.policy.sources import PolicySourceError
from stackward.resolve import UsageError
from stackward.state import LockError
from stackward.validation import Report, validate

PLAN_ACTIONS = ("opened", "synchronize", "reopened", "ready_for_review")


@dataclass
class GitHubContext:
    """Everything GitHub Actions tells a step, read from its standard variables."""

    event_name: str
    event: dict
    repository: str
    sha: str
    api_url: str
    server_url: str
    run_url: str
    step_summary: Path | None
    output: Path | None

    @classmethod
    def from_environment(cls) -> GitHubContext:
        env = os.environ
        event_path = env.get("GITHUB_EVENT_PATH")
        if not event_path or not Path(event_path).exists():
            raise UsageError(
                "GITHUB_EVENT_PATH is not set or missing: run inside GitHub Actions, or set the GITHUB_* variables"
            )
        server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        repository = env.get("GITHUB_REPOSITORY", "")
        run_id = env.get("GITHUB_RUN_ID", "")
        return cls(
            event_name=env.get("GITHUB_EVENT_NAME", ""),
            event=json.loads(Path(event_path).read_text()),
            repository=repository,
            sha=env.get("GITHUB_SHA", ""),
            api_url=env.get("GITHUB_API_URL", "https://api.github.com"),
            server_url=server,
            run_url=f"{server}/{repository}/actions/runs/{run_id}" if run_id else "",
            step_summary=Path(env["GITHUB_STEP_SUMMARY"]) if env.get("GITHUB_STEP_SUMMARY") else None,
            output=Path(env["GITHUB_OUTPUT"]) if env.get("GITHUB_OUTPUT") else None,
        )


@dataclass
class Settings:
    path: Path
    policies: Path | None
    mode: str
    environments: list[str]
    state_dir: Path | None
    opa_url: str | None
    lock_timeout: float
    outputs: dict[str, str] = field(default_factory=dict)


class Action:
    """One run of the action for one event."""

    def __init__(self, settings: Settings, ctx: GitHubContext, client: GitHubClient):
        self.settings = settings
        self.ctx = ctx
        self.client = client

    # -- helpers ---------------------------------------------------------------------------
    def say(self, text: str) -> None:
        click.echo(text)

    def output(self, **values: str) -> None:
        self.settings.outputs.update(values)

    def summary(self, text: str) -> None:
        if self.ctx.step_summary is not None:
            with self.ctx.step_summary.open("a") as handle:
                handle.write(text)

    def state_root(self, report: Report) -> Path:
        return self.settings.state_dir or report.repo.repo_root / ".stackward"

    def mask_secrets(self, report: Report) -> None:
        """Register every secret value the specs reference, so Actions masks it in logs."""
        for env in report.environments:
            names = [(env.settings.get("zenml") or {}).get("apiKeyEnv")]
            for connector in env.of_kind("ServiceConnector").values():
                names += [
                    ref.get("fromEnv")
                    for ref in (connector.spec.get("secrets") or {}).values()
                    if isinstance(ref, dict)
                ]
            for name in names:
                value = os.environ.get(name) if isinstance(name, str) else None
                if value:
                    click.echo(f"::add-mask::{value}")

    def policy_options(self, **kw: Any) -> PolicyOptions:
        return PolicyOptions(
            folder=self.settings.policies,
            opa_url=self.settings.opa_url,
            opa_token=os.environ.get("STACKWARD_OPA_TOKEN"),
            **kw,
        )

    def selected(self, names: list[str]) -> list[str]:
        wanted = self.settings.environments
        return [n for n in names if not wanted or n in wanted]

    # -- events ----------------------------------------------------------------------------
    def run(self) -> int:
        handler = {
            "pull_request": self.pull_request,
            "pull_request_target": self.pull_request,
            "push": self.push,
            "workflow_dispatch": self.dispatch,
            "schedule": self.dispatch,
        }.get(self.ctx.event_name)
        if handler is None:
            self.say(f"stackward: nothing to do for the {self.ctx.event_name or 'unknown'} event")
            return 0
        return handler()

    def pull_request(self) -> int:
        event = self.ctx.event
        pr = event["pull_request"]
        number = event.get("number") or pr["number"]
        if event["action"] == "closed":
            return self.closed(number, bool(pr.get("merged")))
        if event["action"] not in PLAN_ACTIONS:
            self.say(f"stackward: pull request {event['action']}: nothing to plan")
            return 0
        head_sha, base_sha = pr["head"]["sha"], pr["base"]["sha"]
        head_repo = (pr["head"].get("repo") or {}).get("full_name")
        fork = head_repo != pr["base"]["repo"]["full_name"]
        report = validate(self.settings.path)
        self.mask_secrets(report)
        files = changed_files(report.repo.repo_root, base_sha, head_sha)
        names = self.selected(
            touched_environments(report.repo, report.environments, files, self.settings.policies)
        )
        for name in names:
            self.client.status(head_sha, f"stackward/{name}", "pending", "planning…", self.ctx.run_url)
        notes = [templates.REMOVED.substitute(env=env) for env in removed_environments(report.repo, files)]
        if fork:
            notes.append(templates.FORK)
        if pr.get("draft"):
            notes.append(templates.DRAFT)
        checked_only = fork or self.settings.mode == "validate"
        outcome = self.plan_pull_request(report, names, pr, number, checked_only, notes)
        existing = self.client.find_comment(number)
        state = outcome.state(planned=not checked_only)
        self.client.upsert_comment(number, comment_bodies(outcome, state), existing)
        for env in outcome.environments:
            self.client.status(
                head_sha,
                f"stackward/{env.name}",
                "success" if env.passed else "failure",
                env.description(),
                self.ctx.run_url,
            )
        report_text = job_summary(outcome)
        self.summary(report_text)
        self.say(report_text)  # the same report in the log
        for diag in outcome.findings:
            click.echo(annotation(diag))
        self.output(
            environments=",".join(names),
            **{
                "has-changes": str(any(e.plan and e.plan.has_changes for e in outcome.environments)).lower(),
                "policy-passed": str(not any(e.deny for e in outcome.environments)).lower(),
            },
        )
        return 0 if outcome.passed else 1

    def plan_pull_request(
        self, report: Report, names: list[str], pr: dict, number: int, fork: bool, notes: list[str]
    ) -> PullRequestOutcome:
        by_name = {e.name: e for e in report.environments}
        outcomes = {name: EnvironmentOutcome(name) for name in names}
        findings = [d for d in report.diagnostics if set(d.environments) & set(names)]
        for diag in findings:
            for env in diag.environments:
                if env in outcomes and diag.is_error:
                    outcomes[env].validation_errors += 1
        valid = [by_name[n] for n in names if not outcomes[n].validation_errors]
        planned: dict[str, Planned] = {}
        if not fork:
            for env in promotion_order(valid):
                try:
                    planned[env.name] = plan_environment(
                        env, report.repo, self.state_root(report), self.settings.lock_timeout, lambda m: None
                    )
                    outcomes[env.name].plan = planned[env.name].plan
                except (TerraformError, ZenmlError, LockError) as exc:
                    outcomes[env.name].error = str(exc)
        options = self.policy_options(
            base_ref=pr["base"]["sha"],
            pull_request=PullRequest(
                number,
                (pr.get("user") or {}).get("login", ""),
                tuple(label["name"] for label in pr.get("labels", [])),
                pr["base"]["sha"],
                pr["head"]["sha"],
            ),
        )
        planned_or_checked = {e.name: planned.get(e.name) or Planned(EnvironmentPlan(e.name)) for e in valid}
        for diag in plan_policy_findings(valid, report.repo, planned_or_checked, options):
            if diag.code == "policy.changed":
                files = diag.message.split("(", 1)[1].split(")", 1)[0]
                notes.append(templates.POLICY_FILES.substitute(files=files))
                continue
            findings.append(diag)
            for env in diag.environments:
                if env in outcomes:
                    if diag.is_error:
                        outcomes[env].deny += 1
                    elif diag.severity.value == "warning":
                        outcomes[env].warn += 1
        return PullRequestOutcome(
            head_sha=pr["head"]["sha"],
            environments=[outcomes[n] for n in names],
            findings=findings,
            notes=notes,
            blob_url=f"{self.ctx.server_url}/{self.ctx.repository}/blob/{pr['head']['sha']}",
            run_url=self.ctx.run_url,
            repo_root=str(report.repo.repo_root),
        )

    def closed(self, number: int, merged: bool) -> int:
        if merged:
            self.say(f"stackward: #{number} was merged; the push to the default branch applies it")
            return 0
        existing = self.client.find_comment(number)
        if existing is None:
            self.say(f"stackward: #{number} closed without merging; there is no plan comment to update")
            return 0
        closed = existing.state.closing()
        body = closed.render(templates.CLOSED + "\n\n" + existing.body.split("-->\n", 1)[-1])
        self.client.upsert_comment(number, iter([body]), existing)
        self.say(f"stackward: #{number} closed without merging; its plan comment is marked closed")
        return 0

    def push(self) -> int:
        event = self.ctx.event
        ref = event.get("ref", "")
        default = (event.get("repository") or {}).get("default_branch", "main")
        if event.get("deleted"):
            self.say(f"stackward: {ref} was deleted: nothing to apply")
            return 0
        if ref.startswith("refs/tags/"):
            self.say(f"stackward: tag push ({ref}): nothing to apply")
            return 0
        if ref != f"refs/heads/{default}":
            self.say(f"stackward: push to {ref}: only pushes to {default} apply")
            return 0
        sha = event.get("after") or self.ctx.sha
        pull = self.client.merged_pull_request(sha)
        if pull is None:
            self.say(
                f"stackward: {sha[:7]} is not the merge of a pull request: nothing is applied without a reviewed plan"
            )
            return 1
        found = self.client.find_comment(pull.number)
        refusal = None
        if found is None:
            refusal = f"#{pull.number} has no stackward plan comment"
        elif not found.state.planned:
            refusal = f"#{pull.number} came from a fork and was never planned"
        elif found.state.head_sha != pull.head.sha:
            refusal = (
                f"the last plan on #{pull.number} was computed for {found.state.head_sha[:7]}, "
                f"but the merged head is {pull.head.sha[:7]}"
            )
        if refusal:
            message = f"stackward: nothing applied: {refusal}. Plan again (push to the PR, or run the plan workflow)."
            self.say(message)
            self.client.comment(pull.number, message.removeprefix("stackward: "))
            return 1
        return self.apply_reviewed(sha, pull.number, found.state.plans)

    def apply_reviewed(self, sha: str, number: int | None, plans: dict[str, str | None]) -> int:
        report = validate(self.settings.path)
        self.mask_secrets(report)
        if not report.ok:
            for diag in report.errors:
                click.echo(annotation(diag))
            if number is not None:
                self.client.comment(
                    number,
                    f"stackward: nothing applied: the specs at {sha[:7]} do not validate "
                    f"({len(report.errors)} error(s)); see the run {self.ctx.run_url}",
                )
            return 1
        by_name = {e.name: e for e in report.environments}
        rows, failed = [], False
        for env in promotion_order([by_name[n] for n in plans if n in by_name]):
            if failed:
                rows.append((env.name, "⏭️ skipped", "—", "an earlier environment failed"))
                continue
            deployment = self.client.deployment(sha, env.name, f"stackward apply {sha[:7]}")
            self.client.deployment_status(deployment, "in_progress", "applying", self.ctx.run_url)

            def gate(planned: Planned, env: Any = env) -> None:
                found = plan_policy_findings([env], report.repo, {env.name: planned}, self.policy_options())
                blocking = [d for d in found if d.is_error]
                if blocking:
                    raise ApplyRefused(f"denied by policy: {blocking[0].message}")

            try:
                result = apply_environment(
                    env,
                    report.repo,
                    self.state_root(report),
                    reviewed=None,
                    reviewed_digest=plans[env.name],
                    lock_timeout=self.settings.lock_timeout,
                    progress=lambda m: None,
                    check=gate,
                )
            except (ApplyRefused, LockError, TerraformError, ZenmlError) as exc:
                failed = True
                detail = str(exc).splitlines()[0][:300]
                self.client.deployment_status(deployment, "failure", detail[:140], self.ctx.run_url)
                self.client.status(sha, f"stackward/{env.name}", "failure", detail, self.ctx.run_url)
                rows.append((env.name, "❌ failed", "—", detail))
                continue
            summary = f"{len(result.applied)} change(s)" if result.changed else "no changes"
            self.client.deployment_status(deployment, "success", summary, self.ctx.run_url)
            self.client.status(
                sha, f"stackward/{env.name}", "success", f"applied: {summary}", self.ctx.run_url
            )
            rows.append(
                (
                    env.name,
                    "✅ applied",
                    summary,
                    f"ledger entry {result.apply_id}" if result.apply_id else "",
                )
            )
        body = _apply_comment(sha, rows, self.ctx.run_url)
        if number is not None:
            self.client.comment(number, body)
        self.summary(body + "\n")
        self.say(body)
        self.output(environments=",".join(plans), **{"has-changes": "true" if rows else "false"})
        return 1 if failed else 0

    def dispatch(self) -> int:
        inputs = self.ctx.event.get("inputs") or {}
        name = inputs.get("environment") or ",".join(self.settings.environments)
        mode = inputs.get("mode") or self.settings.mode  # auto and validate plan: dispatch is for drift
        if not name:
            self.say("stackward: workflow_dispatch needs the input `environment`")
            return 2
        if mode == "apply":
            return self.apply_reviewed(self.ctx.sha, None, dict.fromkeys(name.split(",")))
        report = validate(self.settings.path)
        plans = []
        for env in [e for e in report.environments if e.name in name.split(",")]:
            try:
                plans.append(
                    plan_environment(
                        env, report.repo, self.state_root(report), self.settings.lock_timeout, lambda m: None
                    ).plan
                )
            except (TerraformError, ZenmlError, LockError) as exc:
                self.say(str(exc))
                return 1
        text = render_plans(plans)
        self.say(text)
        self.summary(f"```\n{click.unstyle(text)}\n```\n")
        self.output(**{"has-changes": str(any(p.has_changes for p in plans)).lower()})
        return 0


def _apply_comment(sha: str, rows: list[tuple[str, str, str, str]], run_url: str) -> str:
    table = "\n".join(
        [
            templates.APPLY_TABLE_HEAD,
            *(templates.APPLY_ROW.substitute(env=r[0], result=r[1], summary=r[2], detail=r[3]) for r in rows),
        ]
    )
    return "\n\n".join(
        [templates.APPLY_HEAD.substitute(short_sha=sha[:7]), table, f"<sub>[run]({run_url or '#'})</sub>"]
    )


def _write_outputs(ctx: GitHubContext, outputs: dict[str, str]) -> None:
    if ctx.output is None:
        return
    with ctx.output.open("a") as handle:
        for key, value in outputs.items():
            handle.write(f"{key}={value}\n")


@click.command("action")
@click.option(
    "--path",
    type=click.Path(path_type=Path),
    default="environments",
    envvar="STACKWARD_PATH",
    show_default=True,
)
@click.option("--policies", type=click.Path(path_type=Path), envvar="STACKWARD_POLICIES")
@click.option(
    "--mode",
    type=click.Choice(["auto", "validate", "plan", "apply"]),
    default="auto",
    envvar="STACKWARD_MODE",
)
@click.option("--environments", default="", envvar="STACKWARD_ENVIRONMENTS", help="Comma-separated filter.")
@click.option("--state-dir", type=click.Path(path_type=Path, file_okay=False), envvar="STACKWARD_STATE_DIR")
@click.option("--opa-url", envvar="STACKWARD_OPA_URL")
@click.option("--lock-timeout", type=float, default=600.0, show_default=True)
@click.option(
    "--api-backoff",
    type=float,
    default=1.0,
    envvar="STACKWARD_API_BACKOFF",
    show_default=True,
    help="Seconds of backoff between GitHub API retries (grows per attempt).",
)
def command(
    path: Path,
    policies: Path | None,
    mode: str,
    environments: str,
    state_dir: Path | None,
    opa_url: str | None,
    lock_timeout: float,
    api_backoff: float,
) -> None:
    """Run as the GitHub Action for the current event (GITHUB_* variables; token in GITHUB_TOKEN)."""
    settings = Settings(
        path, policies, mode, [e for e in environments.split(",") if e], state_dir, opa_url, lock_timeout
    )
    try:
        ctx = GitHubContext.from_environment()
        token = os.environ.get("GITHUB_TOKEN") or os.environ.get("INPUT_TOKEN")
        if not token:
            raise UsageError("GITHUB_TOKEN is not set: pass the token input")
        client = GitHubClient(token, ctx.repository, ctx.api_url, backoff=api_backoff)
        code = Action(settings, ctx, client).run()
    except (UsageError, PolicySourceError, GitError) as exc:
        click.echo(f"stackward: {exc}", err=True)
        sys.exit(2)
    except GitHubError as exc:
        click.echo(f"stackward: {exc}", err=True)
        sys.exit(3)
    _write_outputs(ctx, settings.outputs)
    sys.exit(code)
