"""Gaps an attacker's pull request found (issue #11): specs that reached outside the repository,
references that validated and wrote placeholders into ZenML, and CLI input that crashed or
did nothing. Each case is what a user sees: the exit code, the finding at file:line, and that
nothing was planned or applied."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import EXAMPLES, run, validate_json, write
from zenml_tools import copy_store, zenml_state

from stackward.plan.changes import EnvironmentPlan, Plan

INFRA = "local/infrastructure.yaml"
SOURCE_LINE = 7  # `source:` in environments/local/infrastructure.yaml
NO_POLICY = (
    'package stackward.none\n\nimport rego.v1\n\ndeny contains msg if {\n\tfalse\n\tmsg := "never"\n}\n'
)
MODULE = 'variable "environment" {}\nvariable "artifact_root" {}\noutput "artifact_path" { value = "x" }\n'


@pytest.fixture
def repo(tmp_path: Path, store_template: Path) -> Path:
    """environments/ with the offline local environment, and a state folder with a fresh store."""
    root = tmp_path / "environments"
    shutil.copytree(EXAMPLES / "local", root / "local")
    shutil.copytree(EXAMPLES / "_modules", root / "_modules")
    copy_store(store_template, tmp_path / "state", "local")
    return root


def state_of(repo: Path) -> Path:
    return repo.parent / "state"


def apply_local(repo: Path):
    """`stackward apply` of the local environment, under a policy that denies nothing."""
    policies = write(repo.parent, {"policies/none.rego": NO_POLICY}) / "policies"
    state = state_of(repo)
    return run("apply", str(repo), "--env", "local", "--state-dir", str(state), "--policies", str(policies))


def edit(root: Path, name: str, old: str, new: str) -> None:
    text = (root / name).read_text()
    assert old in text
    write(root, {name: text.replace(old, new)})


def only_error(root: Path, code: str, *args: str) -> dict:
    result = validate_json(root, *args, "--no-policy")
    assert result.exit_code == 1, result.output
    (finding,) = [d for d in result.findings(code) if d["severity"] == "error"]
    return finding


# -- 1. module sources --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{outside}",
        "file://{outside}",
        "~/modules/base",
        "https://example.com/modules/base.zip",
        "git::file://{outside}?ref=v1",
        "s3::https://s3.amazonaws.com/bucket/base.zip",
    ],
    ids=["absolute", "file-url", "home", "http-archive", "git-on-this-disk", "s3"],
)
def test_module_sources_outside_the_repository_or_unpinned_are_errors(
    examples: Path, tmp_path: Path, source: str
):
    outside = write(tmp_path / "outside", {"main.tf": MODULE})
    edit(examples, INFRA, "../_modules/local-base", source.format(outside=outside))
    finding = only_error(examples, "infra.source", "--env", "local")
    assert finding["file"].endswith(INFRA) and finding["line"] == SOURCE_LINE
    assert "not allowed" in finding["message"]
    assert "a local path inside the repository" in finding["hint"]


def test_plan_never_runs_a_module_from_outside_the_repository(repo: Path, tmp_path: Path):
    outside = write(tmp_path / "outside", {"main.tf": MODULE})
    edit(repo, INFRA, "../_modules/local-base", str(outside))
    result = run("plan", str(repo), "--env", "local", "--state-dir", str(state_of(repo)))
    assert result.exit_code == 1
    assert f"{INFRA}:{SOURCE_LINE}" in result.output and "nothing was planned" in result.output
    assert not (state_of(repo) / "local" / "terraform").exists()


@pytest.mark.parametrize(
    "source",
    [
        "git::https://example.com/modules.git//base?ref=v1.2.0",
        "git@github.com:acme/modules.git?ref=v1.2.0",
        "github.com/acme/modules?ref=0123abc",
    ],
)
def test_pinned_remote_sources_stay_allowed(examples: Path, source: str):
    edit(examples, INFRA, "../_modules/local-base", source)
    assert not validate_json(examples, "--env", "local", "--no-policy").findings("infra.source")


# -- 2. local backend path -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["../../../elsewhere/x.tfstate", "/tmp/x.tfstate", "~/x.tfstate", "."])
def test_a_local_backend_path_must_stay_in_the_state_folder(examples: Path, path: str):
    edit(
        examples,
        "local/environment.yaml",
        "      type: local\n",
        f"      type: local\n      config: {{path: '{path}'}}\n",
    )
    finding = only_error(examples, "infra.backend", "--env", "local")
    assert finding["file"].endswith("local/environment.yaml") and finding["line"] == 15
    assert "outside the environment's state folder" in finding["message"]
    assert "relative to the environment's state folder" in finding["hint"]


def test_a_local_backend_path_is_relative_to_the_state_folder(repo: Path):
    edit(
        repo,
        "local/environment.yaml",
        "      type: local\n",
        "      type: local\n      config: {path: tf/x.tfstate}\n",
    )
    result = apply_local(repo)
    assert result.exit_code == 0, result.output
    assert json.loads((state_of(repo) / "local" / "tf" / "x.tfstate").read_text())["resources"]
    assert not (repo / "tf").exists() and not (repo.parent / "tf").exists()


def test_rendering_refuses_a_local_backend_path_outside_the_state_folder(examples: Path, tmp_path: Path):
    """Even past validation (a caller that skips it), no Terraform is rendered writing state elsewhere."""
    from stackward.errors import EnvironmentFailed
    from stackward.plan.state import EnvironmentState
    from stackward.spec.discover import discover
    from stackward.spec.resolve import Resolver
    from stackward.terraform.render import backend

    edit(
        examples,
        "local/environment.yaml",
        "      type: local\n",
        "      type: local\n      config: {path: ../../x}\n",
    )
    repo, _ = discover(examples)
    env = Resolver(repo).resolve("local")
    with pytest.raises(EnvironmentFailed, match="outside the environment's state folder"):
        backend(env, EnvironmentState(tmp_path / "state", "local"))


# -- 3. folders linked from outside the repository ----------------------------------------------


@pytest.mark.parametrize(("folder", "env"), [("local", "local"), ("_base", "dev")])
def test_a_folder_linked_from_outside_the_repository_is_not_read(
    examples: Path, tmp_path: Path, folder: str, env: str
):
    outside = tmp_path / "outside" / folder
    outside.parent.mkdir()
    shutil.move(examples / folder, outside)
    (examples / folder).symlink_to(outside, target_is_directory=True)
    result = validate_json(examples, "--env", env, "--no-policy")
    assert result.exit_code == 1
    (finding,) = result.findings("file.symlink")
    assert finding["file"].endswith(f"environments/{folder}")
    assert (
        finding["message"] == f"folder {folder} is a link to a folder outside the repository; it was not read"
    )
    assert finding["hint"] == "replace the link with the folder itself"


# -- 4. references ------------------------------------------------------------------------------


def test_a_nested_reference_is_an_error_at_its_line(examples: Path):
    edit(examples, "local/stack.yaml", "${infra.base.artifact_path}", "${infra.base.${env.name}}")
    finding = only_error(examples, "reference.variable", "--env", "local")
    assert finding["file"].endswith("local/stack.yaml") and finding["line"] == 10
    assert finding["message"].startswith("references cannot be nested")


def test_an_unterminated_reference_is_an_error_at_its_line(examples: Path):
    edit(examples, INFRA, "${var.artifact_root}", "${var.artifact_root")
    finding = only_error(examples, "reference.variable", "--env", "local")
    assert finding["file"].endswith(INFRA) and finding["line"] == 10
    assert finding["message"].startswith("'${' is never closed")


def test_apply_refuses_registrations_still_unknown_after_terraform_applied(repo: Path):
    write(repo, {"_modules/local-base/nothing.tf": 'output "nothing" { value = null }\n'})
    edit(repo, INFRA, "    - artifact_path\n", "    - artifact_path\n    - nothing\n")
    edit(
        repo,
        "local/stack.yaml",
        "${infra.base.artifact_path}",
        "${infra.base.artifact_path}/${infra.base.nothing}",
    )
    result = apply_local(repo)
    assert result.exit_code == 1
    assert "nothing was registered in ZenML" in result.output
    assert "StackComponent local-artifact-store" in result.output
    zenml = zenml_state(state_of(repo), "local")
    assert "local-artifact-store" not in zenml["components"] and "local-stack" not in zenml["stacks"]


# -- 5. the command line ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../x", "a/../../x", "_base", "Local", "local\n"])
def test_unlock_takes_only_an_environment_name(tmp_path: Path, name: str):
    state = tmp_path / "a" / "b" / "state"
    locks = ["a/x/lock", "a/b/x/lock", "a/b/state/a/lock", "a/b/state/_base/lock", "a/b/state/Local/lock"]
    write(tmp_path, dict.fromkeys(locks, "{}"))
    result = run("unlock", name, str(EXAMPLES), "--state-dir", str(state))
    assert result.exit_code == 2
    assert "is not an environment name" in result.output
    assert all((tmp_path / lock).exists() for lock in locks)


@pytest.mark.parametrize(
    "content",
    [
        "[]",
        "null",
        '"plan"',
        '{"format": 1, "environments": [5]}',
        '{"format": 1, "environments": [{"environment": "local", "changes": [[]]}]}',
        '{"format": 1, "environments": [{"environment": "local", "changes": [{"fields": 3}]}]}',
    ],
)
def test_a_plan_file_of_the_wrong_shape_is_a_usage_error(tmp_path: Path, content: str):
    plan_file = write(tmp_path, {"plan.json": content}) / "plan.json"
    result = run(
        "apply", str(EXAMPLES), "--env", "local", "--plan", str(plan_file), "--state-dir", str(tmp_path)
    )
    assert result.exit_code == 2
    assert f"{plan_file}: not a stackward plan" in result.output
    assert not (tmp_path / "local").exists()


def test_apply_with_another_environments_plan_is_an_error_naming_them(examples: Path, tmp_path: Path):
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(Plan("", [EnvironmentPlan("dev"), EnvironmentPlan("staging")]).to_json())
    state = tmp_path / "state"
    result = run(
        "apply", str(examples), "--env", "local", "--plan", str(plan_file), "--state-dir", str(state)
    )
    assert result.exit_code == 2
    assert f"{plan_file} is a plan of dev, staging" in result.output
    assert "nothing was applied" in result.output
    assert not state.exists()
