"""Which environment variables specs may name: never the tokens the runner holds for
stackward and GitHub. A pull request controls the specs; naming `GITHUB_TOKEN` as a secret
value or a credential would hand the token to ZenML or to Terraform (PR code) once merged."""

from __future__ import annotations

from stackward.diagnostics import Diagnostic, JsonPath
from stackward.secrets import TOKEN_VARIABLES
from stackward.spec.model import Environment, Resource

RUNNER_VARIABLES = frozenset({*TOKEN_VARIABLES, "STACKWARD_OPA_TOKEN", "STACKWARD_STATE_URL"})
RUNNER_PREFIXES = ("ACTIONS_", "GITHUB_", "RUNNER_")


def is_runner_variable(name: str) -> bool:
    """A variable the runner sets for GitHub Actions or holds for stackward itself."""
    return name in RUNNER_VARIABLES or name.startswith(RUNNER_PREFIXES)


def _mapping(value: object) -> dict:
    return value if isinstance(value, dict) else {}  # another shape is the schema's to report


def _named(resource: Resource) -> list[tuple[JsonPath, str]]:
    """(path, variable name) for every variable a document names as a value's source."""
    spec = resource.spec
    out: list[tuple[JsonPath, str]] = []
    if resource.kind in ("ServiceConnector", "Secret"):
        field = "secrets" if resource.kind == "ServiceConnector" else "values"
        for key, ref in _mapping(spec.get(field)).items():
            if isinstance(_mapping(ref).get("fromEnv"), str):
                out.append((("spec", field, key, "fromEnv"), ref["fromEnv"]))
    if resource.kind == "Environment":
        for phase, sources in _mapping(spec.get("credentials")).items():
            for name, source in _mapping(sources).items():
                if isinstance(source, str):
                    out.append((("spec", "credentials", phase, name), source))
        for section, key in (("zenml", "apiKeyEnv"), ("state", "urlEnv")):
            value = _mapping(spec.get(section)).get(key)
            if isinstance(value, str):
                out.append((("spec", section, key), value))
    return out


def check_variables(env: Environment) -> list[Diagnostic]:
    """An error at each place a spec names a variable the runner holds for GitHub or stackward."""
    documents = [env.definition, *env.resources] if env.definition else env.resources
    return [
        resource.diagnostic(
            "secret.runner-variable",
            f"{name} is a variable the runner holds for GitHub or stackward, not a secret of this "
            "environment; specs may not hand it to ZenML or Terraform",
            "store the value in a secret of its own (e.g. a GitHub Actions secret) and name that variable",
            path,
        )
        for resource in documents
        for path, name in _named(resource)
        if is_runner_variable(name)
    ]
