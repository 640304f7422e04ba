"""The state store: where the records of each environment live so that every machine sees
them (the next CI runner, the reconciler, a teammate's CLI): the lock every plan and apply
holds, the ledger of applies, and the revision each environment last applied.

One interface (`StateStore`), two kinds: `LocalStore` (files under the state folder, the
embedded default) and `PostgresStore` (tables and session advisory locks in PostgreSQL,
selected by a URL). `open_store()` picks the one for an environment.
"""

from __future__ import annotations

import os
import socket
import uuid
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from stackward.errors import UsageError
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


class StateStore(Protocol):
    """What every kind of state store does, per environment."""

    description: str  # where, for messages (never a password)
    shared: bool  # seen by other machines

    def hold(self, environment: str, command: str, timeout: float) -> AbstractContextManager[dict]:
        """Hold the environment for `command`; wait up to `timeout` seconds, then LockError
        naming the holder."""
        ...

    def release(self, environment: str, force: bool) -> str:
        """Release a lock whose holder is gone (any lock with `force`); what was done."""
        ...

    def append(self, environment: str, entry: dict) -> None:
        """Add one ledger entry (already scrubbed), durably."""
        ...

    def entries(self, environment: str) -> list[dict]:
        """The ledger entries, oldest first."""
        ...

    def set_applied(self, environment: str, applied: Applied) -> None: ...

    def applied(self, environment: str) -> Applied | None: ...


def new_holder(command: str) -> dict:
    """Who is about to hold an environment: a random id, this process, `command`, since now."""
    return {
        "id": uuid.uuid4().hex,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "since": now(),
    }


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
