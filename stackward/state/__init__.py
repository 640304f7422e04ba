"""The state store: where the records of each environment live so that every machine sees
them (the next CI runner, the reconciler, a teammate's CLI): the lock every plan and apply
holds, the ledger of applies, and the revision each environment last applied.

One interface (`StateStore`), two kinds: `LocalStore` (files under the state folder, the
embedded default) and `PostgresStore` (tables and session advisory locks in PostgreSQL,
selected by a URL). `open_store()` picks the one for an environment.

Both kinds of lock are released by the system when their holder dies (the operating system
for a file lock, the server for a session lock), so a crash leaves no lock behind. A held
lock is a `Lease`: before each step that changes something, an apply proves with `check()`
that it still holds the lock, and stops (`Interrupted`) when it lost it.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from stackward.errors import CannotRun, UsageError
from stackward.plan.state import now
from stackward.spec.model import Environment


@dataclass(frozen=True)
class Applied:
    """The revision an environment last applied (or was found converged with)."""

    revision: str
    plan_hash: str
    at: str
    by: str  # the command that recorded it (`stackward apply dev`, the reconciler, …)

    def to_dict(self) -> dict:
        return asdict(self)


class StateStoreError(CannotRun):
    """The state store cannot be reached, or refused to read or record something."""


class Lease(Protocol):
    """A lock held: who holds it (`holder`, see `new_holder`), and the proof it still does."""

    holder: dict

    def check(self) -> None:
        """Return while the lock is still held; Interrupted when it was lost (its connection
        ended, or it was taken away), so that nothing more is changed under it."""
        ...


class StateStore(Protocol):
    """What every kind of state store does, per environment."""

    description: str  # where, for messages (never a password)
    shared: bool  # seen by other machines

    def hold(self, environment: str, command: str, timeout: float) -> AbstractContextManager[Lease]:
        """Hold the environment for `command`; wait up to `timeout` seconds, then LockError
        naming the holder. Leaving the block releases it; an error while releasing a lock
        that was already lost is not raised."""
        ...

    def holder(self, environment: str) -> dict | None:
        """Who holds the environment now (see `new_holder`; {} when unknown), or None."""
        ...

    def release(self, environment: str, force: bool) -> str:
        """Clear what a holder that is gone left behind; a lock still held only with `force`
        (where the store can take it away). What was done."""
        ...

    def append(self, environment: str, entry: dict) -> None:
        """Add one ledger entry (already scrubbed), durably; StateStoreError when it cannot."""
        ...

    def entries(self, environment: str) -> list[dict]:
        """The ledger entries, oldest first."""
        ...

    def set_applied(self, environment: str, applied: Applied) -> None: ...

    def applied(self, environment: str) -> Applied | None: ...


_instance = ""


def _new_instance() -> None:
    """A random id for this process (again in a forked child)."""
    global _instance
    _instance = uuid.uuid4().hex


_new_instance()
os.register_at_fork(after_in_child=_new_instance)


def new_holder(command: str) -> dict:
    """Who is about to hold an environment, for messages: a random id of this hold, this
    process (its random instance id tells apart two processes that both run as pid 1 on
    hosts of one name, as containers do), `command`, since now."""
    return {
        "id": uuid.uuid4().hex,
        "instance": _instance,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "since": now(),
    }


def describe(holder: dict) -> str:
    """A lock's holder, for messages."""
    instance = f", instance {holder['instance'][:8]}" if holder.get("instance") else ""
    return (
        f"{holder.get('command', '?')} (pid {holder.get('pid')} on {holder.get('host')}{instance}, "
        f"since {holder.get('since')})"
    )


T = TypeVar("T")
RETRY_SECONDS = 60.0  # how long a record made after changes is retried: a database restart


def retried(record: Callable[[], T], seconds: float = RETRY_SECONDS) -> T:
    """`record()`, tried again on StateStoreError until `seconds` have passed (waits of 0.25 s
    doubling to 4 s), then once more; the last StateStoreError when it still fails."""
    deadline = time.monotonic() + seconds
    wait = 0.25
    while True:
        try:
            return record()
        except StateStoreError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
        time.sleep(min(wait, left))
        wait = min(wait * 2, 4.0)


def open_store(url: str, state_root: Path) -> StateStore:
    """The store at `url` (`postgresql://…`), or the files under `state_root` when it is empty."""
    if not url:
        from stackward.state.local import LocalStore

        return LocalStore(state_root)
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        from stackward.state.postgres import PostgresStore

        return PostgresStore.at(url)
    raise UsageError(
        "the state URL must be a PostgreSQL URL (postgresql://user@host:5432/db), or empty for "
        "the state folder"
    )


def state_url(env: Environment, default: str) -> str:
    """The state URL of `env`: from the variable its spec names (`state.urlEnv`), else `default`
    (the `state_url` setting)."""
    name = env.settings.state_url_env
    if name is None:
        return default
    url = os.environ.get(name, "")
    if not url:
        raise UsageError(
            f"{env.name}: its state URL is read from the environment variable {name}, which is not set"
        )
    return url
