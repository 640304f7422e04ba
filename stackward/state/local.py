"""The local state store: files under the state folder (stackward.plan.state's layout). Seen
only by this machine: the default for the CLI and the embedded demo; an apply on an
ephemeral CI runner refuses it (stackward.pipeline)."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from stackward.plan.state import EnvironmentState, LockError
from stackward.state import Applied, new_holder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_holder(state: EnvironmentState) -> dict | None:
    """Who holds the environment, from its lock file."""
    try:
        return json.loads(state.lock_file.read_text())
    except (FileNotFoundError, ValueError):
        return None


def holder_is_stale(holder: dict) -> bool:
    """The holder ran on this machine and its process is gone (killed, crashed)."""
    return holder.get("host") == socket.gethostname() and not _alive(int(holder.get("pid", 0)))


def describe(holder: dict) -> str:
    """The holder, for messages."""
    return (
        f"{holder.get('command', '?')} (pid {holder.get('pid')} on {holder.get('host')}, "
        f"since {holder.get('since')})"
    )


@contextmanager
def file_lock(state: EnvironmentState, command: str, timeout: float) -> Iterator[dict]:
    """Hold the environment; wait up to `timeout` seconds (the `lock_timeout` setting), then
    fail naming the holder."""
    state.ensure()
    holder = new_holder(command)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(state.lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            current = read_holder(state) or {}
            if current and holder_is_stale(current):
                raise LockError(
                    f"environment {state.environment} is locked by {describe(current)}, which is no "
                    f"longer running; if nothing else is applying it, run: stackward unlock {state.environment}"
                ) from None
            if time.monotonic() >= deadline:
                raise LockError(
                    f"environment {state.environment} is locked by {describe(current) if current else 'another run'}; "
                    f"gave up after {timeout:.0f} s"
                ) from None
            time.sleep(0.2)
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(holder, handle)
        break
    try:
        yield holder
    finally:
        if (read_holder(state) or {}).get("id") == holder["id"]:
            state.lock_file.unlink(missing_ok=True)


def release_file_lock(state: EnvironmentState, force: bool = False) -> str:
    """Release a lock left by a process that is gone (or any lock with force)."""
    holder = read_holder(state)
    if holder is None and not state.lock_file.exists():
        return f"environment {state.environment} is not locked"
    if holder and not force and not holder_is_stale(holder):
        raise LockError(
            f"environment {state.environment} is held by {describe(holder)}, which is still running "
            "(or ran on another machine); use --force only if you are sure it is gone"
        )
    state.lock_file.unlink(missing_ok=True)
    return f"released the lock of environment {state.environment}" + (
        f" held by {describe(holder)}" if holder else ""
    )


class LocalStore:
    """Locks, ledger and applied revisions as files under `root` (the state folder)."""

    shared = False

    def __init__(self, root: Path):
        self.root = root
        self.description = f"the state folder {root}"

    def _state(self, environment: str) -> EnvironmentState:
        return EnvironmentState(self.root, environment)

    def hold(self, environment: str, command: str, timeout: float) -> AbstractContextManager[dict]:
        return file_lock(self._state(environment), command, timeout)

    def release(self, environment: str, force: bool) -> str:
        return release_file_lock(self._state(environment), force)

    def append(self, environment: str, entry: dict) -> None:
        state = self._state(environment)
        state.ensure()
        with state.ledger_file.open("a") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def entries(self, environment: str) -> list[dict]:
        file = self._state(environment).ledger_file
        if not file.exists():
            return []
        out = []
        for line in file.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a crash
        return out

    def set_applied(self, environment: str, applied: Applied) -> None:
        state = self._state(environment)
        state.ensure()
        partial = state.applied_file.with_suffix(".tmp")
        partial.write_text(json.dumps(applied.to_dict(), sort_keys=True))
        partial.replace(state.applied_file)  # all or nothing

    def applied(self, environment: str) -> Applied | None:
        try:
            return Applied(**json.loads(self._state(environment).applied_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
