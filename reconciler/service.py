"""The reconcile loop: keep every environment converged with the branch head.

It schedules one pass per environment (on an interval with jitter, on request with
coalescing, backed off after failures), up to `concurrency` environments at once and never
one environment twice at once; it bounds each pass by a timeout and keeps its status. People
suspend, resume and approve through it while passes run. On shutdown it takes no new pass,
asks the running Terraform commands to stop gracefully, waits up to `shutdown_grace`, then
kills what is left and records those passes as interrupted. What a pass does is in
reconciler.phases.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from reconciler.config import ServiceSettings
from reconciler.metrics import Metrics
from reconciler.notify import Notifier
from reconciler.phases import Heads, Phases
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
from stackward.terraform.executor import TerraformProcesses
from stackward.zenml.executor import StoreReader

log = logging.getLogger("stackward.reconciler")

LIST_EVERY = 1.0  # seconds: the environments folder is listed again at most this often
IDLE_WAIT = 0.5  # seconds the loop sleeps at most when nothing is due (it wakes on requests)
# A pass still running after this many seconds is shown Reconciling; a quicker one (most passes
# with nothing to do) writes its status once, at its end: SQLite writes one status at a time.
SHOW_RECONCILING_AFTER = 1.0
KILLED_WAIT = 5.0  # seconds for passes to record what they were doing once their Terraform is killed
PLAN_HASH = re.compile(r"[0-9a-f]{64}")


class ApprovalRefused(StackwardError):
    """The plan named is not the one waiting for approval; the message says which one is."""


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
        self.heads = Heads(settings, self.source)
        self._schedule: dict[str, _Schedule] = {}
        self._running: set[str] = set()  # environments whose pass is under way
        self._slots = threading.Semaphore(settings.concurrency)
        self._lock = threading.Lock()
        self._status_lock = threading.RLock()  # status reads and writes, one at a time
        self._abandoned: set[str] = set()
        # passes under way not shown as Reconciling yet: (started at, that status, pass ended)
        self._progress: dict[str, tuple[float, EnvironmentStatus, threading.Event]] = {}
        self._listed: tuple[float, list[str]] = (-LIST_EVERY, [])
        self._wake = threading.Event()
        self.stopping = threading.Event()
        self._deadline: float | None = None  # when the shutdown's grace period ends
        self._soonest = 0.0  # when the next environment is due, as _next() last found
        self._clone_due = 0.0  # when to try the first clone again (the remote did not answer)
        self._clone_failures = 0
        self._thread: threading.Thread | None = None
        self.running = False
        self.terraform = TerraformProcesses()  # every Terraform command the passes run
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
        """Environments in the current checkout (no fetch: passes bring it up to date), listed
        again at most every LIST_EVERY seconds."""
        listed_at, names = self._listed
        if time.monotonic() - listed_at < LIST_EVERY:
            return names
        try:
            repo, _ = discover(self.source.folder)
            names = sorted(repo.environments)
        except UsageError:
            names = []
        self._listed = (time.monotonic(), names)
        return names

    def status(self, name: str) -> EnvironmentStatus:
        with self._status_lock:
            status = self.store.load(name)
        if status is None:
            status = EnvironmentStatus(name)
            status.set(Type.READY, False, Reason.NOT_RECONCILED, "waiting for the first reconcile")
        return status

    def set_suspended(self, name: str, suspended: bool) -> EnvironmentStatus:
        """Suspend or resume; a pass under way keeps it (its apply, if not started, is skipped)."""
        with self._status_lock:
            status = self.status(name)
            status.suspended = suspended
            if suspended:
                status.set(Type.READY, status.ready, Reason.SUSPENDED, "reconciliation suspended")
            self.store.save(status)
        if not suspended:
            self.request(name)
        return status

    def approve(self, name: str, plan_hash: str) -> EnvironmentStatus:
        """Approve the plan waiting for approval, named by its hash; the next pass applies it if
        planning again gives that hash. ApprovalRefused for any other hash."""
        if not self.settings.requires_approval(name):
            raise ApprovalRefused(
                f"{name} does not require approval (the require_approval setting): "
                "the service applies its plans as they come"
            )
        if not PLAN_HASH.fullmatch(plan_hash):
            raise ApprovalRefused(
                f"{name}: {plan_hash[:80]!r} is not a plan hash; give the 64 hex digits of "
                f"awaiting_approval in GET /api/environments/{name}"
            )
        with self._status_lock:
            status = self.status(name)
            waiting = status.awaiting_approval
            if not waiting:
                ready = status.condition(Type.READY)
                raise ApprovalRefused(
                    f"{name}: no plan waits for approval (Ready: {ready.reason.value if ready else 'unknown'}); "
                    "nothing was approved"
                )
            if plan_hash != waiting:
                raise ApprovalRefused(
                    f"{name}: plan {plan_hash[:12]} is not the plan waiting for approval; {waiting[:12]} "
                    f"is (its changes are in GET /api/environments/{name}): review it and approve its hash"
                )
            status.approved_plan = plan_hash
            self.store.save(status)
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
        """Reconcile soon, from a fresh fetch; requests within the coalescing window become one pass."""
        names = [name] if name else self.environments()
        with self._lock:
            for env in names:
                entry = self._schedule.setdefault(env, _Schedule())
                if entry.requested_at is None:
                    entry.requested_at = time.monotonic() + self.settings.coalesce_seconds
        self.heads.refresh()
        self._clone_due = 0.0  # (a push: the remote may answer again)
        self._wake.set()

    def _next(self) -> str | None:
        """The environment to reconcile now, marked as running: the one waiting longest
        (requested, or due), among those without a pass under way. `_soonest` is when the next
        one will be."""
        clock = time.monotonic()
        chosen, since, soonest = None, clock, clock + IDLE_WAIT
        with self._lock:
            for env in self.environments():
                if env in self._running:
                    continue
                entry = self._schedule.setdefault(env, _Schedule())
                ready_at = entry.due if entry.requested_at is None else min(entry.due, entry.requested_at)
                if ready_at <= clock and (chosen is None or ready_at < since):
                    chosen, since = env, ready_at
                soonest = min(soonest, ready_at)
            if chosen is not None:
                self._schedule[chosen].requested_at = None
                self._running.add(chosen)
        self._soonest = soonest
        return chosen

    def _reschedule(self, name: str, status: EnvironmentStatus) -> None:
        s = self.settings
        delay = self._backoff(status.failures) if status.failures else s.interval
        with self._lock:
            self._schedule.setdefault(name, _Schedule()).due = time.monotonic() + delay * (
                1 + random.random() * s.jitter
            )

    def _backoff(self, failures: int) -> float:
        """Seconds to wait after `failures` failures in a row: `backoff`, doubling, capped."""
        return min(self.settings.backoff * 2 ** (failures - 1), self.settings.backoff_cap)

    def _first_clone(self) -> None:
        """Clone the remote if it is not cloned yet (so there are environments to schedule);
        a failure is tried again, backing off as a failing pass does, or at once on a request."""
        if not self.settings.remote or self.source.cloned or time.monotonic() < self._clone_due:
            return
        try:
            self.source.sync()
        except SourceError as exc:
            self._clone_failures += 1
            delay = self._backoff(self._clone_failures)
            self._clone_due = time.monotonic() + delay
            log.warning("stackward: %s; trying again in %.0f s", self.store.scrub(str(exc)), delay)

    def start(self) -> None:
        self._first_clone()
        self._thread = threading.Thread(target=self._loop, name="stackward-reconciler", daemon=True)
        self._thread.start()
        self.running = True

    def _loop(self) -> None:
        """Start a pass whenever a slot is free and an environment is due."""
        while not self.stopping.is_set():
            try:
                self._first_clone()
                if not self._slots.acquire(timeout=IDLE_WAIT):
                    continue
                name = self._next() if not self.stopping.is_set() else None
                if name is None:
                    self._slots.release()
                    self._wake.wait(max(0.0, self._soonest - time.monotonic()))
                    self._wake.clear()
                    continue
                threading.Thread(
                    target=self._dispatched, args=(name,), name=f"stackward-pass-{name}", daemon=True
                ).start()
            except Exception:
                log.exception("stackward: reconcile loop error; continuing")
                self.stopping.wait(5)

    def _dispatched(self, name: str) -> None:
        try:
            self.run_pass(name)
        except Exception:
            log.exception("stackward: scheduling %s failed; continuing", name)
        finally:
            self._slots.release()
            self._wake.set()

    # -- shutdown ----------------------------------------------------------------------------
    def begin_shutdown(self) -> None:
        """Take no new pass and ask every running Terraform command to stop gracefully
        (SIGINT); returns at once. The grace period starts with the first call."""
        with self._lock:
            if self._deadline is None:
                self._deadline = time.monotonic() + self.settings.shutdown_grace
        self.running = False
        self.stopping.set()
        self._wake.set()
        self.terraform.interrupt("the service is shutting down")
        self.reader.close()  # a read under way ends now; applies write through their own workers

    def stop(self) -> None:
        """Shut down: begin_shutdown(), wait for the passes under way until the grace period
        ends, kill the Terraform commands still running, and record the passes that still did
        not end as interrupted (none stays Reconciling)."""
        self.begin_shutdown()
        assert self._deadline is not None
        if self._thread is not None:
            self._thread.join()
        if not self._passes_end_by(self._deadline):
            log.warning("stackward: passes still running after the shutdown grace period; killing Terraform")
            self.terraform.kill()
            self._passes_end_by(time.monotonic() + KILLED_WAIT)
        with self._lock:
            left = list(self._running)
        for name in left:
            self._abandon(name)

    def _passes_end_by(self, deadline: float) -> bool:
        """Wait until no pass runs, or `deadline`; whether none runs."""
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running:
                    return True
            time.sleep(0.05)
        with self._lock:
            return not self._running

    def _abandon(self, name: str) -> None:
        """Record a pass the shutdown could not wait for as interrupted; it records nothing more."""
        with self._status_lock:
            self._abandoned.add(name)
            status = self.status(name)
            status.set(Type.RECONCILING, False, Reason.PROGRESSING, "")
            status.set(
                Type.READY,
                False,
                Reason.INTERRUPTED,
                "the service shut down during this pass, which did not end within the "
                f"{self.settings.shutdown_grace:.0f} s shutdown grace period; the next start reconciles again",
            )
            self.store.save(status)

    # -- one pass ----------------------------------------------------------------------------
    def run_pass(self, name: str) -> EnvironmentStatus:
        """One reconcile of `name`, bounded by the pass timeout; it is always rescheduled."""
        with self._lock:
            self._running.add(name)
            self.metrics.running(len(self._running))
        result: list[EnvironmentStatus] = []
        worker = threading.Thread(target=self._attempt, args=(name, result), daemon=True)
        worker.start()
        deadline = time.monotonic() + self.settings.timeout
        while worker.is_alive() and (left := deadline - time.monotonic()) > 0:
            shown = self._progress.get(name)
            if shown is None:  # not started yet, or already shown as Reconciling
                worker.join(min(left, SHOW_RECONCILING_AFTER / 2))
            elif (wait := shown[0] + SHOW_RECONCILING_AFTER - time.monotonic()) > 0:
                worker.join(min(left, wait))
            else:
                self._show_reconciling(name, *shown[1:])
        if worker.is_alive():
            self.reader.stop_read(name)  # its read stuck in ZenML fails now instead of holding the reader
            worker.join(10)  # how the pass ended is recorded first, the stall on top of it
            status = self.status(name)
            status.set(
                Type.STALLED,
                True,
                Reason.TIMED_OUT,
                f"the pass did not finish within {self.settings.timeout:.0f} s",
            )
            self._record(status)
        else:
            status = result[0]
        self._reschedule(name, status)
        return status

    def _attempt(self, name: str, result: list[EnvironmentStatus]) -> None:
        """reconcile(), with an unexpected error recorded as a failure (and logged in full); the
        environment counts as running until it returns, even after the pass timed out."""
        try:
            with self.terraform.use():
                result.append(self.reconcile(name))
        except Exception as exc:
            log.exception("stackward: reconciling %s failed unexpectedly", name)
            status = self.status(name)
            self._fail(status, Reason.RECONCILIATION_FAILED, f"{type(exc).__name__}: {exc}")
            self._record(status)
            result.append(status)
        finally:
            with self._lock:
                self._running.discard(name)
                self.metrics.running(len(self._running))

    def reconcile(self, name: str) -> EnvironmentStatus:
        status = self.status(name)
        if status.suspended:
            return status
        with self.store.exclusive(name) as mine:
            if not mine:
                return status  # another replica (or a pass that timed out) is reconciling it
            started = time.monotonic()
            before = copy.deepcopy(status)
            ended = threading.Event()
            progress = copy.deepcopy(status)
            progress.set(Type.RECONCILING, True, Reason.PROGRESSING, "reconciling")
            self._progress[name] = (started, progress, ended)  # run_pass shows it after a second
            try:
                self._pass(status)
            finally:
                self._progress.pop(name, None)
                status.set(Type.RECONCILING, False, Reason.PROGRESSING, "")
                status.last_reconcile_at = now()
                with self._status_lock:
                    ended.set()
                    self._record(status)
                self.metrics.observe(status, time.monotonic() - started)
            self.notifier.changed(before, status)
        return status

    def _show_reconciling(self, name: str, progress: EnvironmentStatus, ended: threading.Event) -> None:
        """Record that a pass is under way, unless it ended meanwhile (its result is recorded)."""
        self._progress.pop(name, None)
        with self._status_lock:
            if not ended.is_set():
                self._record(progress)


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
