"""Comment commands on a pull request (issue_comment events): `/stackward plan` and
`/stackward unlock ENV`, end to end with the recorded issue_comment.created payload (adapted in
the issue number, the comment's id, author and body, and marked as a pull request's comment as
GitHub marks them) and the GitHub stand-in, where each comment is really posted first."""

from __future__ import annotations

import json
import subprocess
import sys

from action_world import BUILDER, REPOSITORY, World, payload
from action_world import world_fixture as world_fixture  # the `world` fixture
from github_standin import Token

from stackward.plan.state import EnvironmentState
from stackward.state import new_holder
from stackward.state.local import LocalStore

WRITER, READER = "maintainer", "outsider"


def command(world: World, body: str, login: str = WRITER, checked_out: str | None = None):
    """`login` comments `body` on pull request #2 through the API; the action runs for that
    comment at the default branch's commit, with the workflow's checkout where it is."""
    token = f"ghp_{login}"
    world.github.tokens[token] = Token(login, installation=False)
    world.comment_as(token, 2, body)
    posted = world.github.comments[2][-1]
    event = payload(
        "issue_comment.created.json",
        **{
            "issue.number": 2,
            "issue.pull_request": {"url": f"{world.github.url}/repos/{REPOSITORY}/pulls/2"},
            "comment.id": posted["id"],
            "comment.body": body,
            "comment.user.login": login,
            "sender.login": login,
        },
    )
    return world.deliver("issue_comment", event, world.base), posted["id"]


def replies(world: World) -> list[str]:
    """Comments stackward wrote on #2 that are not its plan comment."""
    return [
        c["body"]
        for c in world.github.comments.get(2, [])
        if c["user"]["login"] == "github-actions[bot]" and "<!-- stackward " not in c["body"]
    ]


def test_plan_command_replans_the_pull_request_and_updates_its_one_comment(world: World):
    world.github.permissions[WRITER] = "maintain"
    first = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    assert world.pull_request("opened", world.base, first).exit_code == 0
    second = world.commit(  # pushed, but its synchronize run never happened
        {"environments/local/builder.yaml": BUILDER.replace("name: local-builder", "name: local-builder2")},
        "rename",
    )
    world.github.open_pull(2, second, world.base)
    result, comment_id = command(world, "/stackward plan")
    assert result.exit_code == 0, result.output
    assert world.github.reactions[comment_id] == ["eyes"]
    (comment,) = world.github.our_comments(2)
    assert f"### stackward plan for `{second[:7]}`" in comment["body"] and "local-builder2" in comment["body"]
    assert ("PATCH", f"/repos/{REPOSITORY}/issues/comments/{comment['id']}") in world.github.requests
    assert world.github.contexts(second) == [("stackward", "pending"), ("stackward", "success")]
    assert replies(world) == []
    assert f"/stackward plan by {WRITER}: planning #2 at {second[:12]}" in result.output


def test_a_command_from_a_user_without_write_access_is_refused_and_nothing_is_planned(world: World):
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    assert world.pull_request("opened", world.base, head).exit_code == 0
    before = world.github.our_comments(2)[0]["body"]
    world.github.open_pull(2, head, world.base)
    for role in ("read", "triage", None):  # None: not a collaborator at all
        if role:
            world.github.permissions[READER] = role
        statuses = list(world.github.contexts(head))
        result, comment_id = command(world, "/stackward plan", login=READER)
        assert result.exit_code == 0, result.output
        assert world.github.reactions[comment_id] == ["-1"]
        assert replies(world)[-1] == (
            "stackward's comment commands need write access to this repository; nothing was done."
        )
        assert "::warning title=stackward::command refused: outsider has" in result.output
        assert world.github.our_comments(2)[0]["body"] == before  # not planned again
        assert world.github.contexts(head) == statuses
        assert not any(path.endswith("/pulls/2") for _, path in world.github.requests)
    # The permission GitHub reported, and the reaction and the reply: three calls.
    assert len(world.github.requests) == 3


def test_plan_command_is_refused_when_the_workflow_did_not_check_out_the_pull_requests_head(world: World):
    world.github.permissions[WRITER] = "write"
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    world.github.open_pull(2, head, world.base)
    subprocess.run(["git", "-C", str(world.repo), "checkout", "-q", "master"], check=True)
    result, comment_id = command(world, "/stackward plan")
    assert result.exit_code == 1
    assert world.github.reactions[comment_id] == ["-1"]
    (reply,) = replies(world)
    assert f"not this pull request's head `{head[:7]}`" in reply and "`refs/pull/2/head`" in reply
    assert "check out refs/pull/2/head in the issue_comment workflow" in result.output
    assert world.github.our_comments(2) == [] and world.github.contexts(head) == []


def test_unlock_command_releases_a_lock_its_holder_left_behind(world: World):
    world.github.permissions[WRITER] = "admin"
    world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    lock = EnvironmentState(world.state, "local").lock_file
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({**new_holder("apply local"), "pid": gone.pid}))
    result, comment_id = command(world, "/stackward unlock local")
    assert result.exit_code == 0, result.output
    assert not lock.exists()
    assert world.github.reactions[comment_id] == ["+1"]
    assert f"/stackward unlock by {WRITER}: environment local was no longer locked" in result.output
    # A lock whose holder still runs stays, as with `stackward unlock` without --force.
    with LocalStore(world.state).hold("local", "apply local", 0):
        result, comment_id = command(world, "/stackward unlock local")
        assert lock.exists()
    assert result.exit_code == 1
    assert world.github.reactions[comment_id] == ["-1"]
    assert "The lock of `local` is held by a run that is still going" in replies(world)[-1]


def test_unlock_of_an_unknown_environment_names_the_known_ones(world: World):
    world.github.permissions[WRITER] = "write"
    result, comment_id = command(world, "/stackward unlock prod")
    assert result.exit_code == 1
    assert world.github.reactions[comment_id] == ["-1"]
    assert replies(world) == ["There is no environment by that name (known: `local`); nothing was unlocked."]
    assert "prod" not in replies(world)[0] and "prod" not in result.output


def test_hostile_and_foreign_comments(world: World):
    world.github.permissions[WRITER] = "write"
    # Not addressed to stackward, or written by a bot: ignored without a single call.
    for body, login in [
        ("lgtm, /stackward plan later", WRITER),
        ("/stackwardplan", WRITER),
        ("/stackward plan", "dependabot[bot]"),
    ]:
        result, comment_id = command(world, body, login=login)
        assert result.exit_code == 0 and world.github.requests == [], result.output
        assert comment_id not in world.github.reactions
    # Unknown or malformed: `confused`, a usage reply, and nothing of the comment echoed.
    hostile = [
        "/stackward plan\n::error::pwned",
        "/stackward unlock local; rm -rf /",
        "/stackward unlock `@team` <!-- stackward {} -->",
        "/stackward unlock ../../etc",
        "/stackward plan \u202eevil",
        "/stackward apply",
    ]
    for body in hostile:
        result, comment_id = command(world, body)
        assert result.exit_code == 0, result.output
        assert world.github.reactions[comment_id] == ["confused"]
        assert replies(world)[-1] == (
            "stackward does not know that command; commands: `/stackward plan` (plan this pull "
            "request again), `/stackward unlock ENV`."
        )
        assert "pwned" not in result.output and "rm -rf" not in result.output
        assert "etc" not in result.output and "@team" not in result.output
    assert world.github.our_comments(2) == []


def test_plan_command_on_a_fork_pull_request_checks_it_without_planning(world: World):
    world.github.permissions[WRITER] = "write"
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    world.github.open_pull(2, head, world.base)
    world.github.pulls[2]["head"]["repo"] = {"full_name": "forker/Hello-World", "name": "Hello-World"}
    result, comment_id = command(world, "/stackward plan")
    assert result.exit_code == 0, result.output
    assert world.github.reactions[comment_id] == ["eyes"]
    body = world.github.our_comments(2)[0]["body"]
    assert "Pull request from a fork" in body and "✅ checked (not planned)" in body
    assert not (world.state / "local" / "terraform").exists()  # no Terraform from a fork's code
