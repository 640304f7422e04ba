"""The ZenML fork server (stackward.zenml.forkserver): ZenML workers forked from one process that
imported zenml once, each working on the store its request names and with no variable of the
parent process. Real processes and real embedded stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from zenml_tools import copy_store, zenml_run

from stackward.plan.state import EnvironmentState
from stackward.zenml.executor import base_environment
from stackward.zenml.forkserver import ForkedProcess, ForkServer

CANARY = "canary-forkserver-7d1c0e"  # a credential of the parent process; no worker may hold it


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForkServer]:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CANARY)
    monkeypatch.setenv("ZENML_STORE_API_KEY", CANARY)
    started = ForkServer()
    yield started
    started.close()


def read(worker: ForkedProcess) -> list[str]:
    """The names of what the worker's store holds, through the worker protocol."""
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write(json.dumps({"op": "read"}) + "\n")
    worker.stdin.flush()
    reply = json.loads(worker.stdout.readline())
    return sorted(r["name"] for r in reply["registrations"])


def end(worker: ForkedProcess) -> None:
    assert worker.stdin is not None
    worker.stdin.close()
    worker.wait(timeout=30)


def reaped(pid: int, within: float = 10.0) -> bool:
    """Whether the process is gone from /proc: the fork server reaps in its SIGCHLD handler, a
    moment after the worker's pidfd said it ended."""
    deadline = time.monotonic() + within
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def test_each_worker_reads_the_store_its_request_names_without_the_parents_variables(
    server: ForkServer, tmp_path: Path, store_template: Path
):
    for name in ("a", "b"):
        copy_store(store_template, tmp_path, name)
    zenml_run(
        tmp_path,
        "b",
        "from zenml.client import Client\nfrom zenml.enums import StackComponentType\n"
        "Client().create_stack_component('only-in-b', 'local', StackComponentType.IMAGE_BUILDER, {})",
    )
    workers = {
        name: server.start([], base_environment(EnvironmentState(tmp_path, name).zenml_config))
        for name in ("a", "b")
    }
    names = {name: read(worker) for name, worker in workers.items()}
    assert "only-in-b" in names["b"] and "only-in-b" not in names["a"]
    assert sorted([*names["a"], "only-in-b"]) == names["b"]
    assert server._server is not None
    for pid in (server._server.pid, *(w.pid for w in workers.values())):
        assert CANARY.encode() not in environ(pid)
    for worker in workers.values():
        end(worker)
        assert reaped(worker.pid)  # ended, and no zombie left by the fork server


def test_a_worker_is_killed_and_waited_for(server: ForkServer, tmp_path: Path, store_template: Path):
    copy_store(store_template, tmp_path, "a")
    worker = server.start([], base_environment(EnvironmentState(tmp_path, "a").zenml_config))
    with pytest.raises(subprocess.TimeoutExpired):
        worker.wait(timeout=0.2)  # it waits for requests
    worker.kill()
    worker.wait(timeout=30)
    worker.kill()  # once it ended, nothing to kill: no error
    assert worker.stdout is not None and worker.stdout.read() == ""


def test_a_fork_server_that_died_is_started_again(server: ForkServer, tmp_path: Path, store_template: Path):
    copy_store(store_template, tmp_path, "a")
    environment = base_environment(EnvironmentState(tmp_path, "a").zenml_config)
    end(server.start([], environment))
    assert server._server is not None
    first = server._server.pid
    os.kill(first, 9)
    server._server.wait()
    worker = server.start([], environment)
    assert server._server.pid != first
    assert "default" in read(worker)
    end(worker)


def test_no_worker_outlives_the_process_that_asked_for_it(tmp_path: Path, store_template: Path):
    """kill -9 of the client (a CLI killed mid-apply) while its worker is busy in a ZenML call:
    the fork server exits and the kernel ends the worker at once, so no ZenML call goes on
    under a lock that was freed (without that, the worker would finish its call first)."""
    import sqlite3

    copy_store(store_template, tmp_path, "a")
    state = EnvironmentState(tmp_path, "a")
    holder = sqlite3.connect(state.zenml_database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # the worker's read waits for it (SQLite: up to 5 s)
    holder.execute("UPDATE stack_component SET name = name")
    client = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import json, sys, time\n"
            "from pathlib import Path\n"
            "from stackward.zenml import forkserver\n"
            "from stackward.zenml.executor import base_environment\n"
            "worker = forkserver.start([], base_environment(Path(sys.argv[1])))\n"
            "worker.stdin.write(json.dumps({'op': 'read'}) + '\\n')\n"
            "worker.stdin.flush()\n"
            "print(worker.pid, flush=True)\n"
            "time.sleep(600)\n",
            str(state.zenml_config),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout is not None
        worker = int(client.stdout.readline())
        time.sleep(0.5)  # (reading)
        assert Path(f"/proc/{worker}").exists()
    finally:
        client.kill()
        client.wait()
    try:
        assert ended(worker, within=2.5)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def ended(pid: int, within: float = 10.0) -> bool:
    """Whether the process ended (gone, or a zombie its new parent has not reaped yet)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False
