"""The reconciler's settings: the engine's settings (stackward.settings: state, locks,
policies, OPA) plus the service's own, read the same way: defaults, the `--config` YAML file,
then STACKWARD_<FIELD> environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import model_validator

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
