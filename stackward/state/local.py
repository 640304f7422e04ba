"""The local state store: files under the state folder (stackward.plan.state's layout). Seen
only by this machine: the default for the CLI and the embedded demo; an apply on an
ephemeral CI runner refuses it (stackward.pipeline).

The lock is an advisory lock (`flock`) on the environment's `lock` file, held on an open file
for as long as the environment is held: the operating system releases it when its holder's
process ends, however it ends (kill -9, a container restarted as pid 1 or on a new host), so
a crash leaves no lock to clear. The file also holds who holds it, for messages only, and is
removed on release. A lock is held while the file the path names is the one its holder
locked: `stackward unlock --force` removes the file, and the holder's next `check()` fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from stackward.errors import Interrupted
from stackward.plan.state import EnvironmentState, LockError
from stackward.state import Applied, StateStoreError, describe, new_holder


def read_holder(state: EnvironmentState) -> dict | None:
    """Who holds (or last held) the environment, from its lock file."""
    try:
        holder = json.loads(state.lock_file.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _names(path: Path, fd: int) -> bool:
    """Whether `path` names the file open as `fd` (not removed, nor replaced by another)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino)


def _try_lock(fd: int) -> bool:
    """Take the advisory lock on `fd` if no one holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class FileLease:
    """A held file lock: the open lock file its advisory lock is on."""

    def __init__(self, state: EnvironmentState, fd: int, holder: dict):
        self.state = state
        self.fd = fd
        self.holder = holder

    def check(self) -> None:
        """Interrupted when the lock file was removed or replaced (a forced unlock)."""
        if not _names(self.state.lock_file, self.fd):
            env = self.state.environment
            raise Interrupted(
                f"{env}: this run no longer holds the environment's lock: its lock file "
                f"{self.state.lock_file} was removed (stackward unlock --force), so it stopped before "
                "its next change, and another run may hold the environment now; what it did is in "
                f"the ledger (stackward history {env}): plan and apply again to finish"
            )


def live_holder(state: EnvironmentState) -> dict | None:
    """Who holds the environment now ({} when its record is unreadable), or None: the lock is
    tried, not only the record read, since a holder that died leaves its record behind."""
    try:
        fd = os.open(state.lock_file, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        return None if _try_lock(fd) else read_holder(state) or {}
    finally:
        os.close(fd)  # (releases the lock if it was free and taken here)


def _open_locked(state: EnvironmentState, timeout: float) -> int:
    """The lock file, open and locked; wait up to `timeout` seconds, then LockError."""
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(state.lock_file, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children
        if _try_lock(fd) and _names(state.lock_file, fd):
            return fd
        os.close(fd)  # held by another run, or removed by its holder before we locked it
        if time.monotonic() >= deadline:
            current = read_holder(state)
            raise LockError(
                f"environment {state.environment} is locked by "
                f"{describe(current) if current else 'another run'}; gave up after {timeout:.0f} s"
            )
        time.sleep(0.2)


@contextmanager
def file_lock(state: EnvironmentState, command: str, timeout: float) -> Iterator[FileLease]:
    """Hold the environment; wait up to `timeout` seconds (the `lock_timeout` setting), then
    fail naming the holder."""
    state.ensure()
    fd = _open_locked(state, timeout)
    holder = new_holder(command)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield FileLease(state, fd, holder)
    finally:
        try:
            if _names(state.lock_file, fd):  # still ours: removed while locked, so a waiter
                state.lock_file.unlink()  # that opened it sees it gone and opens a new one
        finally:
            os.close(fd)  # releases the lock


def release_file_lock(state: EnvironmentState, force: bool = False) -> str:
    """Remove the record a holder that is gone left; a lock still held only with `force`."""
    env = state.environment
    try:
        fd = os.open(state.lock_file, os.O_RDWR)
    except FileNotFoundError:
        return f"environment {env} is not locked"
    try:
        holder = read_holder(state)
        if _try_lock(fd):
            if _names(state.lock_file, fd):
                state.lock_file.unlink()
            if holder is None:
                return f"environment {env} is not locked"
            return (
                f"environment {env} was no longer locked (the operating system freed the lock when "
                f"its holder's process ended); removed the record left by {describe(holder)}"
            )
        who = describe(holder) if holder else "another run"
        if not force:
            raise LockError(
                f"environment {env} is held by {who}, which is still running: the lock is freed "
                "when that process ends, however it ends; use --force only to take the lock away "
                "from it (it then stops before its next change)"
            )
        with contextlib.suppress(FileNotFoundError):
            state.lock_file.unlink()
        return (
            f"took the lock of environment {env} away from {who}, which was still running: the "
            "step it is in runs to its end, then it stops before its next change (recorded as "
            "interrupted in the ledger); the next run can take the lock now"
        )
    finally:
        os.close(fd)


class LocalStore:
    """Locks, ledger and applied revisions as files under `root` (the state folder)."""

    shared = False

    def __init__(self, root: Path):
        self.root = root
        self.description = f"the state folder {root}"

    def _state(self, environment: str) -> EnvironmentState:
        return EnvironmentState(self.root, environment)

    def _error(self, exc: OSError, doing: str) -> StateStoreError:
        return StateStoreError(f"the state store ({self.description}) {doing}: {exc.strerror or exc}")

    def hold(self, environment: str, command: str, timeout: float) -> AbstractContextManager[FileLease]:
        return file_lock(self._state(environment), command, timeout)

    def holder(self, environment: str) -> dict | None:
        return live_holder(self._state(environment))

    def release(self, environment: str, force: bool) -> str:
        return release_file_lock(self._state(environment), force)

    def append(self, environment: str, entry: dict) -> None:
        state = self._state(environment)
        try:
            state.ensure()
            with state.ledger_file.open("a") as handle:
                handle.write(json.dumps(entry, sort_keys=True) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise self._error(exc, "could not record a ledger entry") from None

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
        partial = state.applied_file.with_suffix(".tmp")
        try:
            state.ensure()
            partial.write_text(json.dumps(applied.to_dict(), sort_keys=True))
            partial.replace(state.applied_file)  # all or nothing
        except OSError as exc:
            raise self._error(exc, "could not record the applied revision") from None

    def applied(self, environment: str) -> Applied | None:
        try:
            return Applied(**json.loads(self._state(environment).applied_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
