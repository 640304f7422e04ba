"""push: a push to the default branch applies what the merged pull request's plan comment
showed (its head SHA and each environment's plan hash), or, for a merge queue's merge commit,
the plan the queue recorded on that commit (action/merge_group.py); nothing without one. The policy
gate judges it with the policies of the default branch as it was before the merge, so a pull
request cannot loosen the gate it is applied through."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from action import deploy
from action.context import Run
from stackward.github.approvals import pull_request_context
from stackward.github.changed import GitError


def handle(run: Run) -> int:
    event = run.ctx.event
    ref = event.get("ref", "")
    default = (event.get("repository") or {}).get("default_branch", "main")
    if event.get("deleted"):
        run.say(f"stackward: {ref} was deleted: nothing to apply")
        return 0
    if ref.startswith("refs/tags/"):
        run.say(f"stackward: tag push ({ref}): nothing to apply")
        return 0
    if ref != f"refs/heads/{default}":
        run.say(f"stackward: push to {ref}: only pushes to {default} apply")
        return 0
    sha = event.get("after") or run.ctx.sha
    queued = run.client.commit_plan(sha)
    if queued is not None:  # a merge queue's merge commit: its plan was checked in the queue
        report = run.validated()
        base = base_before(report.repo.repo_root, sha, event.get("before"))
        run.say(f"stackward: {sha[:7]} is a merge queue's merge commit: applying the plan the queue checked")
        return deploy.apply(run, report, sha, None, dict(queued.plans), policies_ref=base)
    pull = run.client.merged_pull_request(sha)
    if pull is None:
        run.say(
            f"stackward: {sha[:7]} is not the merge of a pull request: nothing is applied without a reviewed plan"
        )
        return 1
    found = run.plan_comment(pull.number)
    refusal = None
    base_ref = getattr(pull.base, "ref", default)
    if base_ref != default:
        refusal = (
            f"#{pull.number} was merged into {base_ref}, not the default branch {default}; its plan was "
            f"reviewed against {base_ref}. Bring the change to {default} through a pull request"
        )
    elif found is None:
        refusal = f"#{pull.number} has no stackward plan comment"
    elif not found.state.planned:
        refusal = f"#{pull.number} came from a fork and was never planned"
    elif found.state.head_sha != pull.head.sha:
        refusal = (
            f"the last plan on #{pull.number} was computed for {found.state.head_sha[:7]}, "
            f"but the merged head is {pull.head.sha[:7]}"
        )
    if refusal:
        message = (
            f"stackward: nothing applied: {refusal}. Plan again (push to the PR, or run the plan workflow)."
        )
        run.say(message)
        run.client.comment(pull.number, message.removeprefix("stackward: "))
        return 1
    report = run.validated()
    base = base_before(report.repo.repo_root, sha, event.get("before"))
    merged = {  # the merged pull request, its reviews read again: approval rules hold at apply too
        "number": pull.number,
        "base": {"sha": base},
        "head": {"sha": pull.head.sha},
        "user": {"login": pull.user.login if pull.user else ""},
        "labels": [{"name": label.name} for label in pull.labels],
    }
    context = pull_request_context(
        run.client, report.repo, report.environments, merged, policies=run.settings.policies
    )
    return deploy.apply(
        run, report, sha, pull.number, dict(found.state.plans), policies_ref=base, pull_request=context
    )


def base_before(repo_root: Path, sha: str, before: str | None) -> str:
    """The default branch as it was before the push of `sha`: the push's `before`, else the
    first parent of `sha` (the base of a merge commit, a squash or a one-commit rebase; a rebase
    of several commits pushes them all, and only `before` is the base then). GitError when git
    cannot resolve it, so nothing is applied (check out with history: fetch-depth: 0)."""
    known = before if before and re.fullmatch(r"[0-9a-f]{40}", before) and before.strip("0") else None
    wanted = known or f"{sha}^1"
    proc = subprocess.run(
        ["git", "-C", str(repo_root), "rev-parse", "--verify", "--quiet", f"{wanted}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise GitError(
            f"nothing applied: the commit before the merge ({wanted[:9]}), whose policies judge it, is not "
            "in the checkout; check out the repository with its history (actions/checkout with fetch-depth: 0)"
        )
    return proc.stdout.strip()
