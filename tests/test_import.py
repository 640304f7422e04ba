"""`stackward import`: a ZenML set-up made by hand (the ZenML client, as a person at the CLI or
dashboard would) becomes specs that validate, with secret values as references only; the store
is only read. On an embedded store, and once on the real ZenML server (tests/zenml_server.py).
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import Result, run, write
from zenml_server import clear_registrations
from zenml_tools import copy_store, zenml_run

CANARY = f"canary-{uuid.uuid4().hex}"  # stands for the service account's private key
MLFLOW_CANARY = f"canary-{uuid.uuid4().hex}"  # and for a ZenML secret's value
PLAIN_CANARY = f"canary-{uuid.uuid4().hex}"  # and for a password typed into a component
HAND_MADE = """
import json
from zenml.client import Client
from zenml.enums import StackComponentType as T
c = Client()
key = json.dumps({"type": "service_account", "project_id": "acme-ml-prod", "private_key_id": "1",
    "private_key": "CANARY", "client_email": "sa@acme-ml-prod.iam.gserviceaccount.com", "client_id": "1",
    "token_uri": "https://oauth2.googleapis.com/token"})
connector, _ = c.create_service_connector(
    name="prod-gcp-connector", connector_type="gcp", auth_method="service-account",
    configuration={"project_id": "acme-ml-prod", "service_account_json": key},
    labels={"team": "ml", "tier": "gold"}, description="GCP access for training", verify=False, list_resources=False)
store = c.create_stack_component("prod-artifact-store", "gcp", T.ARTIFACT_STORE,
    {"path": "gs://acme-prod/artifacts"}, labels={"team": "ml"})
c.update_stack_component(store.id, T.ARTIFACT_STORE, connector_id=connector.id, connector_resource_id="acme-prod")
orchestrator = c.create_stack_component("prod-orchestrator", "local", T.ORCHESTRATOR, {})
components = {T.ARTIFACT_STORE: [store.id], T.ORCHESTRATOR: [orchestrator.id]}
if WITH_TRACKER:
    c.create_secret("prod-mlflow", {"username": "robot", "password": "MLFLOW_CANARY"})
    tracker = c.create_stack_component("prod-tracker", "mlflow", T.EXPERIMENT_TRACKER, {
        "tracking_uri": "https://mlflow.example", "tracking_username": "{{prod-mlflow.username}}",
        "tracking_password": "{{prod-mlflow.password}}"})
    components[T.EXPERIMENT_TRACKER] = [tracker.id]
    c.create_stack_component("prod-leaky", "mlflow", T.EXPERIMENT_TRACKER, {
        "tracking_uri": "https://mlflow.example", "tracking_username": "robot", "tracking_password": "PLAIN_CANARY"})
    scratch = c.create_stack_component("scratch-store", "local", T.ARTIFACT_STORE, {"path": "/tmp/scratch"})
    c.create_stack("scratch", components={T.ARTIFACT_STORE: [scratch.id], T.ORCHESTRATOR: [orchestrator.id]})
stack = c.create_stack("prod-stack", components=components, labels={"team": "ml", "purpose": "training"})
c.update_stack(stack.id, description="the training stack")
"""
ENVIRONMENT = (
    "apiVersion: stackward.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: prod\n"
    "spec:\n  labels:\n    team: ml\n"
)
ALLOW_ALL = (
    'package stackward.allow_all\n\nimport rego.v1\n\ndeny contains m if {\n\tm := "never"\n\tfalse\n}\n'
)
VARIABLE = "PROD_GCP_CONNECTOR_SERVICE_ACCOUNT_JSON"
CONNECTOR = {
    "apiVersion": "stackward.dev/v1alpha1",
    "kind": "ServiceConnector",
    "metadata": {
        "name": "${env.name}-gcp-connector",
        "labels": {"tier": "gold"},
        "description": "GCP access for training",
    },
    "spec": {
        "type": "gcp",
        "authMethod": "service-account",
        "configuration": {"project_id": "acme-ml-prod"},
        "secrets": {"service_account_json": {"fromEnv": VARIABLE}},
    },
}


def hand_made(tracker: bool) -> str:
    return (
        HAND_MADE.replace("MLFLOW_CANARY", MLFLOW_CANARY)
        .replace("PLAIN_CANARY", PLAIN_CANARY)
        .replace("CANARY", CANARY)
        .replace("WITH_TRACKER", str(tracker))
    )


@pytest.fixture(scope="module")
def hand_made_state(tmp_path_factory: pytest.TempPathFactory, store_template: Path) -> Path:
    """A state folder whose `prod` store holds a set-up made by hand, registered once per module."""
    state = tmp_path_factory.mktemp("hand-made") / "state"
    copy_store(store_template, state, "prod")
    zenml_run(state, "prod", hand_made(tracker=True))
    return state


@pytest.fixture
def repo(tmp_path: Path, hand_made_state: Path) -> Path:
    """An environments folder with only prod's Environment; a copy of the hand-made state beside it."""
    shutil.copytree(hand_made_state, tmp_path / "state")
    return write(tmp_path / "environments", {"prod/environment.yaml": ENVIRONMENT})


def import_(repo: Path, *args: str) -> Result:
    return run("import", "prod", str(repo), "--state-dir", str(repo.parent / "state"), *args)


def database(repo: Path) -> str:
    path = repo.parent / "state/prod/zenml/local_stores/default_zen_store/zenml.db"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def documents(path: Path) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in yaml.safe_load_all(path.read_text())}


def test_a_hand_made_set_up_becomes_specs_that_validate_without_a_secret_value(repo: Path, tmp_path: Path):
    before = database(repo)
    result = import_(repo)
    assert result.exit_code == 0, result.output
    assert database(repo) == before  # the store was only read
    folder = repo / "prod"
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "components.yaml",
        "connectors.yaml",
        "environment.yaml",
        "stacks.yaml",
    ]
    assert documents(folder / "connectors.yaml") == {"${env.name}-gcp-connector": CONNECTOR}
    components = documents(folder / "components.yaml")
    assert sorted(components) == [
        "${env.name}-artifact-store",
        "${env.name}-orchestrator",
        "${env.name}-tracker",
        "scratch-store",
    ]
    assert components["${env.name}-artifact-store"]["spec"] == {
        "type": "artifact_store",
        "flavor": "gcp",
        "configuration": {"path": "gs://acme-prod/artifacts"},
        "connector": "${env.name}-gcp-connector",
        "connectorResourceId": "acme-prod",
    }
    assert (
        components["${env.name}-tracker"]["spec"]["configuration"]["tracking_password"]
        == "{{prod-mlflow.password}}"
    )
    stacks = documents(folder / "stacks.yaml")
    assert sorted(stacks) == ["${env.name}-stack", "scratch"]  # not ZenML's default stack
    assert stacks["${env.name}-stack"]["metadata"] == {
        "name": "${env.name}-stack",
        "labels": {"purpose": "training"},  # team: ml is the environment's, stamped on everything
        "description": "the training stack",
    }
    assert stacks["${env.name}-stack"]["spec"]["components"] == {
        "artifact_store": "${env.name}-artifact-store",
        "experiment_tracker": "${env.name}-tracker",
        "orchestrator": "${env.name}-orchestrator",
    }
    header = (folder / "stacks.yaml").read_text().splitlines()[:2]
    assert header[0].startswith("# Imported by `stackward import prod` on ")
    assert (
        header[1]
        == f"# from the embedded ZenML store of environment prod ({repo.parent / 'state/prod/zenml'})."
    )
    note = (folder / "README.md").read_text()
    assert f"| `{VARIABLE}` | ServiceConnector `prod-gcp-connector`, key `service_account_json` |" in note
    assert "- Secret `prod-mlflow`: stackward reads the key names only of the secrets it owns" in note
    assert "- Stack `default`: ZenML's own default stack" in note

    for name in ("connectors.yaml", "components.yaml", "stacks.yaml"):
        assert f"wrote {folder / name}: " in result.output
    assert (
        f"set {VARIABLE}: ServiceConnector prod-gcp-connector, secret service_account_json" in result.output
    )
    assert "prod: the specs validate" in result.output
    assert "it shows each imported resource as a conflict" in result.output
    texts = [result.output, *(p.read_text() for p in folder.iterdir())]
    assert not [text for text in texts if CANARY in text or MLFLOW_CANARY in text or PLAIN_CANARY in text]
    assert (
        "not imported: StackComponent prod-leaky: it holds a plain value in tracking_password, tracking_username, "
        "which its flavor marks secret" in result.output
    )

    policies = write(tmp_path / "policies", {"allow_all.rego": ALLOW_ALL})
    validated = run("validate", str(repo), "--env", "prod", "--policies", str(policies))
    assert validated.exit_code == 0, validated.output

    # What the next step says: every imported resource is a conflict, so nothing would be applied.
    state = str(repo.parent / "state")
    planned = run("plan", str(repo), "--env", "prod", "--state-dir", state, "--policies", str(policies))
    assert "prod: +0 ~0 -0 ±0" in planned.output, planned.output
    for address in (
        "ServiceConnector.prod-gcp-connector",
        "StackComponent.prod-artifact-store",
        "StackComponent.scratch-store",
        "Stack.prod-stack",
        "Stack.scratch",
    ):
        assert f"! zenml.{address}\n      because a {address.split('.')[0]} named " in planned.output

    written = {p.name: p.read_text() for p in folder.iterdir()}
    again = import_(repo)  # what the specs now declare is not imported twice
    assert again.exit_code == 0, again.output
    assert "not imported: Stack prod-stack: prod's specs already declare it" in again.output
    assert "prod: nothing to import; nothing was written" in again.output
    assert {p.name: p.read_text() for p in folder.iterdir()} == written


def test_one_stack_and_what_it_uses_adopted_never_over_an_existing_file(repo: Path, tmp_path: Path):
    ours = write(repo / "prod" / "imported", {"README.md": "our own notes\n"})
    refused = import_(repo, "--stack", "scratch", "--out", str(ours))
    assert refused.exit_code == 2
    assert f"stackward: {ours / 'README.md'} already exists; nothing was written" in refused.output
    assert [(p.name, p.read_text()) for p in ours.iterdir()] == [("README.md", "our own notes\n")]

    out = repo / "prod" / "scratch"
    result = import_(repo, "--stack", "scratch", "--out", str(out), "--adopt")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "components.yaml", "stacks.yaml"]
    components = documents(out / "components.yaml")
    assert sorted(components) == ["${env.name}-orchestrator", "scratch-store"]
    assert components["scratch-store"]["metadata"] == {"name": "scratch-store", "adopt": True}
    assert sorted(documents(out / "stacks.yaml")) == ["scratch"]
    assert "prod: the specs validate" in result.output  # a folder inside prod's: part of it
    assert "it shows each imported resource as adopted (⇐)" in result.output

    policies = write(tmp_path / "policies", {"allow_all.rego": ALLOW_ALL})
    state = str(repo.parent / "state")
    planned = run("plan", str(repo), "--env", "prod", "--state-dir", state, "--policies", str(policies))
    assert planned.exit_code == 0, planned.output
    assert "prod: +0 ~0 -0 ±0 ⇐3" in planned.output
    for address in ("StackComponent.prod-orchestrator", "StackComponent.scratch-store", "Stack.scratch"):
        assert f"⇐ zenml.{address}  (adopt)" in planned.output
    changed = {line.split(":")[0].strip() for line in planned.output.splitlines() if " -> " in line}
    assert changed == {"labels.stackward.environment", "labels.stackward.managed-by", "labels.team"}
    applied = run("apply", str(repo), "--env", "prod", "--state-dir", state, "--policies", str(policies))
    assert applied.exit_code == 0, applied.output
    assert "prod: applied 3 change(s)" in applied.output
    again = run("plan", str(repo), "--env", "prod", "--state-dir", state, "--policies", str(policies))
    assert again.exit_code == 0 and "prod: +0 ~0 -0 ±0\n  no changes" in again.output, again.output

    unknown = import_(repo, "--stack", "scrach")
    assert unknown.exit_code == 2
    assert (
        "prod: no stack named 'scrach' in the ZenML store (did you mean 'scratch'?); nothing was imported"
        in (unknown.output)
    )


def test_an_environment_without_a_store_is_refused(tmp_path: Path):
    repo = write(tmp_path / "environments", {"prod/environment.yaml": ENVIRONMENT})
    result = run("import", "prod", str(repo), "--state-dir", str(tmp_path / "state"))
    assert result.exit_code == 2
    assert (
        f"prod: there is no ZenML store at {tmp_path / 'state/prod/zenml'}; nothing was imported"
        in result.output
    )
    assert not (tmp_path / "state").exists()


def test_import_from_a_zenml_server(tmp_path: Path, zenml_server: tuple[str, str], monkeypatch):
    url, key = zenml_server
    clear_registrations(url, key)
    zenml_run(tmp_path / "client", "prod", hand_made(tracker=False), zenml_server)
    server = f"  zenml:\n    mode: server\n    url: {url}\n    apiKeyEnv: ZENML_TEST_API_KEY\n"
    repo = write(tmp_path / "environments", {"prod/environment.yaml": ENVIRONMENT + server})
    monkeypatch.setenv("ZENML_TEST_API_KEY", key)
    result = run("import", "prod", str(repo), "--state-dir", str(tmp_path / "state"))
    assert result.exit_code == 0, result.output
    folder = repo / "prod"
    assert documents(folder / "connectors.yaml") == {"${env.name}-gcp-connector": CONNECTOR}
    assert sorted(documents(folder / "components.yaml")) == [
        "${env.name}-artifact-store",
        "${env.name}-orchestrator",
    ]
    assert sorted(documents(folder / "stacks.yaml")) == ["${env.name}-stack"]
    assert f"# from the ZenML server {url} (environment prod)." in (folder / "stacks.yaml").read_text()
    assert "prod: the specs validate" in result.output
    texts = [result.output, *(p.read_text() for p in folder.iterdir())]
    assert not [text for text in texts if CANARY in text or key in text]
