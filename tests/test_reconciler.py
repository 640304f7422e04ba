"""The reconciler service, run for real on a loopback port against a real ZenML store and real
Terraform: first sync, drift reported and healed, unowned resources left alone, the signed
GitHub webhook (real payloads), the token on mutating endpoints, metrics and the dashboard."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from conftest import git, local_repo
from fixtures_path import shared_fixtures
from zenml_tools import zenml_run, zenml_state

from reconciler.app import create_app
from reconciler.config import ServiceSettings

TOKEN = "api-t0ken"
SECRET = "webhook-s3cret"
PUSH = json.loads((shared_fixtures() / "github-webhooks" / "push.json").read_text())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    def __init__(self, url: str, repo: Path, state: Path):
        self.url, self.repo, self.state = url, repo, state
        self.http = httpx.Client(base_url=url, timeout=30)

    def status(self) -> dict:
        return self.http.get("/api/environments/local").json()

    def condition(self, type_: str) -> dict:
        return next((c for c in self.status()["conditions"] if c["type"] == type_), {})

    def wait(self, predicate: Callable[[], bool], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.3)
        raise AssertionError(f"timed out; status: {json.dumps(self.status(), indent=1)[:3000]}")

    def passes(self) -> int:
        for line in self.http.get("/metrics").text.splitlines():
            if line.startswith('stackward_reconcile_duration_seconds_count{environment="local"}'):
                return int(float(line.split()[-1]))
        return 0

    def reconcile(self) -> None:
        before = self.passes()
        assert (
            self.http.post(
                "/api/environments/local/reconcile", headers={"Authorization": f"Bearer {TOKEN}"}
            ).status_code
            == 202
        )
        self.wait(lambda: self.passes() > before)

    def hook(
        self, event: str, payload: dict, secret: str | None = SECRET, delivery: str | None = None
    ) -> httpx.Response:
        body = json.dumps(payload).encode()
        headers = {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "Content-Type": "application/json",
        }
        if secret is not None:
            headers["X-Hub-Signature-256"] = (
                "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            )
        return self.http.post("/webhooks/github", content=body, headers=headers)


@contextmanager
def running_service(tmp_path: Path, store_template: Path, **extra: object) -> Iterator[Service]:
    """A git repo with the local environment, and the service on a loopback port."""
    repo, state = local_repo(tmp_path, store_template)
    settings = ServiceSettings(
        path=repo / "environments",
        branch="master",
        state_dir=state,
        port=free_port(),
        interval=3600,
        coalesce_seconds=1.0,
        api_token=TOKEN,
        webhook_secret=SECRET,
        webhook_max_bytes=64 * 1024,
        **extra,
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    svc = Service(f"http://127.0.0.1:{settings.port}", repo, state)
    svc.wait(lambda: _up(svc), timeout=30)
    try:
        yield svc
    finally:
        server.should_exit = True
        thread.join(120)


@pytest.fixture
def service(tmp_path: Path, store_template: Path) -> Iterator[Service]:
    with running_service(tmp_path, store_template) as svc:
        yield svc


def _up(svc: Service) -> bool:
    try:
        return svc.http.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def ready(svc: Service, reason: str) -> Callable[[], bool]:
    return lambda: svc.condition("Ready") == {**svc.condition("Ready"), "status": "True", "reason": reason}


LABEL_EDIT = """
from zenml.client import Client
from zenml.enums import StackComponentType as T
Client().update_stack_component("local-orchestrator", T.ORCHESTRATOR, labels={"team": "someone-else"})
"""


def test_first_pass_applies_the_branch_head(service: Service):
    service.wait(ready(service, "Applied"))
    head = git(service.repo, "rev-parse", "HEAD")
    status = service.status()
    assert status["applied_revision"] == head and status["desired_revision"] == head
    (entry,) = service.http.get("/api/environments/local/history").json()
    assert entry["result"] == "applied" and entry["revision"] == head
    assert "create zenml.Stack.local-stack" in entry["changes"]
    assert "local-stack" in zenml_state(service.state, "local")["stacks"]
    service.reconcile()  # nothing to do the second time
    assert service.condition("Ready")["reason"] == "UpToDate"
    assert len(service.http.get("/api/environments/local/history").json()) == 1


def test_drift_is_healed_where_the_environment_says_heal(service: Service):
    service.wait(ready(service, "Applied"))
    zenml_run(service.state, "local", LABEL_EDIT)
    service.reconcile()
    assert service.condition("Ready")["reason"] == "DriftHealed"
    labels = zenml_state(service.state, "local")["components"]["local-orchestrator"]["labels"]
    assert labels["team"] == "ml-platform"
    assert service.http.get("/api/environments/local/history").json()[0]["result"] == "healed"


def test_drift_is_only_reported_where_the_environment_says_report(service: Service):
    service.wait(ready(service, "Applied"))
    env = service.repo / "environments/local/environment.yaml"
    env.write_text(env.read_text().replace("drift: heal", "drift: report"))
    git(service.repo, "commit", "-qam", "report drift only")
    service.reconcile()
    assert service.condition("Ready")["reason"] == "UpToDate"
    zenml_run(service.state, "local", LABEL_EDIT)
    zenml_run(
        service.state,
        "local",
        "from zenml.client import Client\nfrom zenml.enums import StackComponentType as T\n"
        "Client().create_stack_component('alice-builder', 'local', T.IMAGE_BUILDER, {})\n",
    )
    service.reconcile()
    drifted = service.condition("Drifted")
    assert drifted["status"] == "True" and drifted["reason"] == "DriftDetected"
    assert "update zenml.StackComponent.local-orchestrator" in drifted["message"]
    assert (
        "labels.team: someone-else -> ml-platform" in drifted["message"]
    )  # values as in plans, not Python reprs
    assert "alice-builder" not in drifted["message"]  # not ours: not drift, never touched
    assert service.condition("Ready")["status"] == "False"
    components = zenml_state(service.state, "local")["components"]
    assert components["local-orchestrator"]["labels"]["team"] == "someone-else"  # reported, not changed
    assert "alice-builder" in components
    metrics = service.http.get("/metrics").text
    assert 'stackward_drift{environment="local"} 1.0' in metrics


NO_NEW_STACKS = """package stackward.team_rules

import rego.v1

deny contains result if {
	some change in input.changes
	change.kind == "Stack"
	change.action == "create"
	result := {"msg": sprintf("stack %s: new stacks are made by the platform team", [change.name]), "policy_id": "T001"}
}
"""


def test_a_policies_folder_configured_for_the_reconciler_stops_its_apply(
    tmp_path: Path, store_template: Path
):
    """The reconciler reads the same policy settings as the CLI and the Action (here the
    `policies` setting; STACKWARD_POLICIES sets it the same way) and gates its applies on them."""
    policies = tmp_path / "team-policies"
    policies.mkdir()
    (policies / "team.rego").write_text(NO_NEW_STACKS)
    with running_service(tmp_path, store_template, policies=policies) as service:
        service.wait(lambda: service.condition("Ready").get("reason") == "ApplyRefused")
        ready = service.condition("Ready")
        assert ready["status"] == "False"
        assert "denied by policy, nothing was applied" in ready["message"]
        assert "stack local-stack: new stacks are made by the platform team [policy.T001]" in ready["message"]
        assert "local-stack" not in zenml_state(service.state, "local")["stacks"]
        assert service.http.get("/api/environments/local/history").json() == []


def test_the_webhook_checks_signatures_and_ignores_what_is_not_a_push_to_the_branch(service: Service):
    service.wait(ready(service, "Applied"))
    assert service.hook("ping", {"zen": "hi"}).json() == {"pong": True}
    assert service.hook("push", PUSH, secret=None).status_code == 401
    assert service.hook("push", PUSH, secret="forged").status_code == 401
    assert service.hook("push", PUSH).json() == {
        "ignored": "refs/tags/simple-tag was deleted"
    }  # the recording
    other = {**PUSH, "ref": "refs/heads/feature", "deleted": False}
    assert service.hook("push", other).json() == {
        "ignored": "refs/heads/feature is not the watched branch master"
    }
    oversized = {**PUSH, "padding": "x" * 70_000}
    assert service.hook("push", oversized).status_code == 413


def test_a_burst_of_pushes_causes_one_reconcile_and_repeats_are_ignored(service: Service):
    service.wait(ready(service, "Applied"))
    before = service.passes()
    push = {**PUSH, "ref": "refs/heads/master", "deleted": False}
    answers = [service.hook("push", push, delivery=f"delivery-{i}") for i in range(10)]
    assert {a.status_code for a in answers} == {202}
    assert service.hook("push", push, delivery="delivery-3").json() == {
        "ignored": "delivery already received"
    }
    service.wait(lambda: service.passes() > before)
    time.sleep(2.5)  # past the coalescing window: no second pass follows
    assert service.passes() == before + 1


def test_mutating_endpoints_need_the_token_and_suspend_stops_reconciles(service: Service):
    service.wait(ready(service, "Applied"))
    assert service.http.post("/api/environments/local/reconcile").status_code == 401
    assert (
        service.http.post(
            "/api/environments/local/suspend", headers={"Authorization": "Bearer nope"}
        ).status_code
        == 401
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert service.http.post("/api/environments/local/suspend", headers=auth).json()["suspended"] is True
    before = service.passes()
    service.http.post("/api/environments/local/reconcile", headers=auth)
    time.sleep(2.5)
    assert service.passes() == before  # suspended: nothing ran
    assert service.http.post("/api/environments/local/resume", headers=auth).json()["suspended"] is False
    service.wait(lambda: service.passes() > before)
    assert service.http.get("/api/environments/nowhere").status_code == 404


def test_health_metrics_and_the_dashboard(service: Service):
    service.wait(ready(service, "Applied"))
    assert service.http.get("/healthz").json() == {"status": "ok"}
    metrics = service.http.get("/metrics").text
    assert 'stackward_condition{environment="local",type="Ready"} 1.0' in metrics
    assert 'stackward_applies_total{environment="local"} 1.0' in metrics
    page = service.http.get("/").text
    assert "<table>" in page and "local" in page and "Ready" in page and "<script" not in page
    detail = service.http.get("/environments/local").text
    assert "History" in detail and "applied" in detail


def test_two_replicas_on_postgres_never_reconcile_the_same_environment_at_once(
    tmp_path: Path, store_template: Path
):
    from postgres import postgres_server

    from reconciler.metrics import Metrics
    from reconciler.service import Reconciler
    from reconciler.store import Store

    repo, state = local_repo(tmp_path, store_template)
    with postgres_server() as url:
        database = url.replace("postgres://", "postgresql+psycopg://").split("?")[0]
        settings = ServiceSettings(
            path=repo / "environments", branch="master", state_dir=state, database_url=database
        )
        replicas = [Reconciler(settings, Store(database), Metrics()) for _ in range(2)]
        with replicas[0].store.exclusive("local") as first, replicas[1].store.exclusive("local") as second:
            assert first and not second  # the advisory lock, across connections
        barrier = threading.Barrier(2)

        def run(replica: Reconciler) -> None:
            barrier.wait()
            replica.reconcile("local")

        threads = [threading.Thread(target=run, args=(r,)) for r in replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
        passes = [r.metrics.duration.labels("local")._sum.get() > 0 for r in replicas]
        assert passes.count(True) == 1  # exactly one replica reconciled it
        history = replicas[0].history("local")
        assert [h["result"] for h in history] == ["applied"]
        assert replicas[1].status("local").ready  # both see the shared status
        assert "local-stack" in zenml_state(state, "local")["stacks"]


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    from github_standin import GitHubStandIn

    monkeypatch.setenv("RECONCILER_GITHUB_TOKEN", "ghs_reconciler")
    with GitHubStandIn("acme/environments") as standin:
        yield standin


def test_drift_opens_one_github_issue_and_sets_a_status(github, tmp_path: Path, store_template: Path):
    """Against the GitHub API stand-in (tests/github_standin.py), as the Action's tests."""
    settings = {
        "github_repository": "acme/environments",
        "github_api_url": github.url,
        "github_token_env": "RECONCILER_GITHUB_TOKEN",
    }
    with running_service(tmp_path, store_template, **settings) as svc:
        svc.wait(ready(svc, "Applied"))
        env = svc.repo / "environments/local/environment.yaml"
        env.write_text(env.read_text().replace("drift: heal", "drift: report"))
        git(svc.repo, "commit", "-qam", "report drift only")
        svc.reconcile()
        zenml_run(svc.state, "local", LABEL_EDIT)
        svc.reconcile()
        svc.reconcile()  # still drifted: the same issue is updated, not a second one
        (issue,) = github.issues
        assert issue["title"] == "stackward: local drifted" and issue["labels"] == [
            {"name": "stackward:local"}
        ]
        assert "labels.team" in issue["body"]
        head = git(svc.repo, "rev-parse", "HEAD")
        assert ("stackward/local", "failure") in github.contexts(head)


def test_terraform_state_edited_by_hand_is_drift_and_is_healed(service: Service):
    service.wait(ready(service, "Applied"))
    tfstate = service.state / "local" / "terraform.tfstate"
    data = json.loads(tfstate.read_text())
    resource = next(r for r in data["resources"] if r["type"] == "terraform_data")
    resource["instances"][0]["attributes"]["input"]["value"]["environment"] = "edited-by-hand"
    data["serial"] += 1
    tfstate.write_text(json.dumps(data))
    service.reconcile()  # local heals drift
    assert service.condition("Ready")["reason"] == "DriftHealed"
    (healed, _) = service.http.get("/api/environments/local/history").json()
    assert healed["result"] == "healed"
    assert any("module.base.terraform_data.artifact_store" in c for c in healed["changes"])
    state = json.loads(tfstate.read_text())
    attributes = next(r for r in state["resources"] if r["type"] == "terraform_data")["instances"][0][
        "attributes"
    ]
    assert attributes["input"]["value"]["environment"] == "local"


def test_a_git_remote_is_cloned_and_followed(tmp_path: Path, store_template: Path):
    """With `remote` set, the service keeps its own clone at the branch head."""
    origin, state = local_repo(tmp_path, store_template, name="origin")
    settings = ServiceSettings(
        path=Path("environments"),
        remote=str(origin),
        branch="master",
        clone_dir=tmp_path / "clone",
        state_dir=state,
        interval=3600,
        coalesce_seconds=0.5,
    )
    from reconciler.metrics import Metrics
    from reconciler.service import Reconciler
    from reconciler.store import Store

    reconciler = Reconciler(settings, Store(f"sqlite:///{tmp_path / 'db.sqlite'}"), Metrics())
    reconciler.start()
    try:
        first = git(origin, "rev-parse", "HEAD")
        deadline = time.monotonic() + 120
        while reconciler.status("local").applied_revision != first and time.monotonic() < deadline:
            time.sleep(0.3)
        assert reconciler.status("local").applied_revision == first
        builder = (
            "apiVersion: stackward.dev/v1alpha1\nkind: StackComponent\nmetadata: {name: local-builder}\n"
            "spec: {type: image_builder, flavor: local}\n"
        )
        (origin / "environments/local/builder.yaml").write_text(builder)
        git(origin, "add", "-A")
        git(origin, "commit", "-qm", "add a builder")
        second = git(origin, "rev-parse", "HEAD")
        reconciler.request("local")  # as a push webhook would
        deadline = time.monotonic() + 120
        while reconciler.status("local").applied_revision != second and time.monotonic() < deadline:
            time.sleep(0.3)
        assert reconciler.status("local").applied_revision == second
        assert "local-builder" in zenml_state(state, "local")["components"]
    finally:
        reconciler.stop()


def test_a_restart_mid_apply_resumes_and_sigterm_finishes_the_pass(tmp_path: Path, store_template: Path):
    """The real `stackward serve` process: killed in the middle of an apply, started again, it
    converges without applying anything twice; SIGTERM lets the pass under way finish."""
    from stackward.state.ledger import Ledger
    from stackward.state.local import LocalStore

    many = "---\n".join(
        f"apiVersion: stackward.dev/v1alpha1\nkind: StackComponent\nmetadata: {{name: local-b{i}}}\n"
        "spec: {type: image_builder, flavor: local}\n"
        for i in range(40)
    )
    repo, state = local_repo(tmp_path, store_template, files={"environments/local/many.yaml": many})
    port = free_port()
    env = {
        **os.environ,
        "STACKWARD_PATH": str(repo / "environments"),
        "STACKWARD_STATE_DIR": str(state),
        "STACKWARD_BRANCH": "master",
        "STACKWARD_PORT": str(port),
        "STACKWARD_INTERVAL": "3600",
        "STACKWARD_API_TOKEN": TOKEN,
    }
    command = [str(Path(sys.executable).parent / "stackward"), "serve"]
    ledger = Ledger(LocalStore(state), "local")

    def zenml_steps() -> int:
        return len([e for e in ledger.entries() if e["event"] == "step" and "zenml." in e.get("change", "")])

    def wait_for(predicate: Callable[[], bool], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)

    first = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    wait_for(lambda: zenml_steps() >= 3)
    os.killpg(first.pid, signal.SIGKILL)  # a crash in the middle of the apply
    first.wait()
    assert [a["result"] for a in ledger.applies()] == ["interrupted"]
    second = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    svc = Service(f"http://127.0.0.1:{port}", repo, state)
    try:
        svc.wait(lambda: _up(svc), timeout=60)
        svc.wait(ready(svc, "Applied"))
        assert [a["result"] for a in ledger.applies()] == ["interrupted", "success"]
        zenml = zenml_state(state, "local")
        assert {f"local-b{i}" for i in range(40)} <= set(zenml["components"]) and "local-stack" in zenml[
            "stacks"
        ]
        # SIGTERM during a pass: the pass finishes, then the service exits.
        (repo / "environments/local/many.yaml").write_text(many.replace("local-b", "local-c"))
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "rename all")
        svc.http.post("/api/environments/local/reconcile", headers={"Authorization": f"Bearer {TOKEN}"})
        wait_for(lambda: len(ledger.applies()) == 3 and zenml_steps() >= 3 + 44)
        second.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit shows the signal.
        assert second.wait(120) in (0, -signal.SIGTERM)
        assert [a["result"] for a in ledger.applies()] == ["interrupted", "success", "success"]
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)


def test_settings_from_environment_variables_have_their_types(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STACKWARD_PATH", "/srv/environments")
    monkeypatch.setenv("STACKWARD_PORT", "9090")
    monkeypatch.setenv("STACKWARD_AUTO_SYNC", "false")
    monkeypatch.setenv("STACKWARD_INTERVAL", "60")
    monkeypatch.setenv("STACKWARD_STATE_DIR", "/srv/state")
    settings = ServiceSettings.load()
    assert settings.path == Path("/srv/environments") and settings.state_dir == Path("/srv/state")
    assert (settings.port, settings.auto_sync, settings.interval) == (9090, False, 60.0)


def test_stopping_one_environments_stuck_read_leaves_another_environments_read_alone(
    tmp_path: Path, store_template: Path
):
    """Concurrent passes share one store reader: a pass that times out stops its own read,
    never the read another pass is doing."""
    import sqlite3

    from zenml_tools import copy_store

    from stackward.plan.state import EnvironmentState
    from stackward.zenml.executor import StoreReader, ZenmlError

    for name in ("a", "b"):
        copy_store(store_template, tmp_path, name)
    database = {name: EnvironmentState(tmp_path, name).zenml_database for name in ("a", "b")}
    reader = StoreReader()
    try:
        assert reader.read("a", database["a"])  # the reader process is up
        holder = sqlite3.connect(database["a"], isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # someone writes to a's store: its read waits
        holder.execute("UPDATE stack_component SET name = name")
        failed: list[Exception] = []

        def read_a() -> None:
            try:
                reader.read("a", database["a"])
            except ZenmlError as exc:
                failed.append(exc)

        reading = threading.Thread(target=read_a)
        reading.start()
        time.sleep(0.5)  # (well within SQLite's 5 s busy timeout)
        reader.stop_read("b")  # b's pass timed out while waiting for the reader: a's read goes on
        reading.join(0.5)
        assert reading.is_alive() and not failed
        reader.stop_read("a")
        reading.join(30)
        assert [str(e) for e in failed] == ["a: reading ZenML registrations was stopped before it finished"]
        holder.execute("ROLLBACK")
        holder.close()
        assert reader.read("b", database["b"])  # a new reader process
    finally:
        reader.close()


def test_a_pass_stuck_reading_zenml_times_out_and_the_next_pass_recovers(
    tmp_path: Path, store_template: Path
):
    import sqlite3

    from reconciler.metrics import Metrics
    from reconciler.service import Reconciler
    from reconciler.status import Type
    from reconciler.store import Store
    from stackward.plan.state import EnvironmentState

    repo, state = local_repo(tmp_path, store_template)
    settings = ServiceSettings(path=repo / "environments", branch="master", state_dir=state)
    reconciler = Reconciler(settings, Store(f"sqlite:///{tmp_path / 'db.sqlite'}"), Metrics())
    try:
        assert reconciler.run_pass("local").ready
        # someone is writing to the ZenML database: the reader waits on SQLite's lock
        holder = sqlite3.connect(EnvironmentState(state, "local").zenml_database, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE stack_component SET name = name")
        settings.timeout = 2
        status = reconciler.run_pass("local")
        stalled = status.condition(Type.STALLED)
        assert stalled is not None and stalled.status
        assert stalled.message == "the pass did not finish within 2 s"
        ready = status.condition(Type.READY)
        assert not ready.status
        assert ready.message == "local: reading ZenML registrations was stopped before it finished"
        holder.execute("ROLLBACK")
        holder.close()
        settings.timeout = 600
        status = reconciler.run_pass("local")  # a new reader process; the environment converges again
        assert status.ready, status.to_dict()
        assert not status.condition(Type.STALLED)
    finally:
        reconciler.reader.close()


def test_an_unexpected_error_is_a_recorded_failure_and_the_environment_is_retried_later(
    tmp_path: Path, store_template: Path
):
    from reconciler.metrics import Metrics
    from reconciler.service import Reconciler
    from reconciler.status import Reason, Type
    from reconciler.store import Store

    repo, _ = local_repo(tmp_path, store_template)
    not_a_folder = tmp_path / "state-file"
    not_a_folder.write_text("a file where the state folder should be\n")
    settings = ServiceSettings(
        path=repo / "environments", branch="master", state_dir=not_a_folder, backoff=600
    )
    reconciler = Reconciler(settings, Store(f"sqlite:///{tmp_path / 'db.sqlite'}"), Metrics())
    try:
        status = reconciler.run_pass("local")
        ready = status.condition(Type.READY)
        assert not ready.status and ready.reason is Reason.RECONCILIATION_FAILED
        assert "state-file" in ready.message
        assert status.failures == 1
        assert reconciler._next() is None  # backed off, not retried in a tight loop
    finally:
        reconciler.reader.close()
