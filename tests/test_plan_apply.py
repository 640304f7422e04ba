"""Plan and apply against a real ZenML store and the real terraform binary (modules built
from Terraform's built-in terraform_data; no provider can be downloaded here)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EXAMPLES, run, write
from postgres import postgres_server
from zenml_tools import copy_store, zenml_run, zenml_state

from stackward.checks.validate import validate
from stackward.plan.state import EnvironmentState
from stackward.state.ledger import Ledger
from stackward.state.local import LocalStore, file_lock
from stackward.zenml.executor import StoreReader, ZenmlError, ZenmlExecutor

HEAD = "apiVersion: stackward.dev/v1alpha1\n"
IMAGE_BUILDER = HEAD + (
    "kind: StackComponent\nmetadata: {name: local-builder}\nspec:\n  type: image_builder\n  flavor: local\n"
    "  configuration:\n    use_subprocess_call: true\n"
)


@pytest.fixture
def repo(tmp_path: Path, store_template: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """environments/ with the offline local environment, the default policies, and a state
    folder with a fresh store."""
    root = tmp_path / "environments"
    shutil.copytree(EXAMPLES / "local", root / "local")
    shutil.copytree(EXAMPLES / "_modules", root / "_modules")
    shutil.copytree(EXAMPLES.parent / "policies", tmp_path / "policies")
    monkeypatch.setenv("STACKWARD_POLICIES", str(tmp_path / "policies"))
    copy_store(store_template, tmp_path / "state", "local")
    return root


def state_of(repo: Path) -> Path:
    return repo.parent / "state"


def stackward(repo: Path, *args: str) -> object:
    return run(*args[:1], str(repo), *args[1:], "--state-dir", str(state_of(repo)))


def apply(repo: Path, *args: str):
    return stackward(repo, "apply", "--env", "local", *args)


def test_apply_creates_everything_and_outputs_flow_into_registrations(repo: Path):
    result = apply(repo)
    assert result.exit_code == 0, result.output
    assert "local: +4 ~0 -0 ±0" in result.output
    assert "local: applied 4 change(s)" in result.output
    zenml = zenml_state(state_of(repo), "local")
    assert zenml["stacks"]["local-stack"]["components"] == {
        "artifact_store": "local-artifact-store",
        "orchestrator": "local-orchestrator",
    }
    store = zenml["components"]["local-artifact-store"]
    expected = (state_of(repo) / "local" / "artifacts" / "local").resolve()
    assert store["configuration"]["path"] == str(expected)  # the Terraform output, after apply
    assert store["labels"]["stackward.managed-by"] == "stackward"
    assert store["labels"]["stackward.environment"] == "local"
    assert store["labels"]["team"] == "ml-platform"
    assert "default" in zenml["stacks"]  # ZenML's own stack is left alone


def test_second_apply_reports_no_changes_and_touches_nothing(repo: Path):
    assert apply(repo).exit_code == 0
    before = zenml_state(state_of(repo), "local")
    ledger = Ledger(LocalStore(state_of(repo)), "local")
    assert [a["result"] for a in ledger.applies()] == ["success"]
    result = apply(repo)
    assert result.exit_code == 0
    assert "local: no changes" in result.output
    assert zenml_state(state_of(repo), "local") == before  # same `updated` times
    assert len(ledger.applies()) == 1
    plan = stackward(repo, "plan", "--env", "local")
    assert "local: +0 ~0 -0 ±0" in plan.output and "no changes" in plan.output


def test_update_of_configuration_and_labels_is_exact(repo: Path):
    write(repo, {"local/builder.yaml": IMAGE_BUILDER})
    assert apply(repo).exit_code == 0
    assert zenml_state(state_of(repo), "local")["components"]["local-builder"]["configuration"] == {
        "use_subprocess_call": "True"
    }
    # Drop the key (ZenML merges configuration: stackward must send it as None) and add a label.
    write(
        repo,
        {
            "local/builder.yaml": IMAGE_BUILDER.replace(
                "  configuration:\n    use_subprocess_call: true\n", ""
            ).replace(
                "metadata: {name: local-builder}", "metadata: {name: local-builder, labels: {tier: gold}}"
            )
        },
    )
    plan = stackward(repo, "plan", "--env", "local")
    assert "~ zenml.StackComponent.local-builder" in plan.output
    assert "configuration.use_subprocess_call: true -> null" in plan.output
    assert "labels.tier: null -> gold" in plan.output
    assert apply(repo).exit_code == 0
    builder = zenml_state(state_of(repo), "local")["components"]["local-builder"]
    assert builder["configuration"].get("use_subprocess_call") in (None, "False")
    assert builder["labels"]["tier"] == "gold"
    assert "no changes" in apply(repo).output


def test_flavor_change_replaces_the_component_and_updates_the_stack_in_place(repo: Path):
    assert apply(repo).exit_code == 0
    stack = (repo / "local/stack.yaml").read_text()
    write(
        repo,
        {
            "local/stack.yaml": stack.replace(
                "  type: orchestrator\n  flavor: local\n", "  type: orchestrator\n  flavor: local_docker\n"
            )
        },
    )
    plan = stackward(repo, "plan", "--env", "local")
    assert "local: +0 ~1 -0 ±1" in plan.output
    assert "WARNING: 1 resource(s) will be destroyed or replaced" in plan.output
    assert (
        "because flavor changes from local to local_docker (ZenML cannot change it in place)" in plan.output
    )
    assert "because updated in place to its re-created components (it keeps its id" in plan.output
    assert apply(repo).exit_code == 0
    zenml = zenml_state(state_of(repo), "local")
    assert zenml["components"]["local-orchestrator"]["flavor"] == "local_docker"
    assert zenml["stacks"]["local-stack"]["components"]["orchestrator"] == "local-orchestrator"
    assert "no changes" in apply(repo).output


def test_removed_specs_are_pruned(repo: Path):
    write(repo, {"local/builder.yaml": IMAGE_BUILDER})
    assert apply(repo).exit_code == 0
    (repo / "local/builder.yaml").unlink()
    plan = stackward(repo, "plan", "--env", "local")
    assert "- zenml.StackComponent.local-builder" in plan.output
    assert "because no longer in the specs (pruned)" in plan.output
    assert apply(repo).exit_code == 0
    assert "local-builder" not in zenml_state(state_of(repo), "local")["components"]


def test_removing_the_last_module_destroys_its_resources(repo: Path, tmp_path: Path):
    assert apply(repo).exit_code == 0
    state_file = state_of(repo) / "local/terraform.tfstate"
    assert json.loads(state_file.read_text())["resources"]
    (repo / "local/infrastructure.yaml").unlink()
    stack = (repo / "local/stack.yaml").read_text()
    write(
        repo, {"local/stack.yaml": stack.replace("${infra.base.artifact_path}", str(tmp_path / "artifacts"))}
    )
    plan = stackward(repo, "plan", "--env", "local")
    assert plan.exit_code == 0, plan.output
    assert "- module.base.terraform_data.artifact_store" in plan.output
    result = apply(repo)
    assert result.exit_code == 0, result.output
    assert json.loads(state_file.read_text())["resources"] == []
    assert "no changes" in apply(repo).output


HANDMADE = """
from zenml.client import Client
from zenml.enums import StackComponentType as T
Client().create_stack_component("{name}", "local", T.IMAGE_BUILDER, {{}}, labels={{"owner": "alice"}})
"""


def test_resources_registered_by_hand_are_left_alone(repo: Path):
    zenml_run(state_of(repo), "local", HANDMADE.format(name="alice-builder"))
    assert apply(repo).exit_code == 0
    write(repo, {"local/extra.yaml": IMAGE_BUILDER})
    assert apply(repo).exit_code == 0
    (repo / "local/extra.yaml").unlink()
    assert apply(repo).exit_code == 0  # prunes local-builder (owned), never alice-builder
    components = zenml_state(state_of(repo), "local")["components"]
    assert "alice-builder" in components and components["alice-builder"]["labels"] == {"owner": "alice"}
    assert "local-builder" not in components


def test_a_name_taken_by_a_resource_stackward_does_not_own_blocks_apply(repo: Path):
    zenml_run(state_of(repo), "local", HANDMADE.format(name="local-builder"))
    write(repo, {"local/extra.yaml": IMAGE_BUILDER})
    result = apply(repo)
    assert result.exit_code == 1
    assert "! zenml.StackComponent.local-builder" in result.output
    assert "already exists, registered by hand (or ZenML's default)" in result.output
    assert "adopt it with `adopt: true`" in result.output  # the way in, never taken silently
    zenml = zenml_state(state_of(repo), "local")
    assert zenml["components"]["local-builder"]["labels"] == {"owner": "alice"}
    assert "local-stack" not in zenml["stacks"]  # nothing was applied


def test_an_apply_waits_for_the_lock_then_fails_naming_the_holder(repo: Path):
    state = EnvironmentState(state_of(repo), "local")
    with file_lock(state, "stackward apply local (the other run)", timeout=0):
        result = apply(repo, "--lock-timeout", "1")
    assert result.exit_code == 1
    assert "environment local is locked by stackward apply local (the other run) (pid" in result.output
    assert "gave up after 1 s" in result.output
    assert "local-stack" not in zenml_state(state_of(repo), "local")["stacks"]
    assert apply(repo).exit_code == 0  # released


def test_a_plan_is_refused_when_specs_or_the_world_changed_since_review(repo: Path, tmp_path: Path):
    plan_file = tmp_path / "plan.json"
    assert stackward(repo, "plan", "--env", "local", "--out", str(plan_file)).exit_code == 0
    write(repo, {"local/builder.yaml": IMAGE_BUILDER})  # the specs move on after review
    result = apply(repo, "--plan", str(plan_file))
    assert result.exit_code == 1
    assert "the plan changed since it was reviewed, so nothing was applied" in result.output
    assert "+ now also: create zenml.StackComponent.local-builder" in result.output
    assert "local-stack" not in zenml_state(state_of(repo), "local")["stacks"]
    # Reviewed and unchanged: applies.
    assert stackward(repo, "plan", "--env", "local", "--out", str(plan_file)).exit_code == 0
    assert apply(repo, "--plan", str(plan_file)).exit_code == 0
    # Someone edits an owned component by hand after review: refused again.
    assert stackward(repo, "plan", "--env", "local", "--out", str(plan_file)).exit_code == 0
    zenml_run(
        state_of(repo),
        "local",
        "from zenml.client import Client\nfrom zenml.enums import StackComponentType as T\n"
        "Client().update_stack_component('local-builder', T.IMAGE_BUILDER, labels={'hand': 'edit'})",
    )
    result = apply(repo, "--plan", str(plan_file))
    assert result.exit_code == 1 and "changed since it was reviewed" in result.output


def test_an_edited_plan_file_is_rejected(repo: Path, tmp_path: Path):
    plan_file = tmp_path / "plan.json"
    write(repo, {"local/builder.yaml": IMAGE_BUILDER})
    stackward(repo, "plan", "--env", "local", "--out", str(plan_file))
    data = json.loads(plan_file.read_text())
    data["environments"][0]["changes"] = data["environments"][0]["changes"][:1]
    plan_file.write_text(json.dumps(data))
    result = apply(repo, "--plan", str(plan_file))
    assert result.exit_code == 2
    assert "edited after it was written" in result.output


def test_a_killed_apply_is_detected_and_a_rerun_converges(repo: Path):
    many = "---\n".join(
        HEAD
        + f"kind: StackComponent\nmetadata: {{name: local-builder-{i}}}\nspec:\n  type: image_builder\n  flavor: local\n"
        for i in range(40)
    )
    write(repo, {"local/many.yaml": many})
    command = [
        shutil.which("stackward", path=os.path.dirname(sys.executable)),
        "apply",
        str(repo),
        "--env",
        "local",
        "--state-dir",
        str(state_of(repo)),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    ledger = Ledger(LocalStore(state_of(repo)), "local")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        steps = [e for e in ledger.entries() if e["event"] == "step" and "zenml." in e.get("change", "")]
        if len(steps) >= 3:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the CLI and its ZenML worker, mid-way
    process.wait()
    (interrupted,) = ledger.applies()
    assert interrupted["result"] == "interrupted" and 3 <= len(interrupted["done"]) < 44
    result = apply(repo, "--lock-timeout", "1")  # no unlock: the killed run's lock went with it
    assert result.exit_code == 0, result.output
    zenml = zenml_state(state_of(repo), "local")
    assert {f"local-builder-{i}" for i in range(40)} <= set(zenml["components"])
    assert "local-stack" in zenml["stacks"]
    assert [a["result"] for a in ledger.applies()] == ["interrupted", "success"]
    assert "no changes" in apply(repo).output


REGISTRY = HEAD + (
    "kind: ServiceConnector\nmetadata: {name: local-registry}\nspec:\n  type: docker\n  authMethod: password\n"
    "  configuration: {registry: registry.example}\n"
    "  secrets:\n    username: {fromEnv: LOCAL_REGISTRY_USER}\n    password: {fromEnv: LOCAL_REGISTRY_PASSWORD}\n"
)


def test_secret_values_never_reach_plans_outputs_or_the_ledger(repo: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LOCAL_REGISTRY_USER", "robot")
    monkeypatch.setenv("LOCAL_REGISTRY_PASSWORD", "hunter2-s3cr3t-value")
    write(repo, {"local/registry.yaml": REGISTRY})
    plan_file = tmp_path / "plan.json"
    plan = stackward(repo, "plan", "--env", "local", "--out", str(plan_file))
    assert plan.exit_code == 0, plan.output
    assert 'secrets: {"password": "(sensitive)", "username": "(sensitive)"}' in plan.output
    applied = apply(repo)
    assert applied.exit_code == 0, applied.output
    for text in [
        plan.output,
        applied.output,
        plan_file.read_text(),
        (state_of(repo) / "local/ledger.jsonl").read_text(),
    ]:
        assert "hunter2" not in text
    assert zenml_state(state_of(repo), "local")["connectors"]["local-registry"]["auth_method"] == "password"
    monkeypatch.setenv("LOCAL_REGISTRY_PASSWORD", "rotated-s3cr3t")  # rotated: compared, never shown
    rotated = apply(repo)
    assert "secrets.password: (sensitive) -> (sensitive, changed)" in rotated.output
    assert "rotated-s3cr3t" not in rotated.output
    assert "no changes" in apply(repo).output


def test_a_missing_secret_variable_names_the_variable_and_stops(repo: Path, monkeypatch):
    monkeypatch.setenv("LOCAL_REGISTRY_USER", "robot")
    monkeypatch.delenv("LOCAL_REGISTRY_PASSWORD", raising=False)
    write(repo, {"local/registry.yaml": REGISTRY})
    result = apply(repo)
    assert result.exit_code == 1
    assert (
        "local: nothing was applied: these environment variables are not set: "
        "LOCAL_REGISTRY_PASSWORD (secret password of ServiceConnector local-registry)" in result.output
    )
    assert "local-stack" not in zenml_state(state_of(repo), "local")["stacks"]
    assert not (state_of(repo) / "local/terraform.tfstate").exists()  # not even Terraform ran


def test_terraform_missing_or_failing_is_explained(repo: Path, monkeypatch):
    write(repo, {"_modules/local-base/broken.tf": 'resource "terraform_data" "x" {\n'})
    result = stackward(repo, "plan", "--env", "local")
    assert result.exit_code == 1
    assert "local: could not plan: local: terraform init failed" in result.output
    (repo / "_modules/local-base/broken.tf").unlink()
    monkeypatch.setenv("PATH", "/nonexistent")
    result = stackward(repo, "plan", "--env", "local")
    assert result.exit_code == 1
    assert "terraform is not installed or not on PATH" in result.output


def test_pg_backend_keeps_terraform_state_in_postgres(repo: Path, tmp_path: Path, monkeypatch):
    env = (
        (repo / "local/environment.yaml")
        .read_text()
        .replace(
            "  terraform:\n    backend:\n      type: local\n",
            # Terraform sees only the credentials the environment declares
            "  credentials:\n    plan: {PG_CONN_STR: PG_CONN_STR}\n"
            "  terraform:\n    backend:\n      type: pg\n      config: {schema_name: stackward_local}\n",
        )
    )
    write(repo, {"local/environment.yaml": env})
    with postgres_server() as url:
        monkeypatch.setenv("PG_CONN_STR", url)
        result = apply(repo)
        assert result.exit_code == 0, result.output
        assert not (state_of(repo) / "local/terraform.tfstate").exists()
        rows = subprocess.run(
            ["psql", url, "-tAc", "select name from stackward_local.states"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert rows == ["default"]
        assert "no changes" in apply(repo).output


def test_a_module_without_outputs_plans_and_applies(repo: Path):
    infra = (repo / "local/infrastructure.yaml").read_text()
    write(
        repo,
        {
            "local/infrastructure.yaml": infra,
            "local/more.yaml": HEAD + "kind: Infrastructure\nmetadata: {name: quiet}\nspec:\n"
            "  source: ../_modules/local-base\n  variables: {environment: quiet}\n",
        },
    )
    result = apply(repo)
    assert result.exit_code == 0, result.output
    assert "module.quiet.terraform_data.artifact_store" in result.output


STACK_WITH_BUILDER = """
    image_builder: {name}
"""


def _stack_with_builder(repo: Path, name: str) -> None:
    stack = (
        (EXAMPLES / "local/stack.yaml")
        .read_text()
        .replace(
            "    orchestrator: local-orchestrator\n",
            "    orchestrator: local-orchestrator\n" + STACK_WITH_BUILDER.format(name=name).lstrip("\n"),
        )
    )
    write(
        repo, {"local/stack.yaml": stack, "local/builder.yaml": IMAGE_BUILDER.replace("local-builder", name)}
    )


def test_renaming_a_component_a_stack_uses_applies(repo: Path):
    _stack_with_builder(repo, "local-builder")
    assert apply(repo).exit_code == 0
    _stack_with_builder(repo, "local-builder2")
    plan = stackward(repo, "plan", "--env", "local")
    assert "components.image_builder: local-builder -> local-builder2" in plan.output
    assert "- zenml.StackComponent.local-builder" in plan.output
    result = apply(repo)
    assert result.exit_code == 0, result.output
    zenml = zenml_state(state_of(repo), "local")
    assert "local-builder" not in zenml["components"]
    assert zenml["stacks"]["local-stack"]["components"]["image_builder"] == "local-builder2"
    assert "no changes" in apply(repo).output


def test_a_stack_stackward_does_not_own_blocks_replacing_its_component(repo: Path):
    assert apply(repo).exit_code == 0
    zenml_run(
        state_of(repo),
        "local",
        "from zenml.client import Client\nfrom zenml.enums import StackComponentType as T\n"
        "Client().create_stack('manual', components={T.ORCHESTRATOR: 'local-orchestrator', T.ARTIFACT_STORE: 'default'})\n",
    )
    stack = (repo / "local/stack.yaml").read_text()
    write(
        repo,
        {
            "local/stack.yaml": stack.replace(
                "  type: orchestrator\n  flavor: local\n", "  type: orchestrator\n  flavor: local_docker\n"
            )
        },
    )
    result = apply(repo)
    assert result.exit_code == 1
    assert "stack manual (not managed by stackward) uses it" in result.output
    zenml = zenml_state(state_of(repo), "local")
    assert {"local-stack", "manual"} <= set(zenml["stacks"]) and zenml["components"]["local-orchestrator"][
        "flavor"
    ] == "local"


def test_a_component_of_another_type_with_the_same_name_is_not_ours(repo: Path):
    write(repo, {"local/builder.yaml": IMAGE_BUILDER})
    assert apply(repo).exit_code == 0
    zenml_run(
        state_of(repo),
        "local",
        "from zenml.client import Client\nfrom zenml.enums import StackComponentType as T\n"
        "Client().create_stack_component('local-builder', 'local', T.ORCHESTRATOR, {})\n",
    )
    (repo / "local/builder.yaml").unlink()
    assert apply(repo).exit_code == 0
    left = [
        c
        for c in zenml_run(
            state_of(repo),
            "local",
            "from zenml.client import Client\n"
            "print([(c.name, c.type.value) for c in Client().list_stack_components(name='local-builder').items])",
        ).splitlines()
        if c.startswith("[")
    ]
    assert left == ["[('local-builder', 'orchestrator')]"]


def test_a_missing_zenml_secret_stops_before_anything_changes(repo: Path):
    write(
        repo,
        {
            "local/registry.yaml": HEAD + "kind: ServiceConnector\nmetadata: {name: local-registry}\nspec:\n"
            "  type: docker\n  authMethod: password\n  secrets:\n"
            "    username: {fromZenmlSecret: {name: regcreds, key: username}}\n"
            "    password: {fromZenmlSecret: {name: regcreds, key: password}}\n"
        },
    )
    result = apply(repo)
    assert result.exit_code == 1
    for key, line in (("username", 8), ("password", 9)):
        assert (
            f"local/registry.yaml:{line}: ServiceConnector local-registry uses key {key} of ZenML secret "
            "regcreds, which is not in the ZenML store and no Secret of this environment declares it"
        ) in result.output
    assert not (state_of(repo) / "local/terraform.tfstate").exists()


def test_sensitive_terraform_values_are_masked(repo: Path):
    write(
        repo,
        {
            "_modules/local-base/secret.tf": 'resource "terraform_data" "listed" {\n  input = ["public", sensitive("LISTSECRET-abc123")]\n}\n'
            'output "token" {\n  value     = "TFSENSITIVE-xyz789"\n  sensitive = true\n}\n'
        },
    )
    infra = (
        (repo / "local/infrastructure.yaml")
        .read_text()
        .replace("    - artifact_path", "    - artifact_path\n    - token")
    )
    write(
        repo,
        {
            "local/infrastructure.yaml": infra,
            "local/builder.yaml": HEAD
            + "kind: StackComponent\nmetadata: {name: local-tracker}\nspec:\n  type: artifact_store\n  flavor: local\n"
            "  configuration: {path: '/tmp/${infra.base.token}'}\n",
        },
    )
    assert apply(repo).exit_code == 0
    plan = stackward(repo, "plan", "--env", "local")
    for text in (plan.output, apply(repo).output):
        assert "LISTSECRET" not in text and "TFSENSITIVE" not in text


def test_a_failed_terraform_init_is_tried_again(repo: Path, monkeypatch):
    env = (
        (repo / "local/environment.yaml")
        .read_text()
        .replace(
            "  terraform:\n    backend:\n      type: local\n",
            "  credentials:\n    plan: {PG_CONN_STR: PG_CONN_STR}\n  terraform:\n    backend:\n      type: pg\n",
        )
    )
    write(repo, {"local/environment.yaml": env})
    monkeypatch.setenv("PG_CONN_STR", "postgres://nobody@127.0.0.1:9/none?sslmode=disable&connect_timeout=2")
    assert "terraform init failed" in stackward(repo, "plan", "--env", "local").output
    with postgres_server() as url:
        monkeypatch.setenv("PG_CONN_STR", url)
        result = stackward(repo, "plan", "--env", "local")
        assert result.exit_code == 0, result.output


REGISTRY_COMPONENT = HEAD + (
    "kind: StackComponent\nmetadata: {name: local-registry-component}\nspec:\n  type: container_registry\n"
    "  flavor: default\n  configuration: {uri: registry.example}\n  connector: local-registry\n"
)


def test_the_shared_reader_reads_what_the_environment_worker_reads(
    repo: Path, monkeypatch, tmp_path: Path, store_template: Path
):
    """The reconciler reads every embedded store through one long-lived reader process; it must
    see exactly what an environment's own worker sees, hand edits included."""
    monkeypatch.setenv("LOCAL_REGISTRY_USER", "robot")
    monkeypatch.setenv("LOCAL_REGISTRY_PASSWORD", "hunter2-s3cr3t-value")
    write(repo, {"local/registry.yaml": REGISTRY, "local/registry-component.yaml": REGISTRY_COMPONENT})
    assert apply(repo).exit_code == 0
    zenml_run(
        state_of(repo),
        "local",
        "from zenml.client import Client\nfrom zenml.enums import StackComponentType as T\n"
        "c = Client()\nc.update_stack_component('local-orchestrator', T.ORCHESTRATOR, labels={'team': 'x'})\n"
        "c.create_stack_component('by-hand', 'local', T.IMAGE_BUILDER, {})\n",
    )
    env = validate(repo, "local").environments[0]
    state = EnvironmentState(state_of(repo), "local")
    with ZenmlExecutor(env, state, "plan") as own:
        expected = own.read()
    copy_store(store_template, tmp_path / "other", "local")  # another environment's store: ZenML's defaults
    other = EnvironmentState(tmp_path / "other", "local")
    with ZenmlExecutor(env, other, "plan") as own:
        expected_other = own.read()
    assert {r.name for r in expected_other} == {"default"}
    reader = StoreReader()
    try:
        shared, shared_other = (
            ZenmlExecutor(env, state, "plan", reader),
            ZenmlExecutor(env, other, "plan", reader),
        )
        first, second, again = shared.read(), shared_other.read(), shared.read()
    finally:
        reader.close()
    assert first == expected and again == expected and second == expected_other  # nothing crosses stores
    read = {(r.kind, r.name): r for r in first}
    assert read[("ServiceConnector", "local-registry")].fields["configuration"] == {
        "registry": "registry.example"
    }
    assert "hunter2" not in repr(first)  # secret values are never read back
    assert read[("StackComponent", "local-registry-component")].fields["connector"] == "local-registry"
    assert read[("StackComponent", "local-orchestrator")].labels["team"] == "x"
    assert ("StackComponent", "by-hand") in read


def test_the_shared_reader_reports_a_broken_store_and_goes_on(repo: Path, tmp_path: Path):
    import sqlite3

    assert apply(repo).exit_code == 0
    env = validate(repo, "local").environments[0]
    shutil.copytree(state_of(repo) / "local", tmp_path / "broken" / "local")
    broken = EnvironmentState(tmp_path / "broken", "local")
    with sqlite3.connect(broken.zenml_database) as db:
        db.execute("DROP TABLE stack_composition")
    reader = StoreReader()
    try:
        with pytest.raises(
            ZenmlError, match=r"local: reading ZenML registrations failed: .*stack_composition"
        ):
            ZenmlExecutor(env, broken, "plan", reader).read()
        good = ZenmlExecutor(env, EnvironmentState(state_of(repo), "local"), "plan", reader).read()
        assert ("Stack", "local-stack") in {(r.kind, r.name) for r in good}
    finally:
        reader.close()


def test_a_store_left_at_an_older_schema_is_read_by_the_environment_worker(repo: Path):
    """The shared reader never writes: a store last opened by an older zenml is left to the
    environment's own worker, which migrates it as ZenML does."""
    assert apply(repo).exit_code == 0
    import sqlite3

    import zenml

    release = Path(zenml.__file__).parent / f"zen_stores/migrations/versions/{zenml.__version__}_release.py"
    previous = re.search(r'^down_revision = "(.+)"$', release.read_text(), re.M).group(1)
    state = EnvironmentState(state_of(repo), "local")
    with sqlite3.connect(state.zenml_database) as db:
        db.execute("UPDATE alembic_version SET version_num = ?", (previous,))
    env = validate(repo, "local").environments[0]
    reader = StoreReader()
    try:
        read = ZenmlExecutor(env, state, "plan", reader).read()
    finally:
        reader.close()
    assert ("Stack", "local-stack") in {(r.kind, r.name) for r in read}
    with sqlite3.connect(state.zenml_database) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(zenml.__version__,)]


def test_the_shared_reader_reads_an_unchanged_store_once_and_sees_every_change(repo: Path):
    import sqlite3

    assert apply(repo).exit_code == 0
    env = validate(repo, "local").environments[0]
    state = EnvironmentState(state_of(repo), "local")
    reader = StoreReader()
    try:
        shared = ZenmlExecutor(env, state, "plan", reader)
        first = shared.read()
        holder = sqlite3.connect(state.zenml_database, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # ZenML cannot open the database now, but it is unchanged
        assert shared.read() == first  # so the last read answers
        holder.execute("ROLLBACK")
        holder.close()
        zenml_run(
            state_of(repo),
            "local",
            "from zenml.client import Client\nfrom zenml.enums import StackComponentType as T\n"
            "Client().update_stack_component('local-orchestrator', T.ORCHESTRATOR, labels={'team': 'y'})\n",
        )
        changed = {(r.kind, r.name): r for r in shared.read()}
        assert changed[("StackComponent", "local-orchestrator")].labels["team"] == "y"
    finally:
        reader.close()


def test_terraform_sees_only_the_credentials_of_its_phase(repo: Path, tmp_path: Path, monkeypatch):
    """A module (which a pull request controls) that reads its process environment finds the
    credentials its environment declares for the phase, and nothing else the runner holds."""
    module = tmp_path / "environments" / "_modules" / "spy"
    module.mkdir(parents=True)
    (module / "main.tf").write_text(
        'resource "terraform_data" "spy" {\n  input = file("/proc/self/environ")\n}\n'
    )
    env = (repo / "local/environment.yaml").read_text()
    env = env.replace(
        "  terraform:\n",
        "  credentials:\n    plan: {CLOUD_KEY: PLAN_KEY}\n    apply: {CLOUD_KEY: APPLY_KEY}\n  terraform:\n",
    )
    write(
        repo,
        {
            "local/environment.yaml": env,
            "local/spy.yaml": HEAD
            + "kind: Infrastructure\nmetadata: {name: spy}\nspec: {source: ../_modules/spy}\n",
        },
    )
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_canary_token_value")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-aws-secret-key")
    monkeypatch.setenv("PLAN_KEY", "read-only-plan-key")
    monkeypatch.setenv("APPLY_KEY", "read-write-apply-key")
    plan_file = tmp_path / "plan.json"
    plan = stackward(repo, "plan", "--env", "local", "--out", str(plan_file))
    assert plan.exit_code == 0, plan.output
    (spy,) = [
        c
        for c in json.loads(plan_file.read_text())["environments"][0]["changes"]
        if c["name"] == "module.spy.terraform_data.spy"
    ]
    seen = next(f["after"] for f in spy["fields"] if f["path"] == "input")
    assert "CLOUD_KEY=(sensitive)" in seen  # the plan credentials, and even they are never shown
    for leaked in ("ghs_canary_token_value", "canary-aws-secret-key", "read-only-plan-key", "APPLY_KEY"):
        assert leaked not in plan.output and leaked not in seen
    applied = apply(repo)
    assert applied.exit_code == 0, applied.output
    state = json.loads((state_of(repo) / "local/terraform.tfstate").read_text())
    (spy,) = [r for r in state["resources"] if r["type"] == "terraform_data" and r["module"] == "module.spy"]
    seen = spy["instances"][0]["attributes"]["input"]["value"]  # terraform_data wraps its input
    assert "CLOUD_KEY=read-write-apply-key" in seen  # the apply ran with the apply credentials
    assert "ghs_canary_token_value" not in seen and "canary-aws-secret-key" not in seen
