"""The reconcile loop: keep every environment converged with the branch head.

One pass per environment, with the engine the Action uses (plan_environment,
apply_environment): desired state at the head -> plan -> apply a new revision (auto-sync) or
report it; when the specs did not change but the plan is not empty, the live state drifted:
report it, or heal it where the environment says `drift: heal`.
"""

from __future__ import annotations

import contextlib
import logging
import random
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from reconciler.config import Settings
from reconciler.metrics import Metrics
from reconciler.notify import Notifier
from reconciler.status import EnvironmentStatus, Reason, Type
from reconciler.store import Store
from stackward.changes import Action, EnvironmentPlan
from stackward.executors.terraform import TerraformError
from stackward.executors.zenml import StoreReader, ZenmlError
from stackward.planning import (
    ApplyRefused,
    Planned,
    apply_environment,
    plan_environment,
    plan_policy_findings,
)
from stackward.policy.check import PolicyOptions
from stackward.policy.engine import PolicyEngineError
from stackward.policy.sources import PolicySourceError
from stackward.resolve import UsageError, discover
from stackward.state import EnvironmentState, LockError, holder_is_stale, now, read_holder, unlock
from stackward.validation import validate

log = logging.getLogger("stackward.reconciler")


class SourceError(Exception):
    """The environments repo could not be brought up to date."""


class Source:
    """The environments folder: a clone kept at the branch head, or a plain path."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise SourceError(f"git {args[0]} failed: {proc.stderr.strip()[-300:]}")
        return proc.stdout.strip()

    @property
    def folder(self) -> Path:
        return self.settings.clone_dir / self.settings.path if self.settings.remote else self.settings.path

    def sync(self) -> tuple[Path, str]:
        """(environments folder, revision) at the head of the watched branch."""
        s = self.settings
        if s.remote:
            if not (s.clone_dir / ".git").exists():
                s.clone_dir.parent.mkdir(parents=True, exist_ok=True)
                self._git("clone", "--quiet", "--branch", s.branch, s.remote, str(s.clone_dir))
            else:
                self._git("fetch", "--quiet", "origin", s.branch, cwd=s.clone_dir)
                self._git("reset", "--quiet", "--hard", f"origin/{s.branch}", cwd=s.clone_dir)
            return s.clone_dir / s.path, self._git("rev-parse", "HEAD", cwd=s.clone_dir)
        try:
            revision = self._git("rev-parse", "HEAD", cwd=s.path if s.path.is_dir() else None)
        except SourceError:
            revision = ""
        return s.path, revision


@dataclass
class _Schedule:
    due: float = 0.0
    requested_at: float | None = None


class Reconciler:
    def __init__(self, settings: Settings, store: Store, metrics: Metrics):
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
        self.notifier = Notifier(settings)
        self.reader = StoreReader()  # one zenml import for every environment's reads

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
        if self.settings.remote and not (self.settings.clone_dir / ".git").exists():
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

    def _fail(self, status: EnvironmentStatus, reason: Reason, message: str) -> None:
        status.failures += 1
        status.set(Type.READY, False, reason, message)
        if status.failures >= self.settings.max_failures:
            status.set(
                Type.STALLED,
                True,
                Reason.RETRY_LIMIT_REACHED,
                f"{status.failures} failures in a row; last: {message}",
            )
        self.metrics.failed(status.name)

    def _pass(self, status: EnvironmentStatus) -> None:
        name = status.name
        try:
            root, revision = self.source.sync()
        except SourceError as exc:
            self._fail(status, Reason.SOURCE_FAILED, str(exc))
            return
        spec_changed = revision != status.desired_revision
        status.desired_revision = revision
        if spec_changed:
            status.conditions.pop(Type.STALLED, None)  # new specs: try again from scratch
            status.failures = 0
        try:
            report = validate(root, name)
        except UsageError as exc:
            self._fail(status, Reason.INVALID_SPECS, str(exc))
            return
        if not report.ok:
            first = report.errors[0]
            where = f"{first.location.file}:{first.location.line}: " if first.location else ""
            self._fail(
                status, Reason.INVALID_SPECS, f"{len(report.errors)} error(s); first: {where}{first.message}"
            )
            return
        env = report.environments[0]
        state_root = self.settings.state_dir or report.repo.repo_root / ".stackward"
        self._release_stale_lock(EnvironmentState(state_root, name))
        try:
            planned = plan_environment(env, report.repo, state_root, 60, lambda m: None, self.reader)
        except (TerraformError, ZenmlError, LockError) as exc:
            self._fail(status, Reason.PLAN_FAILED, str(exc))
            return
        plan = planned.plan
        status.last_plan = {
            **plan.content(),
            "summary": plan.summary(),
            "hash": plan.digest(),
            "revision": revision,
        }
        if not plan.has_changes:
            status.failures = 0
            status.conditions.pop(Type.STALLED, None)
            status.set(Type.READY, True, Reason.UP_TO_DATE, f"in sync with {revision[:12] or 'the specs'}")
            status.set(Type.DRIFTED, False, Reason.NO_DRIFT, "")
            status.applied_revision = revision  # converged with this revision: later differences are drift
            return
        drift = bool(status.applied_revision) and status.applied_revision == revision
        if drift:
            status.set(Type.DRIFTED, True, Reason.DRIFT_DETECTED, _describe(plan))
            if (env.settings.get("drift") or "report") != "heal":
                status.set(
                    Type.READY,
                    False,
                    Reason.DRIFT_DETECTED,
                    "live state differs from the last apply (report only)",
                )
                return
        elif not self.settings.auto_sync:
            status.set(
                Type.READY, False, Reason.OUT_OF_SYNC, f"{revision[:12]} is not applied yet: {plan.summary()}"
            )
            return
        self._apply(status, env, report, state_root, planned, revision, healing=drift)

    def _apply(
        self,
        status: EnvironmentStatus,
        env,
        report,
        state_root: Path,
        planned: Planned,
        revision: str,
        healing: bool,
    ) -> None:
        def gate(fresh: Planned) -> None:
            found = plan_policy_findings([env], report.repo, {env.name: fresh}, PolicyOptions())
            blocking = [d for d in found if d.is_error]
            if blocking:
                raise ApplyRefused(f"denied by policy: {blocking[0].message}")

        started = now()
        try:
            result = apply_environment(
                env,
                report.repo,
                state_root,
                reviewed=planned.plan,
                lock_timeout=60,
                progress=lambda m: None,
                check=gate,
                reader=self.reader,
            )
        except (ApplyRefused, PolicyEngineError, PolicySourceError) as exc:
            self._fail(status, Reason.APPLY_REFUSED, str(exc))
            return
        except (LockError, TerraformError, ZenmlError) as exc:
            self._fail(status, Reason.APPLY_FAILED, str(exc))
            self.store.record(
                status.name,
                {
                    "revision": revision,
                    "started": started,
                    "finished": now(),
                    "result": "failed",
                    "error": str(exc)[:500],
                },
                self.settings.history_size,
            )
            return
        status.failures = 0
        status.conditions.pop(Type.STALLED, None)
        status.applied_revision = revision
        reason = Reason.DRIFT_HEALED if healing else Reason.APPLIED
        status.set(
            Type.READY, True, reason, f"applied {planned.plan.summary()} at {revision[:12] or 'the specs'}"
        )
        status.set(Type.DRIFTED, False, Reason.DRIFT_HEALED if healing else Reason.NO_DRIFT, "")
        self.store.record(
            status.name,
            {
                "revision": revision,
                "plan_hash": planned.plan.digest(),
                "started": started,
                "finished": now(),
                "result": "healed" if healing else "applied",
                "apply": result.apply_id,
                "changes": [f"{c.action.value} {c.address}" for c in result.applied],
            },
            self.settings.history_size,
        )
        self.metrics.applied(status.name)

    def _release_stale_lock(self, state: EnvironmentState) -> None:
        """A lock left by a run that died on this machine (a restart mid-apply) is released."""
        holder = read_holder(state)
        if holder and holder_is_stale(holder):
            unlock(state)


def _describe(plan: EnvironmentPlan) -> str:
    """The drift, field by field, for the status message."""
    lines = []
    for change in plan.changes:
        if change.action is Action.NO_OP:
            continue
        fields = "; ".join(f"{f.path}: {f.before!r} -> {f.after!r}" for f in change.fields[:5])
        lines.append(f"{change.action.value} {change.address}" + (f" ({fields})" if fields else ""))
    return "; ".join(lines[:10])
