"""The plan comment's diff block and the pipeline's environment selection: pure, no I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackward.checks.validate import Report
from stackward.errors import UsageError
from stackward.github.comment import parse
from stackward.github.comment_body import EnvironmentOutcome, PullRequestOutcome, comment_bodies
from stackward.pipeline import Pipeline
from stackward.plan.changes import Action, Change, EnvironmentPlan, FieldChange
from stackward.spec.model import Environment, Repo


def test_the_diff_block_says_each_change_once_with_values_as_json():
    plan = EnvironmentPlan(
        "dev",
        [
            Change(
                "zenml",
                "StackComponent",
                "b",
                "zenml.StackComponent.b",
                Action.CREATE,
                (FieldChange("configuration", None, {"path": "x"}),),
            ),
            Change(
                "zenml",
                "StackComponent",
                "o",
                "zenml.StackComponent.o",
                Action.UPDATE,
                (FieldChange("labels.team", "a", "b"),),
            ),
            Change("zenml", "Stack", "s", "zenml.Stack.s", Action.REPLACE, (), "its component o is replaced"),
            Change(
                "zenml",
                "Stack",
                "old",
                "zenml.Stack.old",
                Action.DELETE,
                (),
                "no longer in the specs (pruned)",
            ),
        ],
    )
    outcome = PullRequestOutcome("abc1234", [EnvironmentOutcome("dev", plan=plan)])
    body = next(comment_bodies(outcome, outcome.state()))
    block = body.split("```diff\n", 1)[1].split("\n```", 1)[0]
    assert block.splitlines() == [
        "+ zenml.StackComponent.b  # create",
        '    configuration: {"path": "x"}',
        "! zenml.StackComponent.o  # update",
        "    labels.team: a -> b",
        "! zenml.Stack.s  # replace: its component o is replaced",
        "- zenml.Stack.old  # delete: no longer in the specs (pruned)",
    ]
    assert parse(body).plans == {"dev": plan.digest()}


def test_the_comment_says_what_runs_on_a_changed_stack_and_what_is_adopted():
    used = "used by 1 pipeline (training), 1 active schedule (nightly); last run 3 h ago"
    plan = EnvironmentPlan(
        "prod",
        [
            Change(
                "zenml",
                "StackComponent",
                "prod-orchestrator",
                "zenml.StackComponent.prod-orchestrator",
                Action.REPLACE,
                (FieldChange("flavor", "kubeflow", "vertex"),),
                "flavor changes",
                notes=(f"{used} (through stack prod-stack)",),
            ),
            Change(
                "zenml",
                "Stack",
                "prod-legacy",
                "zenml.Stack.prod-legacy",
                Action.ADOPT,
                (FieldChange("labels.stackward.managed-by", None, "stackward"),),
                "registered by hand; adopted",
            ),
        ],
    )
    outcome = PullRequestOutcome("abc1234", [EnvironmentOutcome("prod", plan=plan)])
    body = next(comment_bodies(outcome, outcome.state()))
    assert "prod: +0 ~0 -0 ±1 ⇐1" in body
    block = body.split("```diff\n", 1)[1].split("\n```", 1)[0]
    assert block.splitlines() == [
        f"! zenml.StackComponent.prod-orchestrator  # replace: flavor changes ({used} (through stack prod-stack))",
        "    flavor: kubeflow -> vertex",
        "! zenml.Stack.prod-legacy  # adopt: registered by hand; adopted",
        "    labels.stackward.managed-by: null -> stackward",
    ]


def report_of(*names: str) -> Report:
    repo = Repo(Path("/r/environments"), Path("/r"), {n: Path(f"/r/environments/{n}") for n in names}, {})
    environments = [Environment(n, Path(f"/r/environments/{n}"), None, [], [], [], []) for n in names]
    return Report(repo, environments, [])


def test_selecting_environments_ignores_padding_and_names_the_known_ones():
    report = report_of("dev", "prod", "staging")
    assert [e.name for e in Pipeline.select(report, [" dev", "prod ", ""])] == ["dev", "prod"]
    with pytest.raises(UsageError) as caught:
        Pipeline.select(report, ["dev", "prdo"])
    assert (
        str(caught.value) == "no environment named 'prdo' (known: dev, prod, staging); did you mean 'prod'?"
    )
    assert caught.value.exit_code == 2
