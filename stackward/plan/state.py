"""Per-environment state on this machine: where it lives. The records other machines must see
(locks, the ledger, applied revisions) go through a state store (stackward.state): these
files by default, or PostgreSQL.

Layout under the state folder (the `state_dir` setting, `--state-dir` or
`$STACKWARD_STATE_DIR`; default `.stackward/` at the root of the repository holding the
environments folder):

    <env>/zenml/             the embedded ZenML store (ZENML_CONFIG_PATH)
    <env>/terraform/         the rendered root module and Terraform's working files
    <env>/terraform.tfstate  the local Terraform state (default backend; a local backend's
                             config.path is relative to <env>/ and must stay inside it)
    <env>/lock               the local lock (flock) while someone holds the environment (JSON: holder)
    <env>/ledger.jsonl       one line per apply event
    <env>/applied.json       the revision and plan hash last applied (or found converged)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from stackward.errors import EnvironmentFailed


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class EnvironmentState:
    """Paths of one environment's state."""

    root: Path
    environment: str

    @property
    def folder(self) -> Path:
        return self.root / self.environment

    @property
    def zenml_config(self) -> Path:
        return self.folder / "zenml"

    @property
    def zenml_database(self) -> Path:
        """The embedded store's database, where ZenML puts it for this configuration folder."""
        return self.zenml_config / "local_stores" / "default_zen_store" / "zenml.db"

    @property
    def terraform_dir(self) -> Path:
        return self.folder / "terraform"

    @property
    def terraform_state(self) -> Path:
        return self.folder / "terraform.tfstate"

    def local_state_file(self, path: str | None) -> Path:
        """Where a local backend keeps the state: its `config.path` inside this environment's
        folder (default terraform.tfstate); EnvironmentFailed for a path that would leave it."""
        if path is None:
            return self.terraform_state
        inside = local_state_path(path)
        if inside is None:
            raise EnvironmentFailed(
                f"{self.environment}: local backend path {path!r} is outside the environment's state "
                "folder, so nothing was planned or applied\n  hint: give a path relative to that folder"
            )
        return self.folder / inside

    @property
    def lock_file(self) -> Path:
        return self.folder / "lock"

    @property
    def ledger_file(self) -> Path:
        return self.folder / "ledger.jsonl"

    @property
    def applied_file(self) -> Path:
        return self.folder / "applied.json"

    def ensure(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)


def local_state_path(path: str) -> Path | None:
    """A local backend's `config.path` as a file path inside the environment's state folder
    (relative to it), or None when it is absolute, starts with ~, or leads out of the folder."""
    relative = Path(os.path.normpath(path))
    if relative.is_absolute() or path.startswith("~") or relative.parts[:1] in ((), ("..",)):
        return None
    return relative


class LockError(EnvironmentFailed):
    """The environment is held by someone else."""
