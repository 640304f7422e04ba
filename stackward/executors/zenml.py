"""The ZenML registrations executor: a worker process per environment (see zenml_worker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from stackward.registrations import Registration
from stackward.resolve import Environment
from stackward.state import EnvironmentState

_INHERITED_OUT = ("ZENML_STORE_", "ZENML_CONFIG_PATH")


class ZenmlError(Exception):
    """A ZenML call failed; the message names the environment and the call."""


def worker_environment(env: Environment, state: EnvironmentState) -> dict[str, str]:
    """The worker's environment: this environment's store and nothing from another."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_OUT)}
    base.update(
        ZENML_CONFIG_PATH=str(state.zenml_config),
        ZENML_ANALYTICS_OPT_IN="false",
        ZENML_LOGGING_VERBOSITY="ERROR",
        ZENML_ENABLE_RICH_TRACEBACK="false",
        PYTHONWARNINGS="ignore",
    )
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


class ZenmlExecutor:
    """Reads and changes one environment's registrations through its worker."""

    def __init__(self, env: Environment, state: EnvironmentState):
        self.env = env
        self.state = state
        self._process: subprocess.Popen | None = None

    @property
    def store_may_hold_registrations(self) -> bool:
        """False only for an embedded store that was never created (nothing to own or prune)."""
        embedded = (self.env.settings.get("zenml") or {}).get("mode", "embedded") == "embedded"
        return not embedded or self.state.zenml_config.exists()

    def __enter__(self) -> ZenmlExecutor:
        return self

    def _start(self) -> None:
        if self._process is not None:
            return
        self.state.ensure()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "stackward.executors.zenml_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=worker_environment(self.env, self.state),
        )

    def __exit__(self, *exc: object) -> None:
        process = self._process
        if process is None:
            return
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _send(self, request: dict) -> None:
        self._start()  # the worker starts on first use: planning an environment without registrations needs none
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()

    def _receive(self) -> dict[str, Any]:
        assert self._process is not None and self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self._process.wait()
            tail = (
                "\n".join((self._process.stderr.read() or "").strip().splitlines()[-5:])
                if self._process.stderr
                else ""
            )
            raise ZenmlError(f"{self.env.name}: the ZenML worker stopped unexpectedly: {tail}")
        return json.loads(line)

    def read(self) -> list[Registration]:
        """Every connector, component and stack in the environment's store."""
        self._send({"op": "read"})
        reply = self._receive()
        if "error" in reply:
            raise ZenmlError(f"{self.env.name}: reading ZenML registrations failed: {reply['error']}")
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

    def apply(self, ops: list[dict], on_done: Callable[[dict], None]) -> None:
        """Make the calls in order; `on_done` hears of each one as it completes."""
        if not ops:
            return
        self._send({"op": "apply", "ops": ops})
        while True:
            reply = self._receive()
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
        self._send({"op": "missing_secrets", "refs": [list(r) for r in refs]})
        reply = self._receive()
        if "error" in reply:
            raise ZenmlError(f"{self.env.name}: checking ZenML secrets failed: {reply['error']}")
        return reply["missing"]
