"""Issue #11: the action against people who may comment, merge or open pull requests, but are
not stackward. The world is tests/action_world.py: a real repository, the recorded webhook
payloads and the GitHub API stand-in, whose tokens act as someone (tests/github_standin.py).

- Only comments written by the identity the action's token acts as are stackward's plan comments.
- A merge is judged by the policies of the default branch before it, not by the merged ones.
- A fork's read-only token makes GitHub refuse every write: the run warns and goes on.
"""

from __future__ import annotations

import json
from pathlib import Path

from action_world import BUILDER, World
from action_world import world_fixture as world_fixture  # the `world` fixture
from conftest import git
from github_standin import Token
from zenml_tools import zenml_state

FORGER = "ghp_mallory"  # a personal access token: whoever can comment on a pull request
PROD_LABEL = BUILDER.replace(
    "metadata: {name: local-builder}", "metadata: {name: local-builder, labels: {environment: prod}}"
)


def forged(head: str, plans: dict[str, str]) -> str:
    """A comment that copies stackward's marker, claiming a reviewed plan for `head`."""
    marker = json.dumps({"head_sha": head, "plans": plans, "planned": True})
    return f"<!-- stackward {marker} -->\nLooks good to me: FORGED-BODY ::error::from the body"


def test_a_comment_by_someone_else_with_the_marker_is_ignored_and_its_author_named(world: World):
    world.github.tokens[FORGER] = Token("mallory", installation=False)
    world.github.tokens["ghp_odd"] = Token(
        "odd\n::error::name%", installation=False
    )  # no GitHub login, a hostile one
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    world.comment_as(FORGER, 2, forged(head, {"local": "0" * 64}))
    world.comment_as("ghp_odd", 2, forged(head, {}))
    result = world.pull_request("opened", world.base, head)
    assert result.exit_code == 0, result.output
    (ours,) = world.github.our_comments(2)
    assert f"plan for {head[:7]}" in ours["body"].replace("`", "")
    assert [c["body"] for c in world.github.comments[2][:2]] == [
        forged(head, {"local": "0" * 64}),
        forged(head, {}),
    ]  # untouched
    assert world.github.contexts(head) == [("stackward", "pending"), ("stackward", "success")]
    assert "ignored a comment on #2 by mallory: it carries stackward's hidden marker" in result.output
    assert "by odd\\u000a\\u003a\\u003aerror\\u003a\\u003aname\\u0025:" in result.output
    assert "FORGED-BODY" not in result.output and "::error::" not in result.output
    # Whom the token acts as came with the first status: still 5 calls (status, the reviews'
    # GraphQL query, list, comment, status).
    assert [method for method, _ in world.github.requests] == ["POST", "POST", "GET", "POST", "POST"]


def test_a_forged_plan_comment_never_makes_a_merge_apply(world: World):
    """The plan workflow never ran on #2; a comment carries a marker with the true head and plan hash."""
    world.github.tokens[FORGER] = Token("mallory", installation=False)
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    world.deliver("workflow_dispatch", {"inputs": {"environment": "local", "mode": "plan"}}, head)
    plan_file = world.outputs.read_text().split("plan-file=")[-1].splitlines()[0]
    (plan,) = json.loads(Path(plan_file).read_text())["environments"]
    world.comment_as(FORGER, 2, forged(head, {"local": plan["hash"]}))
    merge, push = world.merge(head)
    result = world.deliver("push", push, merge)
    assert result.exit_code == 1, result.output
    assert "nothing applied: #2 has no stackward plan comment" in result.output
    assert "ignored a comment on #2 by mallory" in result.output
    assert "local-builder" not in zenml_state(world.state, "local")["components"]
    assert ("POST", "/graphql") in world.github.requests  # whom the token acts as: asked once
    assert world.github.comments[2][-1]["user"]["login"] == "github-actions[bot]"


def test_a_github_app_token_knows_its_own_comment(world: World):
    """An App's installation token acts as `<app-slug>[bot]`, not as github-actions[bot]."""
    world.github.tokens[FORGER] = Token("mallory", installation=False)
    world.github.tokens["ghs_app"] = Token("stackward-ci[bot]")
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    world.comment_as(FORGER, 2, forged(head, {}))
    assert world.pull_request("opened", world.base, head, token="ghs_app").exit_code == 0
    closed = world.pull_request("closed", world.base, head, token="ghs_app")
    assert closed.exit_code == 0, closed.output
    (ours,) = world.github.our_comments(2, login="stackward-ci[bot]")
    assert '"closed":true' in ours["body"] and "closed without merging" in ours["body"]
    assert world.github.comments[2][0]["body"] == forged(head, {})
    assert [method for method, _ in world.github.requests] == ["GET", "POST", "PATCH"]  # list, viewer, edit


def test_a_merge_is_judged_by_the_policies_before_it(world: World):
    """#2 deletes the policy that denies its change and is merged anyway (with a merge commit)."""
    git(world.repo, "rm", "-q", "policies/labels.rego", "policies/labels_test.rego")
    head = world.commit({"environments/local/builder.yaml": PROD_LABEL}, "no more label policy")
    result = world.pull_request("opened", world.base, head)
    assert result.exit_code == 1  # judged by the base branch's policies, which deny it
    (comment,) = world.github.our_comments(2)
    assert "❌ denied by policy" in comment["body"] and "policy.SW002" in comment["body"]
    assert "Policy files changed in this pull request (policies/labels.rego" in comment["body"]
    merge, push = world.merge(head)
    result = world.deliver("push", push, merge)
    assert result.exit_code == 1, result.output
    report = world.github.comments[2][-1]["body"]
    assert "| **local** | ❌ failed |" in report and "denied by policy, nothing was applied" in report
    assert world.github.contexts(merge) == [("stackward", "failure")]
    assert "local-builder" not in zenml_state(world.state, "local")["components"]


def test_a_rebase_merge_of_several_commits_is_judged_by_the_policies_before_all_of_them(world: World):
    """The first commit deletes the policy, the second makes the change it denies: the merged
    commit's first parent already lacks the policy; the push's `before` does not."""
    git(world.repo, "rm", "-q", "policies/labels.rego", "policies/labels_test.rego")
    git(world.repo, "commit", "-qm", "no more label policy")
    head = world.commit({"environments/local/builder.yaml": PROD_LABEL}, "mislabelled")
    assert world.pull_request("opened", world.base, head).exit_code == 1
    merged, push = world.merge(head, "--ff-only")
    assert merged == head and push["before"] == world.base
    result = world.deliver("push", push, merged)
    assert result.exit_code == 1, result.output
    assert "denied by policy, nothing was applied" in world.github.comments[2][-1]["body"]
    assert "local-builder" not in zenml_state(world.state, "local")["components"]


def test_a_fork_with_a_read_only_token_is_checked_and_warned_about(world: World):
    """GitHub gives a fork's pull_request run a read-only token: every write is refused."""
    world.github.tokens["ghs_fork"] = Token("github-actions[bot]", read_only=True)
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    fork = {"pull_request.head.repo.full_name": "forker/Hello-World"}
    result = world.pull_request("opened", world.base, head, token="ghs_fork", **fork)
    assert result.exit_code == 0, result.output
    assert (
        "::warning title=stackward::GitHub: setting status stackward: HTTP 403: Resource not "
        "accessible by integration (the token needs statuses=write)"
    ) in result.output
    assert "GitHub: commenting on the pull request: HTTP 403" in result.output
    outputs = world.outputs.read_text()
    assert "environments=local" in outputs and "policy-passed=true" in outputs
    summary = world.summary.read_text()
    assert "| **local** |" in summary and "✅ checked (not planned)" in summary
    assert "GitHub refused some of stackward's writes" in summary
    assert "> - GitHub: setting status stackward: HTTP 403" in summary
    assert world.github.statuses == {} and world.github.comments == {}
