"""merge_group: a merge queue asks for the required checks on the queue's merge commit. That
commit is planned like a pull request (the environments it touches, judged by the policies of
the branch it merges into), the statuses are set on it, and its plan is recorded in a comment
on the commit. The push that follows (the default branch moved to that commit) applies exactly
that plan, so a batch of reviewed pull requests applies as the queue checked it."""

from __future__ import annotations

import click

from action.context import Run
from action.pull_request import outcome_of, pending_statuses, result_statuses
from stackward.github import templates
from stackward.github.changed import changed_files, removed_environments, touched_environments
from stackward.github.comment_body import comment_bodies, job_summary
from stackward.output.github import annotation, stop_commands
from stackward.policy.input import PullRequest


def handle(run: Run) -> int:
    event = run.ctx.event
    if event.get("action") != "checks_requested":
        run.say(f"stackward: merge group {event.get('action')}: nothing to do")
        return 0
    group = event["merge_group"]
    default = (event.get("repository") or {}).get("default_branch", "main")
    if group.get("base_ref") != f"refs/heads/{default}":
        run.say(
            f"stackward: a merge queue into {group.get('base_ref')}: only queues into {default} are planned"
        )
        return 0
    head_sha, base_sha = group["head_sha"], group["base_sha"]
    report = run.validated()
    files = changed_files(report.repo.repo_root, base_sha, head_sha)
    names = run.selected(touched_environments(report.repo, report.environments, files, run.settings.policies))
    run.output(environments=",".join(names))
    pending_statuses(run, head_sha, names, "planning the merge queue…")
    notes = [templates.REMOVED.substitute(env=env) for env in removed_environments(report.repo, files)]
    change = PullRequest(0, "", base_sha=base_sha, head_sha=head_sha, changed_files=tuple(files))
    outcome = outcome_of(run, report, names, change, False, notes)
    run.found(outcome.findings)
    body = next(comment_bodies(outcome, outcome.state(planned=True), title="merge queue plan"))
    run.client.commit_comment(head_sha, body)  # what the push of this commit applies
    result_statuses(run, head_sha, outcome.environments)
    report_text = job_summary(outcome, plan_file=run.outputs["plan-file"])
    run.summary(report_text)
    run.say(stop_commands(report_text))
    for diag in outcome.findings:
        click.echo(annotation(diag))
    return 0 if outcome.passed else 1
