"""The GitHub Action end to end, as GitHub runs it: a real git repository with base and head
commits, the real webhook payloads from ../shared/fixtures/github-webhooks/ (adapted only in
SHAs, file lists and fork owner, as each test shows), and a local stand-in for the GitHub API
(tests/github_standin.py) that answers like the recordings in ../shared/fixtures/github-api/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from action_world import BUILDER, HEAD, REPOSITORY, World, payload
from action_world import world_fixture as world_fixture  # the `world` fixture
from conftest import git
from github_standin import Fault
from zenml_tools import zenml_run, zenml_state


def test_pull_request_gets_one_plan_comment_and_a_status_per_environment(world: World):
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    result = world.pull_request("opened", world.base, head)
    assert result.exit_code == 0, result.output
    (comment,) = world.github.our_comments(2)
    body = comment["body"]
    assert f"### stackward plan for `{head[:7]}`" in body
    assert "| **local** | ✅ | 0 / 0 | +5 ~0 -0 ±0 | ✅ ready to apply |" in body
    assert "<details><summary>local: +5 ~0 -0 ±0</summary>" in body
    assert "zenml.StackComponent.local-builder" in body
    assert f"Computed for {head}" in body
    assert world.github.contexts(head) == [("stackward", "pending"), ("stackward", "success")]
    assert world.github.statuses[head][-1]["description"] == "1 environment: 1 ready"
    assert "local-builder" in world.summary.read_text()
    outputs = world.outputs.read_text()
    assert (
        "environments=local" in outputs and "has-changes=true" in outputs and "policy-passed=true" in outputs
    )
    # A plan run makes a small, fixed number of calls: the reviews (one GraphQL query), list
    # comments, post comment, 2 statuses.
    assert len(world.github.requests) == 5


def test_new_pushes_edit_the_same_comment(world: World):
    first = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    world.pull_request("opened", world.base, first)
    second = world.commit(
        {"environments/local/builder.yaml": BUILDER.replace("name: local-builder", "name: local-builder2")},
        "rename",
    )
    result = world.pull_request("synchronize", world.base, second)
    assert result.exit_code == 0, result.output
    (comment,) = world.github.our_comments(2)
    assert f"plan for `{second[:7]}`" in comment["body"] and "local-builder2" in comment["body"]
    assert ("PATCH", f"/repos/{REPOSITORY}/issues/comments/{comment['id']}") in world.github.requests
    # Whom the token acts as (to know the comment is ours) comes with the first status: still 5 calls.
    assert len(world.github.requests) == 5


def test_merge_applies_the_reviewed_plan_and_reports_back(world: World):
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    assert world.pull_request("opened", world.base, head).exit_code == 0
    merge, push = world.merge(head)
    result = world.deliver("push", push, merge)
    assert result.exit_code == 0, result.output
    zenml = zenml_state(world.state, "local")
    assert "local-builder" in zenml["components"] and "local-stack" in zenml["stacks"]
    report = world.github.comments[2][-1]["body"]
    assert f"### stackward apply of `{merge[:7]}`" in report
    assert "| **local** | ✅ applied | 5 change(s) |" in report
    (deployment,) = world.github.deployments
    assert deployment["environment"] == "local" and deployment["ref"] == merge
    assert [s["state"] for s in world.github.deployment_statuses[deployment["id"]]] == [
        "in_progress",
        "success",
    ]
    assert world.github.contexts(merge) == [("stackward", "success")]
    assert world.github.statuses[merge][-1]["description"] == "1 environment: 1 applied"
    # Another push of the same commit (a re-run) applies nothing more.
    again = world.deliver("push", push, merge)
    assert (
        again.exit_code == 0
        and "| **local** | ✅ applied | no changes |" in world.github.comments[2][-1]["body"]
    )


def test_merge_of_an_unplanned_head_applies_nothing(world: World):
    planned = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    world.pull_request("opened", world.base, planned)
    unplanned = world.commit(
        {"environments/local/more.yaml": BUILDER.replace("local-builder", "local-more")}, "sneaky"
    )
    merge, push = world.merge(unplanned)
    result = world.deliver("push", push, merge)
    assert result.exit_code == 1
    assert (
        f"computed for {planned[:7]}, but the merged head is {unplanned[:7]}"
        in world.github.comments[2][-1]["body"]
    )
    assert "local-stack" not in zenml_state(world.state, "local")["stacks"]


def test_merge_after_the_world_changed_is_refused(world: World):
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    world.pull_request("opened", world.base, head)
    # Someone registers a component by hand under the planned name before the merge.
    zenml_run(
        world.state,
        "local",
        "from zenml.client import Client\nfrom zenml.enums import StackComponentType as T\n"
        "Client().create_stack_component('local-builder', 'local', T.IMAGE_BUILDER, {})\n",
    )
    merge, push = world.merge(head)
    result = world.deliver("push", push, merge)
    assert result.exit_code == 1
    report = world.github.comments[2][-1]["body"]
    assert "| **local** | ❌ failed |" in report and "changed since it was reviewed" in report
    assert world.github.contexts(merge) == [("stackward", "failure")]
    assert "local-stack" not in zenml_state(world.state, "local")["stacks"]


def test_policy_violation_blocks_with_a_link_to_the_line(world: World):
    bad = BUILDER.replace(
        "metadata: {name: local-builder}", "metadata: {name: local-builder, labels: {environment: prod}}"
    )
    head = world.commit({"environments/local/builder.yaml": bad}, "mislabelled")
    result = world.pull_request("opened", world.base, head)
    assert result.exit_code == 1
    body = world.github.our_comments(2)[0]["body"]
    assert "| **local** | ✅ | 1 / 0 |" in body and "❌ denied by policy" in body
    link = f"[`environments/local/builder.yaml:3`](https://github.com/{REPOSITORY}/blob/{head}/environments/local/builder.yaml#L3)"
    assert link in body and "**policy.SW002**" in body
    assert world.github.contexts(head)[-1] == ("stackward", "failure")
    assert "::error file=" in result.output and "builder.yaml,line=3" in result.output


def test_closed_without_merge_marks_the_comment_closed(world: World):
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    world.pull_request("opened", world.base, head)
    closed = payload("pull_request.closed.json")  # the recording: closed, not merged
    closed["pull_request"]["head"]["sha"] = head
    result = world.deliver("pull_request", closed, head)
    assert result.exit_code == 0
    (comment,) = world.github.our_comments(2)
    assert "closed without merging" in comment["body"] and '"closed":true' in comment["body"]


@pytest.mark.parametrize(
    ("name", "changes", "expected"),
    [
        ("push.json", {}, "refs/tags/simple-tag was deleted: nothing to apply"),  # recorded: a tag deletion
        (
            "push.json",
            {"deleted": False, "created": True},
            "tag push (refs/tags/simple-tag): nothing to apply",
        ),
        (
            "push.json",
            {"ref": "refs/heads/feature", "deleted": False},
            "push to refs/heads/feature: only pushes to master apply",
        ),
    ],
)
def test_pushes_that_apply_nothing_say_why(world: World, name: str, changes: dict, expected: str):
    result = world.deliver("push", payload(name, **changes), world.base)
    assert result.exit_code == 0
    assert expected in result.output
    assert world.github.requests == []


def test_a_direct_push_to_the_default_branch_applies_nothing(world: World):
    """The recorded first push that creates master: no pull request, so no reviewed plan."""
    event = payload("push.with-new-branch.json", after=world.base)
    result = world.deliver("push", event, world.base)
    assert result.exit_code == 1
    assert "is not the merge of a pull request: nothing is applied without a reviewed plan" in result.output
    assert not (world.state / "local" / "ledger.jsonl").exists()


def test_fork_pull_requests_are_checked_not_planned(world: World):
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    result = world.pull_request(
        "opened", world.base, head, **{"pull_request.head.repo.full_name": "forker/Hello-World"}
    )
    assert result.exit_code == 0, result.output
    body = world.github.our_comments(2)[0]["body"]
    assert "Pull request from a fork" in body and "✅ checked (not planned)" in body
    assert '"planned":false' in body
    assert not (world.state / "local" / "terraform").exists()  # no Terraform from a fork's code


def test_recorded_payload_with_a_null_body(world: World):
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    event = payload("pull_request.opened.with-null-body.json")
    event["pull_request"]["head"]["sha"], event["pull_request"]["base"]["sha"] = head, world.base
    event["pull_request"]["head"]["repo"] = event["pull_request"]["base"]["repo"]
    result = world.deliver("pull_request", event, head)
    assert result.exit_code == 0, result.output
    assert world.github.our_comments(event["number"])


def test_server_errors_and_rate_limits_are_retried(world: World):
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    world.github.faults = [
        Fault("POST", r"/issues/\d+/comments$", 502),
        Fault(
            "POST",
            r"/statuses/",
            403,
            {"X-RateLimit-Remaining": "0", "Retry-After": "1"},
            {
                "message": "API rate limit exceeded for installation.",
                "documentation_url": "https://docs.github.com/rest/rate-limit",
            },
        ),
    ]
    result = world.pull_request("opened", world.base, head)
    assert result.exit_code == 0, result.output
    assert len(world.github.our_comments(2)) == 1
    assert world.github.contexts(head) == [("stackward", "pending"), ("stackward", "success")]
    assert all(f.times == 0 for f in world.github.faults)


def test_an_oversized_comment_falls_back_to_a_shorter_one(world: World):
    world.github.max_body = 1500  # as if the full plan were over GitHub's 65,536 characters
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    result = world.pull_request("opened", world.base, head)
    assert result.exit_code == 0, result.output
    body = world.github.our_comments(2)[0]["body"]
    assert '"truncated":true' in body and "job summary" in body
    assert "| **local** |" in body  # the summary table always stays
    assert "<details>" not in body


def test_workflow_dispatch_plans_or_applies_a_named_environment(world: World):
    event = {
        "inputs": {"environment": "local", "mode": "plan"},
        "ref": "refs/heads/master",
        "repository": payload("push.json")["repository"],
    }
    result = world.deliver("workflow_dispatch", event, world.base)
    assert result.exit_code == 0, result.output
    assert "local: +4 ~0 -0 ±0" in result.output and "has-changes=true" in world.outputs.read_text()
    event["inputs"]["mode"] = "apply"
    result = world.deliver("workflow_dispatch", event, world.base)
    assert result.exit_code == 0, result.output
    assert "local-stack" in zenml_state(world.state, "local")["stacks"]
    assert world.github.contexts(world.base) == [("stackward", "success")]


def test_a_pull_request_deleting_an_environment_says_what_happens_to_it(world: World):
    base = world.commit(
        {
            "environments/old/environment.yaml": HEAD
            + "kind: Environment\nmetadata: {name: old}\nspec: {labels: {team: ml}}\n"
        },
        "an environment",
    )
    git(world.repo, "rm", "-rq", "environments/old")
    git(world.repo, "commit", "-qm", "delete it")
    head = git(world.repo, "rev-parse", "HEAD")
    result = world.pull_request("opened", base, head)
    assert result.exit_code == 0, result.output
    (comment,) = world.github.our_comments(2)
    assert "This pull request deletes environment `old`." in comment["body"]
    assert "its ZenML registrations and Terraform resources stay as they are" in comment["body"]
    assert "changes no environment's specs, modules or policies: nothing to plan." in comment["body"]


def test_workflow_dispatch_names_the_known_environments_when_one_is_unknown(world: World):
    event = {"inputs": {"environment": "local, lcoal", "mode": "plan"}, "ref": "refs/heads/master"}
    result = world.deliver("workflow_dispatch", event, world.base)
    assert result.exit_code == 2
    assert "no environment named 'lcoal' (known: local)" in result.output
    assert "did you mean 'local'?" in result.output
    assert not (world.state / "local" / "terraform").exists()  # nothing planned
    outputs = world.outputs.read_text()  # the outputs are written on error exits too
    assert "has-changes=false" in outputs and "policy-passed=false" in outputs


def test_workflow_dispatch_refuses_specs_that_do_not_validate(world: World):
    broken = BUILDER.replace("flavor: local", "flavor: local, configuration: {nope: 1}")
    world.commit({"environments/local/builder.yaml": broken}, "broken")
    git(world.repo, "checkout", "-q", "master")
    git(world.repo, "merge", "-q", "feature")
    sha = git(world.repo, "rev-parse", "HEAD")
    for mode in ("plan", "apply"):
        result = world.deliver("workflow_dispatch", {"inputs": {"environment": "local", "mode": mode}}, sha)
        assert result.exit_code == 1, result.output
        assert "environments/local/builder.yaml:4:60: error: unknown key 'nope'" in result.output
        assert "::error file=environments/local/builder.yaml,line=4" in result.output
        assert "nothing planned or applied: the specs of local do not validate" in result.output
    assert "local-stack" not in zenml_state(world.state, "local")["stacks"]
    assert world.github.requests == []


def test_workflow_dispatch_checks_policies_and_masks_secrets(world: World, monkeypatch: pytest.MonkeyPatch):
    bad = BUILDER.replace(
        "metadata: {name: local-builder}", "metadata: {name: local-builder, labels: {environment: prod}}"
    )
    world.commit({"environments/local/builder.yaml": bad}, "mislabelled")
    git(world.repo, "checkout", "-q", "master")
    git(world.repo, "merge", "-q", "feature")
    sha = git(world.repo, "rev-parse", "HEAD")
    result = world.deliver("workflow_dispatch", {"inputs": {"environment": "local", "mode": "plan"}}, sha)
    assert result.exit_code == 1, result.output
    assert "::error file=environments/local/builder.yaml,line=3" in result.output and "SW002" in result.output
    assert "policy-passed=false" in world.outputs.read_text()
    result = world.deliver("workflow_dispatch", {"inputs": {"environment": "local", "mode": "apply"}}, sha)
    assert result.exit_code == 1
    assert "denied by policy, nothing was applied" in world.summary.read_text()
    assert "local-stack" not in zenml_state(world.state, "local")["stacks"]


def test_the_plan_file_output_holds_the_reviewed_plan(world: World):
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    assert world.pull_request("opened", world.base, head).exit_code == 0
    outputs = dict(line.split("=", 1) for line in world.outputs.read_text().splitlines())
    plan = json.loads(Path(outputs["plan-file"]).read_text())
    (comment,) = world.github.our_comments(2)
    (env,) = plan["environments"]
    assert env["environment"] == "local" and f'"local":"{env["hash"]}"' in comment["body"]


def test_the_comment_shows_plan_values_as_json_once_per_change(world: World):
    head = world.commit(
        {
            "environments/local/builder.yaml": BUILDER.replace(
                "spec: {type: image_builder, flavor: local}",
                "spec: {type: image_builder, flavor: local, configuration: {use_subprocess_call: true}}",
            )
        },
        "add a builder",
    )
    world.pull_request("opened", world.base, head)
    body = world.github.our_comments(2)[0]["body"]
    assert "+ zenml.StackComponent.local-builder  # create" in body
    assert "+ +" not in body and "'" not in body.split("```diff", 1)[1].split("```", 1)[0]
    assert 'configuration: {"use_subprocess_call": true}' in body


def test_every_write_is_retried_as_github_allows_and_a_comment_is_never_posted_twice(world: World):
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    secondary = Fault(
        "PATCH",
        r"/issues/comments/\d+$",
        403,
        {"Retry-After": "1"},
        {
            "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
        },
    )
    world.github.faults = [Fault("POST", r"/issues/\d+/comments$", 502, after=True)]  # made, answer lost
    first = world.pull_request("opened", world.base, head)
    assert first.exit_code == 0, first.output
    assert len(world.github.our_comments(2)) == 1  # looked for before posting again
    world.github.faults = [secondary, Fault("POST", r"/statuses/", 500)]
    again = world.pull_request("synchronize", world.base, head)
    assert again.exit_code == 0, again.output
    assert all(f.times == 0 for f in world.github.faults)
    assert len(world.github.our_comments(2)) == 1
    assert ("PATCH", f"/repos/{REPOSITORY}/issues/comments/{world.github.our_comments(2)[0]['id']}") in [
        r for r in world.github.requests if r[0] == "PATCH"
    ]


def test_only_pull_requests_merged_into_the_default_branch_are_applied(world: World):
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    closed = payload("pull_request.closed.json", **{"pull_request.merged": True})
    closed["pull_request"]["base"]["ref"] = "release"
    told = world.deliver("pull_request", closed, head)
    assert told.exit_code == 0
    assert (
        "#2 was merged into release, not the default branch master: nothing is applied for it" in told.output
    )
    assert world.pull_request("opened", world.base, head).exit_code == 0  # planned, as if against master
    merge, push = world.merge(head)
    world.github.merged(merge, 2, head, base_ref="release")  # GitHub: the PR went into release
    refused = world.deliver("push", push, merge)
    assert refused.exit_code == 1
    assert "#2 was merged into release, not the default branch master" in refused.output
    assert not (world.state / "local" / "ledger.jsonl").exists()


def _tiny_environments(world: World, count: int) -> tuple[str, str]:
    """`count` environments with nothing but their Environment spec (no ZenML, no Terraform),
    committed, then all changed in a second commit: the base and head of a pull request."""

    def spec(i: int, rev: str) -> str:
        return (
            HEAD
            + f"kind: Environment\nmetadata: {{name: tiny{i:02d}}}\nspec: {{bases: [], labels: {{rev: '{rev}'}}}}\n"
        )

    base = world.commit(
        {f"environments/tiny{i:02d}/environment.yaml": spec(i, "1") for i in range(count)}, "tiny"
    )
    head = world.commit(
        {f"environments/tiny{i:02d}/environment.yaml": spec(i, "2") for i in range(count)}, "change"
    )
    return base, head


@pytest.mark.parametrize("count", [1, 10, 50])
def test_a_pull_request_makes_a_bounded_number_of_calls(world: World, count: int):
    """One `stackward` status (pending, then the summary) however many environments change:
    the calls stay fixed (at most 6; bench/action_bench.py measures 1, 10 and 50)."""
    base, head = _tiny_environments(world, count)
    result = world.pull_request("opened", base, head)
    assert result.exit_code == 0, result.output
    assert f"environments={','.join(f'tiny{i:02d}' for i in range(count))}" in world.outputs.read_text()
    assert world.github.contexts(head) == [("stackward", "pending"), ("stackward", "success")]
    noun = "environment" if count == 1 else "environments"
    assert world.github.statuses[head][-1]["description"] == f"{count} {noun}: {count} ready"
    assert world.github.statuses[head][-1]["target_url"].endswith("/actions/runs/42")
    assert len(world.github.requests) <= 6, world.github.requests
    (comment,) = world.github.our_comments(2)
    assert all(f"| **tiny{i:02d}** |" in comment["body"] for i in range(count))


def test_statuses_per_environment_on_request(world: World):
    """`statuses: per-environment` sets one context per environment on the pull request, for
    branch protection that requires them one by one."""
    world.monkeypatch.setenv("STACKWARD_STATUSES", "per-environment")
    base, head = _tiny_environments(world, 3)
    result = world.pull_request("opened", base, head)
    assert result.exit_code == 0, result.output
    contexts = world.github.contexts(head)
    names = [f"stackward/tiny{i:02d}" for i in range(3)]
    assert [c for c in contexts if c[1] == "pending"] == [(n, "pending") for n in names]
    assert [c for c in contexts if c[1] != "pending"] == [(n, "success") for n in names]
    assert "stackward" not in dict(contexts)


def test_statuses_per_environment_on_the_push_that_applies(world: World):
    """With `statuses: per-environment` the push reports `stackward/<env>`, not `stackward`."""
    world.monkeypatch.setenv("STACKWARD_STATUSES", "per-environment")
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    assert world.pull_request("opened", world.base, head).exit_code == 0
    assert world.github.contexts(head) == [("stackward/local", "pending"), ("stackward/local", "success")]
    assert "+5 ~0 -0 ±0, policies pass" in world.github.statuses[head][-1]["description"]
    merge, push = world.merge(head)
    result = world.deliver("push", push, merge)
    assert result.exit_code == 0, result.output
    assert world.github.contexts(merge) == [("stackward/local", "success")]
    assert world.github.statuses[merge][-1]["description"] == "applied: 5 change(s)"
