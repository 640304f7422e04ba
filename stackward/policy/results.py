"""From the namespace document an engine returns to findings, the conftest way.

Rules named `deny`, `violation` (blocking) and `warn` (advisory), or starting with
`deny_`, `violation_`, `warn_`, are collected from every package under the namespaces.
Each result is a string or an object with `msg` and optional `resource`, `fix`,
`policy_id`. `exception` rules waive rules of their package by name suffix, as in
conftest: `exception contains ["prod_keys"] if {...}` waives `deny_prod_keys`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from stackward.diagnostics import Diagnostic, Severity
from stackward.spec.model import Environment, Resource

_RULE = re.compile(r"^(deny|violation|warn)(?:_([A-Za-z0-9_]+))?$")


@dataclass(frozen=True)
class PolicyResult:
    """One rule result."""

    package: str
    rule: str
    blocking: bool
    msg: str
    resource: Any = None
    fix: str = ""
    policy_id: str = ""
    waived: bool = False

    @property
    def code(self) -> str:
        return f"policy.{self.policy_id or self.package + '.' + self.rule}"


def _results(package: str, rule: str, values: list, waived: bool) -> list[PolicyResult]:
    blocking = not rule.startswith("warn")
    out = []
    for value in values:
        if isinstance(value, dict):
            msg = value.get("msg")
            out.append(
                PolicyResult(
                    package,
                    rule,
                    blocking,
                    str(msg) if msg is not None else f"{rule} result without msg: {value}",
                    value.get("resource"),
                    str(value.get("fix") or ""),
                    str(value.get("policy_id") or ""),
                    waived,
                )
            )
        else:
            out.append(PolicyResult(package, rule, blocking, str(value), waived=waived))
    return out


def collect(namespace: str, document: Any) -> list[PolicyResult]:
    """Every deny/violation/warn result below `data.<namespace>`."""
    out: list[PolicyResult] = []
    if not isinstance(document, dict):
        return out
    waived: set[str] = set()
    for entry in document.get("exception") or []:
        if isinstance(entry, list):
            waived.update(str(name) for name in entry)
        elif isinstance(entry, str):
            waived.add(entry)
    for key, value in document.items():
        match = _RULE.match(key)
        if match and isinstance(value, list):
            suffix = match.group(2) or ""
            out.extend(_results(namespace, key, value, bool(suffix) and suffix in waived))
        elif isinstance(value, dict):
            out.extend(collect(f"{namespace}.{key}", value))
    return out


def collect_all(values: dict[str, Any]) -> list[PolicyResult]:
    """The results of each evaluated namespace (a namespace inside another is collected once)."""
    out: list[PolicyResult] = []
    for namespace, value in values.items():
        if any(namespace.startswith(other + ".") for other in values if other != namespace):
            continue
        out.extend(collect(namespace, value))
    return out


def defines_rules(document: Any) -> bool:
    """Whether the namespace document holds a deny, violation or warn rule (even with no result)."""
    if not isinstance(document, dict):
        return False
    return any(_RULE.match(key) or defines_rules(value) for key, value in document.items())


def _find(env: Environment, reference: Any) -> Resource | None:
    if isinstance(reference, dict):
        kind, name = reference.get("kind"), reference.get("name")
    elif isinstance(reference, str) and "/" in reference:
        kind, name = reference.split("/", 1)
    else:
        kind, name = None, reference
    for resource in env.resources:
        if resource.name == name and (kind is None or resource.kind == kind):
            return resource
    return None


# A Terraform address in a module call: `module.base.google_storage_bucket.artifacts`.
_MODULE_ADDRESS = re.compile(r"(?<![\w.\[\]\-])module\.([A-Za-z_][A-Za-z0-9_-]*)")


def _module_document(env: Environment, result: PolicyResult) -> Resource | None:
    """The Infrastructure document declaring the module a result's address names."""
    texts = [result.resource] if isinstance(result.resource, str) else []
    for text in [*texts, result.msg]:
        for name in _MODULE_ADDRESS.findall(text):
            for resource in env.resources:
                if resource.kind == "Infrastructure" and resource.name == name:
                    return resource
    return None


def to_diagnostics(results: list[PolicyResult], env: Environment) -> list[Diagnostic]:
    """Findings at the resource each result names, else at the Infrastructure document declaring
    the module a Terraform address in it names (`module.NAME.…`), else at the Environment document."""
    out = []
    for result in results:
        resource = _find(env, result.resource) or _module_document(env, result) or env.definition
        location = resource.location(("metadata", "name")) if resource else None
        if result.waived:
            severity, hint = Severity.NOTICE, f"waived by an exception in {result.package}"
        else:
            severity = Severity.ERROR if result.blocking else Severity.WARNING
            hint = result.fix
        out.append(Diagnostic(result.code, result.msg, hint, location, (), severity))
    return out
