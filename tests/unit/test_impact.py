"""What a change touches: which stacks each change reaches, and how their impact is added up
and said (pure; the store's side runs in tests/test_impact.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from stackward.plan.changes import Action, Change
from stackward.plan.impact import affected_stacks, describe, merged, orchestrators
from stackward.zenml.registrations import Registration


def stack(name: str, id_: str, **components: str) -> Registration:
    return Registration("Stack", name, {"components": components}, id=id_)


ORCH = Registration("StackComponent", "orch", {"type": "orchestrator"}, id="o1")
STACKS = [stack("a", "s1", orchestrator="orch"), stack("b", "s2", orchestrator="orch"), stack("c", "s3")]


def change(kind: str, name: str, action: Action) -> Change:
    return Change("zenml", kind, name, f"zenml.{kind}.{name}", action)


def test_a_component_reaches_every_stack_using_it_and_a_stack_itself():
    changes = [
        change("StackComponent", "orch", Action.REPLACE),
        change("Stack", "c", Action.UPDATE),
        change("Stack", "a", Action.CREATE),  # nothing runs on what does not exist yet
        change("StackComponent", "orch", Action.NO_OP),
    ]
    reached = affected_stacks(changes, [ORCH, *STACKS])
    assert {k: [s.name for s in v] for k, v in reached.items()} == {
        "zenml.StackComponent.orch": ["a", "b"],
        "zenml.Stack.c": ["c"],
    }
    assert orchestrators(STACKS, [ORCH, *STACKS]) == {"s1": "o1", "s2": "o1", "s3": ""}


def test_impacts_add_up_and_read_as_one_line():
    per_stack = {
        "s1": {
            "pipelines": ["train"],
            "runs": 3,
            "last_run": "2026-11-30T09:00:00+00:00",
            "schedules": ["nightly"],
            "deployments": [],
            "snapshots": 3,
            "builds": 1,
        },
        "s2": {
            "pipelines": ["score", "train"],
            "runs": 1,
            "last_run": "2026-11-30T10:00:00+00:00",
            "schedules": [],
            "deployments": ["api"],
            "snapshots": 1,
            "builds": 0,
        },
    }
    impact = merged(STACKS[:2], per_stack)
    assert impact["pipelines"] == ["score", "train"] and impact["runs"] == 4
    assert impact["last_run"] == "2026-11-30T10:00:00+00:00"
    now = datetime(2026, 11, 30, 13, 5, tzinfo=UTC)
    assert describe(impact, component=True, now=now) == (
        "used by 2 pipelines (score, train), 1 active schedule (nightly), 1 deployment (api), 4 snapshots, "
        "1 build; last run 3 h ago (through stack a, b)"
    )
    idle = merged([STACKS[2]], {})
    assert describe(idle, component=False) == "nothing has run on it yet"
