"""One reconcile pass over one environment, in phases, with the engine's pipeline (the one the
CLI and the Action call): source (the branch head) -> specs (validation) -> plan -> decide (a
pure function, reconciler.decision) -> approval, where the environment requires it -> apply
through the policy gate -> record in the status and history. A plan with changes at a new
revision is applied (auto-sync) or reported; at the revision last applied it is drift:
reported, or healed where the environment says `drift: heal`.

Passes of different environments run at once: each reads its own checkout of the revision
(`Heads`), and records its status without overwriting what the API set meanwhile (`_record`).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from reconciler.config import ServiceSettings
from reconciler.decision import Decision, decide
from reconciler.metrics import Metrics
from reconciler.source import Source, SourceError, git
from reconciler.status import EnvironmentStatus, Reason, Type
from reconciler.store import Store
from stackward.checks.validate import Report
from stackward.errors import Interrupted, StackwardError, UsageError
from stackward.output.plan_text import format_value
from stackward.pipeline import Pipeline
from stackward.plan.changes import Action, EnvironmentPlan
from stackward.plan.refusals import ApplyRefused
from stackward.plan.run import Planned
from stackward.plan.state import now
from stackward.spec.model import Environment
from stackward.state import Applied, StateStore
from stackward.zenml.executor import StoreReader

log = logging.getLogger("stackward.reconciler")


class Heads:
    """The head of the watched branch for passes that run at once.

    A fetch serves the passes that start within `fetch_interval` of it; a request (a webhook,
    the API) makes the next pass fetch again. With a remote, each pass reads a worktree of its
    revision under <state_dir>/revisions, which no later fetch changes; a worktree no pass uses
    is removed once the head has moved on."""

    def __init__(self, settings: ServiceSettings, source: Source):
        assert settings.state_dir is not None
        self.settings = settings
        self.source = source
        self.root = settings.state_dir / "revisions"
        self._lock = threading.Lock()
        self._head: tuple[Path, str] | None = None
        self._fetched_at = 0.0
        self._requests = 0  # refresh() calls; the fetch that saw the last one is current
        self._fetched_for = -1
        self._users: dict[str, int] = {}  # revision -> passes reading its worktree

    def refresh(self) -> None:
        """The next pass fetches (something was pushed, or someone asked for a pass)."""
        self._requests += 1

    @contextlib.contextmanager
    def checkout(self) -> Iterator[tuple[Path, str]]:
        """(environments folder, revision) for one pass; SourceError when it cannot be fetched."""
        with self._lock:
            requests = self._requests
            if (
                self._head is None
                or self._fetched_for != requests
                or time.monotonic() - self._fetched_at >= self.settings.fetch_interval
            ):
                self._head = None
                self._head = self.source.sync()
                self._fetched_at, self._fetched_for = time.monotonic(), requests
            folder, revision = self._head
            worktree = bool(self.settings.remote and revision)
            if worktree:
                folder = self._use(revision) / self.settings.path
        try:
            yield folder, revision
        finally:
            if worktree:
                with self._lock:
                    self._users[revision] -= 1
                    self._prune()

    def _use(self, revision: str) -> Path:
        """The worktree of `revision` (made if needed), counted as in use."""
        path = self.root / revision
        if revision not in self._users:
            if not self._users and self.root.exists():  # the first: what a previous run left
                shutil.rmtree(self.root)
                self._git("worktree", "prune")
            self.root.mkdir(parents=True, exist_ok=True)
            self._git("worktree", "add", "--detach", "--force", str(path), revision)
            self._users[revision] = 0
        self._users[revision] += 1
        return path

    def _prune(self) -> None:
        head = self._head[1] if self._head else ""
        for revision, users in list(self._users.items()):
            if not users and revision != head:
                del self._users[revision]
                try:
                    self._git("worktree", "remove", "--force", str(self.root / revision))
                except SourceError as exc:  # a folder left behind: removed with the next start's
                    log.warning("stackward: could not remove the checkout of %s: %s", revision[:12], exc)

    def _git(self, *args: str) -> None:
        git(*args, cwd=self.source.clone)


class Phases:
    """The phases of a pass; the Reconciler runs them for each environment it schedules."""

    settings: ServiceSettings
    store: Store
    metrics: Metrics
    source: Source
    heads: Heads
    reader: StoreReader
    stores: dict[str, StateStore]  # each environment's state store, as its last pass found it
    stopping: threading.Event  # set when the service shuts down
    _status_lock: threading.RLock  # one status read or write at a time (SQLite makes others wait)
    _abandoned: set[str]  # passes the shutdown recorded as interrupted: they record nothing more

    # -- recording ---------------------------------------------------------------------------
    def _record(self, status: EnvironmentStatus) -> None:
        """Save a pass's status, with the fields the API set while it ran (suspended, approval)
        as they are stored now, never as the pass found them."""
        with self._status_lock:
            if status.name in self._abandoned:
                return
            status.keep_user_fields(self.store.load(status.name))
            self.store.save(status)

    def _clear_approval(self, name: str, plan_hash: str) -> None:
        """Forget the approval of `plan_hash` (applied, or stale), unless another was given since."""
        with self._status_lock:
            stored = self.store.load(name)
            if stored is not None and stored.approved_plan == plan_hash:
                stored.approved_plan = ""
                self.store.save(stored)

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

    def _failed(self, status: EnvironmentStatus, reason: Reason, exc: StackwardError) -> None:
        """A phase's error: interrupted by a shutdown (not a failure: no retry count, no
        backoff), or a failure for `reason`."""
        if isinstance(exc, Interrupted) or self.stopping.is_set():
            status.set(Type.READY, False, Reason.INTERRUPTED, str(exc))
        else:
            self._fail(status, reason, str(exc))

    # -- the pass ----------------------------------------------------------------------------
    def _pass(self, status: EnvironmentStatus) -> None:
        """source -> specs -> plan -> decide -> approval -> apply -> record; a phase that fails
        records why."""
        with contextlib.ExitStack() as checkout:
            head = self._source(status, checkout)
            if head is None:
                return
            root, revision = head
            found = self._specs(status, root)
            if found is None:
                return
            pipeline, report, env = found
            planned = self._plan(status, pipeline, report, env, revision)
            if planned is None:
                return
            self._decide(status, pipeline, report, env, planned, revision)

    def _decide(
        self,
        status: EnvironmentStatus,
        pipeline: Pipeline,
        report: Report,
        env: Environment,
        planned: Planned,
        revision: str,
    ) -> None:
        plan = planned.plan
        try:
            store = pipeline.store(report, env)
            recorded = store.applied(env.name)  # whoever applied it: the Action, the CLI or this service
        except StackwardError as exc:  # the state store cannot be read
            self._failed(status, Reason.PLAN_FAILED, exc)
            return
        self.stores[env.name] = store
        if recorded is not None:
            status.applied_revision = recorded.revision
        decision = decide(
            has_changes=plan.has_changes,
            revision=revision,
            applied_revision=status.applied_revision,
            drift=env.settings.drift,
            auto_sync=self.settings.auto_sync,
        )
        status.awaiting_approval = ""
        if decision is Decision.UP_TO_DATE:
            status.failures = 0
            status.conditions.pop(Type.STALLED, None)
            status.set(Type.READY, True, Reason.UP_TO_DATE, f"in sync with {revision[:12] or 'the specs'}")
            status.set(Type.DRIFTED, False, Reason.NO_DRIFT, "")
            status.applied_revision = revision  # converged with this revision: later differences are drift
            if revision and (recorded is None or recorded.revision != revision):
                store.set_applied(env.name, Applied(revision, plan.digest(), now(), pipeline.actor))
        elif decision is Decision.OUT_OF_SYNC:
            status.set(
                Type.READY, False, Reason.OUT_OF_SYNC, f"{revision[:12]} is not applied yet: {plan.summary()}"
            )
        elif decision is Decision.REPORT_DRIFT:
            status.set(Type.DRIFTED, True, Reason.DRIFT_DETECTED, describe(plan))
            status.set(
                Type.READY,
                False,
                Reason.DRIFT_DETECTED,
                "live state differs from the last apply (report only)",
            )
        else:
            if decision is Decision.HEAL:
                status.set(Type.DRIFTED, True, Reason.DRIFT_DETECTED, describe(plan))
            if self._may_apply(status, plan, revision):
                self._apply(
                    status, pipeline, report, env, planned, revision, healing=decision is Decision.HEAL
                )

    def _may_apply(self, status: EnvironmentStatus, plan: EnvironmentPlan, revision: str) -> bool:
        """Whether the pass may apply `plan` now: the environment was not suspended while it
        planned, and where approval is required, this very plan was approved. Otherwise the
        status says why nothing was applied."""
        with self._status_lock:
            stored = self.store.load(status.name)  # what the API set while this pass planned
        if stored is not None and stored.suspended:
            status.set(
                Type.READY,
                False,
                Reason.SUSPENDED,
                f"suspended while planning: {plan.summary()} at {revision[:12] or 'the specs'} was not applied",
            )
            return False
        if not self.settings.requires_approval(status.name):
            return True
        digest = plan.digest()
        approved = stored.approved_plan if stored is not None else ""
        if approved == digest:
            return True
        status.awaiting_approval = digest
        stale = ""
        if approved:
            self._clear_approval(status.name, approved)
            stale = f"the plan approved ({approved[:12]}) is no longer what applying would do; "
        status.set(
            Type.READY,
            False,
            Reason.AWAITING_APPROVAL,
            f"{stale}plan {digest[:12]} ({plan.summary()}) at {revision[:12] or 'the specs'} waits for "
            f'approval: POST /api/environments/{status.name}/approve with {{"plan_hash": "{digest}"}}',
        )
        return False

    def _source(self, status: EnvironmentStatus, checkout: contextlib.ExitStack) -> tuple[Path, str] | None:
        try:
            root, revision = checkout.enter_context(self.heads.checkout())
        except SourceError as exc:
            self._fail(status, Reason.SOURCE_FAILED, str(exc))
            return None
        if revision != status.desired_revision:
            status.conditions.pop(Type.STALLED, None)  # new specs: try again from scratch
            status.failures = 0
        status.desired_revision = revision
        return root, revision

    def _specs(self, status: EnvironmentStatus, root: Path) -> tuple[Pipeline, Report, Environment] | None:
        pipeline = Pipeline(
            self.settings.model_copy(update={"path": root}),
            reader=self.reader,
            scrub=self.store.scrub,  # the specs' secrets join the service's one scrubber
            actor="stackward (reconciler)",
        )
        try:
            report = pipeline.validate(status.name)
        except UsageError as exc:
            self._fail(status, Reason.INVALID_SPECS, str(exc))
            return None
        if not report.ok:
            first = report.errors[0]
            where = f"{first.location.file}:{first.location.line}: " if first.location else ""
            self._fail(
                status, Reason.INVALID_SPECS, f"{len(report.errors)} error(s); first: {where}{first.message}"
            )
            return None
        return pipeline, report, report.environments[0]

    def _plan(
        self, status: EnvironmentStatus, pipeline: Pipeline, report: Report, env: Environment, revision: str
    ) -> Planned | None:
        try:
            planned = pipeline.plan_one(report, env)
        except StackwardError as exc:
            self._failed(status, Reason.PLAN_FAILED, exc)
            return None
        plan = planned.plan
        status.last_plan = {
            **plan.content(),
            "summary": plan.summary(),
            "hash": plan.digest(),
            "revision": revision,
        }
        return planned

    def _apply(
        self,
        status: EnvironmentStatus,
        pipeline: Pipeline,
        report: Report,
        env: Environment,
        planned: Planned,
        revision: str,
        healing: bool,
    ) -> None:
        """Apply exactly the plan the pass decided on, through the gates (the ledger records it)."""
        try:
            pipeline.apply_one(report, env, reviewed=planned.plan, reason="heal" if healing else "apply")
        except ApplyRefused as exc:
            self._fail(status, Reason.APPLY_REFUSED, str(exc))
            return
        except StackwardError as exc:
            self._failed(status, Reason.APPLY_FAILED, exc)
            return
        if self.settings.requires_approval(env.name):
            self._clear_approval(env.name, planned.plan.digest())  # applied: an approval is for once
        status.failures = 0
        status.conditions.pop(Type.STALLED, None)
        status.applied_revision = revision
        reason = Reason.DRIFT_HEALED if healing else Reason.APPLIED
        status.set(
            Type.READY, True, reason, f"applied {planned.plan.summary()} at {revision[:12] or 'the specs'}"
        )
        status.set(Type.DRIFTED, False, Reason.DRIFT_HEALED if healing else Reason.NO_DRIFT, "")
        self.metrics.applied(status.name)


def describe(plan: EnvironmentPlan) -> str:
    """The drift, field by field, for the status message (values as JSON)."""
    lines = []
    for change in plan.changes:
        if change.action is Action.NO_OP:
            continue
        fields = "; ".join(
            f"{f.path}: {format_value(f.before)} -> {format_value(f.after)}" for f in change.fields[:5]
        )
        lines.append(f"{change.action.value} {change.address}" + (f" ({fields})" if fields else ""))
    return "; ".join(lines[:10])
