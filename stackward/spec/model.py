"""The resolved model every later stage works on: a repo's environments and their resources.

Built by `stackward.spec.resolve` from the YAML specs; read by the checks, the planner, the
executors and the policy input. Environment settings are parsed here once into a typed object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from stackward.diagnostics import Diagnostic, JsonPath, Location
from stackward.spec.interpolation import InfraRef
from stackward.spec.loader import SourceMap


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _names(value: Any) -> dict[str, str]:
    return {k: v for k, v in _mapping(value).items() if isinstance(k, str) and isinstance(v, str)}


def _text(value: Any, default: str | None = None) -> str | None:
    return value if isinstance(value, str) else default


@dataclass(frozen=True)
class EnvironmentSettings:
    """An Environment document's `spec`, typed. Parsing never fails: a value of the wrong shape
    gets its default, and schema validation reports it."""

    labels: dict[str, str] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    promotion_after: str | None = None  # the environment this one is promoted from
    drift: str = "report"  # report | heal
    zenml_mode: str = "embedded"  # embedded | server
    zenml_url: str | None = None
    zenml_api_key_env: str | None = None  # the NAME of the variable holding the API key
    terraform_backend: str = "local"
    terraform_backend_config: dict[str, Any] = field(default_factory=dict)
    plan_credentials: dict[str, str] = field(default_factory=dict)  # name seen -> variable holding it
    apply_credentials: dict[str, str] = field(default_factory=dict)
    state_url_env: str | None = None  # the NAME of the variable holding this environment's state URL
    raw: dict = field(default_factory=dict, compare=False)  # the spec as written

    @classmethod
    def parse(cls, spec: Any) -> EnvironmentSettings:
        spec = _mapping(spec)
        zenml = _mapping(spec.get("zenml"))
        backend = _mapping(_mapping(spec.get("terraform")).get("backend"))
        credentials = _mapping(spec.get("credentials"))
        plan = _names(credentials.get("plan"))
        return cls(
            labels={k: v for k, v in _mapping(spec.get("labels")).items() if isinstance(v, str)},
            variables=_mapping(spec.get("variables")),
            promotion_after=_text(_mapping(spec.get("promotion")).get("after")),
            drift=_text(spec.get("drift"), "report") or "report",
            zenml_mode=_text(zenml.get("mode"), "embedded") or "embedded",
            zenml_url=_text(zenml.get("url")),
            zenml_api_key_env=_text(zenml.get("apiKeyEnv")),
            terraform_backend=_text(backend.get("type"), "local") or "local",
            terraform_backend_config=dict(_mapping(backend.get("config"))),
            plan_credentials=plan,
            state_url_env=_text(_mapping(spec.get("state")).get("urlEnv")),
            apply_credentials=_names(credentials.get("apply")) if "apply" in credentials else plan,
            raw=spec,
        )

    @property
    def embedded(self) -> bool:
        return self.zenml_mode == "embedded"

    def credentials(self, phase: str) -> dict[str, str]:
        """The variables Terraform and ZenML see in `phase` (plan or apply): name -> source."""
        return self.apply_credentials if phase == "apply" else self.plan_credentials


@dataclass
class Resource:
    """One resolved spec of an environment (after inheritance and interpolation)."""

    kind: str
    name: str
    data: dict
    positions: SourceMap
    files: tuple[Path, ...]
    infra_refs: dict[JsonPath, list[InfraRef]] = field(default_factory=dict)

    @property
    def spec(self) -> dict:
        spec = self.data.get("spec")
        return spec if isinstance(spec, dict) else {}

    @property
    def labels(self) -> dict:
        labels = self.data.get("metadata", {}).get("labels")
        return labels if isinstance(labels, dict) else {}

    def location(self, path: JsonPath = ()) -> Location | None:
        return self.positions.find(path)

    def diagnostic(self, code: str, message: str, hint: str, path: JsonPath = (), **kw) -> Diagnostic:
        return Diagnostic(code, message, hint, self.location(path), path, **kw)


@dataclass
class Environment:
    """An environment: its Environment document and its resolved resources."""

    name: str
    folder: Path
    definition: Resource | None
    resources: list[Resource]
    bases: list[str]
    files: list[Path]
    diagnostics: list[Diagnostic]

    @cached_property
    def settings(self) -> EnvironmentSettings:
        """The Environment document's settings, parsed once (defaults where it has none)."""
        return EnvironmentSettings.parse(self.definition.spec if self.definition else {})

    @cached_property
    def _by_kind(self) -> dict[str, dict[str, Resource]]:
        index: dict[str, dict[str, Resource]] = {}
        for resource in self.resources:
            index.setdefault(resource.kind, {})[resource.name] = resource
        return index

    def of_kind(self, kind: str) -> dict[str, Resource]:
        """Resources of one kind by name."""
        return self._by_kind.get(kind, {})

    def secret_references(self) -> list[tuple[Resource, str, dict]]:
        """(resource, key, reference) for every secret value the environment's connectors
        (`spec.secrets`) and Secrets (`spec.values`) reference."""
        out = []
        for resource in self.resources:
            if resource.kind in ("ServiceConnector", "Secret"):
                refs = _mapping(
                    resource.spec.get("secrets" if resource.kind == "ServiceConnector" else "values")
                )
                out += [(resource, k, r) for k, r in refs.items() if isinstance(r, dict)]
        return out

    def secret_variables(self) -> list[str]:
        """The names of the environment variables its secret values come from."""
        names = (ref.get("fromEnv") for _, _, ref in self.secret_references())
        return list(dict.fromkeys(n for n in names if isinstance(n, str)))


@dataclass
class Repo:
    """An environments folder: where environments and shared folders are."""

    root: Path
    repo_root: Path
    environments: Mapping[str, Path]
    shared: Mapping[str, Path]
