"""The PostgreSQL state store: the records every machine must see (the lock, the ledger, the
applied revision), in one database that the Action's runners, the reconciler and the CLI share.

Locks are session advisory locks (`pg_try_advisory_lock`), held on a connection of their own
for as long as the environment is held: the server frees one when its connection ends (at once
for a killed process, within about a minute for a vanished machine, by TCP keepalives), so no
run leaves a lock behind on any machine. A server restart ends every connection and so frees
every lock while its holders may still run: a holder proves it still holds its lock
(`SessionLease.check()`: its connection is alive and holds it) before each change. Session
locks need a real session: point the URL at PostgreSQL itself or a session-mode pooler, never
a transaction-mode one.

Tables, created on first use by the migrations below (each applied once, recorded in
`stackward_schema`):

    stackward_schema        version (one row per applied migration), applied_at
    stackward_ledger        id bigserial, environment, at timestamptz, event, apply, entry jsonb,
                            key (unique: an entry sent again after a lost connection is kept once)
    stackward_applied       environment primary key, revision, plan_hash, at, by
    stackward_lock_holders  environment primary key, holder jsonb: who holds the lock, for
                            messages only (the advisory lock decides; a row left by a dead
                            holder blocks nobody)
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from stackward.errors import Interrupted, UsageError
from stackward.plan.state import LockError
from stackward.state import Applied, StateStoreError, describe, new_holder

__all__ = ["PostgresStore", "SessionLease", "StateStoreError"]
T = TypeVar("T")

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
    # 2: a key per ledger entry, so that one sent again after a lost connection is kept once
    """
    ALTER TABLE stackward_ledger ADD COLUMN key text;
    CREATE UNIQUE INDEX stackward_ledger_key ON stackward_ledger (key);
    """,
]


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


# Whether this session holds the advisory lock `key`.
HELD_HERE = """
    SELECT EXISTS (SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND pid = pg_backend_pid()
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND classid::bigint = %(high)s AND objid::bigint = %(low)s)
"""


def _key_parts(key: int) -> dict[str, int]:
    """An advisory lock key as pg_locks shows it: two 32-bit halves."""
    return {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF}


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


class SessionLease:
    """A held session advisory lock: the connection it lives on."""

    def __init__(self, environment: str, description: str, conn: psycopg.Connection, holder: dict):
        self.environment = environment
        self.description = description
        self.conn = conn
        self.holder = holder

    def check(self) -> None:
        """Interrupted unless the lock's connection is alive and its session holds the lock."""
        try:
            row = self.conn.execute(HELD_HERE, _key_parts(lock_key(self.environment))).fetchone()
        except psycopg.Error:
            row = None  # the connection is gone, and the lock with it
        if row is None or not row[0]:
            env = self.environment
            raise Interrupted(
                f"{env}: this run lost the environment's lock in {self.description}: the connection "
                "holding it ended (the database restarted, or the connection dropped), so it stopped "
                "before its next change, and another run may hold the environment now; what it did "
                f"is in the ledger (stackward history {env}): plan and apply again to finish"
            )


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
        # A lock's connection notices a vanished server within about a minute, even mid-query.
        self._lock_defaults = {
            k: v
            for k, v in {
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
                "tcp_user_timeout": 60000,
            }.items()
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

    def _connect(self, **options: Any) -> psycopg.Connection:
        try:
            return psycopg.connect(self._url, autocommit=True, **self._defaults, **options)
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

    def _query(self, doing: str, work: Callable[[psycopg.Connection], T]) -> T:
        """`work` on the shared connection, opened (and the schema migrated) on first use. A
        connection that broke since its last use (the database restarted) is replaced once."""
        with self._lock:
            reused = self._conn is not None and not self._conn.closed
            try:
                return self._attempt(work)
            except psycopg.Error as exc:
                if not (reused and self._conn is not None and self._conn.closed):
                    raise self._error(exc, doing) from None
            try:
                return self._attempt(work)
            except psycopg.Error as exc:
                raise self._error(exc, doing) from None

    def _attempt(self, work: Callable[[psycopg.Connection], T]) -> T:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        try:
            if not self._migrated:
                self._migrate(self._conn)
                self._migrated = True
            return work(self._conn)
        except psycopg.Error:
            if self._conn.broken:
                self._conn.close()
            raise

    def _ready(self) -> None:
        self._query("failed", lambda conn: None)  # connected, and the tables exist

    def _live_holder(self, conn: psycopg.Connection, environment: str) -> tuple[int | None, dict | None]:
        parts = _key_parts(lock_key(environment))
        row = conn.execute(LIVE_HOLDER, {"env": environment, **parts}).fetchone()
        return (row[0], row[1]) if row else (None, None)

    # -- locks ----------------------------------------------------------------------------
    def hold(self, environment: str, command: str, timeout: float) -> AbstractContextManager[SessionLease]:
        """Hold the environment on a connection of its own; wait up to `timeout` seconds, then
        LockError naming the holder."""
        return self._hold(environment, command, timeout)

    @contextmanager
    def _hold(self, environment: str, command: str, timeout: float) -> Iterator[SessionLease]:
        self._ready()
        holder = new_holder(command)
        key = lock_key(environment)
        conn = self._connect(**self._lock_defaults)  # held open for as long as the lock is
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
            yield SessionLease(environment, self.description, conn, holder)
        finally:
            if held:
                with contextlib.suppress(psycopg.Error):  # a lost lock: the server freed it already
                    conn.execute(
                        "DELETE FROM stackward_lock_holders WHERE environment = %s AND holder->>'id' = %s",
                        (environment, holder["id"]),
                    )
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            conn.close()

    def holder(self, environment: str) -> dict | None:
        def live(conn: psycopg.Connection) -> dict | None:
            pid, holder = self._live_holder(conn, environment)
            return None if pid is None else holder or {}

        return self._query("failed", live)

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
        key = str(clean.get("id") or uuid.uuid4().hex)  # the Ledger's id: the same when it tries again
        row = (environment, _parse_time(clean.get("at")), event, apply, Jsonb(clean), key)
        self._query(
            "could not record a ledger entry",
            lambda conn: conn.execute(
                "INSERT INTO stackward_ledger (environment, at, event, apply, entry, key) "
                "VALUES (%s, coalesce(%s, now()), %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
                row,
            ),
        )

    def entries(self, environment: str) -> list[dict]:
        rows = self._query(
            "could not read the ledger",
            lambda conn: conn.execute(
                "SELECT entry FROM stackward_ledger WHERE environment = %s ORDER BY id", (environment,)
            ).fetchall(),
        )
        return [row[0] for row in rows]

    def set_applied(self, environment: str, applied: Applied) -> None:
        self._query(
            "could not record the applied revision",
            lambda conn: conn.execute(
                'INSERT INTO stackward_applied (environment, revision, plan_hash, at, "by") '
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (environment) DO UPDATE SET "
                'revision = excluded.revision, plan_hash = excluded.plan_hash, at = excluded.at, "by" = excluded."by"',
                (environment, applied.revision, applied.plan_hash, applied.at, applied.by),
            ),
        )

    def applied(self, environment: str) -> Applied | None:
        row = self._query(
            "could not read the applied revision",
            lambda conn: conn.execute(
                'SELECT revision, plan_hash, at, "by" FROM stackward_applied WHERE environment = %s',
                (environment,),
            ).fetchone(),
        )
        return Applied(*row) if row else None
