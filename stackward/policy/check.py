"""The policy gate: evaluate the policies on every environment and report findings.

Fails closed: a policy that does not load or evaluate, or no policy at all, is an error, never
a pass; only turning the gate off (PolicyOptions.gate, the `policy_gate` setting) skips it.
Nothing passes silently either: rules that read a Terraform plan where none exists, packages
with rules outside the evaluated namespaces, and reads of `input` keys stackward does not
provide are reported (stackward.policy.analysis).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from stackward.diagnostics import Diagnostic, Location, Severity, display_path
from stackward.policy.analysis import PLAN_KEYS, Analysis
from stackward.policy.base import environments_at
from stackward.policy.embedded import EmbeddedEngine
from stackward.policy.engine import (
    ALL_NAMESPACES,
    DEFAULT_NAMESPACES,
    PolicyEngine,
    PolicyEvaluationError,
    describe,
    namespaces_of,
)
from stackward.policy.input import PullRequest, build_input
from stackward.policy.results import collect_all, defines_rules, to_diagnostics
from stackward.policy.sources import (
    PolicyFile,
    PolicySourceError,
    changed_since,
    from_folder,
    from_git_ref,
)
from stackward.spec.model import Environment, Repo


@dataclass
class PolicyOptions:
    """Which policies, from where, evaluated by which engine."""

    folder: Path | None = None  # default: <repository root>/policies
    namespace: str | list[str] | tuple[str, ...] = DEFAULT_NAMESPACES  # `*`: every package
    base_ref: str | None = None  # read policies and `input.base` at this git ref (a PR's base branch)
    opa_url: str | None = None  # evaluate on this OPA server instead of in-process
    opa_token: str | None = None
    opa_upload: bool = True  # upload the policy files; False when OPA already has them
    required: bool = False  # a missing policies folder is a PolicySourceError, not a finding
    gate: bool = True  # False: the gate is turned off explicitly and nothing is evaluated
    pull_request: PullRequest | None = None
    changes: dict[str, list[dict]] = field(default_factory=dict)  # planned changes per environment
    terraform_plans: dict[str, dict] = field(default_factory=dict)  # `terraform show -json` per environment
    plan_file: str | None = None  # where terraform_plans came from (`policy check --plan FILE`)

    @property
    def namespaces(self) -> tuple[str, ...]:
        return namespaces_of(self.namespace)


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
            options.opa_url, token=options.opa_token, namespaces=options.namespaces, upload=options.opa_upload
        )
    return EmbeddedEngine(options.namespaces)


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
    rego = [f for f in policies if not f.is_data]
    where, at = (f"OPA at {options.opa_url}", None) if preloaded else (source, Location(display_path(folder)))
    if not rego and not preloaded:  # fails closed on every environment it was to judge
        found = _for_all([_none_loaded(where, at)], names) if names else []
        return PolicyOutcome(found, source, engine.name, [])
    found = engine.load(policies)
    if found:
        return PolicyOutcome(_for_all(found, names), source, engine.name, [])
    analysis = None if preloaded else _analysis(engine, rego)
    bases = environments_at(repo, options.base_ref, names) if options.base_ref else {}
    namespaces = options.namespaces
    keys: set[str] | None = None
    for env in environments:
        document = build_input(
            env,
            repo,
            base=bases.get(env.name),
            pull_request=options.pull_request,
            changes=options.changes.get(env.name),
            terraform_plan=options.terraform_plans.get(env.name),
        )
        keys = set(document)
        try:
            values = engine.evaluate(document)
        except PolicyEvaluationError as exc:
            found += [d.for_environment(env.name) for d in exc.diagnostics]
            continue
        if not defines_rules(values):
            detail = f": no deny, violation or warn rule under {describe(namespaces)}"
            found.append(_none_loaded(where, at, detail).for_environment(env.name))
            continue
        found += [d.for_environment(env.name) for d in to_diagnostics(collect_all(values), env)]
        if analysis is not None:
            found += [
                d.for_environment(env.name) for d in _unplanned(analysis, engine, env.name, options, at)
            ]
    if analysis is not None and names:
        extra = _outside_namespaces(analysis, namespaces) + _unknown_input(analysis, keys or set())
        found += _for_all(extra, names)
    if options.base_ref and not preloaded:
        found += _changed_policies(folder, options.base_ref, names)
    return PolicyOutcome(found, source, engine.name, names)


def _analysis(engine: PolicyEngine, rego: list[PolicyFile]) -> Analysis | None:
    """What the loaded policies read; None when it cannot be known (it only informs)."""
    if isinstance(engine, EmbeddedEngine):
        return engine.analysis
    local = EmbeddedEngine()  # the OPA server has the files: parse them here as well
    if local.load(rego):
        return None
    return local.analysis


def _evaluated(analysis: Analysis, namespaces: tuple[str, ...]) -> list[str]:
    if namespaces == (ALL_NAMESPACES,):
        return sorted(analysis.packages)
    return sorted(p for p in analysis.packages if any(p == n or p.startswith(n + ".") for n in namespaces))


def _by_file(rules: list) -> str:
    counts: dict[str, int] = {}
    for rule in rules:
        counts[rule.file] = counts.get(rule.file, 0) + 1
    return ", ".join(f"{file}: {n}" for file, n in sorted(counts.items()))


def _unplanned(
    analysis: Analysis, engine: PolicyEngine, env: str, options: PolicyOptions, at: Location | None
) -> list[Diagnostic]:
    """Rules that read the plan, when this environment's input has none (or only --plan's part)."""
    checks = analysis.checks(_evaluated(analysis, options.namespaces))
    if env in options.terraform_plans and options.plan_file:
        partial = [r for r in checks if "changes" in analysis.input_keys(r)]
        if not partial:
            return []
        return [
            Diagnostic(
                "policy.needs_plan",
                f"{len(partial)} rule(s) read input.changes, which holds only the Terraform changes of "
                f"{options.plan_file} ({_by_file(partial)}): ZenML registration changes were not evaluated",
                "`stackward plan` evaluates them on the full plan (Terraform and ZenML)",
                at,
                severity=Severity.NOTICE,
            )
        ]
    if env in options.changes or env in options.terraform_plans:
        return []
    need = [r for r in checks if analysis.input_keys(r) & set(PLAN_KEYS)]
    if not need:
        return []
    return [
        Diagnostic(
            "policy.needs_plan",
            f"{len(need)} rule(s) read the plan (input.terraform_plan, input.changes) and were not evaluated: "
            f"there is no plan here ({_by_file(need)})",
            "`stackward plan` evaluates them; or `stackward policy check --env NAME --plan FILE` with "
            "FILE from `terraform show -json`",
            at,
            severity=Severity.NOTICE,
        )
    ]


def _outside_namespaces(analysis: Analysis, namespaces: tuple[str, ...]) -> list[Diagnostic]:
    """Packages with deny/violation/warn rules that no evaluated namespace covers."""
    evaluated = set(_evaluated(analysis, namespaces))
    out = []
    skipped = sorted(
        {(r.package, r.file) for r in analysis.checks(analysis.packages) if r.package not in evaluated}
    )
    for package, file in skipped:
        out.append(
            Diagnostic(
                "policy.namespace",
                f"package {package} has deny/violation/warn rules, but it is outside the namespaces evaluated "
                f"({describe(namespaces)}): its rules were not evaluated",
                f"evaluate it with --namespace {package.split('.')[0]} (repeatable) or --all-namespaces "
                "(the setting policy_namespace), or move it under package stackward.… or main",
                Location(file, 1, 1),
                severity=Severity.WARNING,
            )
        )
    return out


def _unknown_input(analysis: Analysis, keys: set[str]) -> list[Diagnostic]:
    """Reads of top-level input keys the input does not have: rules that can never match."""
    out = []
    seen: set[tuple[str, str]] = set()
    for read in analysis.reads:
        if read.key in keys or (read.file, read.key) in seen:
            continue
        seen.add((read.file, read.key))
        out.append(
            Diagnostic(
                "policy.input",
                f"reads input.{read.key}, which stackward's input does not have: what depends on it never matches",
                f"stackward's input has {', '.join(sorted(keys))}; a Terraform plan policy written for conftest "
                "reads input.terraform_plan (e.g. `import input.terraform_plan as tfplan`)",
                Location(read.file, read.line, read.column),
                severity=Severity.WARNING,
            )
        )
    return out


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


def read_plan_file(path: Path) -> tuple[dict, list[dict]]:
    """`terraform show -json` output for `policy check --plan`: the raw plan (input.terraform_plan)
    and its resource changes in stackward's change model (input.changes, Terraform's only)."""
    from stackward.terraform.plan_json import read_plan

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicySourceError(f"{path}: cannot read the plan: {exc.strerror}") from None
    if data.startswith(b"PK"):
        raise PolicySourceError(
            f"{path} is a saved Terraform plan; give its JSON: terraform show -json {path.name} > plan.json"
        )
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PolicySourceError(f"{path}: not JSON ({exc}); give `terraform show -json` output") from None
    if (
        not isinstance(raw, dict)
        or "format_version" not in raw
        or not ("resource_changes" in raw or "planned_values" in raw or "configuration" in raw)
    ):
        raise PolicySourceError(f"{path}: not a Terraform plan in JSON (`terraform show -json` output)")
    try:
        changes = [c.to_dict() for c in read_plan(raw, ()).changes]
    except (KeyError, TypeError) as exc:
        raise PolicySourceError(
            f"{path}: a resource change is missing {exc}; is this `terraform show -json` output?"
        ) from None
    return raw, changes
