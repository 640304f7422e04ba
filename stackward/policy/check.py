"""The policy gate: evaluate the policies on every environment and report findings.

Fails closed: a policy that does not load or evaluate is an error, never a pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stackward.diagnostics import Diagnostic, Location, Severity, display_path
from stackward.policy.embedded import EmbeddedEngine
from stackward.policy.engine import DEFAULT_NAMESPACE, PolicyEngine, PolicyEvaluationError
from stackward.policy.input import PullRequest, build_input
from stackward.policy.results import collect, to_diagnostics
from stackward.policy.sources import PolicySourceError, changed_since, from_folder, from_git_ref
from stackward.spec.model import Environment, Repo


@dataclass
class PolicyOptions:
    """Which policies, from where, evaluated by which engine."""

    folder: Path | None = None  # default: <repository root>/policies
    namespace: str = DEFAULT_NAMESPACE
    base_ref: str | None = None  # read policies from this git ref (a PR's base branch)
    opa_url: str | None = None  # evaluate on this OPA server instead of in-process
    opa_token: str | None = None
    opa_upload: bool = True  # upload the policy files; False when OPA already has them
    required: bool = False  # a missing policies folder is an error
    pull_request: PullRequest | None = None
    changes: dict[str, list[dict]] = field(default_factory=dict)  # planned changes per environment
    terraform_plans: dict[str, dict] = field(default_factory=dict)  # `terraform show -json` per environment


@dataclass
class PolicyOutcome:
    """What the gate found and where the policies came from."""

    diagnostics: list[Diagnostic]
    source: str
    engine: str
    evaluated: list[str]


def make_engine(options: PolicyOptions) -> PolicyEngine:
    if options.opa_url:
        from stackward.policy.opa_server import OpaServerEngine  # imports aiohttp: only when used

        return OpaServerEngine(
            options.opa_url, token=options.opa_token, namespace=options.namespace, upload=options.opa_upload
        )
    return EmbeddedEngine(options.namespace)


def policy_folder(repo: Repo, options: PolicyOptions) -> Path:
    return options.folder if options.folder is not None else repo.repo_root / "policies"


def check_policies(environments: list[Environment], repo: Repo, options: PolicyOptions) -> PolicyOutcome:
    """Evaluate the policies on each environment; raises PolicySourceError or PolicyEngineError."""
    folder = policy_folder(repo, options)
    engine = make_engine(options)
    preloaded = bool(options.opa_url) and not options.opa_upload
    if preloaded:
        files, source = [], f"already loaded in OPA at {options.opa_url}"
    elif not folder.exists() and not options.required and options.base_ref is None:
        return PolicyOutcome([], f"no policies folder at {display_path(folder)}", engine.name, [])
    elif options.base_ref:
        files = from_git_ref(folder, options.base_ref)
        source = f"{display_path(folder)} at {options.base_ref}"
    else:
        files = from_folder(folder)
        source = f"{display_path(folder)} (working tree)"
    names = [e.name for e in environments]
    found = engine.load([f for f in files if not f.is_test])
    if found:
        return PolicyOutcome(_for_all(found, names), source, engine.name, [])
    for env in environments:
        document = build_input(
            env,
            repo,
            pull_request=options.pull_request,
            changes=options.changes.get(env.name),
            terraform_plan=options.terraform_plans.get(env.name),
        )
        try:
            value = engine.evaluate(document)
        except PolicyEvaluationError as exc:
            found += [d.for_environment(env.name) for d in exc.diagnostics]
            continue
        results = collect(options.namespace, value)
        found += [d.for_environment(env.name) for d in to_diagnostics(results, env)]
    if options.base_ref and not preloaded:
        found += _changed_policies(folder, options.base_ref, names)
    return PolicyOutcome(found, source, engine.name, names)


def _for_all(found: list[Diagnostic], names: list[str]) -> list[Diagnostic]:
    out = []
    for diag in found:
        for name in names:
            diag = diag.for_environment(name)
        out.append(diag)
    return out


def _changed_policies(folder: Path, ref: str, names: list[str]) -> list[Diagnostic]:
    try:
        changed = changed_since(folder, ref)
    except PolicySourceError:
        return []
    if not changed:
        return []
    diag = Diagnostic(
        "policy.changed",
        f"this change edits policy files ({', '.join(changed)}); they were not used to judge it",
        f"the policies at {ref} judged this change; changes to policies need their owners' review",
        Location(changed[0]),
        severity=Severity.WARNING,
    )
    return _for_all([diag], names)
