"""What a policy engine does, whichever runs the Rego: embedded or an OPA server."""

from __future__ import annotations

from typing import Any, Protocol

from stackward.diagnostics import Diagnostic
from stackward.errors import CannotRun
from stackward.policy.sources import PolicyFile

DEFAULT_NAMESPACE = "stackward"


class PolicyEngineError(CannotRun):
    """The engine could not run (unreachable server, refused token)."""


class PolicyEngine(Protocol):
    """Loads policy files and evaluates the namespace document for an input."""

    name: str
    namespace: str

    def load(self, files: list[PolicyFile]) -> list[Diagnostic]:
        """Load policies; syntax and compile errors come back as findings."""
        ...

    def evaluate(self, document: dict) -> Any:
        """The value of `data.<namespace>` for this input (None when undefined).

        Raises PolicyEvaluationError with findings when the policies cannot be evaluated.
        """
        ...


class PolicyEvaluationError(Exception):
    """Policies failed to evaluate; carries findings pointing into the policy files."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__("; ".join(d.message for d in diagnostics))
        self.diagnostics = diagnostics
