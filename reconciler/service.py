"""The reconcile loop: keep every environment converged with the branch head.

It schedules one pass per environment (on an interval with jitter, on request with
coalescing, backed off after failures), bounds each pass by a timeout and keeps its status;
what a pass does is in reconciler.phases.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from reconciler.config import ServiceSettings
from reconciler.metrics import Metrics
from reconciler.notify import Notifier
from reconciler.phases import Phases
from reconciler.source import Source, SourceError
from reconciler.status import EnvironmentStatus, Reason, Type
from reconciler.store import Store
from stackward.errors import StackwardError, UsageError
from stackward.plan.state import now
from stackward.secrets import TOKEN_VARIABLES
from stackward.spec.discover import discover
from stackward.spec.resolve import Resolver
from stackward.state import StateStore, open_store, state_url
from stackward.state.ledger import Ledger
from stackward.zenml.executor import StoreReader

log = logging.getLogger("stackward.reconciler")


@dataclass
class _Schedule:
    due: float = 0.0
    requested_at: float | None = None


class Reconciler(Phases):
    def __init__(self, settings: ServiceSettings, store: Store, metrics: Metrics):
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.source = Source(settings)
        self._schedule: dict[str, _Schedule] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.running = False
        # the service's one scrubber knows its own secrets from the start, the specs' as it reads them
        store.scrub.add(
            *(os.environ.get(name) for name in (*TOKEN_VARIABLES, settings.github_token_env)),
            settings.api_token,
            settings.webhook_secret,
            settings.state_url,
            settings.database_url,
        )
        self.notifier = Notifier(settings, store.scrub)
        self.reader = StoreReader()  # one zenml import for every environment's reads
        self.stores: dict[str, StateStore] = {}

    # -- environments and their status -----------------------------------------------------
    def environments(self) -> list[str]:
        """Environments in the current checkout (no fetch: passes bring it up to date)."""
        try:
            repo, _ = discover(self.source.folder)
        except UsageError:
            return []
        return sorted(repo.environments)

    def status(self, name: str) -> EnvironmentStatus:
        status = self.store.load(name)
        if status is None:
            status = EnvironmentStatus(name)
            status.set(Type.READY, False, Reason.NOT_RECONCILED, "waiting for the first reconcile")
        return status

    def set_suspended(self, name: str, suspended: bool) -> EnvironmentStatus:
        status = self.status(name)
        status.suspended = suspended
        if suspended:
            status.set(Type.READY, status.ready, Reason.SUSPENDED, "reconciliation suspended")
        self.store.save(status)
        if not suspended:
            self.request(name)
        return status

    def history(self, name: str) -> list[dict]:
        """The environment's applies from the ledger, newest first, whoever applied them (the
        Action, the CLI or this service)."""
        store = self.stores.get(name) or self._store_for(name)
        applies = Ledger(store, name, self.store.scrub).applies()
        return [_history_entry(a) for a in reversed(applies)][: self.settings.history_size]

    def _store_for(self, name: str) -> StateStore:
        """`name`'s state store before its first pass: its spec's `state.urlEnv`, else the setting."""
        url = self.settings.state_url
        try:
            repo, _ = discover(self.source.folder)
            if name in repo.environments:
                url = state_url(Resolver(repo).resolve(name), url)
        except StackwardError:
            pass  # not checked out yet, or the variable is missing: the setting's store
        return open_store(url, self.settings.state_root(Path()))

    # -- scheduling --------------------------------------------------------------------------
    def request(self, name: str | None = None) -> None:
        """Reconcile soon; requests within the coalescing window become one pass."""
        names = [name] if name else self.environments()
        with self._lock:
            for env in names:
                entry = self._schedule.setdefault(env, _Schedule())
                if entry.requested_at is None:
                    entry.requested_at = time.monotonic() + self.settings.coalesce_seconds
        self._wake.set()

    def _next(self) -> str | None:
        clock = time.monotonic()
        with self._lock:
            for env in self.environments():
                entry = self._schedule.setdefault(env, _Schedule())
                if (entry.requested_at is not None and entry.requested_at <= clock) or entry.due <= clock:
                    entry.requested_at = None
                    return env
        return None

    def _reschedule(self, name: str, status: EnvironmentStatus) -> None:
        s = self.settings
        delay = min(s.backoff * 2 ** (status.failures - 1), s.backoff_cap) if status.failures else s.interval
        with self._lock:
            self._schedule.setdefault(name, _Schedule()).due = time.monotonic() + delay * (
                1 + random.random() * s.jitter
            )

    def start(self) -> None:
        if self.settings.remote and not self.source.cloned:
            with contextlib.suppress(SourceError):  # every pass reports it until the remote answers
                self.source.sync()  # the first clone, so there are environments to schedule
        self._thread = threading.Thread(target=self._loop, name="stackward-reconciler", daemon=True)
        self._thread.start()
        self.running = True

    def stop(self, wait: float = 60.0) -> None:
        """Finish the pass under way (bounded), then stop."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(wait)
        self.reader.close()
        self.running = False

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                name = self._next()
                if name is None:
                    self._wake.wait(0.5)
                    self._wake.clear()
                    continue
                self.run_pass(name)
            except Exception:
                log.exception("stackward: reconcile loop error; continuing")
                self._stop.wait(5)

    def run_pass(self, name: str) -> EnvironmentStatus:
        """One reconcile of `name`, bounded by the pass timeout; it is always rescheduled."""
        result: list[EnvironmentStatus] = []
        worker = threading.Thread(target=lambda: result.append(self._attempt(name)), daemon=True)
        worker.start()
        worker.join(self.settings.timeout)
        if worker.is_alive():
            self.reader.stop_read()  # a read stuck in ZenML fails now instead of holding the reader
            worker.join(10)  # how the pass ended is recorded first, the stall on top of it
            status = self.status(name)
            status.set(
                Type.STALLED,
                True,
                Reason.TIMED_OUT,
                f"the pass did not finish within {self.settings.timeout:.0f} s",
            )
            self.store.save(status)
        else:
            status = result[0]
        self._reschedule(name, status)
        return status

    def _attempt(self, name: str) -> EnvironmentStatus:
        """reconcile(), with an unexpected error recorded as a failure (and logged in full)."""
        try:
            return self.reconcile(name)
        except Exception as exc:
            log.exception("stackward: reconciling %s failed unexpectedly", name)
            status = self.status(name)
            self._fail(status, Reason.RECONCILIATION_FAILED, f"{type(exc).__name__}: {exc}")
            self.store.save(status)
            return status

    # -- one pass ----------------------------------------------------------------------------
    def reconcile(self, name: str) -> EnvironmentStatus:
        status = self.status(name)
        if status.suspended:
            return status
        with self.store.exclusive(name) as mine:
            if not mine:
                return status  # another replica is reconciling it
            started = time.monotonic()
            status.set(Type.RECONCILING, True, Reason.PROGRESSING, "reconciling")
            self.store.save(status)
            before = self.status(name)
            try:
                self._pass(status)
            finally:
                status.set(Type.RECONCILING, False, Reason.PROGRESSING, "")
                status.last_reconcile_at = now()
                self.store.save(status)
                self.metrics.observe(status, time.monotonic() - started)
            self.notifier.changed(before, status)
        return status


def _history_entry(summary: dict) -> dict:
    """A ledger apply as the API and the dashboard show it."""
    result = summary.get("result", "interrupted")
    if result == "success":
        result = "healed" if summary.get("reason") == "heal" else "applied"
    return {
        "apply": summary.get("apply"),
        "revision": summary.get("revision") or "",
        "plan_hash": summary.get("plan_hash") or "",
        "started": summary.get("started", ""),
        "finished": summary.get("finished", ""),
        "result": result,
        "by": summary.get("by", ""),
        "changes": summary.get("planned", []),
        "error": summary.get("error", ""),
    }
