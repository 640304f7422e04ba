"""The reconciler's settings: one place, from a YAML file and STACKWARD_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import yaml


@dataclass
class Settings:
    path: Path = Path("environments")  # the environments folder (inside the clone, when a remote is set)
    remote: str = ""  # git remote URL to clone and fetch; empty: use `path` as it is
    branch: str = "main"
    clone_dir: Path = Path(".stackward/source")
    state_dir: Path | None = None
    database_url: str = ""  # default: sqlite under the state folder; postgresql+psycopg://… for replicas
    host: str = "127.0.0.1"
    port: int = 8080
    interval: float = 300.0  # seconds between reconciles of an environment
    jitter: float = 0.1  # up to this fraction of the interval, at random
    timeout: float = 1800.0  # a pass that takes longer is reported as stalled
    backoff: float = 30.0  # first retry after a failure; doubles, capped
    backoff_cap: float = 1800.0
    max_failures: int = 10  # then Stalled/RetryLimitReached until the specs change or someone asks
    auto_sync: bool = True  # apply new revisions; False: report them as out of sync
    api_token: str = ""  # bearer token for mutating endpoints (required for them to work)
    read_requires_token: bool = False
    webhook_secret: str = ""  # GitHub webhook secret (X-Hub-Signature-256)
    webhook_max_bytes: int = 1024 * 1024
    history_size: int = 20
    coalesce_seconds: float = 2.0  # pushes within this window cause one reconcile
    github_repository: str = ""  # owner/name: on drift or failure, open/update an issue and set a status
    github_api_url: str = "https://api.github.com"
    github_token_env: str = "GITHUB_TOKEN"  # the NAME of the variable holding the token

    @classmethod
    def load(cls, file: Path | None = None) -> Settings:
        """Defaults, then the file, then STACKWARD_<FIELD> environment variables."""
        values: dict = {}
        if file is not None:
            values.update(yaml.safe_load(file.read_text()) or {})
        for f in fields(cls):
            env = os.environ.get(f"STACKWARD_{f.name.upper()}")
            if env is not None:
                values[f.name] = env
        settings = cls()
        for f in fields(cls):
            if f.name not in values:
                continue
            value, default = values[f.name], getattr(settings, f.name)
            if isinstance(default, bool):
                value = str(value).lower() in ("1", "true", "yes", "on")
            elif isinstance(default, (int, float)):
                value = type(default)(value)
            elif isinstance(default, Path) or f.name == "state_dir":
                value = Path(value)
            setattr(settings, f.name, value)
        return settings
