"""The policy gate: evaluate the policies on every environment and report findings.

Fails closed: a policy that does not load or evaluate, or no policy at all, is an error, never
a pass; only turning the gate off (PolicyOptions.gate, the `policy_gate` setting) skips it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stackward.diagnostics import Diagnostic, Location, Severity, display_path
from stackward.policy.base import environments_at
from stackward.policy.embedded import EmbeddedEngine
from stackward.policy.engine import DEFAULT_NAMESPACE, PolicyEngine, PolicyEvaluationError
from stackward.policy.input import PullRequest, build_input
from stackward.policy.results import collect, defines_rules, to_diagnostics
from stackward.policy.sources import PolicySourceError, changed_since, from_folder, from_git_ref
from stackward.spec.model import Environment, Repo


@dataclass
class PolicyOptions:
    """Which policies, from where, evaluated by which engine."""

    folder: Path | None = None  # default: <repository root>/policies
    namespace: str = DEFAULT_NAMESPACE
    base_ref: str | None = None  # read policies and `input.base` at this git ref (a PR's base branch)
    opa_url: str | None = None  # evaluate on this OPA server instead of in-process
    opa_token: str | None = None
    opa_upload: bool = True  # upload the policy files; False when OPA already has them
    required: bool = False  # a missing policies folder is a PolicySourceError, not a finding
    gate: bool = True  # False: the gate is turned off explicitly and nothing is evaluated
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
    """Evaluate the policies on each environment; raises PolicySourceError or PolicyEngineError.

    No policy loaded (an empty or missing folder, nothing under the namespace) is an error
    finding unless the gate is turned off explicitly (`options.gate`)."""
    if not options.gate:
        return PolicyOutcome([], "turned off explicitly (policy_gate: false)", "no", [])
    folder = policy_folder(repo, options)
    engine = make_engine(options)
    names = [e.name for e in environments]
    preloaded = bool(options.opa_url) and not options.opa_upload
    if preloaded:
        files, source = [], f"already loaded in OPA at {options.opa_url}"
    elif options.base_ref:
        files = from_git_ref(folder, options.base_ref)
        source = f"{display_path(folder)} at {options.base_ref}"
    elif not folder.exists() and not options.required:
        files, source = [], f"{display_path(folder)} (no such folder)"
    else:
        files = from_folder(folder)
        source = f"{display_path(folder)} (working tree)"
    policies = [f for f in files if not f.is_test]
    where, at = (f"OPA at {options.opa_url}", None) if preloaded else (source, Location(display_path(folder)))
    if not policies and not preloaded:  # fails closed on every environment it was to judge
        found = _for_all([_none_loaded(where, at)], names) if names else []
        return PolicyOutcome(found, source, engine.name, [])
    found = engine.load(policies)
    if found:
        return PolicyOutcome(_for_all(found, names), source, engine.name, [])
    bases = environments_at(repo, options.base_ref, names) if options.base_ref else {}
    for env in environments:
        document = build_input(
            env,
            repo,
            base=bases.get(env.name),
            pull_request=options.pull_request,
            changes=options.changes.get(env.name),
            terraform_plan=options.terraform_plans.get(env.name),
        )
        try:
            value = engine.evaluate(document)
        except PolicyEvaluationError as exc:
            found += [d.for_environment(env.name) for d in exc.diagnostics]
            continue
        if not defines_rules(value):
            detail = f": no deny, violation or warn rule under data.{options.namespace}"
            found.append(_none_loaded(where, at, detail).for_environment(env.name))
            continue
        results = collect(options.namespace, value)
        found += [d.for_environment(env.name) for d in to_diagnostics(results, env)]
    if options.base_ref and not preloaded:
        found += _changed_policies(folder, options.base_ref, names)
    return PolicyOutcome(found, source, engine.name, names)


def _none_loaded(where: str, location: Location | None, detail: str = "") -> Diagnostic:
    return Diagnostic(
        "policy.none",
        f"no policies loaded from {where}{detail}; the policy gate fails closed",
        "add policies (stackward's defaults are in its policies/ folder), or turn the gate off explicitly: "
        "--no-policy on validate, or the setting policy_gate: false (STACKWARD_POLICY_GATE=false)",
        location,
    )


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
