"""What a policy engine does, whichever runs the Rego: embedded or an OPA server."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from stackward.diagnostics import Diagnostic
from stackward.errors import CannotRun
from stackward.policy.sources import PolicyFile

DEFAULT_NAMESPACE = "stackward"
DEFAULT_NAMESPACES = ("stackward", "main")  # stackward's packages, and conftest's default
ALL_NAMESPACES = "*"  # every package (conftest's --all-namespaces)


def namespaces_of(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Namespaces from a setting: a list, or a comma-separated string; none given: the defaults.
    `*` anywhere means every package."""
    if value is None:
        return DEFAULT_NAMESPACES
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    names = tuple(dict.fromkeys(n.strip().removeprefix("data.") for n in items if n.strip()))
    if not names:
        return DEFAULT_NAMESPACES
    return (ALL_NAMESPACES,) if ALL_NAMESPACES in names else names


def describe(namespaces: tuple[str, ...]) -> str:
    """How messages name the namespaces: `data.stackward or data.main`, `any package`."""
    if namespaces == (ALL_NAMESPACES,):
        return "any package"
    return " or ".join(f"data.{n}" for n in namespaces)


def top_packages(packages: Iterable[str]) -> tuple[str, ...]:
    """The first segment of each package: what `*` queries."""
    return tuple(sorted({p.split(".", 1)[0] for p in packages if p}))


class PolicyEngineError(CannotRun):
    """The engine could not run (unreachable server, refused token)."""


class PolicyEngine(Protocol):
    """Loads policy files and data documents, and evaluates the namespaces for an input."""

    name: str
    namespaces: tuple[str, ...]

    def load(self, files: list[PolicyFile]) -> list[Diagnostic]:
        """Load policies and data documents; syntax and compile errors come back as findings."""
        ...

    def evaluate(self, document: dict) -> dict[str, Any]:
        """The value of `data.<namespace>` for this input, per namespace (absent when undefined).

        Raises PolicyEvaluationError with findings when the policies cannot be evaluated.
        """
        ...


class PolicyEvaluationError(Exception):
    """Policies failed to evaluate; carries findings pointing into the policy files."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__("; ".join(d.message for d in diagnostics))
        self.diagnostics = diagnostics
