"""The `--reader` mode of the ZenML worker process: registrations of many embedded stores, read
by their database files in one process that imports zenml once (the reconciler's reads).
Started as a worker with the argument `--reader`; the client side is
stackward.zenml.executor.StoreReader."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from typing import Any, TextIO
from urllib.request import pathname2url

from stackward.zenml.reading import read_registrations
from stackward.zenml.worker import send_line


class Unavailable(Exception):
    """This store is not for the reader as it is; the environment's own worker reads it."""


class DatabaseReader:
    """Reads embedded stores by their database file, any number per process, and never writes.

    One ZenML SqlZenStore (opened without its migration check or default registrations) serves
    every database: each read points its engine's new connections at that database file, so
    SQLAlchemy's compiled statements are reused instead of compiled again per store. A store
    at another zenml's schema (or not a store yet) is Unavailable: the environment's worker
    opens it the full way, migrating it if needed. A database that did not change since its
    last read (see _database_version) is answered with that read, kept as its JSON text (a
    service reading a thousand stores keeps a thousand reads)."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[tuple[int, ...], str]] = {}
        self.store: Any = None
        self.database = ""

    def _store_for(self, database: str) -> Any:
        from sqlalchemy import event
        from zenml.zen_stores.sql_zen_store import SqlZenStore, SqlZenStoreConfiguration

        if self.store is None:
            self.store = SqlZenStore(
                config=SqlZenStoreConfiguration(url=f"sqlite:///{database}"),
                skip_default_registrations=True,
                skip_migrations=True,
            )
            event.listen(self.store.engine, "do_connect", self._connect_to_current)
        self.database = database  # every read disposes its connections, so new ones open this file
        return self.store

    def _connect_to_current(self, dialect: Any, record: Any, cargs: list, cparams: dict) -> None:
        cargs[0] = self.database  # sqlite3.connect's first argument: the database file

    def read(self, database: str) -> str:
        """The store's registrations as a JSON list."""
        version = _database_version(database)  # before reading: a later write makes a new version
        last = self.last.get(database)
        if version is not None and last is not None and last[0] == version:
            return last[1]
        self.last.pop(database, None)
        if not _schema_is_current(database):
            raise Unavailable(f"{database} is not a store at this zenml's schema")
        store = self._store_for(database)
        try:
            registrations = json.dumps(read_registrations(store), default=str)
        finally:
            store.engine.dispose()  # no connection (nor its locks) is kept between reads
        if version is not None and _database_version(database) == version:  # no write meanwhile
            self.last[database] = (version, registrations)
        return registrations


def _database_version(database: str) -> tuple[int, ...] | None:
    """A value that changes with every committed write to an SQLite database, or None when it
    cannot be trusted. In rollback-journal mode (ZenML's default) SQLite increments the file
    change counter in the database header on each commit; in WAL mode, or while a journal file
    exists (a write under way, or a journal mode that keeps it), that does not hold.

    Only for a process that holds no SQLite connection to the file at the time: closing any
    descriptor of a file drops every POSIX lock the process holds on it (this one holds none
    between reads)."""

    def journaled() -> bool:
        return any(os.path.exists(database + suffix) for suffix in ("-journal", "-wal"))

    if journaled():
        return None
    try:
        with open(database, "rb") as file:
            stat = os.fstat(file.fileno())
            header = file.read(100)
    except OSError:
        return None
    if journaled() or len(header) < 100 or not header.startswith(b"SQLite format 3\x00") or header[18] == 2:
        return None
    counter = int.from_bytes(header[24:28], "big")
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, counter)


def _schema_is_current(database: str) -> bool:
    """Whether the database holds a store at this zenml's schema: each ZenML release ends its
    migrations with one whose revision is the release version."""
    import zenml

    try:
        uri = f"file:{pathname2url(database)}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            rows = db.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        return False
    return rows == [(zenml.__version__,)]


def serve_reader(requests: TextIO, out: TextIO) -> None:
    """The `--reader` protocol: read requests for many stores, one reply line each."""
    reader = DatabaseReader()
    for line in requests:
        request = json.loads(line)
        try:
            registrations = reader.read(request["database"])
            out.write(f'{{"registrations": {registrations}}}\n')
            out.flush()
        except Unavailable as exc:
            send_line(out, {"unavailable": str(exc)})
        except Exception as exc:
            send_line(out, {"error": f"{type(exc).__name__}: {exc}"})
