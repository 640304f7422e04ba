"""The PostgreSQL state store: the records every machine must see (the lock, the ledger, the
applied revision), in one database that the Action's runners, the reconciler and the CLI share.

Locks are session advisory locks (`pg_try_advisory_lock`), held on a connection of their own
for as long as the environment is held: the server frees one when its connection ends (at once
for a killed process, within about a minute for a vanished machine, by TCP keepalives), so no
run leaves a lock behind on any machine. Session locks need a real session: point
the URL at PostgreSQL itself or a session-mode pooler, never a transaction-mode one.

Tables, created on first use by the migrations below (each applied once, recorded in
`stackward_schema`):

    stackward_schema        version (one row per applied migration), applied_at
    stackward_ledger        id bigserial, environment, at timestamptz, event, apply, entry jsonb
    stackward_applied       environment primary key, revision, plan_hash, at, by
    stackward_lock_holders  environment primary key, holder jsonb: who holds the lock, for
                            messages only (the advisory lock decides; a row left by a dead
                            holder blocks nobody)
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, ClassVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from stackward.errors import CannotRun, UsageError
from stackward.plan.state import LockError
from stackward.state import Applied, new_holder
from stackward.state.local import describe

MIGRATIONS = [
    # 1: the ledger, the applied revisions, the lock holders' descriptions
    """
    CREATE TABLE stackward_ledger (
        id bigserial PRIMARY KEY,
        environment text NOT NULL,
        at timestamptz NOT NULL,
        event text,
        apply text,
        entry jsonb NOT NULL
    );
    CREATE INDEX stackward_ledger_environment ON stackward_ledger (environment, id);
    CREATE TABLE stackward_applied (
        environment text PRIMARY KEY,
        revision text NOT NULL,
        plan_hash text NOT NULL,
        at text NOT NULL,
        "by" text NOT NULL
    );
    CREATE TABLE stackward_lock_holders (
        environment text PRIMARY KEY,
        holder jsonb NOT NULL
    );
    """,
]


class StateStoreError(CannotRun):
    """The state store's database cannot be reached or refused a query."""


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key (the reconciler's replica locks use another
    namespace, so the two never collide)."""
    return int.from_bytes(hashlib.sha256(f"stackward.state:{name}".encode()).digest()[:8], "big", signed=True)


MIGRATION_KEY = lock_key("/migrations")  # environment names never start with "/"

# The advisory lock `key` held by a live session: its backend pid, and its description row
# when that session wrote it (a row whose session is gone is never shown).
LIVE_HOLDER = """
    SELECT l.pid, h.holder FROM pg_locks l
    LEFT JOIN stackward_lock_holders h
        ON h.environment = %(env)s AND (h.holder->>'backend_pid')::int = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid::bigint = %(high)s AND l.objid::bigint = %(low)s
"""


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _without_nul(value: Any) -> Any:
    """`value` with U+0000, which jsonb cannot hold, replaced by U+FFFD (an error message may
    carry one; the entry must still be recorded)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nul(v) for v in value]
    return value


class PostgresStore:
    """Locks, ledger and applied revisions in PostgreSQL; one instance per URL (`at`)."""

    shared = True
    _instances: ClassVar[dict[str, PostgresStore]] = {}
    _instances_lock = threading.Lock()

    def __init__(self, url: str):
        if url.startswith("postgresql+psycopg://"):
            url = "postgresql://" + url.removeprefix("postgresql+psycopg://")
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error:
            raise UsageError(
                "the state URL is not a valid PostgreSQL URL (postgresql://user@host:5432/db)"
            ) from None
        self._url = url
        self._password = str(params.get("password") or "")
        self._defaults = {
            k: v
            for k, v in {"connect_timeout": 10, "application_name": "stackward"}.items()
            if k not in params
        }
        dbname = params.get("dbname") or params.get("user") or "postgres"
        self.description = (
            f"PostgreSQL at {params.get('host') or 'localhost'}:{params.get('port') or 5432}/{dbname}"
        )
        self._lock = threading.Lock()  # guards the shared connection below
        self._conn: psycopg.Connection | None = None
        self._migrated = False

    @classmethod
    def at(cls, url: str) -> PostgresStore:
        """The one store of this process for `url`."""
        with cls._instances_lock:
            if url not in cls._instances:
                cls._instances[url] = cls(url)
            return cls._instances[url]

    # -- connections ----------------------------------------------------------------------
    def _error(self, exc: psycopg.Error, doing: str) -> StateStoreError:
        reason = str(exc).strip() or type(exc).__name__
        if self._password:
            reason = reason.replace(self._password, "***")
        return StateStoreError(
            f"the state store ({self.description}) {doing}: {reason}\n"
            "  hint: check that PostgreSQL runs there and the state URL (state_url, STACKWARD_STATE_URL, "
            "or the variable named by the environment's state.urlEnv) is right"
        )

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self._url, autocommit=True, **self._defaults)
        except psycopg.Error as exc:
            raise self._error(exc, "cannot be reached") from None

    def _migrate(self, conn: psycopg.Connection) -> None:
        """Apply pending migrations, in one transaction, one process at a time."""
        known = len(MIGRATIONS)
        if conn.execute("SELECT to_regclass('stackward_schema') IS NOT NULL").fetchone()[0]:
            current = conn.execute("SELECT coalesce(max(version), 0) FROM stackward_schema").fetchone()[0]
            if current == known:
                return  # the usual case: no lock, no CREATE privilege needed
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS stackward_schema "
                "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            current = conn.execute("SELECT coalesce(max(version), 0) FROM stackward_schema").fetchone()[0]
            if current > known:
                raise StateStoreError(
                    f"the state store ({self.description}) has schema version {current}, newer "
                    f"than this stackward knows ({known}); upgrade stackward"
                )
            for version in range(current + 1, known + 1):
                conn.execute(MIGRATIONS[version - 1])
                conn.execute("INSERT INTO stackward_schema (version) VALUES (%s)", (version,))

    @contextmanager
    def _db(self, doing: str) -> Iterator[psycopg.Connection]:
        """The shared connection, opened (and the schema migrated) on first use."""
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                if not self._migrated:
                    self._migrate(self._conn)
                    self._migrated = True
                yield self._conn
            except psycopg.Error as exc:
                if self._conn is not None and self._conn.broken:
                    self._conn.close()
                raise self._error(exc, doing) from None

    def _ready(self) -> None:
        with self._db("failed"):
            pass  # connected, and the tables exist

    def _live_holder(self, conn: psycopg.Connection, environment: str) -> tuple[int | None, dict | None]:
        key = lock_key(environment)
        row = conn.execute(
            LIVE_HOLDER, {"env": environment, "high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF}
        ).fetchone()
        return (row[0], row[1]) if row else (None, None)

    # -- locks ----------------------------------------------------------------------------
    def hold(self, environment: str, command: str, timeout: float) -> AbstractContextManager[dict]:
        """Hold the environment on a connection of its own; wait up to `timeout` seconds, then
        LockError naming the holder."""
        return self._hold(environment, command, timeout)

    @contextmanager
    def _hold(self, environment: str, command: str, timeout: float) -> Iterator[dict]:
        self._ready()
        holder = new_holder(command)
        key = lock_key(environment)
        conn = self._connect()  # held open for as long as the lock is
        held = False
        try:
            try:
                # Let the server notice a vanished machine within a minute; never drop an idle holder.
                conn.execute(
                    "SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3"
                )
                if conn.info.server_version >= 140000:
                    conn.execute("SET idle_session_timeout = 0")
                deadline = time.monotonic() + timeout
                while not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                    if time.monotonic() >= deadline:
                        _, current = self._live_holder(conn, environment)
                        raise LockError(
                            f"environment {environment} is locked by "
                            f"{describe(current) if current else 'another run'}; gave up after {timeout:.0f} s"
                        )
                    time.sleep(0.2)
                held = True
                conn.execute(
                    "INSERT INTO stackward_lock_holders (environment, holder) VALUES (%s, %s) "
                    "ON CONFLICT (environment) DO UPDATE SET holder = excluded.holder",
                    (environment, Jsonb({**holder, "backend_pid": conn.info.backend_pid})),
                )
            except psycopg.Error as exc:
                raise self._error(exc, "failed while taking the lock") from None
            yield holder
        finally:
            try:
                if held:
                    conn.execute(
                        "DELETE FROM stackward_lock_holders WHERE environment = %s AND holder->>'id' = %s",
                        (environment, holder["id"]),
                    )
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            except psycopg.Error:
                pass  # the connection is gone, and the server freed the lock with it
            conn.close()

    def release(self, environment: str, force: bool) -> str:
        """Remove the description a dead holder left; a live holder's lock cannot be taken
        away (`force` or not): it frees itself when the holder's connection ends."""
        key = lock_key(environment)
        self._ready()
        conn = self._connect()
        try:
            if conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                row = conn.execute(
                    "DELETE FROM stackward_lock_holders WHERE environment = %s RETURNING holder",
                    (environment,),
                ).fetchone()
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                if row is None:
                    return f"environment {environment} is not locked"
                return (
                    f"environment {environment} was no longer locked (PostgreSQL freed the lock when "
                    f"its holder's connection ended); removed the record left by {describe(row[0])}"
                )
            pid, current = self._live_holder(conn, environment)
        except psycopg.Error as exc:
            raise self._error(exc, "failed") from None
        finally:
            conn.close()
        admin = f"; a database admin can end it with SELECT pg_terminate_backend({pid})" if pid else ""
        raise LockError(
            f"environment {environment} is held by {describe(current) if current else 'another run'}, "
            f"whose connection to {self.description} is still open, so it cannot be released"
            f"{' even with --force' if force else ''}; it frees itself when that connection ends{admin}"
        )

    # -- ledger and applied revisions -----------------------------------------------------
    def append(self, environment: str, entry: dict) -> None:
        clean = _without_nul(entry)
        event, apply = (str(clean[k]) if clean.get(k) is not None else None for k in ("event", "apply"))
        with self._db("could not record a ledger entry") as conn:
            conn.execute(
                "INSERT INTO stackward_ledger (environment, at, event, apply, entry) "
                "VALUES (%s, coalesce(%s, now()), %s, %s, %s)",
                (environment, _parse_time(clean.get("at")), event, apply, Jsonb(clean)),
            )

    def entries(self, environment: str) -> list[dict]:
        with self._db("could not read the ledger") as conn:
            rows = conn.execute(
                "SELECT entry FROM stackward_ledger WHERE environment = %s ORDER BY id", (environment,)
            ).fetchall()
        return [row[0] for row in rows]

    def set_applied(self, environment: str, applied: Applied) -> None:
        with self._db("could not record the applied revision") as conn:
            conn.execute(
                'INSERT INTO stackward_applied (environment, revision, plan_hash, at, "by") '
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (environment) DO UPDATE SET "
                'revision = excluded.revision, plan_hash = excluded.plan_hash, at = excluded.at, "by" = excluded."by"',
                (environment, applied.revision, applied.plan_hash, applied.at, applied.by),
            )

    def applied(self, environment: str) -> Applied | None:
        with self._db("could not read the applied revision") as conn:
            row = conn.execute(
                'SELECT revision, plan_hash, at, "by" FROM stackward_applied WHERE environment = %s',
                (environment,),
            ).fetchone()
        return Applied(*row) if row else None
