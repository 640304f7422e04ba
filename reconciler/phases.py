"""One reconcile pass over one environment, in phases, with the engine's pipeline (the one the
CLI and the Action call): source (the branch head) -> specs (validation) -> plan -> decide (a
pure function, reconciler.decision) -> apply through the policy gate -> record in the status
and history. A plan with changes at a new revision is applied (auto-sync) or reported; at the
revision last applied it is drift: reported, or healed where the environment says
`drift: heal`.
"""

from __future__ import annotations

from pathlib import Path

from reconciler.config import ServiceSettings
from reconciler.decision import Decision, decide
from reconciler.metrics import Metrics
from reconciler.source import Source, SourceError
from reconciler.status import EnvironmentStatus, Reason, Type
from reconciler.store import Store
from stackward.checks.validate import Report
from stackward.errors import StackwardError, UsageError
from stackward.output.plan_text import format_value
from stackward.pipeline import Pipeline
from stackward.plan.changes import Action, EnvironmentPlan
from stackward.plan.refusals import ApplyRefused
from stackward.plan.run import Planned
from stackward.plan.state import EnvironmentState, now
from stackward.spec.model import Environment
from stackward.state import Applied, StateStore
from stackward.state.local import holder_is_stale, read_holder, release_file_lock
from stackward.zenml.executor import StoreReader


class Phases:
    """The phases of a pass; the Reconciler runs them for each environment it schedules."""

    settings: ServiceSettings
    store: Store
    metrics: Metrics
    source: Source
    reader: StoreReader
    stores: dict[str, StateStore]  # each environment's state store, as its last pass found it

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
        """source -> specs -> plan -> decide -> apply -> record; a phase that fails records why."""
        head = self._source(status)
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
        plan = planned.plan
        try:
            store = pipeline.store(report, env)
            recorded = store.applied(env.name)  # whoever applied it: the Action, the CLI or this service
        except StackwardError as exc:  # the state store cannot be read
            self._fail(status, Reason.PLAN_FAILED, str(exc))
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
            self._apply(status, pipeline, report, env, planned, revision, healing=decision is Decision.HEAL)

    def _source(self, status: EnvironmentStatus) -> tuple[Path, str] | None:
        try:
            root, revision = self.source.sync()
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
        state_root = self.settings.state_root(report.repo.repo_root)
        self._release_stale_lock(EnvironmentState(state_root, env.name))
        try:
            planned = pipeline.plan_one(report, env)
        except StackwardError as exc:
            self._fail(status, Reason.PLAN_FAILED, str(exc))
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
            self._fail(status, Reason.APPLY_FAILED, str(exc))
            return
        status.failures = 0
        status.conditions.pop(Type.STALLED, None)
        status.applied_revision = revision
        reason = Reason.DRIFT_HEALED if healing else Reason.APPLIED
        status.set(
            Type.READY, True, reason, f"applied {planned.plan.summary()} at {revision[:12] or 'the specs'}"
        )
        status.set(Type.DRIFTED, False, Reason.DRIFT_HEALED if healing else Reason.NO_DRIFT, "")
        self.metrics.applied(status.name)

    def _release_stale_lock(self, state: EnvironmentState) -> None:
        """A lock file left by a run that died on this machine (a restart mid-apply) is
        released. (PostgreSQL releases a dead holder's lock itself.)"""
        holder = read_holder(state)
        if holder and holder_is_stale(holder):
            release_file_lock(state)


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
