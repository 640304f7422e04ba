"""Per-environment state: where it lives, the lock every plan and apply holds for its whole
length, and the ledger of applies.

Layout under the state folder (the `state_dir` setting, `--state-dir` or
`$STACKWARD_STATE_DIR`; default `.stackward/` at the root of the repository holding the
environments folder):

    <env>/zenml/             the embedded ZenML store (ZENML_CONFIG_PATH)
    <env>/terraform/         the rendered root module and Terraform's working files
    <env>/terraform.tfstate  the local Terraform state (default backend; a local backend's
                             config.path is relative to <env>/ and must stay inside it)
    <env>/lock               present while someone holds the environment (JSON: holder)
    <env>/ledger.jsonl       one line per apply event
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stackward.errors import EnvironmentFailed
from stackward.secrets import Scrubber


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_holder(state: EnvironmentState) -> dict | None:
    try:
        return json.loads(state.lock_file.read_text())
    except (FileNotFoundError, ValueError):
        return None


def holder_is_stale(holder: dict) -> bool:
    """The holder ran on this machine and its process is gone (killed, crashed)."""
    return holder.get("host") == socket.gethostname() and not _alive(int(holder.get("pid", 0)))


def describe(holder: dict) -> str:
    return (
        f"{holder.get('command', '?')} (pid {holder.get('pid')} on {holder.get('host')}, "
        f"since {holder.get('since')})"
    )


@contextmanager
def environment_lock(state: EnvironmentState, command: str, timeout: float) -> Iterator[dict]:
    """Hold the environment; wait up to `timeout` seconds (the `lock_timeout` setting), then
    fail naming the holder."""
    state.ensure()
    holder = {
        "id": uuid.uuid4().hex,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "since": now(),
    }
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(state.lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            current = read_holder(state) or {}
            if current and holder_is_stale(current):
                raise LockError(
                    f"environment {state.environment} is locked by {describe(current)}, which is no "
                    f"longer running; if nothing else is applying it, run: stackward unlock {state.environment}"
                ) from None
            if time.monotonic() >= deadline:
                raise LockError(
                    f"environment {state.environment} is locked by {describe(current) if current else 'another run'}; "
                    f"gave up after {timeout:.0f} s"
                ) from None
            time.sleep(0.2)
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(holder, handle)
        break
    try:
        yield holder
    finally:
        if (read_holder(state) or {}).get("id") == holder["id"]:
            state.lock_file.unlink(missing_ok=True)


def unlock(state: EnvironmentState, force: bool = False) -> str:
    """Release a lock left by a process that is gone (or any lock with force)."""
    holder = read_holder(state)
    if holder is None and not state.lock_file.exists():
        return f"environment {state.environment} is not locked"
    if holder and not force and not holder_is_stale(holder):
        raise LockError(
            f"environment {state.environment} is held by {describe(holder)}, which is still running "
            "(or ran on another machine); use --force only if you are sure it is gone"
        )
    state.lock_file.unlink(missing_ok=True)
    return f"released the lock of environment {state.environment}" + (
        f" held by {describe(holder)}" if holder else ""
    )


class Ledger:
    """Append-only record of applies: one JSON object per line, scrubbed of secret values."""

    def __init__(self, state: EnvironmentState, scrub: Scrubber | None = None):
        self.state = state
        self.scrub = scrub or Scrubber()

    def record(self, event: str, apply_id: str, **details: Any) -> None:
        self.state.ensure()
        entry = self.scrub.data({"at": now(), "event": event, "apply": apply_id, **details})
        line = json.dumps(entry, sort_keys=True)
        with self.state.ledger_file.open("a") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def entries(self) -> list[dict]:
        if not self.state.ledger_file.exists():
            return []
        out = []
        for line in self.state.ledger_file.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a crash
        return out

    def applies(self) -> list[dict]:
        """One summary per apply: revision, plan hash, start/end, result, what changed."""
        by_id: dict[str, dict] = {}
        for entry in self.entries():
            summary = by_id.setdefault(entry["apply"], {"apply": entry["apply"], "done": []})
            if entry["event"] == "started":
                summary.update(
                    revision=entry.get("revision"),
                    plan_hash=entry.get("plan_hash"),
                    started=entry["at"],
                    planned=entry.get("changes", []),
                )
            elif entry["event"] == "step":
                summary["done"].append(entry.get("change"))
            elif entry["event"] == "finished":
                summary.update(finished=entry["at"], result=entry.get("result"), error=entry.get("error", ""))
        for summary in by_id.values():
            summary.setdefault("result", "interrupted")
        return list(by_id.values())
