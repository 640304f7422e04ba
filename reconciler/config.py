"""The reconciler's settings: the engine's settings (stackward.settings: state, locks,
policies, OPA) plus the service's own, read the same way: defaults, the `--config` YAML file,
then STACKWARD_<FIELD> environment variables."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from stackward.settings import STATE_FOLDER, Settings
from stackward.spec.discover import git_root


class ServiceSettings(Settings):
    remote: str = ""  # git remote URL to clone and fetch; empty: use `path` as it is
    branch: str = "main"
    clone_dir: Path | None = None  # default: <state_dir>/source
    database_url: str = ""  # default: sqlite under the state folder; postgresql+psycopg://… for replicas
    host: str = "127.0.0.1"
    port: int = 8080
    interval: float = 300.0  # seconds between reconciles of an environment
    jitter: float = 0.1  # up to this fraction of the interval, at random
    timeout: float = 1800.0  # a pass that takes longer is reported as stalled
    concurrency: int = Field(default=4, ge=1)  # environments reconciled at once (never one twice)
    fetch_interval: float = 10.0  # a fetch of the branch serves the passes that start this soon after
    # On SIGTERM Terraform is asked to stop; what still runs this many seconds later is killed.
    # Kubernetes' terminationGracePeriodSeconds must be longer: see docs/reconciler.md.
    shutdown_grace: float = Field(default=25.0, ge=0)
    # environments (names or glob patterns: prod, prod-*) whose plans wait for approval to be applied
    require_approval: list[str] = Field(default_factory=list)
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

    @field_validator("require_approval", mode="before")
    @classmethod
    def _patterns(cls, value: Any) -> Any:
        """A comma-separated string (STACKWARD_REQUIRE_APPROVAL=prod,prod-*) as a list."""
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _one_state_folder(self) -> ServiceSettings:
        """The state folder, decided once: `state_dir`, else .stackward/ at the root of the git
        repository holding `path` (as for the CLI), or in the working directory for a remote.
        The service's database and clone live in it, beside the environments' state."""
        if self.state_dir is None:
            base = Path.cwd() if self.remote else git_root(self.path.resolve())
            self.state_dir = base / STATE_FOLDER
        if self.clone_dir is None:
            self.clone_dir = self.state_dir / "source"
        if not self.state_url and self.database_url.startswith("postgres"):
            self.state_url = self.database_url  # one PostgreSQL for the service and the state store
        return self

    @property
    def database(self) -> str:
        assert self.state_dir is not None
        return self.database_url or f"sqlite:///{(self.state_dir / 'reconciler.db').resolve()}"

    def requires_approval(self, environment: str) -> bool:
        """Whether `environment`'s plans wait for approval before the service applies them."""
        return any(fnmatchcase(environment, pattern) for pattern in self.require_approval)
