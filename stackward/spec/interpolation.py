"""`${...}` references inside spec values.

`${env.name}`, `${env.labels.KEY}` and `${var.NAME}` resolve when an environment is
resolved; `${infra.NAME.OUTPUT}` stays in place (its value is known after Terraform
applies) and is recorded so later steps can check and fill it. `$${` writes a literal `${`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from stackward.diagnostics import Diagnostic, JsonPath
from stackward.spec.loader import SourceMap
from stackward.spec.schema import suggest

_PLACEHOLDER = re.compile(r"\$(\$?)\{([^{}$]*)\}")  # no nesting: stays linear on hostile text
_INFRA = re.compile(r"^infra\.([A-Za-z_][A-Za-z0-9_-]*)\.([A-Za-z_][A-Za-z0-9_-]*)$")


@dataclass(frozen=True)
class InfraRef:
    """A reference to an output of an Infrastructure document."""

    name: str
    output: str

    def __str__(self) -> str:
        return f"${{infra.{self.name}.{self.output}}}"


@dataclass
class Context:
    """What `${env.*}` and `${var.*}` resolve to in one environment."""

    env_name: str
    env_labels: dict[str, str] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)

    def lookup(self, expr: str) -> tuple[bool, Any]:
        if expr == "env.name":
            return True, self.env_name
        if expr.startswith("env.labels.") and expr[11:] in self.env_labels:
            return True, self.env_labels[expr[11:]]
        if expr.startswith("var.") and expr[4:] in self.variables:
            return True, self.variables[expr[4:]]
        return False, None

    def known(self) -> list[str]:
        names = ["env.name"] + [f"env.labels.{k}" for k in self.env_labels]
        return names + [f"var.{k}" for k in self.variables]


@dataclass
class Interpolated:
    value: Any
    infra_refs: dict[JsonPath, list[InfraRef]]
    diagnostics: list[Diagnostic]


class _Walker:
    def __init__(self, ctx: Context, positions: SourceMap):
        self.ctx = ctx
        self.positions = positions
        self.infra_refs: dict[JsonPath, list[InfraRef]] = {}
        self.diagnostics: list[Diagnostic] = []

    def walk(self, value: Any, path: JsonPath) -> Any:
        if isinstance(value, str):
            return self.string(value, path) if "${" in value else value
        if isinstance(value, dict):
            return {k: self.walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.walk(v, (*path, i)) for i, v in enumerate(value)]
        return value

    def string(self, text: str, path: JsonPath) -> Any:
        whole = _PLACEHOLDER.fullmatch(text)
        if whole and not whole.group(1):
            found, value = self.ctx.lookup(whole.group(2).strip())
            if found:
                return value  # a lone reference keeps the variable's type
        return _PLACEHOLDER.sub(lambda m: self.replace(m, path), text)

    def replace(self, match: re.Match, path: JsonPath) -> str:
        if match.group(1):
            return match.group(0)[1:]  # $${x} -> ${x}
        expr = match.group(2).strip()
        found, value = self.ctx.lookup(expr)
        if found:
            if isinstance(value, (dict, list)):
                self.error(
                    path,
                    f"${{{expr}}} is a {type(value).__name__} and cannot be placed inside text",
                    "use it as the whole value instead",
                )
                return match.group(0)
            return _as_text(value)
        infra = _INFRA.match(expr)
        if infra:
            self.infra_refs.setdefault(path, []).append(InfraRef(*infra.groups()))
            return match.group(0)
        hint = suggest(expr, self.ctx.known())
        if expr.startswith("infra."):
            hint = "write ${infra.NAME.OUTPUT}, naming an Infrastructure and one of its outputs"
        elif expr.startswith("var.") and not hint.startswith("did you mean"):
            hint = f"define {expr[4:]} under spec.variables of Environment {self.ctx.env_name}"
        self.error(path, f"unknown reference ${{{expr}}}", hint)
        return match.group(0)

    def error(self, path: JsonPath, message: str, hint: str) -> None:
        self.diagnostics.append(
            Diagnostic("reference.variable", message, hint, self.positions.find(path), path)
        )


def _as_text(value: Any) -> str:
    """A variable's value inside text, written the way YAML and JSON write it."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return str(value)


def interpolate(value: Any, ctx: Context, positions: SourceMap, base: JsonPath = ()) -> Interpolated:
    """Resolve env/var references in every string of `value` (found at `base`)."""
    walker = _Walker(ctx, positions)
    result = walker.walk(value, base)
    return Interpolated(result, walker.infra_refs, walker.diagnostics)


def has_placeholder(value: Any) -> bool:
    """True when a string still holds an unresolved `${...}` (e.g. an infra output)."""
    return isinstance(value, str) and bool(_PLACEHOLDER.search(value))
