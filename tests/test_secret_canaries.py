"""Canary values in every kind of secret input, and a pull request that tries to read them.

The pull request adds a Terraform module that reads its own process environment into a
resource (what an attacker would do with `file("/proc/self/environ")`), and a connector and a
ZenML Secret whose password (multi-line, like a key file) comes from a variable. The canaries must appear in none
of the outputs: the PR comment, statuses, deployments, the job summary, the step outputs, the
log (but for `::add-mask::`, one per line), the plan file, the ledger, the state folder (but
for the ZenML store, where a connector's secret belongs), and the reconciler's status API,
history, dashboard and metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from action_world import HEAD, world_fixture  # noqa: F401  (the `world` fixture)
from conftest import git
from test_reconciler import ready, running_service

PASSWORD = "canary-pw-line-one-7f3a\ncanary-pw-line-two-9c1e"
RUNNER_SECRET = "canary-runner-secret-5d2b"  # a secret the runner holds that no spec references
SPY = """locals {
  seen = [for kv in split("\\u0000", file("/proc/self/environ")) : kv if length(regexall("TOKEN|CANARY|PASSWORD", kv)) > 0]
}
resource "terraform_data" "spy" {
  input = join(" ", local.seen)
}
"""
FILES = {
    "environments/_modules/spy/main.tf": SPY,
    "environments/local/spy.yaml": HEAD
    + "kind: Infrastructure\nmetadata: {name: spy}\nspec: {source: ../_modules/spy}\n",
    "environments/local/registry.yaml": HEAD
    + "kind: ServiceConnector\nmetadata: {name: local-registry}\nspec:\n  type: docker\n  authMethod: password\n"
    "  configuration: {registry: registry.example}\n"
    "  secrets:\n    username: {fromEnv: REGISTRY_USER}\n    password: {fromEnv: REGISTRY_PASSWORD}\n",
    "environments/local/secret.yaml": HEAD + "kind: Secret\nmetadata: {name: local-registry-login}\n"
    "spec:\n  values:\n    password: {fromEnv: REGISTRY_PASSWORD}\n",
}


def canaries() -> list[str]:
    return [*PASSWORD.splitlines(), RUNNER_SECRET]


def assert_clean(where: str, text: str) -> None:
    for canary in canaries():
        assert canary not in text, f"{canary!r} leaked into {where}"


def state_files(state: Path) -> str:
    """Every file stackward and Terraform keep, but the ZenML stores (they hold the secrets
    by design)."""
    return "\n".join(
        path.read_text(errors="replace")
        for path in sorted(state.rglob("*"))
        if path.is_file() and "zenml" not in path.relative_to(state).parts
    )


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_USER", "robot-user")
    monkeypatch.setenv("REGISTRY_PASSWORD", PASSWORD)
    monkeypatch.setenv("CANARY_RUNNER_SECRET", RUNNER_SECRET)


def test_no_output_of_the_action_shows_a_secret(world, secrets):
    head = world.commit(FILES, "a connector, and a module that reads its environment")
    logs = [world.pull_request("opened", world.base, head)]
    assert logs[0].exit_code == 0, logs[0].output
    (comment,) = world.github.our_comments(2)
    assert "module.spy.terraform_data.spy" in comment["body"]
    outputs = dict(line.split("=", 1) for line in world.outputs.read_text().splitlines() if "=" in line)
    plan_file = Path(outputs["plan-file"]).read_text()
    (spy,) = [c for c in json.loads(plan_file)["environments"][0]["changes"] if c["name"].endswith(".spy")]
    seen = next(f["after"] for f in spy["fields"] if f["path"] == "input")
    assert "GITHUB_TOKEN" not in seen and "CANARY_RUNNER_SECRET" not in seen  # Terraform never had them
    merge, push = world.merge(head)
    logs.append(world.deliver("push", push, merge))
    assert logs[1].exit_code == 0, logs[1].output
    assert "| **local** | ✅ applied |" in world.github.comments[2][-1]["body"]
    dispatch = {"inputs": {"environment": "local", "mode": "plan"}, "ref": "refs/heads/master"}
    logs.append(world.deliver("workflow_dispatch", dispatch, merge))
    assert logs[2].exit_code == 0, logs[2].output

    masks = [line for log in logs for line in log.output.splitlines() if line.startswith("::add-mask::")]
    for line in PASSWORD.splitlines():
        assert f"::add-mask::{line}" in masks  # the runner masks each line of a multi-line secret
    for number, log in enumerate(logs):
        assert_clean(f"log {number}", "\n".join(set(log.output.splitlines()) - set(masks)))
        assert "ghs_test_token" not in log.output.replace("::add-mask::ghs_test_token", "")
    github = world.github
    assert_clean("comments", json.dumps(github.comments))
    assert_clean("statuses", json.dumps(github.statuses))
    assert_clean("deployments", json.dumps([github.deployments, github.deployment_statuses]))
    assert_clean("job summary", world.summary.read_text())
    assert_clean("step outputs", world.outputs.read_text())
    assert_clean("plan file", plan_file)
    assert_clean("state folder", state_files(world.state))
    assert "ghs_test_token" not in state_files(world.state)
    assert (world.state / "local" / "ledger.jsonl").exists()


def test_no_output_of_the_reconciler_shows_a_secret(tmp_path: Path, store_template: Path, secrets):
    with running_service(tmp_path, store_template) as service:
        service.wait(ready(service, "Applied"))  # the first pass, at the first commit
        for name, text in FILES.items():
            (service.repo / name).parent.mkdir(parents=True, exist_ok=True)
            (service.repo / name).write_text(text)
        git(service.repo, "add", "-A")
        git(service.repo, "commit", "-qm", "a connector, and a module that reads its environment")
        service.reconcile()
        status = service.status()
        assert status["applied_revision"] == git(service.repo, "rev-parse", "HEAD"), status
        shown = {
            "status": json.dumps(status),
            "all statuses": service.http.get("/api/environments").text,
            "history": service.http.get("/api/environments/local/history").text,
            "dashboard": service.http.get("/").text,
            "environment page": service.http.get("/environments/local").text,
            "metrics": service.http.get("/metrics").text,
        }
        assert "module.spy.terraform_data.spy" in shown["status"]
        for where, text in shown.items():
            assert_clean(where, text)
        assert_clean("state folder", state_files(service.state))
