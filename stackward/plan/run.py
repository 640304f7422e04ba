"""Plan and apply one environment: Terraform first, then ZenML registrations.

Both hold the environment's lock for their whole length (a plan writes Terraform's saved plan
in the folder an apply runs from). Planning changes nothing. Applying plans again, refuses
when the result differs from the reviewed plan, applies Terraform's saved plan, then makes
the registration calls with the outputs Terraform produced (none while a value is still
unknown), recording each step in the ledger (in the state store, stackward.state). Before
each step that changes something (terraform apply, each registration call) it proves it
still holds the lock, and stops as interrupted when it lost it. Why an apply refuses is in
stackward.plan.refusals; `stackward.pipeline` runs these over many environments, and
front-ends call the pipeline.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from stackward.errors import Interrupted
from stackward.plan.changes import Action, Change, EnvironmentPlan, mask_values
from stackward.plan.preflight import (
    compared_items,
    not_compared,
    require_secrets,
    verify_connectors,
    with_history,
)
from stackward.plan.refusals import ApplyRefused, Reviewed, refuse_if_moved, refuse_unknown, secrets_are_set
from stackward.plan.state import EnvironmentState, now
from stackward.secrets import Scrubber
from stackward.spec.model import Environment, Repo
from stackward.state import Applied, Lease, StateStore, StateStoreError, retried
from stackward.state.ledger import Ledger
from stackward.terraform.executor import TerraformExecutor, TerraformPlan
from stackward.zenml.diff import operations, plan_registrations
from stackward.zenml.executor import StoreReader, ZenmlExecutor
from stackward.zenml.registrations import Registration, desired

Progress = Callable[[str], None]


def quiet(message: str) -> None:
    """Progress that is not shown."""


@dataclass(frozen=True)
class Workspace:
    """What planning and applying an environment of one repo needs besides the environment."""

    repo: Repo
    state_root: Path
    lock_timeout: float
    resource_types: dict[str, tuple[str, ...]]  # connector type -> its resource types (the catalog)
    stores: Callable[[Environment], StateStore]  # where each environment's records live
    progress: Progress = quiet
    scrub: Scrubber = field(default_factory=Scrubber)  # secret values never enter a plan or the ledger
    reader: StoreReader | None = None  # a long-running caller's shared reader of embedded stores
    actor: str = "stackward"  # who applies, for the ledger: the CLI, the Action or the reconciler
    verify_connectors: bool = False  # ZenML's verification of every connector at plan (cloud access)
    # Terraform's JSON plan (`show -json`) even when nothing changes: the policies read it
    # (input.terraform_plan, and its no-op changes in input.changes); off, a plan without
    # changes skips it and reads the outputs from the state
    render_unchanged: bool = True

    def store(self, env: Environment) -> StateStore:
        """Where `env`'s lock, ledger and applied revision live."""
        return self.stores(env)


@dataclass
class Planned:
    """A plan plus what the policies need to see of it."""

    plan: EnvironmentPlan
    terraform_plan: dict = field(default_factory=dict)


@dataclass
class ApplyResult:
    environment: str
    applied: list[Change]
    apply_id: str = ""
    # what the state store could not record although the changes were made (it was down):
    # said in the progress too; empty when all is recorded
    unrecorded: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.applied)


def revision(repo: Repo) -> str:
    """The git commit of the environments repo, when it is one."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo.repo_root), "rev-parse", "HEAD"], capture_output=True, text=True
        )
    except OSError:  # no git on this machine
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def promotion_order(environments: list[Environment]) -> list[Environment]:
    """Environments ordered so each comes after the one it is promoted from (dev -> staging -> prod)."""
    by_name = {e.name: e for e in environments}
    ordered: list[Environment] = []

    def visit(env: Environment, seen: tuple[str, ...]) -> None:
        if env in ordered or env.name in seen:
            return
        after = env.settings.promotion_after
        if after in by_name:
            visit(by_name[after], (*seen, env.name))
        ordered.append(env)

    for env in sorted(environments, key=lambda e: e.name):
        visit(env, ())
    return ordered


class EnvironmentRun:
    """The executors of one environment for the length of a command."""

    def __init__(self, env: Environment, workspace: Workspace, phase: str):
        self.env = env
        self.workspace = workspace
        self.state = EnvironmentState(workspace.state_root, env.name)
        self.store = workspace.store(env)
        self.terraform = TerraformExecutor(env, self.state, workspace.lock_timeout, phase)
        self.zenml = ZenmlExecutor(env, self.state, phase, workspace.reader)
        self.terraform_plan: TerraformPlan | None = None

    def step(self, what: str) -> None:
        self.workspace.progress(f"{self.env.name}: {what}")

    def record_applied(self, rev: str, plan: EnvironmentPlan) -> None:
        """Record in the state store that the environment is at `rev` (promotion reads it)."""
        if rev:
            self.store.set_applied(self.env.name, Applied(rev, plan.digest(), now(), self.workspace.actor))

    def desired(self, outputs: dict) -> list:
        return desired(self.env, outputs, self.workspace.resource_types)

    def plan(self) -> Planned:
        changes: list[Change] = []
        outputs: dict = {}
        raw: dict = {}
        if self.terraform.needed:
            self.step("terraform plan")
            self.terraform_plan = self.terraform.plan(render_unchanged=self.workspace.render_unchanged)
            changes += self.terraform_plan.changes
            outputs, raw = self.terraform_plan.outputs, self.terraform_plan.raw
        wanted = self.desired(outputs)
        warnings: list[str] = []
        if wanted or self.zenml.store_may_hold_registrations:
            hidden = [
                json.dumps(v) if not isinstance(v, str) else v
                for m, o in (self.terraform_plan.sensitive if self.terraform_plan else ())
                for v in [outputs.get(m, {}).get(o)]
                if v is not None
            ]
            hidden += [v for r in wanted for v in r.secret_values.values()]  # every `fromInfra` value
            self.workspace.scrub.add(*hidden)  # hidden in every message and file from here on
            registrations, warnings = self.plan_registrations(wanted)
            changes += mask_values(registrations, hidden)  # sensitive Terraform outputs stay hidden
        scrub = self.workspace.scrub
        changes = [
            replace(
                c,
                fields=tuple(
                    replace(f, before=scrub.data(f.before), after=scrub.data(f.after)) for f in c.fields
                ),
            )
            for c in changes
        ]
        warnings = [scrub(w) for w in warnings]
        return Planned(EnvironmentPlan(self.env.name, changes, warnings=warnings), raw)

    def plan_registrations(self, wanted: list[Registration]) -> tuple[list[Change], list[str]]:
        """The registration changes, after the store checks (stackward.plan.preflight), and
        the plan's warnings."""
        self.step("reading ZenML registrations")
        actual = self.zenml.read()
        require_secrets(self.env, self.zenml)
        status = self.zenml.compare_secrets(compared_items(self.env.name, wanted, actual))
        warnings = verify_connectors(self.env, wanted, self.zenml, self.workspace.verify_connectors)
        changes = plan_registrations(self.env.name, wanted, actual, status)
        return with_history(changes, actual, self.zenml), [*not_compared(status), *warnings]


def plan_environment(env: Environment, workspace: Workspace) -> Planned:
    """What applying `env` would change (read-only). It holds the environment's lock too: the
    Terraform working folder and saved plan are shared with applies, and a plan must never
    replace the one an apply is about to run."""
    run = EnvironmentRun(env, workspace, "plan")
    run.step("waiting for the environment lock")
    with (
        run.store.hold(env.name, f"stackward plan {env.name}", workspace.lock_timeout),
        run.zenml,
    ):
        return run.plan()


def apply_environment(
    env: Environment,
    workspace: Workspace,
    *,
    reviewed: Reviewed,
    check: Callable[[Planned], None] | None = None,
    reason: str = "apply",
) -> ApplyResult:
    """Apply `env` under its lock; with `reviewed`, only if planning again gives that plan.

    `check` sees the fresh plan before anything changes and raises ApplyRefused to stop
    (the gates); `reason` (apply, or heal for drift) goes into the ledger."""
    run = EnvironmentRun(env, workspace, "apply")
    run.step("waiting for the environment lock")
    with (
        run.store.hold(env.name, f"stackward apply {env.name}", workspace.lock_timeout) as lease,
        run.zenml,
    ):
        planned = run.plan()
        plan = planned.plan
        rev = revision(workspace.repo)
        if not plan.has_changes:  # nothing would be applied, so nothing unreviewed can be (a re-run)
            run.step("no changes")
            run.record_applied(rev, plan)  # converged with this revision: it counts as applied
            return ApplyResult(env.name, [])
        refuse_if_moved(env.name, plan, reviewed)
        if plan.conflicts:
            reasons = "\n".join(f"  ! {c.address}: {c.reason}" for c in plan.conflicts)
            raise ApplyRefused(f"{env.name}: nothing was applied:\n{reasons}")
        secrets_are_set(env)
        if check is not None:
            check(planned)
        return _apply(run, plan, rev, reason, lease)


def _apply(run: EnvironmentRun, plan: EnvironmentPlan, rev: str, reason: str, lease: Lease) -> ApplyResult:
    """Apply the planned changes under `lease`, checked before each change. The ledger gets
    `started` before anything changes (or the apply does not start), then what was done and
    the outcome, which a store outage from then on cannot turn into a failure."""
    ledger = Ledger(run.store, run.env.name, run.workspace.scrub)
    apply_id = uuid.uuid4().hex[:12]
    planned = [f"{c.action.value} {c.address}" for c in plan.changes if c.action is not Action.NO_OP]
    lease.check()
    ledger.record(
        "started",
        apply_id,
        revision=rev,
        plan_hash=plan.digest(),
        changes=planned,
        by=run.workspace.actor,
        reason=reason,
        lease=lease.holder["id"],  # (running while this lease holds the environment)
    )
    started = time.monotonic()
    try:
        outputs: dict = {}
        if run.terraform_plan is not None:
            terraform_changes = [c for c in run.terraform_plan.changes if c.action is not Action.NO_OP]
            if terraform_changes:
                run.step(f"terraform apply ({len(terraform_changes)} changes)")
                lease.check()
                outputs, sensitive = run.terraform.apply()
                run.workspace.scrub.add(  # values only known now: hidden from every message from here on
                    *(v if isinstance(v, str) else json.dumps(v) for v in sensitive)
                )
                for change in terraform_changes:
                    ledger.keep("step", apply_id, change=f"{change.action.value} {change.address}")
            else:
                outputs = run.terraform_plan.outputs
        wanted = run.desired(outputs)
        refuse_unknown(run.env.name, wanted)
        if wanted or run.zenml.store_may_hold_registrations:
            run.workspace.scrub.add(*(v for r in wanted for v in r.secret_values.values()))
            actual = run.zenml.read()
            status = run.zenml.compare_secrets(compared_items(run.env.name, wanted, actual))
            changes = plan_registrations(run.env.name, wanted, actual, status)
            ops = operations(changes, wanted, actual, run.env.name)
            run.step(f"ZenML registrations ({len(ops)} calls)")
            run.zenml.apply(
                ops,
                lambda done: ledger.keep("step", apply_id, change=f"{done['op']} {done['done']}"),
                before=lease.check,
            )
    except (Interrupted, KeyboardInterrupt) as exc:
        ledger.keep("finished", apply_id, result="interrupted", error=_first_line(exc) or "Ctrl-C")
        _say_unrecorded(run, ledger, apply_id)
        raise
    except Exception as exc:
        ledger.keep("finished", apply_id, result="failed", error=_first_line(exc))
        _say_unrecorded(run, ledger, apply_id)
        raise
    unrecorded = []
    if rev:
        applied = Applied(rev, plan.digest(), now(), run.workspace.actor)
        try:  # promotion reads it; the store may still be down after the entries gave up
            retried(
                lambda: run.store.set_applied(run.env.name, applied),
                0 if ledger.failure else ledger.retry_seconds,
            )
        except StateStoreError as exc:
            unrecorded.append(f"that {run.env.name} is at revision {rev[:12]} ({_first_line(exc)})")
    ledger.keep("finished", apply_id, result="success", seconds=round(time.monotonic() - started, 2))
    done = [c for c in plan.changes if c.action is not Action.NO_OP]
    return ApplyResult(run.env.name, done, apply_id, _say_unrecorded(run, ledger, apply_id, unrecorded))


def _first_line(error: BaseException | str) -> str:
    return (str(error).splitlines() or [""])[0][:500]


def _say_unrecorded(run: EnvironmentRun, ledger: Ledger, apply_id: str, also: Sequence[str] = ()) -> str:
    """What the state store could not record of apply `apply_id` (it stayed down), in the
    progress and as the result says it; "" when everything is recorded."""
    missing = [f"{e['event']} {e.get('change') or e.get('result') or ''}".strip() for e in ledger.unrecorded]
    if not missing and not also:
        return ""
    entries = (
        f"these ledger entries of apply {apply_id}: {', '.join(missing)} ({_first_line(ledger.failure)})"
    )
    unknown = "`stackward history`" + (" and the promotion gate" if also else "")
    message = (
        f"{run.env.name}: the state store ({run.store.description}) did not record "
        + "; nor ".join([*([entries] if missing else []), *also])
        + f". What was applied stays applied, but {unknown} cannot know it: check the state "
        "store, then apply again (it converges)"
    )
    run.step(message)
    return message
