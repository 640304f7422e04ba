"""The state store contract on both kinds (the state folder, PostgreSQL): locks freed by the
system when their holder dies, leases that know when their lock was lost, the ledger; and
what only the PostgreSQL store gives: one lock for every machine."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from postgres import postgres_server

from stackward.errors import CannotRun, Interrupted
from stackward.plan.state import LockError, now
from stackward.state import Applied, StateStore, open_store
from stackward.state.ledger import Ledger
from stackward.state.local import LocalStore
from stackward.state.postgres import PostgresStore, StateStoreError


@pytest.fixture(scope="session", autouse=True)
def catalog():
    """Overrides conftest's: these tests never touch zenml, so they skip building its catalog."""


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture
def pg_url(server: str) -> str:
    """A fresh, empty database on the module's server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))


@pytest.fixture(params=["local", "postgres"])
def url(request: pytest.FixtureRequest) -> str:
    """The state URL of each kind: empty for the state folder."""
    return "" if request.param == "local" else request.getfixturevalue("pg_url")


@pytest.fixture
def store(url: str, tmp_path: Path) -> StateStore:
    return open_store(url, tmp_path / "state")


def test_the_ledger_round_trips_in_order(store: StateStore):
    assert store.entries("dev") == []
    appended = [
        {"at": now(), "event": "started", "apply": "a1", "revision": "abc", "changes": [{"address": "x"}]},
        {"at": now(), "event": "step", "apply": "a1", "change": {"n": 1, "f": 2.5, "ok": True, "none": None}},
        {"at": "not a time", "event": "finished", "apply": "a1", "result": "failed", "error": 'é ✓ "q"'},
    ]
    for entry in appended:
        store.append("dev", entry)
    store.append("prod", {"at": now(), "event": "started", "apply": "b1"})
    assert store.entries("dev") == appended
    assert [e["apply"] for e in store.entries("prod")] == ["b1"]


def test_the_applied_revision_is_the_last_recorded(store: StateStore):
    assert store.applied("dev") is None
    first, second = Applied("rev1", "hash1", now(), "stackward apply dev"), Applied("rev2", "h2", now(), "x")
    store.set_applied("dev", first)
    assert store.applied("dev") == first
    store.set_applied("dev", second)
    assert store.applied("dev") == second
    assert store.applied("prod") is None


def test_a_second_holder_waits_then_fails_naming_the_first(store: StateStore):
    assert store.release("dev", False) == "environment dev is not locked"
    with store.hold("dev", "stackward apply dev (first)", 5) as lease:
        assert lease.holder["command"] == "stackward apply dev (first)" and lease.holder["id"]
        lease.check()  # held
        started = time.monotonic()
        with (
            pytest.raises(
                LockError, match=r"locked by stackward apply dev \(first\) \(pid \d+ on .*gave up after 1 s"
            ),
            store.hold("dev", "stackward apply dev (second)", 1),
        ):
            pass
        assert 1 <= time.monotonic() - started < 3  # it waited for the timeout, no longer
        with pytest.raises(LockError, match="first"):
            store.release("dev", False)  # its holder is alive
        with store.hold("prod", "stackward apply prod", 0):
            pass  # one environment's lock leaves the others free
    with store.hold("dev", "stackward apply dev (third)", 0):
        pass
    with pytest.raises(RuntimeError), store.hold("dev", "fails inside", 0):
        raise RuntimeError
    with store.hold("dev", "after a failure", 0):
        pass
    assert store.release("dev", False) == "environment dev is not locked"


CHILD = """
import sys, time
from stackward.state import open_store
with open_store(sys.argv[1], __import__("pathlib").Path(sys.argv[2])).hold("prod", sys.argv[3], 30):
    print("held", flush=True)
    time.sleep(600)
"""


def _machine(url: str, state: Path, command: str) -> subprocess.Popen:
    """Another process (another machine, with PostgreSQL: its own state folder) holding prod."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(state), command], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline() == "held\n"
    return child


def test_a_killed_holders_lock_is_free_at_once_and_unlock_says_so(url: str, tmp_path: Path):
    state = tmp_path / "state"
    store = open_store(url, state)
    holder = _machine(url, state, "stackward apply prod (killed)")
    try:
        with (
            pytest.raises(
                LockError, match=r"locked by stackward apply prod \(killed\) \(pid \d+ on .*, instance "
            ),
            store.hold("prod", "stackward apply prod (next)", 0),
        ):
            pass
        with pytest.raises(LockError, match=r"held by stackward apply prod \(killed\)"):
            store.release("prod", False)
    finally:
        holder.kill()  # kill -9: it releases nothing itself
        holder.wait()
    with store.hold("prod", "stackward apply prod (next)", 0) as lease:  # no unlock first
        lease.check()
    holder = _machine(url, state, "stackward apply prod (killed again)")
    holder.kill()
    holder.wait()
    released = store.release("prod", False)
    assert released.startswith("environment prod was no longer locked (") and "killed again" in released
    assert store.release("prod", False) == "environment prod is not locked"


def test_a_forced_unlock_takes_a_local_lock_away_and_its_holder_learns_it(tmp_path: Path):
    store = LocalStore(tmp_path / "state")
    with contextlib.ExitStack() as first_run:
        first = first_run.enter_context(store.hold("dev", "stackward apply dev (first)", 0))
        with pytest.raises(
            LockError, match=r"held by stackward apply dev \(first\) .*still running.*--force"
        ):
            store.release("dev", False)
        first.check()
        taken = store.release("dev", True)
        assert taken.startswith("took the lock of environment dev away from stackward apply dev (first)")
        assert "stops before its next change" in taken
        with pytest.raises(Interrupted, match=r"^dev: this run no longer holds the environment's lock: "):
            first.check()
        second = store.hold("dev", "stackward apply dev (second)", 0)
        with second as lease:
            first_run.close()  # the first run ends: the second's lock stays
            lease.check()
            with pytest.raises(LockError, match=r"\(second\)"), store.hold("dev", "third", 0):
                pass
    assert store.release("dev", False) == "environment dev is not locked"


def test_a_lease_whose_connection_ended_is_lost_and_releases_quietly(pg_url: str):
    store = PostgresStore.at(pg_url)
    with store.hold("dev", "stackward apply dev (first)", 0) as lease:
        lease.check()
        with psycopg.connect(pg_url, autocommit=True) as admin:  # as a database restart would
            admin.execute("SELECT pg_terminate_backend(%s)", (lease.conn.info.backend_pid,))
        with pytest.raises(
            Interrupted, match=r"^dev: this run lost the environment's lock in PostgreSQL at "
        ):
            lease.check()
        with store.hold("dev", "stackward apply dev (second)", 0) as second:  # free for the next run
            second.check()
    # Leaving the first block unlocked nothing on a dead connection, and raised nothing.
    with store.hold("dev", "stackward apply dev (third)", 0):
        pass


def test_kept_ledger_entries_wait_out_a_store_that_cannot_write(tmp_path: Path):
    blocked = tmp_path / "state"
    blocked.write_text("a file where the state folder should be")
    ledger = Ledger(LocalStore(blocked), "dev", retry_seconds=0.5)
    started = time.monotonic()
    ledger.keep("step", "a1", change="create x")
    assert 0.5 <= time.monotonic() - started < 2  # tried again for retry_seconds, then gave up
    assert [e["change"] for e in ledger.unrecorded] == ["create x"]
    assert (
        ledger.failure.startswith("the state store (the state folder ")
        and "could not record" in ledger.failure
    )
    started = time.monotonic()
    ledger.keep("step", "a1", change="create y")  # still down: one try, no waiting
    assert time.monotonic() - started < 0.4 and len(ledger.unrecorded) == 2
    blocked.unlink()  # the store is back
    ledger.keep("finished", "a1", result="success")
    assert ledger.unrecorded == [] and ledger.failure == ""
    assert [(e["event"], e.get("change")) for e in ledger.entries()] == [
        ("step", "create x"),
        ("step", "create y"),
        ("finished", None),
    ]


def test_two_machines_share_one_lock_that_dies_with_its_holder(pg_url: str, tmp_path: Path):
    store = open_store(pg_url, tmp_path / "machine-b")
    assert store.shared and isinstance(store, PostgresStore)
    a = _machine(pg_url, tmp_path / "machine-a", "stackward apply prod (machine A)")
    try:
        with (
            pytest.raises(
                LockError, match=rf"locked by stackward apply prod \(machine A\) \(pid {a.pid} on "
            ),
            store.hold("prod", "stackward apply prod (machine B)", 1),
        ):
            pass
        with pytest.raises(LockError, match="cannot be released even with --force; it frees itself"):
            store.release("prod", True)
    finally:
        a.kill()  # kill -9: no unlock, its description row stays behind
        a.wait()
    started = time.monotonic()
    with store.hold("prod", "stackward apply prod (machine B)", 5):  # no unlock needed
        assert time.monotonic() - started < 2

    a = _machine(pg_url, tmp_path / "machine-a", "stackward apply prod (machine A, again)")
    a.kill()
    a.wait()
    released = store.release("prod", False)
    assert "no longer locked" in released and "machine A, again" in released
    assert store.release("prod", False) == "environment prod is not locked"


def test_stores_opening_a_fresh_database_at_once_migrate_it_once(pg_url: str):
    stores = [PostgresStore(pg_url) for _ in range(6)]  # as separate processes would: no shared instance
    start, errors = threading.Barrier(len(stores)), []

    def first_use(index: int) -> None:
        start.wait()
        try:
            stores[index].append("dev", {"event": "started", "apply": str(index)})
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(e["apply"] for e in stores[0].entries("dev")) == [str(i) for i in range(len(stores))]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM stackward_schema ORDER BY version").fetchall() == [
            (1,),
            (2,),
        ]


def test_one_store_per_url_and_every_url_form(pg_url: str):
    found: list[PostgresStore] = []
    threads = [threading.Thread(target=lambda: found.append(PostgresStore.at(pg_url))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(s) for s in found}) == 1
    rest = pg_url.split("://", 1)[1]
    for scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        store = open_store(f"{scheme}://{rest}", Path("unused"))
        store.set_applied(scheme, Applied("r", "h", now(), scheme))
        assert store.applied(scheme).by == scheme


def test_an_unreachable_database_is_a_clear_error_without_the_password():
    store = PostgresStore.at("postgresql+psycopg://me:s3cret-pw@127.0.0.1:9/states?connect_timeout=3")
    assert store.description == "PostgreSQL at 127.0.0.1:9/states"
    with pytest.raises(
        StateStoreError, match=r"PostgreSQL at 127\.0\.0\.1:9/states\) cannot be reached"
    ) as err:
        store.entries("dev")
    assert isinstance(err.value, CannotRun) and "s3cret-pw" not in str(err.value)
