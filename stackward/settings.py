"""The settings every front-end runs with, read in one place.

Sources, later ones winning: the defaults below, a YAML file (the reconciler's `--config`),
`STACKWARD_<FIELD>` environment variables (the action's inputs arrive this way), and the
options given on the command line. Front-ends with settings of their own (the action, the
reconciler) subclass `Settings`; they are read the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from stackward.errors import UsageError

ENV_PREFIX = "STACKWARD_"
STATE_FOLDER = ".stackward"  # the default state location, beside the repository's .git


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/stackward`, else `~/.cache/stackward`."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stackward"


class Settings(BaseModel):
    """Where the specs, state and policies are, and how long to wait for a lock."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Path("environments")  # the environments folder
    state_dir: Path | None = None  # default: .stackward/ at the repository root
    state_url: str = ""  # locks, ledger, applied revisions in PostgreSQL; empty: files in state_dir
    skip_promotion_gate: bool = False  # apply although the environment promoted from has not (recorded)
    allow_ephemeral_state: bool = False  # apply on a CI runner with state in files the job loses (demos)
    verify_connectors: bool = False  # ZenML's own verification of every connector at plan (cloud access)
    lock_timeout: float = 300.0  # seconds to wait for an environment held by another run
    plan_concurrency: int = Field(default=4, ge=1)  # environments planned at once (1: one after another)
    policies: Path | None = None  # default: policies/ at the repository root
    policy_gate: bool = True  # False turns the policy gate off explicitly; no policies: an error
    # Rego package prefixes whose deny/warn rules count (a list, or comma-separated); "*": every package
    policy_namespace: list[str] = Field(default_factory=lambda: ["stackward", "main"])
    policy_all_namespaces: bool = (
        False  # every package, as conftest's --all-namespaces (policy_namespace: "*")
    )
    opa_url: str | None = None  # evaluate on this OPA server; default: the embedded engine
    opa_token: SecretStr | None = None
    opa_preloaded: bool = False  # the OPA server already has the policies: upload nothing
    cache_dir: Path = Field(default_factory=default_cache_dir)  # the ZenML catalog cache

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        """The state folder as an absolute path: Terraform runs in a folder below it and must
        find the same files as this process."""
        return value.resolve() if value is not None else None

    @field_validator("policy_namespace", mode="before")
    @classmethod
    def _namespaces(cls, value: Any) -> Any:
        """A comma-separated string (STACKWARD_POLICY_NAMESPACE=stackward,main) as a list."""
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if isinstance(value, (list, tuple)):
            value = [str(part).strip().removeprefix("data.") for part in value if str(part).strip()]
            if not value:
                raise ValueError("at least one namespace, or * for every package")
        return value

    @model_validator(mode="after")
    def _all_namespaces(self) -> Self:
        if self.policy_all_namespaces:
            self.policy_namespace = ["*"]
        return self

    @classmethod
    def load(cls, file: Path | None = None, **given: Any) -> Self:
        """Defaults, then `file` (YAML), then STACKWARD_* variables, then `given` (None: not given)."""
        values: dict[str, Any] = {}
        if file is not None:
            values.update(_read_file(file))
            unknown = sorted(set(values) - set(cls.model_fields))
            if unknown:
                raise UsageError(
                    f"{file}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(cls.model_fields)}"
                )
        origin = dict.fromkeys(values, str(file))
        for name in cls.model_fields:
            variable = os.environ.get(f"{ENV_PREFIX}{name.upper()}", "")
            if variable.strip():  # an empty action input is not a setting
                values[name], origin[name] = variable, f"{ENV_PREFIX}{name.upper()}"
        for name, value in given.items():
            if value is not None:
                values[name], origin[name] = value, f"--{name.replace('_', '-')}"
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{origin.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}"
                + ("" if "token" in str(e["loc"][0]) else f" (got {e['input']!r})")
                for e in exc.errors()
            )
            raise UsageError(f"bad setting: {problems}") from None

    def state_root(self, repo_root: Path) -> Path:
        """Where per-environment state lives: `state_dir`, else .stackward/ at the repository root."""
        return self.state_dir or repo_root / STATE_FOLDER


def _read_file(file: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{file}: cannot read the settings file: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{file}: the settings file must be a mapping of setting: value")
    return data
