"""The Terraform executor: runs the terraform CLI, through python-terraform, for one environment.

The root module is rendered by `stackward.terraform.render` and written to `main.tf.json` in
the environment's Terraform working folder; `terraform show -json` and `terraform output -json`
are read by `stackward.terraform.plan_json`. Failures become `TerraformError`s that say what to do.

Each terraform command runs in its own session, so that stopping it reaches its providers and
provisioners too, and nothing else: `TerraformProcesses.interrupt()` sends SIGINT to the
session (what Ctrl-C in a terminal does; Terraform then stops gracefully and releases its state
lock), `kill()` ends what is left. A command it stopped raises `Interrupted`. Ctrl-C of the CLI
does the same for the commands it runs: the first stops Terraform gracefully, a second kills it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from types import FrameType
from typing import Any

from python_terraform import IsFlagged, Terraform

from stackward.errors import EnvironmentFailed, Interrupted
from stackward.plan.state import EnvironmentState
from stackward.process_env import terraform_environment
from stackward.spec.model import Environment
from stackward.terraform.plan_json import Outputs, TerraformPlan, read_outputs, read_plan, unchanged_plan
from stackward.terraform.render import OutputsIndex, RenderedRoot, backend, infrastructure, render_root

__all__ = ["TerraformError", "TerraformExecutor", "TerraformPlan", "TerraformProcesses"]


class TerraformError(EnvironmentFailed):
    """Terraform could not do what was asked; the message names the environment and what to do."""


class TerraformProcesses:
    """The terraform commands started while it is in use (`use()`), to stop them together.

    `interrupt(reason)` asks each running command to stop gracefully, once, and refuses to start
    new ones; `kill()` ends whatever is left of them. The CLI's commands belong to one instance
    for the process; the reconciler uses its own."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # reentrant: the Ctrl-C handler may run while it is held
        self._running: dict[subprocess.Popen, str] = {}  # each process, and why it was stopped ("")
        self.reason = ""  # why interrupt() was called: no command starts after that

    @contextlib.contextmanager
    def use(self) -> Iterator[None]:
        """Terraform commands started in this thread while the block runs belong to this instance."""
        token = _current.set(self)
        try:
            yield
        finally:
            _current.reset(token)

    def start(self, command: list[str], why_refused: str, **options: Any) -> subprocess.Popen:
        """Start `command` in its own session; Interrupted (`why_refused`) once interrupted."""
        with self._lock:
            if self.reason:
                raise Interrupted(f"{why_refused}: {self.reason}")
            proc = subprocess.Popen(command, start_new_session=True, **options)
            self._running[proc] = ""
        return proc

    def interrupt(self, reason: str) -> None:
        """SIGINT to each running command's session (once each); start no new command."""
        with self._lock:
            self.reason = self.reason or reason
            for proc, stopped in self._running.items():
                if not stopped:
                    self._running[proc] = reason
                    _signal_session(proc, signal.SIGINT)

    def kill(self) -> None:
        """SIGKILL to each running command's session."""
        with self._lock:
            self.reason = self.reason or "killed"
            for proc, stopped in self._running.items():
                self._running[proc] = stopped or self.reason
                _signal_session(proc, signal.SIGKILL)

    def finish(self, proc: subprocess.Popen) -> str:
        """Forget an ended command; why it was interrupted, or "". What an interrupted command
        left in its session (a provisioner's child Terraform did not wait for) is killed."""
        with self._lock:
            stopped = self._running.pop(proc, "")
        if stopped:
            _signal_session(proc, signal.SIGKILL)
        return stopped


def _signal_session(proc: subprocess.Popen, signum: int) -> None:
    """`signum` to every process in `proc`'s session (its process group: started with
    start_new_session, it leads both); nothing when none is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


_cli = TerraformProcesses()
_current: ContextVar[TerraformProcesses] = ContextVar("terraform_processes", default=_cli)


def _ctrl_c(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C: ask the CLI's terraform commands to stop as a terminal would (they run in their
    own sessions, so the terminal's signal does not reach them), then Python's KeyboardInterrupt."""
    _cli.interrupt("Ctrl-C")
    signal.default_int_handler(signum, frame)


if threading.current_thread() is threading.main_thread() and (
    signal.getsignal(signal.SIGINT) is signal.default_int_handler
):
    signal.signal(signal.SIGINT, _ctrl_c)  # only in place of Python's own: never over an app's handler


class TerraformExecutor:
    """Plans and applies one environment's Infrastructure."""

    def __init__(self, env: Environment, state: EnvironmentState, lock_timeout: float, phase: str):
        self.env = env
        self.state = state
        self.lock_timeout = lock_timeout
        self.phase = phase  # plan or apply: whose credentials Terraform gets
        self.modules = infrastructure(env)
        self.workdir = state.terraform_dir
        self._rendered: RenderedRoot | None = None  # what init last wrote to main.tf.json
        self.ran: list[str] = []  # the terraform commands run, in order (`plan`, `show`, ...)

    @property
    def needed(self) -> bool:
        """Whether Terraform runs: the environment has modules, or it may hold resources of
        modules since removed (a local state with resources, or a remote backend), which the
        plan then destroys."""
        if self.modules:
            return True
        block = backend(self.env, self.state)
        if "local" in block:
            try:
                return bool(json.loads(Path(block["local"]["path"]).read_text()).get("resources"))
            except (OSError, ValueError):
                return False
        return True

    def render(self) -> dict:
        """The root module as Terraform JSON."""
        self._rendered = render_root(self.env, self.state)
        return self._rendered.root

    def _terraform(self) -> Terraform:
        if shutil.which("terraform") is None:
            raise TerraformError(
                f"{self.env.name}: terraform is not installed or not on PATH; install Terraform "
                "1.5 or newer and run again"
            )
        return Terraform(working_dir=str(self.workdir))

    def _run(self, tf: Terraform, step: str, *args: str, ok: tuple[int, ...] = (0,), **options: Any) -> str:
        """One terraform command (its command line built by python-terraform), run with the
        allow-listed environment of this phase, never this process's."""
        return self._exec(tf, step, *args, ok=ok, **options).stdout

    def _exec(
        self, tf: Terraform, step: str, *args: str, ok: tuple[int, ...] = (0,), **options: Any
    ) -> subprocess.CompletedProcess:
        """As _run(), with the exit code."""
        command = tf.generate_cmd_string(step, *args, no_color=IsFlagged, **options)
        self.ran.append(step)
        processes = _current.get()
        proc = processes.start(
            command,
            f"{self.env.name}: terraform {step} was not started",
            cwd=self.workdir,
            env=terraform_environment(self.env, self.phase),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            stdout, stderr = _wait(proc, processes)
        finally:
            stopped = processes.finish(proc)
        if proc.returncode not in ok:
            if stopped:
                raise Interrupted(_interrupted(self.env.name, step, stopped, proc.returncode))
            raise TerraformError(_explain(self.env.name, step, stderr or stdout))
        return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)

    def init(self) -> Terraform:
        """Render the root module; `terraform init` only when it changed (or never succeeded)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        rendered = json.dumps(self.render(), indent=2, sort_keys=True) + "\n"
        (self.workdir / "main.tf.json").write_text(rendered)
        marker = self.workdir / ".stackward-initialised"  # written only after an init that succeeded
        tf = self._terraform()
        if not (marker.exists() and marker.read_text() == rendered):
            marker.unlink(missing_ok=True)
            with _plugin_cache_turn(terraform_environment(self.env, self.phase)):
                self._run(
                    tf, "init", input=False, reconfigure=IsFlagged, lock_timeout=f"{self.lock_timeout:.0f}s"
                )
            marker.write_text(rendered)
        return tf

    def plan(self, render_unchanged: bool = True) -> TerraformPlan:
        """`terraform plan -out`, then `show -json` read into the change model.

        When the plan has no changes (`-detailed-exitcode` 0) and `render_unchanged` is off,
        `show -json` (which loads every provider's schema) is skipped: there are no changes to
        read, and the outputs are read from the state instead (see `unchanged_plan`). The
        plan then has no `raw` JSON and no no-op changes; keep it on when something reads
        them (the policies' `input.terraform_plan` and `input.changes`)."""
        tf = self.init()
        proc = self._exec(
            tf,
            "plan",
            ok=(0, 2),
            input=False,
            out="tfplan",
            detailed_exitcode=IsFlagged,
            lock_timeout=f"{self.lock_timeout:.0f}s",
        )
        if proc.returncode == 0 and not render_unchanged:
            values = json.loads(self._run(tf, "output", json=IsFlagged) or "{}")
            return unchanged_plan(values, self._outputs_index)
        raw = json.loads(self._run(tf, "show", "tfplan", json=IsFlagged))
        return read_plan(raw, self._outputs_index)

    def apply(self) -> tuple[Outputs, list[Any]]:
        """Apply the saved plan (exactly what was planned), then read the outputs: module ->
        output -> value, and the values of those Terraform marks sensitive."""
        tf = self._terraform()
        self._run(tf, "apply", "tfplan", input=False, lock_timeout=f"{self.lock_timeout:.0f}s")
        return self.outputs(tf)

    def outputs(self, tf: Terraform | None = None) -> tuple[Outputs, list[Any]]:
        """As for apply(): from the state, for the outputs of the root module rendered last
        (none before a render)."""
        tf = tf or self._terraform()
        return read_outputs(json.loads(self._run(tf, "output", json=IsFlagged) or "{}"), self._outputs_index)

    @property
    def _outputs_index(self) -> OutputsIndex:
        return self._rendered.outputs if self._rendered else ()


@contextlib.contextmanager
def _plugin_cache_turn(environment: dict[str, str]) -> Iterator[None]:
    """Hold the plugin cache (`TF_PLUGIN_CACHE_DIR`) for one `terraform init`: Terraform does
    not make its cache safe for concurrent inits, and environments planned or reconciled at
    once share it. An advisory lock on a file in the cache, so other stackward processes on
    the host take turns too."""
    cache = environment.get("TF_PLUGIN_CACHE_DIR")
    if not cache:
        yield
        return
    Path(cache).mkdir(parents=True, exist_ok=True)
    with open(Path(cache) / ".stackward-init.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # released when the file is closed
        yield


def _wait(proc: subprocess.Popen, processes: TerraformProcesses) -> tuple[str, str]:
    """The command's output once it ends. Ctrl-C while waiting (the CLI's main thread) asks it
    to stop gracefully and waits on; a second Ctrl-C kills it."""
    try:
        return proc.communicate()
    except KeyboardInterrupt:
        processes.interrupt("Ctrl-C")  # done already when the handler above ran
    try:
        return proc.communicate()
    except KeyboardInterrupt:
        processes.kill()
        return proc.communicate()


def _interrupted(env: str, step: str, why: str, returncode: int) -> str:
    """What an interrupted command did, and what to do."""
    if returncode == -signal.SIGKILL:
        return (
            f"{env}: terraform {step} was interrupted ({why}) and killed before it stopped "
            "gracefully; it may not have recorded what it changed in its state: check the "
            "resources it was changing, then plan and apply again"
        )
    return (
        f"{env}: terraform {step} was interrupted ({why}); it stopped gracefully and released "
        "its state lock (what it changed is in its state): plan and apply again to finish"
    )


def _explain(env: str, step: str, text: str) -> str:
    """Terraform's error, shortened, with what to do."""
    lines = [line.strip("│ ").strip() for line in (text or "").splitlines()]
    lines = [line for line in lines if line and not set(line) <= set("╷╵")]
    start = next((i for i, line in enumerate(lines) if line.startswith("Error:")), 0)
    detail = " ".join(lines[start : start + 6])
    if "Error acquiring the state lock" in text:
        hint = "another run holds this environment's Terraform state; wait for it, or if it died, unlock the state"
    elif "provider" in text.lower() and (
        "registry" in text.lower() or "download" in text.lower() or "query" in text.lower()
    ):
        hint = (
            "a provider could not be downloaded: give this machine access to the Terraform registry, "
            "or configure a provider mirror (TF_CLI_CONFIG_FILE)"
        )
    elif step == "init":
        hint = "check the backend settings and credentials in the Environment's spec.terraform"
    else:
        hint = "fix the module or its variables"
    return f"{env}: terraform {step} failed: {detail}\n  hint: {hint}"
