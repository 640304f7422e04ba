"""Connector secrets against a real ZenML server (tests/zenml_server.py) and an embedded store:
secret values reach the store, and never a plan, an output, the ledger or the state folder;
after an apply, planning again says no changes.

Two connectors: a docker one, whose type the server knows (it keeps the password in its secret
store), and a kubernetes one, whose type the server lacks (it keeps the token with the plain
configuration and sends it back on every read)."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from conftest import EXAMPLES, Result, run, write
from zenml_server import clear_registrations
from zenml_tools import copy_store, zenml_run

HEAD = "apiVersion: stackward.dev/v1alpha1\n"
EMBEDDED = "  zenml:\n    mode: embedded\n"
CONNECTORS = HEAD + (
    "kind: ServiceConnector\nmetadata: {name: local-registry}\nspec:\n  type: docker\n  authMethod: password\n"
    "  configuration: {registry: registry.example}\n"
    "  secrets:\n    username: {fromEnv: REGISTRY_USER}\n    password: {fromEnv: REGISTRY_PASSWORD}\n"
    "---\n" + HEAD + "kind: ServiceConnector\nmetadata: {name: local-cluster}\nspec:\n  type: kubernetes\n"
    "  authMethod: token\n  configuration: {server: 'https://kubernetes.example', cluster_name: test}\n"
    "  secrets:\n    token: {fromEnv: CLUSTER_TOKEN}\n"
)
# The policy gate is not under test here: one policy that denies nothing.
ALLOW_ALL = (
    'package stackward.allow_all\n\nimport rego.v1\n\ndeny contains m if {\n\tm := "never"\n\tfalse\n}\n'
)
REGISTERED_SECRETS = """
import json
from zenml.client import Client
client = Client()
print(json.dumps({
    name: client.get_service_connector(name, expand_secrets=True).configuration.plain_secrets
    for name in ("local-registry", "local-cluster")
}))
"""


class Setup:
    """An environments folder whose `local` environment has both connectors, on an embedded
    store or on the ZenML server; its state folder and policies."""

    def __init__(self, root: Path, server: tuple[str, str] | None):
        self.repo = root / "environments"
        self.state = root / "state"
        self.policies = write(root / "policies", {"allow_all.rego": ALLOW_ALL})
        self.server = server

    def _run(self, command: str, *args: str) -> Result:
        return run(
            command,
            str(self.repo),
            "--env",
            "local",
            "--state-dir",
            str(self.state),
            "--policies",
            str(self.policies),
            *args,
        )

    def plan(self, out: Path) -> Result:
        return self._run("plan", "--out", str(out))

    def apply(self) -> Result:
        return self._run("apply")

    def registered_secrets(self) -> dict[str, dict[str, str]]:
        """Each connector's secret values as the store holds them, read with ZenML's client."""
        output = zenml_run(self.state, "local", REGISTERED_SECRETS, self.server)
        return json.loads(output.strip().splitlines()[-1])

    def files(self) -> list[Path]:
        """Every file under the state folder but those of an embedded store (where secrets belong)."""
        store = self.state / "local" / "zenml" / "local_stores"
        return [p for p in self.state.rglob("*") if p.is_file() and not p.is_relative_to(store)]


@pytest.fixture(params=["embedded", "server"])
def setup(request: pytest.FixtureRequest, tmp_path: Path, store_template: Path, monkeypatch) -> Setup:
    """`local` with both connectors, on a fresh embedded store or on the emptied ZenML server."""
    shutil.copytree(EXAMPLES / "local", tmp_path / "environments" / "local")
    shutil.copytree(EXAMPLES / "_modules", tmp_path / "environments" / "_modules")
    server = None
    if request.param == "server":
        server = request.getfixturevalue("zenml_server")
        clear_registrations(*server)
        environment = tmp_path / "environments/local/environment.yaml"
        text = environment.read_text()
        assert EMBEDDED in text
        server_mode = f"  zenml:\n    mode: server\n    url: {server[0]}\n    apiKeyEnv: ZENML_TEST_API_KEY\n"
        environment.write_text(text.replace(EMBEDDED, server_mode))
        monkeypatch.setenv("ZENML_TEST_API_KEY", server[1])
    else:
        copy_store(store_template, tmp_path / "state", "local")
    write(tmp_path / "environments", {"local/connectors.yaml": CONNECTORS})
    monkeypatch.setenv("REGISTRY_USER", "robot")
    return Setup(tmp_path, server)


def _canary() -> str:
    return f"canary-{uuid.uuid4().hex}"


def _assert_nowhere(canaries: list[str], setup: Setup, texts: list[str]) -> None:
    """No canary in `texts`, nor in any file under the state folder (the ledger included)."""
    files = setup.files()
    assert setup.state / "local" / "ledger.jsonl" in files
    contents = [*texts, *(p.read_text(errors="replace") for p in files)]
    for canary in canaries:
        assert not [text for text in contents if canary in text], canary


def _assert_no_changes(result: Result) -> None:
    assert result.exit_code == 0, result.output
    assert "local: +0 ~0 -0 ±0" in result.output and "no changes" in result.output, result.output


def _changes(plan_file: Path) -> dict[str, dict]:
    """The changes a plan file holds, by address (no-ops left out)."""
    plan = json.loads(plan_file.read_text())
    return {c["address"]: c for e in plan["environments"] for c in e["changes"] if c["action"] != "no-op"}


def test_secret_values_reach_the_store_and_nothing_else(setup: Setup, tmp_path: Path, monkeypatch):
    password, token = _canary(), _canary()
    monkeypatch.setenv("REGISTRY_PASSWORD", password)
    monkeypatch.setenv("CLUSTER_TOKEN", token)
    first = setup.plan(tmp_path / "plan.json")
    assert first.exit_code == 0, first.output
    assert 'secrets: {"password": "(sensitive)", "username": "(sensitive)"}' in first.output
    assert 'secrets: {"token": "(sensitive)"}' in first.output
    applied = setup.apply()
    assert applied.exit_code == 0, applied.output
    assert "local: applied 6 change(s)" in applied.output
    second = setup.plan(tmp_path / "again.json")
    texts = [first.output, applied.output, second.output]
    texts += [(tmp_path / name).read_text() for name in ("plan.json", "again.json")]
    _assert_nowhere([password, token], setup, texts)
    _assert_no_changes(second)
    assert _changes(tmp_path / "again.json") == {}
    assert setup.registered_secrets() == {
        "local-registry": {"username": "robot", "password": password},
        "local-cluster": {"token": token},
    }


def test_a_rotated_secret_shows_only_as_changed(setup: Setup, tmp_path: Path, monkeypatch):
    old, new = _canary(), _canary()
    monkeypatch.setenv("REGISTRY_PASSWORD", _canary())
    monkeypatch.setenv("CLUSTER_TOKEN", old)
    assert setup.apply().exit_code == 0
    # The same value read from another variable: nothing to change.
    monkeypatch.setenv("CLUSTER_TOKEN_NEXT", old)
    connectors = CONNECTORS.replace("{fromEnv: CLUSTER_TOKEN}", "{fromEnv: CLUSTER_TOKEN_NEXT}")
    write(setup.repo, {"local/connectors.yaml": connectors})
    same = setup.plan(tmp_path / "same.json")
    _assert_no_changes(same)
    # A new value behind the reference: compared with the live one in the worker, shown as changed.
    monkeypatch.setenv("CLUSTER_TOKEN_NEXT", new)
    changed = setup.plan(tmp_path / "changed.json")
    assert changed.exit_code == 0, changed.output
    assert "~ zenml.ServiceConnector.local-cluster" in changed.output
    assert "secrets.token: (sensitive) -> (sensitive, changed)" in changed.output
    cluster = _changes(tmp_path / "changed.json")
    assert list(cluster) == ["zenml.ServiceConnector.local-cluster"]
    assert cluster["zenml.ServiceConnector.local-cluster"]["fields"] == [
        {"path": "secrets.token", "before": "(sensitive)", "after": "(sensitive, changed)"}
    ]
    applied = setup.apply()
    assert applied.exit_code == 0, applied.output
    again = setup.plan(tmp_path / "again.json")
    texts = [same.output, changed.output, applied.output, again.output]
    texts += [(tmp_path / name).read_text() for name in ("same.json", "changed.json", "again.json")]
    _assert_nowhere([old, new], setup, texts)
    _assert_no_changes(again)
    assert setup.registered_secrets()["local-cluster"] == {"token": new}
