"""Approval-aware policies: the reviews of a pull request, its requested reviewers and the code
owners of the files it changes are in the policy input, and the default approvals policy
(policies/approvals.rego, on for `local` here through a data document) blocks a pull request
without an owner's approval of its head, lets it through with one, and holds again at merge,
where the reviews are read anew."""

from __future__ import annotations

from action_world import ACTIONS_TOKEN, BUILDER, REPOSITORY, World, world_fixture  # noqa: F401
from conftest import git
from github_standin import Token

from stackward.checks.validate import validate
from stackward.github.approvals import pull_request_context
from stackward.github.client import GitHubClient

OWNERS_TOKEN = "ghp_reads_teams"  # a token that may read the organization's teams
CODEOWNERS = "* @Codertocat\nenvironments/local/ @Codertocat/platform\n"
CONFIG = "approvals:\n  environments: [local]\n"


def _set_up(world: World) -> tuple[str, str]:
    """CODEOWNERS and the approvals config on master; the feature branch adds a component."""
    world.github.tokens[OWNERS_TOKEN] = Token("stackward-app[bot]", reads_teams=True)
    world.github.teams["Codertocat/platform"] = ["alice", "bob"]
    git(world.repo, "checkout", "-q", "master")
    base = world.commit({".github/CODEOWNERS": CODEOWNERS, "policies/approvals.yaml": CONFIG}, "owners")
    git(world.repo, "checkout", "-q", "feature")
    git(world.repo, "merge", "-q", "--ff-only", "master")
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    return base, head


def _status(world: World, sha: str) -> str:
    return dict(world.github.contexts(sha))["stackward"]


def _comment(world: World) -> str:
    (comment,) = world.github.our_comments(2, "stackward-app[bot]") or world.github.our_comments(2)
    return comment["body"]


def test_a_pull_request_needs_an_owners_approval_of_its_head(world: World):
    base, head = _set_up(world)
    world.github.review_requests[2] = (["carol"], ["platform"])
    blocked = world.pull_request("opened", base, head, OWNERS_TOKEN)
    assert blocked.exit_code == 1, blocked.output
    assert _status(world, head) == "failure"
    assert (
        (  # the comment writes @ mentions so that they notify nobody
            "local changes environments/local/builder.yaml (owned by @\u200bCodertocat/platform) without an "
            f"approval from one of its owners on {head[:7]}"
        )
        in _comment(world)
    )

    world.github.review(2, "mallory", "APPROVED", head)  # not an owner
    world.github.review(2, "alice", "APPROVED", "0" * 40)  # an owner, but of an older commit
    assert world.pull_request("synchronize", base, head, OWNERS_TOKEN).exit_code == 1

    world.github.review(2, "alice", "APPROVED", head)  # a member of the owning team, on the head
    passed = world.pull_request("synchronize", base, head, OWNERS_TOKEN)
    assert passed.exit_code == 0, passed.output
    assert _status(world, head) == "success"


def test_the_approval_is_read_again_at_merge(world: World):
    base, head = _set_up(world)
    world.github.review(2, "alice", "APPROVED", head)
    assert world.pull_request("opened", base, head, OWNERS_TOKEN).exit_code == 0
    world.github.review(2, "alice", "DISMISSED", head)  # taken back after the plan, before the merge
    merge, push = world.merge(head)
    refused = world.deliver("push", push, merge, OWNERS_TOKEN)
    assert refused.exit_code == 1
    assert "denied by policy, nothing was applied" in refused.output
    assert "without an approval from one of its owners" in refused.output
    assert "without an approval from one of its owners" in world.github.comments[2][-1]["body"]
    assert not (world.state / "local" / "ledger.jsonl").exists()


def test_the_actions_token_cannot_read_teams_so_only_user_owners_count(world: World):
    base, head = _set_up(world)
    world.github.review(2, "alice", "APPROVED", head)  # a team member: not known to this token
    blocked = world.pull_request("opened", base, head, ACTIONS_TOKEN)
    assert blocked.exit_code == 1
    body = _comment(world)
    assert "the members of @\u200bCodertocat/platform could not be read" in body


def test_the_policy_input_carries_reviews_requests_and_owners(world: World):
    base, head = _set_up(world)
    world.github.review(2, "bob", "CHANGES_REQUESTED", head)
    world.github.review(2, "bob", "APPROVED", head)
    world.github.review(2, "carol", "APPROVED", base)
    world.github.review(2, "carol", "COMMENTED", head)  # a comment does not take an approval back
    world.github.review(2, "dave", "APPROVED", head)
    world.github.review(2, "dave", "DISMISSED", head)
    world.github.review_requests[2] = (["erin"], ["platform"])
    client = GitHubClient(OWNERS_TOKEN, REPOSITORY, world.github.url, backoff=0)
    report = validate(world.repo / "environments")
    pr = {"number": 2, "base": {"sha": base}, "head": {"sha": head}, "user": {"login": "Codertocat"}}
    seen = pull_request_context(client, report.repo, report.environments, pr).to_input("local")
    assert seen["approvals"] == [
        {"user": "bob", "commit_id": head, "on_head": True},
        {"user": "carol", "commit_id": base, "on_head": False},
    ]
    assert [r["state"] for r in seen["reviews"]] == [
        "CHANGES_REQUESTED",
        "APPROVED",
        "APPROVED",
        "COMMENTED",
        "APPROVED",
        "DISMISSED",
    ]
    assert seen["requested_reviewers"] == ["erin"] and seen["requested_teams"] == ["Codertocat/platform"]
    assert seen["changed_files"] == ["environments/local/builder.yaml"]
    assert seen["environment_files"] == ["environments/local/builder.yaml"]
    assert seen["code_owners"] == {"environments/local/builder.yaml": ["@Codertocat/platform"]}
    assert seen["teams"] == {"Codertocat/platform": ["alice", "bob"]}
