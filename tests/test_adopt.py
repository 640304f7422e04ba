"""Adopting ZenML resources registered by hand (issue 17): only when the spec says
`adopt: true`, shown in the plan with what changes, applied as an update that stamps the
ownership labels; the resource keeps its id, and nothing else registered by hand is touched.
On an embedded store and on the real ZenML server (tests/zenml_server.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import EXAMPLES, Result, run, write
from zenml_server import clear_registrations
from zenml_tools import copy_store, zenml_run

EMBEDDED = "  zenml:\n    mode: embedded\n"
ALLOW_ALL = (
    'package stackward.allow_all\n\nimport rego.v1\n\ndeny contains m if {\n\tm := "never"\n\tfalse\n}\n'
)
BY_HAND = """
import json
from zenml.client import Client
from zenml.enums import StackComponentType
c = Client()
made = c.create_stack_component(
    "local-orchestrator", "local", StackComponentType.ORCHESTRATOR, {}, labels={"team": "by-hand"}
)
c.create_stack_component("keep-me", "local", StackComponentType.ORCHESTRATOR, {}, labels={"team": "x"})
c.create_secret("hand-secret", {"token": "old-value", "extra": "dropped"})
print(json.dumps({"id": str(made.id)}))
"""
HAND_SECRET = """apiVersion: stackward.dev/v1alpha1
kind: Secret
metadata:
  name: hand-secret
  adopt: true
spec:
  values:
    token: {fromEnv: HAND_TOKEN}
"""
SECRET = """
import json
from zenml.client import Client
print(json.dumps(Client().get_secret("hand-secret").secret_values))
"""
LOOK = """
import json
from zenml.client import Client
from zenml.enums import StackComponentType
c = Client()
out = {}
for name in ("local-orchestrator", "keep-me"):
    m = c.get_stack_component(StackComponentType.ORCHESTRATOR, name)
    out[name] = {"id": str(m.id), "labels": m.labels}
stacks = c.list_stacks(name="local-stack").items
if stacks:
    out["stack"] = str(stacks[0].components[StackComponentType.ORCHESTRATOR][0].id)
print(json.dumps(out))
"""


class World:
    def __init__(self, root: Path, server: tuple[str, str] | None):
        self.repo, self.state, self.server = root / "environments", root / "state", server
        self.policies = write(root / "policies", {"allow_all.rego": ALLOW_ALL})

    def stackward(self, command: str) -> Result:
        return run(
            command,
            str(self.repo),
            "--env",
            "local",
            "--state-dir",
            str(self.state),
            "--policies",
            str(self.policies),
        )

    def zenml(self, code: str) -> dict:
        return json.loads(zenml_run(self.state, "local", code, self.server).strip().splitlines()[-1])

    def adopt(self) -> None:
        stack = self.repo / "local" / "stack.yaml"
        stack.write_text(
            stack.read_text().replace(
                "  name: local-orchestrator\n", "  name: local-orchestrator\n  adopt: true\n"
            )
        )
        (self.repo / "local" / "secret.yaml").write_text(HAND_SECRET)


@pytest.fixture(params=["embedded", "server"])
def world(request: pytest.FixtureRequest, tmp_path: Path, store_template: Path, monkeypatch) -> World:
    monkeypatch.setenv("HAND_TOKEN", "adopted-token-value")
    shutil.copytree(EXAMPLES / "local", tmp_path / "environments" / "local")
    shutil.copytree(EXAMPLES / "_modules", tmp_path / "environments" / "_modules")
    server = None
    if request.param == "server":
        server = request.getfixturevalue("zenml_server")
        clear_registrations(*server)
        spec = tmp_path / "environments/local/environment.yaml"
        mode = f"  zenml:\n    mode: server\n    url: {server[0]}\n    apiKeyEnv: ZENML_TEST_API_KEY\n"
        spec.write_text(spec.read_text().replace(EMBEDDED, mode))
        monkeypatch.setenv("ZENML_TEST_API_KEY", server[1])
    else:
        copy_store(store_template, tmp_path / "state", "local")
    return World(tmp_path, server)


def test_a_hand_made_resource_is_adopted_only_when_the_spec_says_so(world: World):
    made = world.zenml(BY_HAND)["id"]

    refused = world.stackward("apply")  # without adopt: true, a conflict; nothing applied
    assert refused.exit_code != 0
    assert "! zenml.StackComponent.local-orchestrator" in refused.output
    assert "registered by hand" in refused.output and "adopt: true" in refused.output
    assert world.zenml(LOOK)["local-orchestrator"]["labels"] == {"team": "by-hand"}

    world.adopt()
    plan = world.stackward("plan")
    assert "local: +3 ~0 -0 ±0 ⇐2" in plan.output, plan.output
    assert "⇐ zenml.Secret.hand-secret  (adopt)" in plan.output
    assert "⇐ zenml.StackComponent.local-orchestrator  (adopt)" in plan.output
    assert "labels.team: by-hand -> ml-platform" in plan.output
    assert "labels.stackward.managed-by: null -> stackward" in plan.output

    applied = world.stackward("apply")
    assert applied.exit_code == 0, applied.output
    after = world.zenml(LOOK)
    adopted = after["local-orchestrator"]
    assert adopted["id"] == made  # taken over, not made again
    assert adopted["labels"]["stackward.managed-by"] == "stackward"
    assert adopted["labels"]["stackward.environment"] == "local"
    assert adopted["labels"]["team"] == "ml-platform"
    assert after["stack"] == made  # the environment's stack uses the adopted component
    assert after["keep-me"]["labels"] == {"team": "x"}  # not in the specs: left alone
    assert world.zenml(SECRET) == {"token": "adopted-token-value"}  # converged to the spec

    again = world.stackward("plan")
    assert again.exit_code == 0, again.output
    assert "local: +0 ~0 -0 ±0" in again.output and "no changes" in again.output
