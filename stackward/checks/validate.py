"""Validation of an environments folder: every check, in order, all findings collected.

Order: YAML syntax, schema, duplicate names (while resolving), references, ZenML
definitions. Findings shared by several environments (a base file) are reported once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stackward.checks.references import check_promotion_cycles, check_references
from stackward.checks.variables import check_variables
from stackward.checks.zenml import check_zenml
from stackward.diagnostics import Diagnostic, Severity, merge_diagnostics
from stackward.errors import UsageError
from stackward.policy.check import PolicyOptions, PolicyOutcome, check_policies
from stackward.settings import Settings
from stackward.spec.discover import discover
from stackward.spec.model import Environment, Repo
from stackward.spec.resolve import Resolver
from stackward.spec.schema import suggest
from stackward.zenml.catalog import Catalog, load_catalog


@dataclass
class Report:
    """Everything validation found, per environment and merged."""

    repo: Repo
    environments: list[Environment]
    diagnostics: list[Diagnostic]
    policy: PolicyOutcome | None = None

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def for_environment(self, name: str) -> list[Diagnostic]:
        return [d for d in self.diagnostics if name in d.environments]


def select_environments(repo: Repo, selected: str | None, only: str | None) -> list[str]:
    """Names to validate: all, the folder that was pointed at, or the one asked for."""
    if not repo.environments:
        raise UsageError(
            f"{repo.root}: no environment folders found; create one folder per environment "
            "(e.g. environments/dev) with an Environment document"
        )
    if only is not None and not only.strip():
        raise UsageError("--env needs an environment name")
    wanted = only or selected
    if wanted is None:
        return sorted(repo.environments)
    if wanted not in repo.environments:
        hint = suggest(wanted, repo.environments)
        raise UsageError(f"no environment named {wanted!r} in {repo.root} ({hint})")
    if only and selected and only != selected:
        raise UsageError(f"--env {only} does not match the environment folder {selected}")
    return [wanted]


def _without_echoes(found: list[Diagnostic]) -> list[Diagnostic]:
    """Drop the follow-on findings at a value whose `${...}` could not be resolved."""
    unresolved = {(d.location, d.path) for d in found if d.code == "reference.variable"}
    return [d for d in found if d.code == "reference.variable" or (d.location, d.path) not in unresolved]


def validate(
    path: Path,
    only: str | None = None,
    catalog: Catalog | None = None,
    policy: PolicyOptions | None = None,
) -> Report:
    """Validate the environments under `path` (or the single environment folder `path`),
    then evaluate the policies (when `policy` is given) on those that validated clean."""
    repo, selected = discover(path)
    names = select_environments(repo, selected, only)
    catalog = catalog or load_catalog(Settings.load().cache_dir)
    resolver = Resolver(repo)
    environments = [resolver.resolve(name) for name in names]
    found: list[Diagnostic] = []
    for env in environments:
        env_found = (
            env.diagnostics + check_references(env, repo) + check_zenml(env, catalog) + check_variables(env)
        )
        found += [d.for_environment(env.name) for d in _without_echoes(env_found)]
    if len(environments) == len(repo.environments):
        found += check_promotion_cycles(environments)
    outcome = None
    if policy is not None:
        failed = {env for d in found if d.is_error for env in d.environments}
        clean = [env for env in environments if env.name not in failed]
        outcome = check_policies(clean, repo, policy)
        found += outcome.diagnostics
    return Report(repo, environments, merge_diagnostics(found), outcome)
