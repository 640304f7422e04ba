"""Issue #16: locks that free themselves when their holder dies, fencing (an apply proves it
still holds its lock before each change), and a ledger that misses no apply.

A slow apply is a `terraform_data` whose local-exec provisioner touches `started` in the
Terraform working folder, then waits until the test creates `go` there: the test knows when
an apply is inside `terraform apply`, and decides when it may go on.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from conftest import git, run, write
from postgres import _as_postgres, postgres_server
from zenml_tools import copy_store, zenml_state

from stackward.errors import Interrupted
from stackward.pipeline import Pipeline
from stackward.plan.run import EnvironmentRun
from stackward.settings import Settings
from stackward.state.ledger import Ledger
from stackward.state.local import LocalStore
from stackward.state.postgres import PostgresStore
from stackward.zenml.diff import operations, plan_registrations

HEAD = "apiVersion: stackward.dev/v1alpha1\n"
STACKWARD = str(Path(sys.executable).parent / "stackward")
GATE = """
resource "terraform_data" "gate" {
  input = "open"
  provisioner "local-exec" {
    command = "touch started; while [ ! -f go ]; do sleep 0.05; done"
  }
}
"""


def environment(name: str) -> str:
    return HEAD + (
        f"kind: Environment\nmetadata: {{name: {name}}}\nspec:\n  bases: []\n"
        "  zenml: {mode: embedded}\n  terraform: {backend: {type: local}}\n"
    )


GATED = HEAD + "kind: Infrastructure\nmetadata: {name: gate}\nspec: {source: ../_modules/gate}\n"


def builders(*names: str) -> str:
    return "---\n".join(
        HEAD
        + f"kind: StackComponent\nmetadata: {{name: {n}}}\nspec: {{type: image_builder, flavor: local}}\n"
        for n in names
    )


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository with the gate module and a policy folder whose one rule denies nothing;
    its environments folder (the tests add environments)."""
    root = tmp_path / "repo"
    write(
        root,
        {
            "environments/_modules/gate/main.tf": GATE,
            "policies/none.rego": "package stackward\n\ndeny contains msg if {\n\tmsg := input.never_set\n}\n",
        },
    )
    monkeypatch.setenv("STACKWARD_POLICIES", str(root / "policies"))
    git(tmp_path, "init", "-q", "-b", "master", str(root))
    return root / "environments"


def commit(envs: Path) -> str:
    git(envs.parent, "add", "-A")
    git(envs.parent, "commit", "-qm", "environments")
    return git(envs.parent, "rev-parse", "HEAD")


def terraform_dir(state: Path, env: str) -> Path:
    return state / env / "terraform"


def wait_for(what: Callable[[], bool], process: subprocess.Popen | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert process is None or process.poll() is None, "the apply ended before it got there"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def start(command: list[str]) -> subprocess.Popen:
    """A process in a session of its own (to kill it with all it started), output captured."""
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def killed(process: subprocess.Popen) -> None:
    """kill -9 of the process and what runs in its session."""
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


def ended(process: subprocess.Popen, *gates: Path) -> None:
    """After a test: the process killed if it still runs, and `gates` opened for a terraform
    it left waiting (terraform runs in a session of its own)."""
    if process.poll() is None:
        killed(process)
    for gate in gates:
        if gate.exists():
            (gate / "go").touch()


def as_pid_1(*command: str, host: str | None = None) -> list[str]:
    """`command` as pid 1 of a new PID namespace (as in a container), on `host` when given."""
    if host is None:
        return ["unshare", "--pid", "--fork", "--mount-proc", *command]
    script = f'hostname {shlex.quote(host)} && exec "$@"'
    return ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "sh", "-c", script, "sh", *command]


def apply_command(envs: Path, env: str, state: Path, *options: str) -> list[str]:
    return [STACKWARD, "apply", str(envs), "--env", env, "--state-dir", str(state), *options]


def test_a_killed_apply_leaves_no_lock_for_a_restart_as_pid_1_or_on_a_new_host(repo: Path, tmp_path: Path):
    write(repo, {"slow/environment.yaml": environment("slow"), "slow/infrastructure.yaml": GATED})
    commit(repo)
    state = tmp_path / "state"
    gate = terraform_dir(state, "slow")
    command = apply_command(repo, "slow", state, "--lock-timeout", "2")
    ledger = Ledger(LocalStore(state), "slow")

    first = start(as_pid_1(*command))  # a container's service, killed mid-apply
    wait_for((gate / "started").exists, first)
    holder = json.loads((state / "slow" / "lock").read_text())
    assert holder["pid"] == 1 and holder["command"] == "stackward apply slow"
    killed(first)
    (gate / "started").unlink()

    second = start(as_pid_1(*command))  # restarted: pid 1 again, on the same host
    wait_for((gate / "started").exists, second)  # it took the lock: it is applying
    assert [a["result"] for a in ledger.applies()] == ["interrupted", "running"]
    killed(second)

    (gate / "go").touch()
    third = subprocess.run(as_pid_1(*command, host="a-new-pod"), capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "slow: applied 1 change(s)" in third.stdout
    assert "locked" not in third.stderr and "unlock" not in third.stderr
    assert not (state / "slow" / "lock").exists()

    history = run("history", "slow", str(repo), "--state-dir", str(state))
    assert [line.split()[3] for line in history.output.strip().splitlines()] == [
        "interrupted",
        "interrupted",
        "success",
    ]
    applies = ledger.applies()
    assert [len(a["done"]) for a in applies] == [0, 0, 1] and "finished" not in applies[0]


class Server:
    """The tests' PostgreSQL server, to restart, stop and start as an outage would."""

    def __init__(self, url: str):
        self.url = url
        with psycopg.connect(url) as conn:
            self.data = conn.execute("SHOW data_directory").fetchone()[0]
        # how it was started (pg_ctl start -o …): the options postgres ran with
        self.options = shlex.join(shlex.split((Path(self.data) / "postmaster.opts").read_text())[1:])

    def _ctl(self, *args: str) -> None:
        log = str(Path(self.data).parent / "postgres.log")  # not our pipes: the server outlives pg_ctl
        command = ["pg_ctl", "-D", self.data, "-w", "-l", log, *args]
        subprocess.run(_as_postgres(command), check=True, capture_output=True, timeout=60)

    def restart(self) -> None:
        self._ctl("-m", "fast", "restart")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def start(self) -> None:
        self._ctl("-o", self.options, "start")

    def database(self) -> str:
        """The URL of a new, empty database."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return urlunsplit(urlsplit(self.url)._replace(path=f"/{name}"))


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with postgres_server() as url:
        yield Server(url)


def test_a_replica_that_lost_its_lock_in_a_database_restart_stops_before_its_next_change(
    repo: Path, tmp_path: Path, server: Server, store_template: Path
):
    """Replica A is inside `terraform apply` when PostgreSQL restarts, which frees A's lock;
    replica B takes it and applies. A's next change is a ZenML registration: it must not make it."""
    write(
        repo,
        {
            "fenced/environment.yaml": environment("fenced"),
            "fenced/infrastructure.yaml": GATED,
            "fenced/builder.yaml": builders("fenced-builder"),
        },
    )
    commit(repo)
    url = server.database()
    replica_a, replica_b = tmp_path / "replica-a", tmp_path / "replica-b"
    for state in (replica_a, replica_b):
        copy_store(store_template, state, "fenced")

    a = start(apply_command(repo, "fenced", replica_a, "--state-url", url))
    wait_for((terraform_dir(replica_a, "fenced") / "started").exists, a)
    server.restart()
    b = start(apply_command(repo, "fenced", replica_b, "--state-url", url, "--lock-timeout", "60"))
    try:
        wait_for((terraform_dir(replica_b, "fenced") / "started").exists, b)  # B holds the lock now
        # the history: A's apply lost its lease (it will stop), B's is under way
        under_way = Ledger(PostgresStore.at(url), "fenced").applies()
        assert [a["result"] for a in under_way] == ["interrupted", "running"]

        (terraform_dir(replica_a, "fenced") / "go").touch()  # A's terraform apply ends
        output_a, _ = a.communicate(timeout=120)
        assert a.returncode == 1, output_a
        assert "fenced: this run lost the environment's lock in PostgreSQL at 127.0.0.1:" in output_a
        assert "so it stopped before its next change" in output_a
        assert "stackward history fenced" in output_a and "Traceback" not in output_a
        assert "fenced-builder" not in zenml_state(replica_a, "fenced")["components"]

        (terraform_dir(replica_b, "fenced") / "go").touch()
        output_b, _ = b.communicate(timeout=120)
        assert b.returncode == 0, output_b
        assert "fenced: applied 2 change(s)" in output_b
    finally:
        ended(a, terraform_dir(replica_a, "fenced"))
        ended(b, terraform_dir(replica_b, "fenced"))
    assert "fenced-builder" in zenml_state(replica_b, "fenced")["components"]

    lost, applied = Ledger(PostgresStore.at(url), "fenced").applies()
    assert lost["result"] == "interrupted" and lost["error"].startswith(
        "fenced: this run lost the environment's lock"
    )
    assert lost["done"] == ["create module.gate.terraform_data.gate"]  # made before the restart was noticed
    assert applied["result"] == "success" and len(applied["done"]) == 2


def test_an_apply_whose_ledger_meets_a_database_outage_is_recorded_when_it_is_back(
    repo: Path, tmp_path: Path, server: Server
):
    write(repo, {"outage/environment.yaml": environment("outage"), "outage/infrastructure.yaml": GATED})
    revision = commit(repo)
    url = server.database()
    state = tmp_path / "state"
    gate = terraform_dir(state, "outage")
    apply = start(apply_command(repo, "outage", state, "--state-url", url))
    try:
        wait_for((gate / "started").exists, apply)
        server.stop()  # the database goes down while terraform applies
        try:
            (gate / "go").touch()
            tfstate = state / "outage" / "terraform.tfstate"
            wait_for(lambda: tfstate.exists() and "terraform_data" in tfstate.read_text(), apply)
            time.sleep(1)  # the change is made; recording it fails, and is tried again
        finally:
            server.start()
        output, _ = apply.communicate(timeout=120)
    finally:
        ended(apply, gate)
    assert apply.returncode == 0, output
    assert "outage: applied 1 change(s)" in output and "did not record" not in output
    (entry,) = Ledger(PostgresStore.at(url), "outage").applies()
    assert (entry["result"], entry["done"], entry["revision"]) == (
        "success",
        ["create module.gate.terraform_data.gate"],
        revision,
    )
    assert PostgresStore.at(url).applied("outage").revision == revision


def test_registration_calls_stop_at_the_first_call_after_the_lock_is_taken_away(
    repo: Path, tmp_path: Path, store_template: Path
):
    names = ["calls-builder-1", "calls-builder-2", "calls-builder-3"]
    write(repo, {"calls/environment.yaml": environment("calls"), "calls/builders.yaml": builders(*names)})
    state = tmp_path / "state"
    copy_store(store_template, state, "calls")
    pipeline = Pipeline(Settings.load(path=repo, state_dir=state))
    report = pipeline.checked("calls")
    (env,) = report.environments
    environment_run = EnvironmentRun(env, pipeline.workspace(report), "apply")
    store = LocalStore(state)
    done: list[str] = []

    def on_done(reply: dict) -> None:
        done.append(reply["done"])
        if len(done) == 2:
            store.release("calls", True)  # `stackward unlock --force` while the calls run

    with store.hold("calls", "stackward apply calls", 0) as lease, environment_run.zenml as zenml:
        wanted, actual = environment_run.desired({}), zenml.read()
        ops = operations(plan_registrations("calls", wanted, actual, {}), wanted, actual, "calls")
        assert len(ops) == 3
        with pytest.raises(Interrupted, match=r"^calls: this run no longer holds the environment's lock"):
            zenml.apply(ops, on_done, before=lease.check)
        assert done == [f"zenml.StackComponent.{n}" for n in names[:2]]
        registered = {r.name for r in zenml.read()}  # the same worker answers on: still in step
    assert set(names[:2]) <= registered and names[2] not in registered
