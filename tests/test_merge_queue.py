"""Merge queues: GitHub asks for the required checks on the queue's merge commit with a
`merge_group` event (its shape as GitHub documents it; no recording of one is in the shared
fixtures, so the repository and sender come from the recorded push payload). stackward plans
that commit, sets the statuses on it and records the plan on it; the push that moves the
default branch to it applies exactly that plan, a batch of two reviewed pull requests at once."""

from __future__ import annotations

import copy

from action_world import BUILDER, HEAD, World, payload
from action_world import world_fixture as world_fixture  # the `world` fixture
from conftest import git
from zenml_tools import zenml_run, zenml_state

REGISTRY = (
    HEAD + "kind: StackComponent\nmetadata: {name: local-registry}\n"
    "spec: {type: container_registry, flavor: default, configuration: {uri: 'localhost:5000'}}\n"
)


def merge_group(
    base: str, head: str, action: str = "checks_requested", base_ref: str = "refs/heads/master"
) -> dict:
    push = payload("push.json")
    return {
        "action": action,
        "merge_group": {
            "head_sha": head,
            "head_ref": f"refs/heads/gh-readonly-queue/master/pr-2-{base}",
            "base_sha": base,
            "base_ref": base_ref,
            "head_commit": {
                "id": head,
                "tree_id": head,
                "message": "Merge queue",
                "author": {},
                "committer": {},
            },
        },
        "repository": copy.deepcopy(push["repository"]),
        "sender": copy.deepcopy(push["sender"]),
    }


def _queue(world: World) -> tuple[str, str]:
    """Two pull requests' changes, as the queue's merge commit on top of master."""
    git(world.repo, "checkout", "-q", "-b", "gh-readonly-queue", "master")
    world.commit({"environments/local/builder.yaml": BUILDER}, "Merge pull request #2")
    head = world.commit({"environments/local/registry.yaml": REGISTRY}, "Merge pull request #3")
    return world.base, head


def test_the_queue_plan_is_checked_on_the_merge_commit_and_applied_by_its_push(world: World):
    base, head = _queue(world)
    checked = world.deliver("merge_group", merge_group(base, head), head)
    assert checked.exit_code == 0, checked.output
    assert world.github.contexts(head) == [("stackward", "pending"), ("stackward", "success")]
    (recorded,) = world.github.commit_comments[head]
    assert "zenml.StackComponent.local-builder" in recorded["body"]
    assert "zenml.StackComponent.local-registry" in recorded["body"]

    git(world.repo, "checkout", "-q", "master")
    git(world.repo, "merge", "-q", "--ff-only", "gh-readonly-queue")  # GitHub moves master to it
    push = payload(
        "push.json", ref="refs/heads/master", before=base, after=head, deleted=False, created=False
    )
    applied = world.deliver("push", push, head)
    assert applied.exit_code == 0, applied.output
    assert "merge queue's merge commit: applying the plan the queue checked" in applied.output
    components = zenml_state(world.state, "local")["components"]
    assert {"local-builder", "local-registry"} <= set(components)


def test_a_queue_plan_that_no_longer_holds_applies_nothing(world: World):
    base, head = _queue(world)
    assert world.deliver("merge_group", merge_group(base, head), head).exit_code == 0
    # The world moved after the queue checked it: the builder was registered by hand meanwhile.
    git(world.repo, "checkout", "-q", "master")
    git(world.repo, "merge", "-q", "--ff-only", "gh-readonly-queue")
    zenml_run(
        world.state,
        "local",
        "from zenml.client import Client\nfrom zenml.enums import StackComponentType as T\n"
        "Client().create_stack_component('local-builder', 'local', T.IMAGE_BUILDER, {})\n",
    )
    push = payload(
        "push.json", ref="refs/heads/master", before=base, after=head, deleted=False, created=False
    )
    refused = world.deliver("push", push, head)
    assert refused.exit_code == 1
    assert "nothing was applied" in refused.output


def test_queues_into_other_branches_and_other_actions_do_nothing(world: World):
    base, head = _queue(world)
    other = world.deliver("merge_group", merge_group(base, head, base_ref="refs/heads/release"), head)
    assert other.exit_code == 0
    assert "only queues into master are planned" in other.output
    destroyed = world.deliver("merge_group", merge_group(base, head, action="destroyed"), head)
    assert destroyed.exit_code == 0 and "nothing to do" in destroyed.output
    assert world.github.contexts(head) == []
