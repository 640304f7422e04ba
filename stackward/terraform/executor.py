"""The Terraform executor: runs the terraform CLI, through python-terraform, for one environment.

The root module is rendered by `stackward.terraform.render` and written to `main.tf.json` in
the environment's Terraform working folder; `terraform show -json` and `terraform output -json`
are read by `stackward.terraform.plan_json`. Failures become `TerraformError`s that say what to do.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from python_terraform import IsFlagged, Terraform

from stackward.errors import EnvironmentFailed
from stackward.plan.state import EnvironmentState
from stackward.process_env import terraform_environment
from stackward.spec.model import Environment
from stackward.terraform.plan_json import Outputs, TerraformPlan, read_outputs, read_plan, unchanged_plan
from stackward.terraform.render import OutputsIndex, RenderedRoot, backend, infrastructure, render_root

__all__ = ["TerraformError", "TerraformExecutor", "TerraformPlan"]


class TerraformError(EnvironmentFailed):
    """Terraform could not do what was asked; the message names the environment and what to do."""


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
        proc = subprocess.run(
            command,
            cwd=self.workdir,
            env=terraform_environment(self.env, self.phase),
            capture_output=True,
            text=True,
        )
        if proc.returncode not in ok:
            raise TerraformError(_explain(self.env.name, step, proc.stderr or proc.stdout))
        return proc

    def init(self) -> Terraform:
        """Render the root module; `terraform init` only when it changed (or never succeeded)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        rendered = json.dumps(self.render(), indent=2, sort_keys=True) + "\n"
        (self.workdir / "main.tf.json").write_text(rendered)
        marker = self.workdir / ".stackward-initialised"  # written only after an init that succeeded
        tf = self._terraform()
        if not (marker.exists() and marker.read_text() == rendered):
            marker.unlink(missing_ok=True)
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
