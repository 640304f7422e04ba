"""`${...}` references inside spec values.

`${env.name}`, `${env.labels.KEY}` and `${var.NAME}` resolve when an environment is
resolved; `${infra.NAME.OUTPUT}` stays in place, spelt exactly so (its value is known after
Terraform applies), and is recorded so later steps can check and fill it. `$${` writes a
literal `${`. A `${` that is never closed, a reference inside a reference, and text that
later steps would read as `${infra.…}` without it being a reference are errors.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from stackward.diagnostics import Diagnostic, JsonPath
from stackward.spec.loader import SourceMap
from stackward.spec.schema import suggest

_INFRA_EXPR = r"infra\.([A-Za-z_][A-Za-z0-9_-]*)\.([A-Za-z_][A-Za-z0-9_-]*)"
_INFRA = re.compile(_INFRA_EXPR)
INFRA_REFERENCE = re.compile(r"\$\{" + _INFRA_EXPR + r"\}")  # how later steps find them in values
_SHOWN = 40  # characters of a malformed reference shown in its finding


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


@dataclass(frozen=True)
class _Reference:
    """One `${EXPR}` of a value (EXPR without surrounding spaces)."""

    expr: str


class _Malformed(ValueError):
    """A `${` that does not make a reference: the finding's message and hint."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.hint = hint


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


def _split(text: str) -> list[str | _Reference]:
    """`text` as literal pieces and references, `$${` read as a literal `${`; _Malformed when a
    `${` is never closed or holds another `${`. One pass: stays linear on hostile text."""
    parts: list[str | _Reference] = []
    literal: list[str] = []
    done = 0
    while (start := text.find("$", done)) != -1:
        if text.startswith("$${", start):
            literal.append(text[done:start] + "${")
            done = start + 3
            continue
        if not text.startswith("${", start):
            literal.append(text[done : start + 1])
            done = start + 1
            continue
        end = text.find("}", start + 2)
        if end == -1:
            raise _Malformed(
                f"'${{' is never closed: {_shown(text[start:])}",
                "close the reference with '}', or write $${ for a literal ${",
            )
        expr = text[start + 2 : end]
        if "${" in expr:
            raise _Malformed(
                f"references cannot be nested: {_shown(text[start : end + 1])}",
                "write each reference with its whole name as plain text, e.g. ${infra.NAME.OUTPUT}",
            )
        literal.append(text[done:start])
        parts += ["".join(literal), _Reference(expr.strip())]
        literal, done = [], end + 1
    parts.append("".join(literal) + text[done:])
    return [p for p in parts if p != ""]


class _Walker:
    def __init__(self, ctx: Context, positions: SourceMap):
        self.ctx = ctx
        self.positions = positions
        self.infra_refs: dict[JsonPath, list[InfraRef]] = {}
        self.diagnostics: list[Diagnostic] = []

    def walk(self, value: Any, path: JsonPath) -> Any:
        if isinstance(value, str):
            return self.string(value, path) if "$" in value else value
        if isinstance(value, dict):
            return {k: self.walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.walk(v, (*path, i)) for i, v in enumerate(value)]
        return value

    def string(self, text: str, path: JsonPath) -> Any:
        try:
            parts = _split(text)
        except _Malformed as exc:
            self.error(path, str(exc), exc.hint)
            return text
        if len(parts) == 1 and isinstance(parts[0], _Reference):
            found, value = self.ctx.lookup(parts[0].expr)
            if found:  # a lone reference keeps the variable's type
                return self.forged(text, path) if _holds_infra_text(value) else value
        refs: list[InfraRef] = []
        result = "".join(p if isinstance(p, str) else self.replace(p.expr, path, refs) for p in parts)
        if len(INFRA_REFERENCE.findall(result)) > len(refs):
            return self.forged(text, path)
        if refs:
            self.infra_refs.setdefault(path, []).extend(refs)
        return result

    def replace(self, expr: str, path: JsonPath, refs: list[InfraRef]) -> str:
        found, value = self.ctx.lookup(expr)
        if found:
            if isinstance(value, (dict, list)):
                self.error(
                    path,
                    f"${{{expr}}} is a {type(value).__name__} and cannot be placed inside text",
                    "use it as the whole value instead",
                )
                return f"${{{expr}}}"
            return _as_text(value)
        infra = _INFRA.fullmatch(expr)
        if infra:
            refs.append(InfraRef(*infra.groups()))
            return str(refs[-1])
        hint = suggest(expr, self.ctx.known())
        if expr.startswith("infra."):
            hint = "write ${infra.NAME.OUTPUT}, naming an Infrastructure and one of its outputs"
        elif expr.startswith("var.") and not hint.startswith("did you mean"):
            hint = f"define {expr[4:]} under spec.variables of Environment {self.ctx.env_name}"
        self.error(path, f"unknown reference ${{{expr}}}", hint)
        return f"${{{expr}}}"

    def forged(self, text: str, path: JsonPath) -> str:
        """`text` as written, with the finding: its value would hold `${infra.…}` that no
        reference put there (through `$${` or a variable's value)."""
        self.error(
            path,
            "this value would hold ${infra.…} that is not a reference, and later steps would read "
            "it as an Infrastructure output",
            "write ${infra.NAME.OUTPUT} only as a reference in the value itself, never through "
            "$${ or inside a variable's value",
        )
        return text

    def error(self, path: JsonPath, message: str, hint: str) -> None:
        self.diagnostics.append(
            Diagnostic("reference.variable", message, hint, self.positions.find(path), path)
        )


def _holds_infra_text(value: Any) -> bool:
    if isinstance(value, str):
        return bool(INFRA_REFERENCE.search(value))
    if isinstance(value, dict):
        return any(_holds_infra_text(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_infra_text(v) for v in value)
    return False


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
    """True when a string holds an `${infra.…}` reference: its value is known after Terraform
    applies."""
    return isinstance(value, str) and bool(INFRA_REFERENCE.search(value))
