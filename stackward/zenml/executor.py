"""The ZenML registrations executor: a worker process per environment (see stackward.zenml.worker), and
for long-running services a shared reader process that reads many embedded stores."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stackward.errors import EnvironmentFailed
from stackward.plan.state import EnvironmentState
from stackward.process_env import allowed, credentials
from stackward.spec.model import Environment
from stackward.zenml import forkserver
from stackward.zenml.registrations import Registration

_INHERITED_OUT = ("ZENML_STORE_", "ZENML_CONFIG_PATH", "ZENML_LOCAL_STORES_PATH")
_QUIET = {
    "ZENML_ANALYTICS_OPT_IN": "false",
    "ZENML_LOGGING_VERBOSITY": "ERROR",
    "ZENML_ENABLE_RICH_TRACEBACK": "false",
    "PYTHONWARNINGS": "ignore",
}


class ZenmlError(EnvironmentFailed):
    """A ZenML call failed; the message names the environment and the call."""


def base_environment(config_path: Path) -> dict[str, str]:
    """An allow-listed environment (stackward.process_env: the basics, ZENML_* and PYTHON*
    settings, none of another store's) pointed at the ZenML configuration folder `config_path`."""
    base = {k: v for k, v in allowed(("ZENML_", "PYTHON")).items() if not k.startswith(_INHERITED_OUT)}
    return {**base, **_QUIET, "ZENML_CONFIG_PATH": str(config_path)}


def worker_environment(env: Environment, config_path: Path, phase: str) -> dict[str, str]:
    """The worker's environment: this environment's store, the credentials declared for the
    phase, and the variables its secret values come from (a plan compares them with the live
    values in memory; an apply writes them). Nothing else."""
    base = base_environment(config_path)
    settings = env.settings
    if not settings.embedded:
        key = os.environ.get(settings.zenml_api_key_env or "")
        if not key:
            raise ZenmlError(
                f"{env.name}: the ZenML server API key is read from the environment variable "
                f"{settings.zenml_api_key_env}, which is not set"
            )
        base.update(ZENML_STORE_URL=settings.zenml_url or "", ZENML_STORE_API_KEY=key)
    base.update(credentials(env, phase))
    base.update({name: os.environ[name] for name in env.secret_variables() if name in os.environ})
    return base


class _Running:
    """One started worker process (forked by stackward.zenml.forkserver), with the last lines
    it printed to stderr. Its stderr is drained as it comes: a long-lived process must never
    block on a full pipe."""

    def __init__(self, args: list[str], environment: dict[str, str], name: str):
        self.name = name
        try:
            self.process = forkserver.start(args, environment)
        except OSError as exc:
            raise ZenmlError(f"{name}: the ZenML worker could not be started: {exc}") from exc
        self.stderr_tail: deque[str] = deque(maxlen=5)
        assert self.process.stderr is not None
        self.drain = forkserver.keep_tail(self.process.stderr, self.stderr_tail, f"{name} stderr")

    def _stopped(self) -> ZenmlError:
        self.process.wait()
        self.drain.join(5)
        tail = "\n".join(self.stderr_tail)
        return ZenmlError(f"{self.name}: the ZenML worker stopped unexpectedly: {tail}")

    def send(self, request: dict) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise self._stopped() from None

    def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise self._stopped()
        return json.loads(line)

    def end(self, kill: bool) -> None:
        """Closing its input ends it; `kill` does not wait for that."""
        if kill:
            self.process.kill()
        elif self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.drain.join(5)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream:
                stream.close()


class _JsonLinesProcess:
    """A worker process (stackward.zenml.worker) started on first use: one JSON request per line in, JSON reply
    lines out. After `close()` the next request starts a new one."""

    def __init__(self, args: list[str], environment: dict[str, str], name: str):
        self.args = args
        self.environment = environment
        self.name = name
        self.running: _Running | None = None

    def send(self, request: dict) -> _Running:
        """Send `request`; the process to read its replies from (even if closed meanwhile)."""
        running = self.running
        if running is None:
            running = self.running = _Running(self.args, self.environment, self.name)
        running.send(request)
        return running

    def close(self, kill: bool = False) -> None:
        running, self.running = self.running, None
        if running is not None:
            running.end(kill)


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


class ReaderUnavailable(Exception):
    """The shared reader cannot read this store; the environment's own worker must."""


class StoreReader:
    """One long-lived process that reads the registrations of any number of embedded stores.

    A worker per environment pays for importing zenml (seconds) on every read; a service that
    reads every environment on an interval shares this reader instead (and it does not read a
    database again that did not change). It only reads: a store it cannot read as it is (not
    created yet, or at another zenml's schema) is left to the environment's own worker. It is
    thread-safe (one read at a time); `stop_read(env)` ends the process if it is reading that
    environment, which fails that read, and the next read starts a new process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._shut = False
        self._reading: str | None = None  # the environment whose read is under way
        self._reading_lock = threading.Lock()  # stop_read() never stops the read after that one
        # its own ZenML configuration folder (removed with this object): nothing touches the user's
        self._home = tempfile.TemporaryDirectory(prefix="stackward-zenml-reader-")
        self._process = _JsonLinesProcess(
            ["--reader"], base_environment(Path(self._home.name)), "store reader"
        )

    def read(self, env_name: str, database: Path) -> list[Registration]:
        """The store's registrations; ReaderUnavailable when the environment's worker must read."""
        with self._lock:
            if self._shut:
                raise ZenmlError(f"{env_name}: the service is stopping; ZenML registrations were not read")
            self._stopped = False
            with self._reading_lock:
                self._reading = env_name
            try:
                reply = self._process.send({"op": "read", "database": str(database)}).receive()
            except Exception as exc:  # the process died, or was stopped under us
                self._process.close(kill=True)
                if self._stopped:
                    raise ZenmlError(
                        f"{env_name}: reading ZenML registrations was stopped before it finished"
                    ) from exc
                raise ZenmlError(f"{env_name}: reading ZenML registrations failed: {exc}") from exc
            finally:
                with self._reading_lock:
                    self._reading = None
        if "unavailable" in reply:
            raise ReaderUnavailable(reply["unavailable"])
        if "error" in reply:
            raise ZenmlError(f"{env_name}: reading ZenML registrations failed: {reply['error']}")
        return _registrations(reply)

    @property
    def pid(self) -> int | None:
        """The reader process's id while it runs."""
        running = self._process.running
        return running.process.pid if running else None

    def stop_read(self, env_name: str) -> None:
        """If `env_name`'s read is under way (its pass stuck on it), end the process now so that
        read fails; another environment's read goes on."""
        with self._reading_lock:
            if self._reading == env_name:
                self._stopped = True
                self._process.close(kill=True)

    def close(self) -> None:
        """End the process for good: later reads fail (the service is stopping)."""
        self._shut = True
        self._stopped = True
        self._process.close(kill=True)


class ZenmlExecutor:
    """Reads and changes one environment's registrations through its worker, or reads them
    through a shared StoreReader when one is given and the store is embedded."""

    def __init__(
        self, env: Environment, state: EnvironmentState, phase: str, reader: StoreReader | None = None
    ):
        self.env = env
        self.state = state
        self.phase = phase  # plan or apply: whose credentials the worker gets
        self.reader = reader
        self._worker: _JsonLinesProcess | None = None
        # a server's client writes its API key and tokens into its configuration folder: keep
        # that in a temporary folder (made with the worker, removed with it), never in the state folder
        self._home: tempfile.TemporaryDirectory | None = None

    @property
    def embedded(self) -> bool:
        return self.env.settings.embedded

    @property
    def store_may_hold_registrations(self) -> bool:
        """False only for an embedded store that was never created (nothing to own or prune)."""
        return not self.embedded or self.state.zenml_config.exists()

    def __enter__(self) -> ZenmlExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._worker is not None:
            self._worker.close()
        if self._home is not None:
            self._home.cleanup()

    def _request(self, request: dict) -> _Running:
        """Send to the environment's worker, started on first use (planning an environment
        without registrations needs none)."""
        if self._worker is None:
            self.state.ensure()
            if not self.embedded:
                self._home = tempfile.TemporaryDirectory(prefix="stackward-zenml-")
            config = Path(self._home.name) if self._home is not None else self.state.zenml_config
            environment = worker_environment(self.env, config, self.phase)
            self._worker = _JsonLinesProcess([], environment, self.env.name)
        return self._worker.send(request)

    def read(self) -> list[Registration]:
        """Every connector, component and stack in the environment's store."""
        if self.reader is not None and self.embedded and self.state.zenml_database.exists():
            with contextlib.suppress(ReaderUnavailable):
                return self.reader.read(self.env.name, self.state.zenml_database)
        reply = self._request({"op": "read"}).receive()
        if "error" in reply:
            raise ZenmlError(f"{self.env.name}: reading ZenML registrations failed: {reply['error']}")
        return _registrations(reply)

    def apply(self, ops: list[dict], on_done: Callable[[dict], None], before: Callable[[], None]) -> None:
        """Make the calls in order. `before()` runs before each call, and raising stops the
        calls (an apply's lock check: stackward.state.Lease); `on_done` hears of each call as
        it completes."""
        if not ops:
            return
        worker = self._request({"op": "apply", "ops": ops})
        while True:
            reply = worker.receive()
            if "ready" in reply:
                try:
                    before()
                except BaseException:
                    worker.send({"stop": True})
                    raise
                worker.send({"go": True})
            elif "done" in reply:
                on_done(reply)
            elif "error" in reply:
                raise ZenmlError(f"{self.env.name}: ZenML: {reply['error']}")
            else:
                return

    def _ask(self, request: dict, what: str) -> dict[str, Any]:
        reply = self._request(request).receive()
        if "error" in reply:
            raise ZenmlError(f"{self.env.name}: {what} failed: {reply['error']}")
        return reply

    def missing_secrets(self, refs: list[tuple[str, str | None]]) -> list[str]:
        """Which ZenML secret references (`name.key`, or `name` for a key of None) the store
        cannot resolve."""
        if not refs:
            return []
        return self._ask(
            {"op": "missing_secrets", "refs": [list(r) for r in refs]}, "checking ZenML secrets"
        )["missing"]

    def compare_secrets(self, items: list[dict]) -> dict[tuple[str, str], dict[str, str]]:
        """(kind, name) -> key -> "changed", "same" or why it was not compared: the live secret
        values against the desired ones, compared inside the worker."""
        if not items:
            return {}
        reply = self._ask({"op": "compare", "items": items}, "comparing secret values")
        return {(kind, name): status for kind, name, status in reply["status"]}

    def verify(self, connectors: list[dict]) -> list[dict]:
        """ZenML's verification of connectors: [{name, error}] or [{name, warning, message}]."""
        if not connectors:
            return []
        request = {"op": "verify", "connectors": connectors, "embedded": self.embedded}
        return self._ask(request, "verifying service connectors")["results"]

    def impact(self, stacks: dict[str, str]) -> dict[str, dict[str, Any]]:
        """Stack id (-> its orchestrator's id) -> what runs on it (stackward.zenml.reading.impact_on)."""
        if not stacks:
            return {}
        return self._ask({"op": "impact", "stacks": stacks}, "reading what runs on the stacks")["impact"]
