"""Everything a platform team registers in ZenML, on an embedded store and on a real ZenML
server (tests/zenml_server.py): Secrets (created, rotated, pruned), a connector key from a
sensitive Terraform output (`fromInfra`), referenced secrets checked before anything changes,
and a stack that keeps its id when its orchestrator's flavor changes.

Canary values stand for the secrets: they reach the ZenML store and nothing else stackward
writes or prints. Terraform's own state holds a sensitive output's value by Terraform's design
(keep the backend private); it is the one file besides the ZenML store allowed to.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from conftest import EXAMPLES, Result, run, write
from zenml_server import clear_registrations
from zenml_tools import copy_store, zenml_run

POLICIES = EXAMPLES.parent / "policies"

HEAD = "apiVersion: stackward.dev/v1alpha1\n"
EMBEDDED = "  zenml:\n    mode: embedded\n"
ALLOW_ALL = (
    'package stackward.allow_all\n\nimport rego.v1\n\ndeny contains m if {\n\tm := "never"\n\tfalse\n}\n'
)
# Stands for a module that creates a key: the value comes from a file the test writes (so no
# spec holds it), and Terraform hands it on as a sensitive output.
MODULE = """variable "key_file" {
  type = string
}
output "registry_key" {
  value     = "key-${trimspace(file(var.key_file))}"
  sensitive = true
}
output "tracking_password" {
  value     = "pw-${trimspace(file(var.key_file))}"
  sensitive = true
}
"""
SPECS = HEAD + (
    "kind: Infrastructure\nmetadata: {name: keys}\n"
    "spec:\n  source: ../_modules/keys\n  variables: {key_file: KEY_FILE}\n"
    "  outputs: [registry_key, tracking_password]\n"
    "---\n" + HEAD + "kind: Secret\nmetadata: {name: local-mlflow}\nspec:\n  values:\n"
    "    username: {fromEnv: TRACKING_USER}\n"
    "    password: {fromInfra: {module: keys, output: tracking_password}}\n"
    "---\n"
    + HEAD
    + "kind: ServiceConnector\nmetadata: {name: local-registry, description: the team registry}\n"
    "spec:\n  type: docker\n  authMethod: password\n  configuration: {registry: registry.example}\n"
    "  secrets:\n    username: {fromEnv: REGISTRY_USER}\n"
    "    password: {fromInfra: {module: keys, output: registry_key}}\n"
    "---\n" + HEAD + "kind: StackComponent\nmetadata: {name: local-tracker}\nspec:\n"
    "  type: experiment_tracker\n  flavor: mlflow\n"
    "  configuration:\n    tracking_uri: https://mlflow.example\n"
    "    tracking_username: '{{local-mlflow.username}}'\n    tracking_password: '{{local-mlflow.password}}'\n"
    "  environment: {MLFLOW_TRACKING_INSECURE_TLS: 'false'}\n  secrets: [local-mlflow]\n"
)
STACK_WITH_TRACKER = "    orchestrator: local-orchestrator\n    experiment_tracker: local-tracker\n"
READ_STORE = """
import json
from zenml.client import Client
c = Client()
stack = c.get_stack("local-stack")
tracker = c.get_stack_component("experiment_tracker", "local-tracker")
print(json.dumps({
    "secret": dict(c.get_secret("local-mlflow").secret_values),
    "registry": c.get_service_connector("local-registry", expand_secrets=True).configuration.plain_secrets,
    "description": c.get_service_connector("local-registry").description,
    "tracker_environment": tracker.environment,
    "tracker_secrets": [c.get_secret(i).name for i in tracker.secrets],
    "stack_id": str(stack.id),
    "orchestrator": [o.flavor_name for t, cs in stack.components.items() if t.value == "orchestrator" for o in cs],
    "secrets": sorted(s.name for s in c.list_secrets(size=100).items),
}))
"""


class World:
    """The `local` example environment plus the specs above, on an embedded store or on the
    emptied ZenML server; its state folder, policies and canaries."""

    def __init__(self, root: Path, server: tuple[str, str] | None, monkeypatch: pytest.MonkeyPatch):
        self.root = root
        self.repo = root / "environments"
        self.state = root / "state"
        self.policies = write(root / "policies", {"allow_all.rego": ALLOW_ALL})
        self.server = server
        self.monkeypatch = monkeypatch
        self.canaries: list[str] = []
        self.outputs: list[str] = []

    def canary(self, variable: str) -> str:
        """A new canary in the environment variable, or for `key` in the module's key file."""
        value = f"canary-{uuid.uuid4().hex}"
        self.canaries.append(value)
        if variable == "key":
            (self.root / "key.txt").write_text(value + "\n")
        else:
            self.monkeypatch.setenv(variable, value)
        return value

    def run(self, command: str, *args: str) -> Result:
        common = ("--env", "local", "--state-dir", str(self.state), "--policies", str(self.policies))
        result = run(command, str(self.repo), *common, *args)
        self.outputs.append(result.output)
        return result

    def plan(self, name: str = "plan.json") -> Result:
        return self.run("plan", "--out", str(self.root / name))

    def store(self) -> dict:
        return json.loads(zenml_run(self.state, "local", READ_STORE, self.server).strip().splitlines()[-1])

    def assert_no_canary_leaked(self) -> None:
        """In no output, plan file or state file but the ZenML store's and Terraform's state."""
        files = [
            p
            for p in [*self.state.rglob("*"), *self.root.glob("*.json")]
            if p.is_file()
            and "zenml" not in p.relative_to(self.root).parts
            and not p.name.startswith("terraform.tfstate")
            and p.name != "tfplan"
        ]
        texts = [*self.outputs, *(p.read_text(errors="replace") for p in files)]
        for canary in self.canaries:
            leaks = [t[:200] for t in texts if canary in t or canary.removeprefix("canary-") in t]
            assert not leaks, (canary, leaks)


@pytest.fixture(params=["embedded", "server"])
def world(request: pytest.FixtureRequest, tmp_path: Path, store_template: Path, monkeypatch) -> World:
    shutil.copytree(EXAMPLES / "local", tmp_path / "environments" / "local")
    shutil.copytree(EXAMPLES / "_modules", tmp_path / "environments" / "_modules")
    server = None
    if request.param == "server":
        server = request.getfixturevalue("zenml_server")
        clear_registrations(*server)
        environment = tmp_path / "environments/local/environment.yaml"
        text = environment.read_text()
        assert EMBEDDED in text
        mode = f"  zenml:\n    mode: server\n    url: {server[0]}\n    apiKeyEnv: ZENML_TEST_API_KEY\n"
        environment.write_text(text.replace(EMBEDDED, mode))
        monkeypatch.setenv("ZENML_TEST_API_KEY", server[1])
    else:
        copy_store(store_template, tmp_path / "state", "local")
    stack = tmp_path / "environments/local/stack.yaml"
    stack.write_text(stack.read_text().replace("    orchestrator: local-orchestrator\n", STACK_WITH_TRACKER))
    specs = SPECS.replace("KEY_FILE", str(tmp_path / "key.txt"))
    write(tmp_path / "environments", {"_modules/keys/main.tf": MODULE, "local/secrets.yaml": specs})
    world = World(tmp_path, server, monkeypatch)
    world.monkeypatch.setenv("REGISTRY_USER", "robot")
    return world


def _specs(world: World, text: str = SPECS) -> str:
    return text.replace("KEY_FILE", str(world.root / "key.txt"))


def _changes(plan_file: Path) -> dict[str, list[dict]]:
    plan = json.loads(plan_file.read_text())
    return {
        c["address"]: c["fields"]
        for e in plan["environments"]
        for c in e["changes"]
        if c["action"] != "no-op"
    }


def _no_changes(result: Result) -> None:
    assert result.exit_code == 0, result.output
    assert "local: +0 ~0 -0 ±0" in result.output and "no changes" in result.output, result.output


def test_secrets_and_terraform_keys_reach_zenml_rotate_and_are_pruned(world: World):
    seed, user = world.canary("key"), world.canary("TRACKING_USER")
    first = world.plan()
    assert first.exit_code == 0, first.output
    assert "+ zenml.Secret.local-mlflow" in first.output
    assert 'values: {"password": "(sensitive)", "username": "(sensitive)"}' in first.output
    assert 'secrets: {"password": "(sensitive)", "username": "(sensitive)"}' in first.output
    applied = world.run("apply")
    assert applied.exit_code == 0, applied.output
    store = world.store()
    assert store["secret"] == {"username": user, "password": f"pw-{seed}"}
    assert store["registry"] == {"username": "robot", "password": f"key-{seed}"}
    assert store["description"] == "the team registry"
    assert store["tracker_environment"] == {"MLFLOW_TRACKING_INSECURE_TLS": "false"}
    assert store["tracker_secrets"] == ["local-mlflow"]
    _no_changes(world.plan("again.json"))
    assert (world.state / "local" / "ledger.jsonl").exists()  # checked for canaries below

    # Rotation: new values behind the same references (a variable, a Terraform output).
    new_user, new_seed = world.canary("TRACKING_USER"), world.canary("key")
    rotated = world.plan("rotated.json")
    assert rotated.exit_code == 0, rotated.output
    changes = _changes(world.root / "rotated.json")
    assert {"path": "values.username", "before": "(sensitive)", "after": "(sensitive, changed)"} in changes[
        "zenml.Secret.local-mlflow"
    ]
    assert "values.username: (sensitive) -> (sensitive, changed)" in rotated.output
    applied = world.run("apply")
    assert applied.exit_code == 0, applied.output
    store = world.store()
    assert store["secret"] == {"username": new_user, "password": f"pw-{new_seed}"}
    assert store["registry"]["password"] == f"key-{new_seed}"
    _no_changes(world.plan("rotated-again.json"))

    # Removed from the specs: pruned, with the component that used it.
    (world.repo / "local/secrets.yaml").write_text(_specs(world).split("---\n")[0])
    stack = world.repo / "local/stack.yaml"
    stack.write_text(stack.read_text().replace(STACK_WITH_TRACKER, "    orchestrator: local-orchestrator\n"))
    pruned = world.run("apply")
    assert pruned.exit_code == 0, pruned.output
    assert "- zenml.Secret.local-mlflow" in pruned.output
    names = json.loads(
        zenml_run(
            world.state,
            "local",
            "import json\nfrom zenml.client import Client\n"
            "print(json.dumps(sorted(s.name for s in Client().list_secrets(size=100).items)))",
            world.server,
        )
        .strip()
        .splitlines()[-1]
    )
    assert "local-mlflow" not in names
    world.assert_no_canary_leaked()


def test_a_referenced_secret_nobody_declares_stops_the_plan_before_any_change(world: World):
    world.canary("key"), world.canary("TRACKING_USER")
    specs = _specs(world).replace("'{{local-mlflow.username}}'", "'{{team-mlflow.username}}'")
    write(world.repo, {"local/secrets.yaml": specs})
    planned = world.plan()
    assert planned.exit_code != 0
    assert "environments/local/secrets.yaml:" in planned.output or "secrets.yaml:" in planned.output
    assert "uses key username of ZenML secret team-mlflow, which is not in the ZenML store" in planned.output
    applied = world.run("apply")
    assert applied.exit_code != 0
    assert "team-mlflow" in applied.output
    assert not (world.state / "local" / "ledger.jsonl").exists()  # nothing was started
    # A key the environment's own Secret does not have is caught by validation, at its line.
    bad_key = _specs(world).replace("'{{local-mlflow.password}}'", "'{{local-mlflow.pasword}}'")
    write(world.repo, {"local/secrets.yaml": bad_key})
    validated = run("validate", str(world.repo), "--env", "local", "--no-policy")
    assert validated.exit_code != 0
    assert "pasword" in validated.output and "secrets.yaml:" in validated.output


RUN_PIPELINE = """
from zenml import pipeline, step
from zenml.client import Client

Client().activate_stack("local-stack")


@step
def hello() -> int:
    return 1


@pipeline
def training():
    hello()


training()
"""
SCHEDULE = """
from zenml.client import Client
from zenml.enums import StackComponentType
from zenml.models import ScheduleRequest

c = Client()
orchestrator = c.get_stack_component(StackComponentType.ORCHESTRATOR, "local-orchestrator")
c.zen_store.create_schedule(
    ScheduleRequest(
        project=c.active_project.id,
        name="nightly",
        active=True,
        cron_expression="0 3 * * *",
        orchestrator_id=orchestrator.id,
        pipeline_id=c.get_pipeline("training").id,
    )
)
"""  # as an orchestrator that schedules (Kubeflow, Airflow, ...) records one; the local one cannot
RUN_STACK = """
import json
from zenml.client import Client
run = Client().list_pipeline_runs(size=1).items[0]
print(json.dumps({"stack_id": str(run.stack.id) if run.stack else None}))
"""


def test_a_component_flavor_change_keeps_the_stack_its_id_and_its_runs(world: World):
    world.canary("key"), world.canary("TRACKING_USER")
    stack = world.repo / "local/stack.yaml"  # a stack pipelines run on here (no MLflow installed)
    stack.write_text(stack.read_text().replace(STACK_WITH_TRACKER, "    orchestrator: local-orchestrator\n"))
    assert world.run("apply").exit_code == 0
    _no_changes(world.plan("applied.json"))
    zenml_run(world.state, "local", RUN_PIPELINE, world.server)  # history that must stay linked
    zenml_run(world.state, "local", SCHEDULE, world.server)
    shutil.copy(POLICIES / "impact.rego", world.policies)  # the default advice on what breaks
    before = world.store()
    assert before["orchestrator"] == ["local"]
    stack.write_text(
        stack.read_text().replace(
            "  type: orchestrator\n  flavor: local\n", "  type: orchestrator\n  flavor: local_docker\n"
        )
    )
    planned = world.plan()
    assert planned.exit_code == 0, planned.output
    assert "± zenml.StackComponent.local-orchestrator  (replace)" in planned.output
    assert "~ zenml.Stack.local-stack" in planned.output
    assert "components.orchestrator: local-orchestrator -> local-orchestrator (re-created)" in planned.output
    assert "note: the runs of training stay linked to this stack" in planned.output
    # what the change touches, in the plan, the plan file and the policies' input
    assert (
        "note: used by 1 pipeline (training), 1 active schedule (nightly), 1 snapshot; last run just now "
        "(through stack local-stack)"
    ) in planned.output
    assert "StackComponent/local-orchestrator will be replaced while 1 active schedule(s)" in planned.output
    changes = {
        c["address"]: c
        for c in json.loads((world.root / "plan.json").read_text())["environments"][0]["changes"]
    }
    impact = changes["zenml.StackComponent.local-orchestrator"]["impact"]
    assert impact["pipelines"] == ["training"] and impact["schedules"] == ["nightly"] and impact["runs"] == 1
    assert impact["stacks"] == ["local-stack"] and impact["last_run"]
    applied = world.run("apply", "--plan", str(world.root / "plan.json"))
    assert applied.exit_code == 0, applied.output
    after = world.store()
    assert after["stack_id"] == before["stack_id"]
    run_stack = json.loads(zenml_run(world.state, "local", RUN_STACK, world.server).strip().splitlines()[-1])
    assert run_stack["stack_id"] == before["stack_id"]
    assert after["orchestrator"] == ["local_docker"]
    _no_changes(world.plan("again.json"))


IMPLICIT = HEAD + (
    "kind: ServiceConnector\nmetadata: {name: local-cloud}\n"
    "spec:\n  type: aws\n  authMethod: implicit\n  configuration: {region: eu-west-1}\n"
)


def test_implicit_auth_a_server_refuses_is_reported_at_plan(world: World):
    world.canary("key"), world.canary("TRACKING_USER")
    write(world.repo, {"local/cloud.yaml": IMPLICIT})
    planned = world.plan()
    assert planned.exit_code == 0, planned.output
    plan = json.loads((world.root / "plan.json").read_text())
    (warnings,) = [e["warnings"] for e in plan["environments"]]
    if world.server:  # the server was started without ZENML_ENABLE_IMPLICIT_AUTH_METHODS
        (warning,) = warnings
        assert "ServiceConnector local-cloud uses implicit authentication" in warning
        assert "set ZENML_ENABLE_IMPLICIT_AUTH_METHODS=true in the server's environment" in warning
        assert "warning: ServiceConnector local-cloud" in planned.output
    else:  # an embedded store: the pipelines' own process decides, nothing to say at plan
        assert warnings == []


VERIFIED = HEAD + (
    "kind: ServiceConnector\nmetadata: {name: local-aws}\n"
    "spec:\n  type: aws\n  authMethod: secret-key\n  configuration: {region: eu-west-1}\n  verify: true\n"
    "  secrets:\n    aws_access_key_id: {fromEnv: AWS_KEY_ID}\n    aws_secret_access_key: {fromEnv: AWS_KEY}\n"
)


def test_a_connector_that_fails_verification_blocks_the_apply(world: World):
    """The keys cannot reach AWS from here (no network): ZenML's verification fails."""
    world.canary("key"), world.canary("TRACKING_USER"), world.canary("AWS_KEY_ID"), world.canary("AWS_KEY")
    write(world.repo, {"local/cloud.yaml": VERIFIED})
    planned = world.plan()
    assert planned.exit_code != 0
    assert "connector verification failed, so nothing can be applied" in planned.output
    assert "ServiceConnector local-aws: connector authorization failure" in planned.output
    applied = world.run("apply")
    assert applied.exit_code != 0 and "connector verification failed" in applied.output
    assert not (world.state / "local" / "ledger.jsonl").exists()  # nothing was started
    # Off by default; the option turns it on for every connector.
    write(world.repo, {"local/cloud.yaml": VERIFIED.replace("  verify: true\n", "")})
    assert world.plan().exit_code == 0
    assert "connector verification failed" in world.run("plan", "--verify-connectors").output
    world.assert_no_canary_leaked()
