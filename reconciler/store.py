"""Status and webhook deliveries in SQLite (default) or PostgreSQL (replicas). The history of
applies is the ledger in the state store (stackward.state), shared with the CLI and the Action.

With PostgreSQL, a per-environment advisory lock makes sure two replicas never reconcile the
same environment at once.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, MetaData, String, Table, Text, create_engine, select, text
from sqlalchemy.engine import Engine

from reconciler.status import EnvironmentStatus
from stackward.secrets import Scrubber

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
    Column("delivery", String(128), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
)


def _now() -> datetime:
    return datetime.now(UTC)


class Store:
    """What the API, the dashboard and the metrics show. Everything saved goes through
    `scrub` first: a secret value that reached a message is stored as (sensitive)."""

    def __init__(self, url: str):
        self.scrub = Scrubber()
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        self.postgres = self.engine.dialect.name == "postgresql"
        self._local_locks: dict[str, threading.Lock] = {}
        metadata.create_all(self.engine)

    def load(self, environment: str) -> EnvironmentStatus | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(status_table.c.data).where(status_table.c.environment == environment)
            ).first()
        return EnvironmentStatus.from_dict(json.loads(row[0])) if row else None

    def save(self, status: EnvironmentStatus) -> None:
        data = json.dumps(self.scrub.data(status.to_dict()), sort_keys=True, default=str)
        with self.engine.begin() as conn:
            updated = conn.execute(
                status_table.update()
                .where(status_table.c.environment == status.name)
                .values(data=data, updated_at=_now())
            ).rowcount
            if not updated:
                conn.execute(
                    status_table.insert().values(environment=status.name, data=data, updated_at=_now())
                )

    def first_delivery(self, delivery: str) -> bool:
        """True the first time a webhook delivery id is seen."""
        with self.engine.begin() as conn:
            seen = conn.execute(
                select(deliveries_table.c.delivery).where(deliveries_table.c.delivery == delivery)
            ).first()
            if seen:
                return False
            conn.execute(deliveries_table.insert().values(delivery=delivery, at=_now()))
        return True

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
