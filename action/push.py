"""push: a push to the default branch applies what the merged pull request's plan comment
showed (its head SHA and each environment's plan hash), and nothing without one."""

from __future__ import annotations

from action import deploy
from action.context import Run


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
    pull = run.client.merged_pull_request(sha)
    if pull is None:
        run.say(
            f"stackward: {sha[:7]} is not the merge of a pull request: nothing is applied without a reviewed plan"
        )
        return 1
    found = run.client.find_comment(pull.number)
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
        message = (
            f"stackward: nothing applied: {refusal}. Plan again (push to the PR, or run the plan workflow)."
        )
        run.say(message)
        run.client.comment(pull.number, message.removeprefix("stackward: "))
        return 1
    return deploy.apply(run, run.validated(), sha, pull.number, dict(found.state.plans))
