"""The reconciler at run time, with real Terraform applies made slow by a `local-exec` sleep:
suspend sent while a pass runs, SIGTERM of the real `stackward serve` process during an apply
(and a pass that cannot end within the grace period), Ctrl-C of the CLI during an apply,
environments reconciled at once, and plans that wait for approval.

Each test sleeps for its own odd number of seconds, so the `sleep` processes it looks for are
its own even when other tests run at the same time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from conftest import git, write
from test_reconciler import TOKEN, free_port

from reconciler.config import ServiceSettings
from reconciler.dashboard import environment_page
from reconciler.metrics import Metrics
from reconciler.service import ApprovalRefused, Reconciler
from reconciler.status import EnvironmentStatus, Reason, Type
from reconciler.store import Store
from stackward.state.ledger import Ledger
from stackward.state.local import LocalStore

SLOW_MODULE = """variable "seconds" {
  type = number
}

resource "terraform_data" "slow" {
  triggers_replace = var.seconds
  provisioner "local-exec" {
    command = "sleep ${var.seconds}"
  }
}
"""
ENVIRONMENT = """apiVersion: stackward.dev/v1alpha1
kind: Environment
metadata:
  name: {name}
spec:
  bases: []
  zenml:
    mode: embedded
  terraform:
    backend:
      type: local
  labels:
    environment: {name}
    team: ml-platform
"""
SLOW = """apiVersion: stackward.dev/v1alpha1
kind: Infrastructure
metadata:
  name: slow
spec:
  source: ../_modules/slow
  variables:
    seconds: {seconds}
"""


def slow_repo(root: Path, seconds: dict[str, float]) -> tuple[Path, Path]:
    """A git repository (branch master) with one environment per entry, each holding only a
    Terraform module whose apply sleeps that many seconds: (repository, state folder)."""
    repo = root / "repo"
    files = {"environments/_modules/slow/main.tf": SLOW_MODULE}
    for name, wait in seconds.items():
        files[f"environments/{name}/environment.yaml"] = ENVIRONMENT.format(name=name)
        files[f"environments/{name}/slow.yaml"] = SLOW.format(seconds=wait)
    write(repo, files)
    git(root, "init", "-q", "-b", "master", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "environments")
    return repo, root / "state"


def change_seconds(repo: Path, name: str, seconds: float) -> None:
    """Commit a new sleep for `name`: its next plan replaces the resource."""
    write(repo, {f"environments/{name}/slow.yaml": SLOW.format(seconds=seconds)})
    git(repo, "commit", "-qam", f"{name} sleeps {seconds} s")


@contextmanager
def reconciler_for(repo: Path, state: Path, **extra: object) -> Iterator[Reconciler]:
    settings = ServiceSettings(
        **{
            "path": repo / "environments",
            "branch": "master",
            "state_dir": state,
            "policy_gate": False,  # the default policies deny local-exec, which makes the applies slow
            "interval": 3600,
            "coalesce_seconds": 0.2,
            "fetch_interval": 0,
            **extra,
        }
    )
    reconciler = Reconciler(settings, Store(f"sqlite:///{state.parent / 'reconciler.db'}"), Metrics())
    try:
        yield reconciler
    finally:
        reconciler.stop()


def sleeping(seconds: float) -> list[psutil.Process]:
    """The `sleep` processes of a slow apply of `seconds` (on this whole machine)."""
    wanted = ["sleep", f"{seconds:g}"]
    return [proc for proc in psutil.process_iter(["cmdline"]) if proc.info["cmdline"] == wanted]


def wait_for(predicate: Callable[[], object], timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
        time.sleep(0.05)


def reconciling(reconciler: Reconciler, name: str) -> bool:
    condition = reconciler.status(name).condition(Type.RECONCILING)
    return bool(condition and condition.status)


def applies(state: Path, name: str) -> list[dict]:
    return Ledger(LocalStore(state), name).applies()


def passes(reconciler: Reconciler, name: str) -> int:
    """Passes over `name` so far, from the service's metrics."""
    for metric in reconciler.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "stackward_reconcile_duration_seconds_count" and sample.labels == {
                "environment": name
            }:
                return int(sample.value)
    return 0


def in_background(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


# -- suspend while a pass runs --------------------------------------------------------------------


def test_a_suspend_sent_during_an_apply_is_kept_when_the_pass_records_its_result(tmp_path: Path):
    repo, state = slow_repo(tmp_path, {"a": 3.01})
    with reconciler_for(repo, state) as reconciler:
        thread = in_background(lambda: reconciler.run_pass("a"))
        wait_for(lambda: sleeping(3.01), what="the apply")
        # the history shows the apply under way as running (not interrupted), its lease held
        assert [a["result"] for a in applies(state, "a")] == ["running"]
        assert [h["result"] for h in reconciler.history("a")] == ["running"]
        assert reconciler.set_suspended("a", True).suspended
        thread.join(60)
        status = reconciler.status("a")
        assert status.suspended  # the pass saved its result without undoing the suspend
        assert status.condition(Type.READY).reason is Reason.APPLIED  # the apply under way finished
        assert not status.condition(Type.RECONCILING).status
        before = passes(reconciler, "a")
        change_seconds(repo, "a", 3.02)
        reconciler.run_pass("a")
        assert passes(reconciler, "a") == before  # suspended: no pass
        assert [a["result"] for a in applies(state, "a")] == ["success"]
        assert not reconciler.set_suspended("a", False).suspended


def test_a_suspend_sent_while_a_pass_plans_stops_its_apply(tmp_path: Path):
    repo, state = slow_repo(tmp_path, {"a": 3.03})
    with reconciler_for(repo, state, lock_timeout=60) as reconciler:
        with LocalStore(state).hold("a", "a test holding the environment", 5):
            thread = in_background(lambda: reconciler.run_pass("a"))  # waits for the lock to plan
            wait_for(lambda: reconciling(reconciler, "a"), what="the pass")
            reconciler.set_suspended("a", True)
        thread.join(60)
        status = reconciler.status("a")
        assert status.suspended
        ready = status.condition(Type.READY)
        assert (ready.status, ready.reason) == (False, Reason.SUSPENDED)
        assert ready.message.startswith("suspended while planning: +1 ~0 -0 ±0 at ")
        assert ready.message.endswith("was not applied")
        assert applies(state, "a") == []  # nothing was applied
        assert not sleeping(3.03)


# -- shutdown -------------------------------------------------------------------------------------


def test_sigterm_stops_the_apply_gracefully_and_the_service_exits_within_its_grace_period(
    tmp_path: Path,
):
    """The real `stackward serve` process, as `docker stop` and Kubernetes stop it."""
    repo, state = slow_repo(tmp_path, {"a": 43.21})
    grace = 12
    env = {
        **os.environ,
        "STACKWARD_PATH": str(repo / "environments"),
        "STACKWARD_STATE_DIR": str(state),
        "STACKWARD_BRANCH": "master",
        "STACKWARD_PORT": str(free_port()),
        "STACKWARD_INTERVAL": "3600",
        "STACKWARD_API_TOKEN": TOKEN,
        "STACKWARD_POLICY_GATE": "false",
        "STACKWARD_SHUTDOWN_GRACE": str(grace),
    }
    service = subprocess.Popen(
        [str(Path(sys.executable).parent / "stackward"), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: sleeping(43.21), what="the apply")
        (sleep,) = sleeping(43.21)
        (terraform,) = [p for p in sleep.parents() if p.name() == "terraform"]
        started = time.monotonic()
        service.send_signal(signal.SIGTERM)
        # uvicorn shuts down, then re-raises SIGTERM so the exit shows the signal
        assert service.wait(grace + 30) in (0, -signal.SIGTERM)
        took = time.monotonic() - started
    finally:
        if service.poll() is None:
            os.killpg(service.pid, signal.SIGKILL)
    assert took < grace  # Terraform stopped when asked: nobody waited for the sleep
    assert not sleeping(43.21)  # no provisioner child left behind
    assert not terraform.is_running()
    status = Store(f"sqlite:///{state / 'reconciler.db'}").load("a")
    assert status is not None
    assert not status.condition(Type.RECONCILING).status  # not stuck at Reconciling
    ready = status.condition(Type.READY)
    assert (ready.status, ready.reason) == (False, Reason.INTERRUPTED)
    assert ready.message.startswith(
        "a: terraform apply was interrupted (the service is shutting down); it stopped gracefully"
    )
    assert status.failures == 0  # a shutdown is not a failure: no backoff after the restart
    (apply,) = applies(state, "a")
    assert apply["result"] == "interrupted"
    assert apply["error"].startswith("a: terraform apply was interrupted (the service is shutting down)")


def test_a_pass_that_does_not_end_within_the_grace_period_is_recorded_as_interrupted(tmp_path: Path):
    repo, state = slow_repo(tmp_path, {"a": 3.04})
    with reconciler_for(repo, state, lock_timeout=60, shutdown_grace=1) as reconciler:
        with LocalStore(state).hold("a", "a test holding the environment", 5):
            reconciler.start()
            wait_for(lambda: reconciling(reconciler, "a"), what="the pass")  # waiting for the lock
            started = time.monotonic()
            reconciler.stop()
            took = time.monotonic() - started
        assert took < 15
        status = reconciler.status("a")
        assert not status.condition(Type.RECONCILING).status
        ready = status.condition(Type.READY)
        assert (ready.status, ready.reason) == (False, Reason.INTERRUPTED)
        assert "did not end within the 1 s shutdown grace period" in ready.message
        assert not reconciler.running
        time.sleep(1)  # the abandoned pass got the lock back: it starts no Terraform and records nothing
        assert reconciler.status("a").condition(Type.READY).reason is Reason.INTERRUPTED
        assert applies(state, "a") == [] and not sleeping(3.04)


def test_ctrl_c_of_the_cli_stops_terraform_gracefully(tmp_path: Path):
    """The terminal sends SIGINT to the CLI's process group; Terraform, in its own session,
    is asked to stop by stackward, and nothing is left running."""
    repo, state = slow_repo(tmp_path, {"a": 44.32})
    # as a terminal's foreground job: Ctrl-C's signal not ignored, even when the test suite was
    # started in the background of a shell (which starts its jobs with SIGINT ignored)
    from_a_terminal = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    cli = subprocess.Popen(
        [
            sys.executable,
            "-c",
            from_a_terminal,
            str(Path(sys.executable).parent / "stackward"),
            "apply",
            str(repo / "environments"),
        ],
        env={**os.environ, "STACKWARD_POLICY_GATE": "false", "STACKWARD_STATE_DIR": str(state)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(lambda: sleeping(44.32), what="the apply")
        started = time.monotonic()
        os.killpg(cli.pid, signal.SIGINT)
        output, _ = cli.communicate(timeout=30)
        took = time.monotonic() - started
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
    assert took < 10 and cli.returncode == 1
    assert "Traceback" not in output
    assert (
        "stackward: a: terraform apply was interrupted (Ctrl-C); it stopped gracefully and released "
        "its state lock" in output
    )
    assert not sleeping(44.32)
    (apply,) = applies(state, "a")
    assert apply["result"] == "interrupted"


# -- concurrency ----------------------------------------------------------------------------------


def test_environments_reconcile_at_once_and_one_environment_never_twice_at_once(tmp_path: Path):
    repo, state = slow_repo(tmp_path, {"a": 6.05, "b": 6.06})
    seen: list[tuple[int, int]] = []  # (sleeps of a, sleeps of b), sampled while they apply
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            seen.append((len(sleeping(6.05)), len(sleeping(6.06))))
            time.sleep(0.05)

    with reconciler_for(repo, state, concurrency=4) as reconciler:
        sampler = in_background(sample)
        reconciler.start()
        wait_for(lambda: sleeping(6.05), what="a's apply")
        for _ in range(3):  # asked again while its pass runs, with slots free
            reconciler.request("a")
            time.sleep(0.3)
        wait_for(lambda: passes(reconciler, "b") == 1, what="b's pass")
        wait_for(lambda: passes(reconciler, "a") == 2, what="the pass asked for during a's pass")
        assert reconciler.status("a").ready and reconciler.status("b").ready
        time.sleep(1)
        sampling.set()
        sampler.join(10)
        assert passes(reconciler, "a") == 2  # the requests made while it ran: one pass, after it
        assert passes(reconciler, "b") == 1
    assert (1, 1) in seen  # both applies ran at the same time
    assert max(a for a, _ in seen) == 1 and max(b for _, b in seen) == 1
    assert [x["result"] for x in applies(state, "a")] == ["success"]  # the second pass had nothing to do


# -- approval -------------------------------------------------------------------------------------


def awaiting(status: EnvironmentStatus) -> str:
    ready = status.condition(Type.READY)
    assert (ready.status, ready.reason) == (False, Reason.AWAITING_APPROVAL), status.to_dict()
    assert status.awaiting_approval == status.last_plan["hash"]
    return status.awaiting_approval


def test_a_plan_waits_for_approval_and_only_the_approved_plan_is_applied(tmp_path: Path):
    repo, state = slow_repo(tmp_path, {"prod": 0.11, "dev": 0.12})
    with reconciler_for(repo, state, require_approval=["prod*"]) as reconciler:
        assert reconciler.run_pass("dev").ready  # no approval needed: applied
        first = awaiting(reconciler.run_pass("prod"))
        message = reconciler.status("prod").condition(Type.READY).message
        assert f'POST /api/environments/prod/approve with {{"plan_hash": "{first}"}}' in message
        assert "+1 ~0 -0 ±0" in message
        assert applies(state, "prod") == []
        reconciler.run_pass("prod")
        assert awaiting(reconciler.status("prod")) == first  # still waiting, still not applied
        assert applies(state, "prod") == []
        page = environment_page(reconciler.status("prod"), [], "")
        assert f"This plan waits for approval: {first}." in page
        assert "POST /api/environments/prod/approve" in page

        with pytest.raises(ApprovalRefused) as refused:
            reconciler.approve("prod", "0" * 64)
        assert str(refused.value) == (
            f"prod: plan 000000000000 is not the plan waiting for approval; {first[:12]} is (its "
            "changes are in GET /api/environments/prod): review it and approve its hash"
        )
        with pytest.raises(ApprovalRefused, match="'latest' is not a plan hash"):
            reconciler.approve("prod", "latest")
        with pytest.raises(ApprovalRefused, match="dev does not require approval"):
            reconciler.approve("dev", first)
        assert reconciler.status("prod").approved_plan == ""

        # approved, then the specs move before the next pass: the approval is stale
        assert reconciler.approve("prod", first).approved_plan == first
        change_seconds(repo, "prod", 0.13)
        second = awaiting(reconciler.run_pass("prod"))
        assert second != first
        assert (
            reconciler.status("prod")
            .condition(Type.READY)
            .message.startswith(
                f"the plan approved ({first[:12]}) is no longer what applying would do; plan {second[:12]}"
            )
        )
        assert reconciler.status("prod").approved_plan == ""
        assert applies(state, "prod") == []

        reconciler.approve("prod", second)
        status = reconciler.run_pass("prod")
        assert status.condition(Type.READY).reason is Reason.APPLIED
        (apply,) = applies(state, "prod")
        assert (apply["result"], apply["plan_hash"]) == ("success", second)
        stored = reconciler.status("prod")
        assert (stored.awaiting_approval, stored.approved_plan) == ("", "")  # an approval is for once
        with pytest.raises(ApprovalRefused, match="no plan waits for approval"):
            reconciler.approve("prod", second)
