"""The ZenML registrations executor: a worker process per environment (see zenml_worker), and
for long-running services a shared reader process that reads many embedded stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stackward.registrations import Registration
from stackward.resolve import Environment
from stackward.state import EnvironmentState

_INHERITED_OUT = ("ZENML_STORE_", "ZENML_CONFIG_PATH")
_QUIET = {
    "ZENML_ANALYTICS_OPT_IN": "false",
    "ZENML_LOGGING_VERBOSITY": "ERROR",
    "ZENML_ENABLE_RICH_TRACEBACK": "false",
    "PYTHONWARNINGS": "ignore",
}


class ZenmlError(Exception):
    """A ZenML call failed; the message names the environment and the call."""


def _base_environment(config_path: Path) -> dict[str, str]:
    """This process's environment without any ZenML store settings, pointed at `config_path`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_OUT)}
    return {**base, **_QUIET, "ZENML_CONFIG_PATH": str(config_path)}


def worker_environment(env: Environment, state: EnvironmentState) -> dict[str, str]:
    """The worker's environment: this environment's store and nothing from another."""
    base = _base_environment(state.zenml_config)
    zenml = env.settings.get("zenml") or {}
    if zenml.get("mode") == "server":
        key = os.environ.get(zenml["apiKeyEnv"])
        if not key:
            raise ZenmlError(
                f"{env.name}: the ZenML server API key is read from the environment variable "
                f"{zenml['apiKeyEnv']}, which is not set"
            )
        base.update(ZENML_STORE_URL=zenml["url"], ZENML_STORE_API_KEY=key)
    return base


class _JsonLinesProcess:
    """A zenml_worker process: one JSON request per line in, JSON reply lines out. What it
    prints to stderr is drained as it comes (a long-lived process must never block on a full
    pipe) and its last lines explain an unexpected stop."""

    def __init__(self, args: list[str], environment: dict[str, str], name: str):
        self.args = args
        self.environment = environment
        self.name = name
        self.process: subprocess.Popen | None = None
        self._stderr_tail: deque[str] = deque(maxlen=5)
        self._drain: threading.Thread | None = None

    def _drain_stderr(self, stream: Any) -> None:
        for line in stream:
            self._stderr_tail.append(line.rstrip())

    def send(self, request: dict) -> None:
        if self.process is None:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stackward.executors.zenml_worker", *self.args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=self.environment,
            )
            self._stderr_tail.clear()
            self._drain = threading.Thread(
                target=self._drain_stderr,
                args=(self.process.stderr,),
                name=f"{self.name} stderr",
                daemon=True,
            )
            self._drain.start()
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()

    def receive(self) -> dict[str, Any]:
        process = self.process
        assert process is not None and process.stdout is not None
        line = process.stdout.readline()
        if not line:
            process.wait()
            if self._drain is not None:
                self._drain.join(5)
            tail = "\n".join(self._stderr_tail)
            raise ZenmlError(f"{self.name}: the ZenML worker stopped unexpectedly: {tail}")
        return json.loads(line)

    def close(self, kill: bool = False) -> None:
        """End the process: closing its input ends it, `kill` does not wait for that."""
        process, self.process = self.process, None
        if process is None:
            return
        if kill:
            process.kill()
        elif process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._drain is not None:
            self._drain.join(5)
        for stream in (process.stdin, process.stdout):
            if stream:
                stream.close()


def _registrations(reply: dict[str, Any]) -> list[Registration]:
    return [
        Registration(
            r["kind"],
            r["name"],
            r["fields"],
            r.get("labels", {}),
            frozenset(r.get("secret_keys", [])),
            id=r["id"],
        )
        for r in reply["registrations"]
    ]


class StoreReader:
    """One long-lived process that reads the registrations of any number of embedded stores.

    A worker per environment pays for importing zenml (seconds) on every read; a service that
    reads every environment on an interval shares this reader instead (and it does not read a
    database again that did not change). It is thread-safe (one read at a time); `close()` ends
    the process, which fails a read under way, and the next read starts a new one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        # its own ZenML configuration folder (removed with this object): nothing touches the user's
        self._home = tempfile.TemporaryDirectory(prefix="stackward-zenml-reader-")
        self._process = _JsonLinesProcess(
            ["--reader"], _base_environment(Path(self._home.name)), "store reader"
        )

    def read(self, env_name: str, database: Path) -> list[Registration]:
        with self._lock:
            reply = self._read(env_name, database)
        return _registrations(reply)

    def _read(self, env_name: str, database: Path) -> dict[str, Any]:
        process = self._process
        self._stopped = False
        try:
            process.send({"op": "read", "database": str(database)})
            reply = process.receive()
        except (OSError, ValueError, ZenmlError) as exc:  # ValueError: closed under us
            process.close(kill=True)
            if self._stopped:
                raise ZenmlError(
                    f"{env_name}: reading ZenML registrations was stopped before it finished"
                ) from exc
            raise ZenmlError(f"{env_name}: reading ZenML registrations failed: {exc}") from exc
        if "error" in reply:
            raise ZenmlError(f"{env_name}: reading ZenML registrations failed: {reply['error']}")
        return reply

    @property
    def pid(self) -> int | None:
        """The reader process's id while it runs."""
        return self._process.process.pid if self._process.process else None

    def close(self) -> None:
        """Stop the process now (a read under way fails)."""
        self._stopped = True
        self._process.close(kill=True)


class ZenmlExecutor:
    """Reads and changes one environment's registrations through its worker, or reads them
    through a shared StoreReader when one is given and the store is embedded."""

    def __init__(self, env: Environment, state: EnvironmentState, reader: StoreReader | None = None):
        self.env = env
        self.state = state
        self.reader = reader
        self._worker: _JsonLinesProcess | None = None

    @property
    def embedded(self) -> bool:
        return (self.env.settings.get("zenml") or {}).get("mode", "embedded") == "embedded"

    @property
    def store_may_hold_registrations(self) -> bool:
        """False only for an embedded store that was never created (nothing to own or prune)."""
        return not self.embedded or self.state.zenml_config.exists()

    def __enter__(self) -> ZenmlExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._worker is not None:
            self._worker.close()

    def _request(self, request: dict) -> _JsonLinesProcess:
        """Send to the environment's worker, started on first use (planning an environment
        without registrations needs none)."""
        if self._worker is None:
            self.state.ensure()
            self._worker = _JsonLinesProcess([], worker_environment(self.env, self.state), self.env.name)
        self._worker.send(request)
        return self._worker

    def read(self) -> list[Registration]:
        """Every connector, component and stack in the environment's store."""
        if self.reader is not None and self.embedded and self.state.zenml_database.exists():
            return self.reader.read(self.env.name, self.state.zenml_database)
        reply = self._request({"op": "read"}).receive()
        if "error" in reply:
            raise ZenmlError(f"{self.env.name}: reading ZenML registrations failed: {reply['error']}")
        return _registrations(reply)

    def apply(self, ops: list[dict], on_done: Callable[[dict], None]) -> None:
        """Make the calls in order; `on_done` hears of each one as it completes."""
        if not ops:
            return
        worker = self._request({"op": "apply", "ops": ops})
        while True:
            reply = worker.receive()
            if "done" in reply:
                on_done(reply)
            elif "error" in reply:
                raise ZenmlError(f"{self.env.name}: ZenML: {reply['error']}")
            else:
                return

    def missing_secrets(self, refs: list[tuple[str, str]]) -> list[str]:
        """Which ZenML secret references (`name.key`) cannot be resolved."""
        if not refs:
            return []
        reply = self._request({"op": "missing_secrets", "refs": [list(r) for r in refs]}).receive()
        if "error" in reply:
            raise ZenmlError(f"{self.env.name}: checking ZenML secrets failed: {reply['error']}")
        return reply["missing"]
