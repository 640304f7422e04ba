"""The one pipeline the CLI, the GitHub Action and the reconciler call.

    validate -> plan each environment (promotion order) -> policy gate -> the front-end renders
    apply in promotion order: each environment planned again under its lock, held to what was
    reviewed, gated by the policies, applied; the first failure stops the rest

A front-end decides only what is its own: which environments, what was reviewed, where to
report. Errors users can meet are `StackwardError`s (see stackward.errors).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from stackward.checks.validate import Report, validate
from stackward.diagnostics import Diagnostic
from stackward.errors import SpecsInvalid, StackwardError, UsageError
from stackward.plan.changes import EnvironmentPlan, Plan
from stackward.plan.gates import check_durable_state, check_promotion, on_ephemeral_runner, upstream
from stackward.plan.refusals import ApplyRefused, Reviewed
from stackward.plan.run import (
    ApplyResult,
    Planned,
    Progress,
    Workspace,
    apply_environment,
    plan_environment,
    promotion_order,
    quiet,
    revision,
)
from stackward.plan.state import EnvironmentState
from stackward.policy.check import PolicyOptions, check_policies
from stackward.policy.input import PullRequest
from stackward.secrets import Scrubber, secret_values
from stackward.settings import Settings
from stackward.spec.model import Environment
from stackward.spec.resolve import Resolver
from stackward.spec.schema import suggest
from stackward.state import StateStore, open_store, state_url
from stackward.state.ledger import Ledger
from stackward.zenml.catalog import Catalog, load_catalog
from stackward.zenml.executor import StoreReader, ZenmlExecutor
from stackward.zenml.registrations import Registration


@dataclass
class PlanOutcome:
    """The plans of the environments asked for and what the policies found on them."""

    report: Report
    planned: dict[str, Planned]  # in promotion order; a plan that failed carries its error
    findings: list[Diagnostic] = field(default_factory=list)

    @property
    def plan(self) -> Plan:
        return Plan(revision(self.report.repo), [p.plan for p in self.planned.values()])

    @property
    def ok(self) -> bool:
        """Every environment planned and no policy denies."""
        return not any(p.plan.error for p in self.planned.values()) and not any(
            d.is_error for d in self.findings
        )


@dataclass
class Applied:
    """How applying one environment ended: applied, failed (with the error), or skipped."""

    environment: str
    result: ApplyResult | None = None
    error: StackwardError | None = None

    @property
    def skipped(self) -> bool:
        return self.result is None and self.error is None


class Pipeline:
    """One command's run over an environments folder, with one settings object."""

    def __init__(
        self,
        settings: Settings,
        *,
        progress: Progress = quiet,
        reader: StoreReader | None = None,
        scrub: Scrubber | None = None,
        actor: str = "stackward",
    ):
        self.settings = settings
        self.actor = actor  # who applies, in the ledger and the applied-revision records
        self.progress = progress
        self.reader = reader
        self.scrub = scrub if scrub is not None else Scrubber()  # learns the specs' secrets as it reads them

    @property
    def catalog(self) -> Catalog:
        return load_catalog(self.settings.cache_dir)

    def policy_options(self, **run: object) -> PolicyOptions:
        """The settings' policy source and engine, plus what this run adds (a base ref, a PR)."""
        s = self.settings
        return PolicyOptions(
            folder=s.policies,
            namespace=s.policy_namespace,
            opa_url=s.opa_url,
            opa_token=s.opa_token.get_secret_value() if s.opa_token else None,
            opa_upload=not s.opa_preloaded,
            gate=s.policy_gate,
            **run,  # type: ignore[arg-type]
        )

    # -- validate ---------------------------------------------------------------------------
    def validate(self, only: str | None = None, policy: PolicyOptions | None = None) -> Report:
        """Every check on the environments (or `only` one); the policies too when `policy` is given.
        The scrubber learns the values of the secrets the environments reference."""
        report = validate(self.settings.path, only, catalog=self.catalog, policy=policy)
        self.scrub.add(*secret_values(report.environments))
        return report

    def checked(self, only: str | None = None) -> Report:
        """Validation that must pass: SpecsInvalid (with the findings) when it does not."""
        report = self.validate(only)
        if not report.ok:
            raise SpecsInvalid(
                f"{len(report.errors)} validation error(s); nothing was planned or applied",
                report.diagnostics,
            )
        return report

    @staticmethod
    def select(report: Report, names: Iterable[str]) -> list[Environment]:
        """The named environments (surrounding spaces ignored); UsageError naming the known ones."""
        by_name = {e.name: e for e in report.environments}
        wanted = [n.strip() for n in names if n.strip()]
        unknown = [n for n in wanted if n not in by_name]
        if unknown:
            known = ", ".join(sorted(by_name)) or "none"
            hints = "; ".join(filter(None, (suggest(n, by_name) for n in unknown)))
            raise UsageError(
                f"no environment named {', '.join(repr(n) for n in unknown)} (known: {known})"
                + (f"; {hints}" if hints else "")
            )
        return [by_name[n] for n in dict.fromkeys(wanted)]

    # -- plan -------------------------------------------------------------------------------
    def store(self, report: Report, env: Environment) -> StateStore:
        """Where `env`'s lock, ledger and applied revision live: the URL its spec names
        (`state.urlEnv`), else the `state_url` setting, else files in the state folder."""
        return open_store(
            state_url(env, self.settings.state_url), self.settings.state_root(report.repo.repo_root)
        )

    def workspace(self, report: Report) -> Workspace:
        return Workspace(
            report.repo,
            self.settings.state_root(report.repo.repo_root),
            self.settings.lock_timeout,
            {name: info.resource_types for name, info in self.catalog.connectors.items()},
            progress=self.progress,
            reader=self.reader,
            scrub=self.scrub,
            stores=lambda env: self.store(report, env),
            actor=self.actor,
            verify_connectors=self.settings.verify_connectors,
            render_unchanged=self.settings.policy_gate,  # the gate's policies may read the plan
        )

    def plan_one(self, report: Report, env: Environment) -> Planned:
        """What applying `env` would change; a StackwardError (EnvironmentFailed, or its state
        store's) when it cannot be planned."""
        return plan_environment(env, self.workspace(report))

    def plan(
        self,
        report: Report,
        environments: list[Environment],
        *,
        compute: bool = True,
        pull_request: PullRequest | None = None,
        policies_ref: str | None = None,
    ) -> PlanOutcome:
        """Plan `environments` (a failure is kept with its environment and the others go on),
        then evaluate the policies on specs and plans; the plans are in promotion order. With
        `policies_ref` (a PR's base), the policies and each environment's `input.base` are read
        at that ref. With `compute` off (a fork's pull request) nothing is planned: the
        policies judge the specs alone."""
        ordered = promotion_order(environments)
        if compute:
            planned = self._plan_each(report, ordered)
        else:
            planned = {env.name: Planned(EnvironmentPlan(env.name)) for env in ordered}
        options = self.policy_options(base_ref=policies_ref, pull_request=pull_request)
        return PlanOutcome(report, planned, policy_findings(environments, report, planned, options))

    def _plan_each(self, report: Report, environments: list[Environment]) -> dict[str, Planned]:
        """Each environment's plan, up to `plan_concurrency` at once: they share nothing but
        the scrubber and the reader (each has its own lock, state folder, Terraform and ZenML
        processes), and a plan mostly waits on those processes."""
        workspace = self.workspace(report)

        def one(env: Environment) -> Planned:
            try:
                return plan_environment(env, workspace)
            except StackwardError as exc:  # this environment's (its store, Terraform, ZenML, lock)
                return Planned(EnvironmentPlan(env.name, error=str(exc)))

        with self._run_reader(workspace, environments) as reader:
            workspace = replace(workspace, reader=reader)
            workers = max(1, min(self.settings.plan_concurrency, len(environments)))
            with ThreadPoolExecutor(workers, thread_name_prefix="stackward-plan") as pool:
                return dict(zip((e.name for e in environments), pool.map(one, environments), strict=True))

    @contextmanager
    def _run_reader(
        self, workspace: Workspace, environments: list[Environment]
    ) -> Iterator[StoreReader | None]:
        """The reader of embedded stores for one run: the caller's, else one of the run's own
        when two or more environments would otherwise each start a ZenML process (seconds of
        zenml import each) only to read their stores."""
        if self.reader is not None:
            yield self.reader
            return
        existing = [
            e
            for e in environments
            if e.settings.embedded and EnvironmentState(workspace.state_root, e.name).zenml_database.exists()
        ]
        if len(existing) < 2:
            yield None
            return
        reader = StoreReader()
        try:
            yield reader
        finally:
            reader.close()

    def registered(self, report: Report, environments: list[Environment]) -> dict[str, list[Registration]]:
        """What each environment's ZenML store holds (read only; an embedded store that was never
        created holds nothing)."""
        out: dict[str, list[Registration]] = {}
        for env in environments:
            state = EnvironmentState(self.settings.state_root(report.repo.repo_root), env.name)
            with ZenmlExecutor(env, state, "plan", self.reader) as zenml:
                out[env.name] = zenml.read() if zenml.store_may_hold_registrations else []
        return out

    # -- apply ------------------------------------------------------------------------------
    def gate(
        self,
        report: Report,
        env: Environment,
        policies_ref: str | None = None,
        pull_request: PullRequest | None = None,
    ) -> Callable[[Planned], None]:
        """The policy gate on a fresh plan (the policies as they are at `policies_ref`, when
        given; `pull_request` the merged pull request, its reviews read again): ApplyRefused
        naming each deny, or when the policies cannot be read or evaluated (it fails closed)."""

        def check(planned: Planned) -> None:
            try:
                options = self.policy_options(base_ref=policies_ref, pull_request=pull_request)
                found = policy_findings([env], report, {env.name: planned}, options)
            except StackwardError as exc:
                raise ApplyRefused(
                    f"{env.name}: the policy gate could not run, so nothing was applied: {exc}"
                ) from exc
            blocking = [d for d in found if d.is_error]
            if blocking:
                raise ApplyRefused(
                    f"{env.name}: denied by policy, nothing was applied:\n"
                    + "\n".join(f"  {_where(d)}{d.message} [{d.code}]" for d in blocking)
                )

        return check

    def apply_one(
        self,
        report: Report,
        env: Environment,
        *,
        reviewed: Reviewed,
        on_plan: Callable[[Planned], None] | None = None,
        policies_ref: str | None = None,
        pull_request: PullRequest | None = None,
        reason: str = "apply",
    ) -> ApplyResult:
        """Apply one environment, held to `reviewed`, through the gates: durable state on an
        ephemeral runner, the promotion order, and the policies (as they are at `policies_ref`,
        when given, with the merged `pull_request` in their input)."""
        gate = self.gate(report, env, policies_ref, pull_request)
        store = self.store(report, env)

        def check(planned: Planned) -> None:
            if on_plan is not None:
                on_plan(planned)
            if on_ephemeral_runner() and not self.settings.allow_ephemeral_state:
                check_durable_state(env, store)
            self._promotion(report, env, store)
            gate(planned)

        return apply_environment(env, self.workspace(report), reviewed=reviewed, check=check, reason=reason)

    def _promotion(self, report: Report, env: Environment, store: StateStore) -> None:
        """The promotion gate; skipped only when the settings say so, and then recorded."""
        before = upstream(env, lambda name: self._environment(report, name))
        if before is None:
            return
        rev = revision(report.repo)
        if self.settings.skip_promotion_gate:
            who = os.environ.get("GITHUB_ACTOR") or _user()
            Ledger(store, env.name, self.scrub).record(
                "promotion-gate-skipped", "", revision=rev, promoted_after=before.name, by=who
            )
            return
        check_promotion(env, before, self.store(report, before), rev, report.repo.repo_root)

    @staticmethod
    def _environment(report: Report, name: str) -> Environment | None:
        """An environment of the repo, resolved if validation did not (a `--env` run)."""
        found = next((e for e in report.environments if e.name == name), None)
        if found is None and name in report.repo.environments:
            found = Resolver(report.repo).resolve(name)
        return found

    def apply(
        self,
        report: Report,
        environments: list[Environment],
        reviewed: Mapping[str, Reviewed],
        *,
        on_start: Callable[[Environment], None] | None = None,
        on_plan: Callable[[Planned], None] | None = None,
        policies_ref: str | None = None,
        pull_request: PullRequest | None = None,
    ) -> Iterator[Applied]:
        """Apply in promotion order, one result per environment as it ends; after a failure,
        the environments left are skipped (a change reaches prod only through staging).
        `on_start` hears of each environment as its apply starts, `on_plan` of its fresh plan
        when there is something to apply."""
        failed = False
        for env in promotion_order(environments):
            if failed:
                yield Applied(env.name)
                continue
            if on_start is not None:
                on_start(env)
            try:
                result = self.apply_one(
                    report,
                    env,
                    reviewed=reviewed.get(env.name),
                    on_plan=on_plan,
                    policies_ref=policies_ref,
                    pull_request=pull_request,
                )
            except StackwardError as exc:  # this environment's (its store, Terraform, ZenML, lock)
                failed = True
                yield Applied(env.name, error=exc)
                continue
            yield Applied(env.name, result=result)


def policy_findings(
    environments: list[Environment], report: Report, planned: dict[str, Planned], options: PolicyOptions
) -> list[Diagnostic]:
    """The policies on planned environments: their specs, planned changes and Terraform plans."""
    options.changes = {name: [c.to_dict() for c in p.plan.changes] for name, p in planned.items()}
    options.terraform_plans = {name: p.terraform_plan for name, p in planned.items() if p.terraform_plan}
    judged = [e for e in environments if e.name in planned]
    return check_policies(judged, report.repo, options).diagnostics


def _user() -> str:
    """Who runs this, for the ledger (a container may have no user name)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def _where(diag: Diagnostic) -> str:
    loc = diag.location
    if loc is None:
        return ""
    return f"{loc.file}:{loc.line}: " if loc.line else f"{loc.file}: "
