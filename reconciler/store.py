"""Status and webhook deliveries in SQLite (default) or PostgreSQL (replicas). The history of
applies is the ledger in the state store (stackward.state), shared with the CLI and the Action.

With PostgreSQL, a per-environment advisory lock makes sure two replicas never reconcile the
same environment at once, and the primary key on deliveries makes one of them handle a delivery
both receive.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, String, Table, Text, create_engine, event, select, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from reconciler.status import EnvironmentStatus
from stackward.secrets import Scrubber

log = logging.getLogger("stackward.reconciler")

DELIVERY_RETENTION = timedelta(days=7)  # GitHub redelivers for 3 days; a delivery older is forgotten
PRUNE_EVERY = 600.0  # seconds between prunes of old deliveries, per replica
# the advisory lock held while the tables are created ("stackward:" + a name no environment has)
TABLES_LOCK_KEY = int.from_bytes(hashlib.sha256(b"stackward:/tables").digest()[:8], "big", signed=True)
CONNECT_TIMEOUT = 5  # seconds to reach PostgreSQL, so /readyz answers when it does not

metadata = MetaData()
status_table = Table(
    "stackward_status",
    metadata,
    Column("environment", String(64), primary_key=True),
    Column("data", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True)),
)
deliveries_table = Table(
    "stackward_deliveries",
    metadata,
    Column("delivery", String(128), primary_key=True),  # SHA-256 of the id: ids of any length fit
    Column("at", DateTime(timezone=True), nullable=False, index=True),
)


def _now() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """Write-ahead logging, synced at checkpoints rather than at every commit: a status write
    is one small append, not an fsync. A crash of the service loses nothing; a power loss may
    lose the last writes (never corrupt the file), which the next passes write again. Readers
    never wait for the writer."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Store:
    """What the API, the dashboard and the metrics show. Everything saved goes through
    `scrub` first: a secret value that reached a message is stored as (sensitive)."""

    def __init__(self, url: str):
        self.scrub = Scrubber()
        self.postgres = make_url(url).get_backend_name() == "postgresql"
        self.engine: Engine = create_engine(
            url,
            pool_pre_ping=True,
            connect_args={"connect_timeout": CONNECT_TIMEOUT} if self.postgres else {},
        )
        if not self.postgres:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._local_locks: dict[str, threading.Lock] = {}
        self._next_prune = 0.0
        with self.engine.begin() as conn:
            if self.postgres:  # replicas starting at once on an empty database create the tables once
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": TABLES_LOCK_KEY})
            metadata.create_all(conn)

    def ping(self) -> None:
        """A cheap query on the status table; raises SQLAlchemyError when the database does not answer."""
        with self.engine.connect() as conn:
            conn.execute(select(status_table.c.environment).limit(1)).all()

    def load(self, environment: str) -> EnvironmentStatus | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(status_table.c.data).where(status_table.c.environment == environment)
            ).first()
        return EnvironmentStatus.from_dict(json.loads(row[0])) if row else None

    def save(self, status: EnvironmentStatus) -> None:
        """Insert or replace, in one statement (two replicas may save a new environment at once)."""
        data = json.dumps(self.scrub.data(status.to_dict()), sort_keys=True, default=str)
        insert = (postgresql_insert if self.postgres else sqlite_insert)(status_table).values(
            environment=status.name, data=data, updated_at=_now()
        )
        with self.engine.begin() as conn:
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[status_table.c.environment],
                    set_={"data": insert.excluded.data, "updated_at": insert.excluded.updated_at},
                )
            )

    def first_delivery(self, delivery: str) -> bool:
        """True the first time a webhook delivery id is seen, on any replica (the insert of a
        delivery another replica is inserting at the same moment fails on the primary key)."""
        key = hashlib.sha256(delivery.encode()).hexdigest()
        try:
            with self.engine.begin() as conn:
                conn.execute(deliveries_table.insert().values(delivery=key, at=_now()))
        except IntegrityError:
            return False
        self._prune_deliveries()
        return True

    def _prune_deliveries(self) -> None:
        """Forget deliveries older than DELIVERY_RETENTION, at most every PRUNE_EVERY seconds.
        Best effort: a failed prune is logged and tried again next time."""
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    deliveries_table.delete().where(deliveries_table.c.at < _now() - DELIVERY_RETENTION)
                )
        except SQLAlchemyError as exc:
            log.warning("stackward: pruning old webhook deliveries failed: %s", type(exc).__name__)

    @contextmanager
    def exclusive(self, environment: str) -> Iterator[bool]:
        """Hold the environment for this replica; yields False when another replica has it."""
        if not self.postgres:
            lock = self._local_locks.setdefault(environment, threading.Lock())
            got = lock.acquire(blocking=False)
            try:
                yield got
            finally:
                if got:
                    lock.release()
            return
        key = int.from_bytes(
            hashlib.sha256(f"stackward:{environment}".encode()).digest()[:8], "big", signed=True
        )
        with self.engine.connect() as conn:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
