"""The Terraform executor: one root module per environment, driven through python-terraform.

The environment's Infrastructure documents become `module` blocks of a rendered
`main.tf.json` in the environment's state folder, with its backend (local state under the
state folder by default). `${infra.A.out}` inside a module's variables becomes a reference
to module A's output; every declared output is exported so registrations can use it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from python_terraform import IsFlagged, Terraform

from stackward.checks.references import declared_outputs, local_module_folder
from stackward.errors import EnvironmentFailed
from stackward.plan.changes import SENSITIVE, UNKNOWN, Action, Change, FieldChange
from stackward.plan.state import EnvironmentState
from stackward.spec.model import Environment, Repo, Resource

_INFRA = re.compile(r"\$\{infra\.([A-Za-z_][A-Za-z0-9_-]*)\.([A-Za-z_][A-Za-z0-9_-]*)\}")
_ACTIONS = {
    ("no-op",): Action.NO_OP,
    ("create",): Action.CREATE,
    ("update",): Action.UPDATE,
    ("delete",): Action.DELETE,
    ("delete", "create"): Action.REPLACE,
    ("create", "delete"): Action.REPLACE,
}
Outputs = dict[str, dict[str, Any]]  # module -> output -> value


class TerraformError(EnvironmentFailed):
    """Terraform could not do what was asked; the message names the environment and what to do."""


@dataclass
class TerraformPlan:
    changes: list[Change]
    outputs: Outputs  # values known before apply (unchanged, or already in the state)
    sensitive: set[tuple[str, str]] = field(default_factory=set)
    raw: dict = field(default_factory=dict)  # `terraform show -json`, for policies


def _escape(text: str) -> str:
    """A literal string in Terraform JSON syntax: ${ and %{ would start templates."""
    return text.replace("${", "$${").replace("%{", "%%{")


def _render_value(value: Any) -> Any:
    if isinstance(value, str):
        parts, last = [], 0
        for match in _INFRA.finditer(value):
            parts.append(_escape(value[last : match.start()]))
            parts.append(f"${{module.{match.group(1)}.{match.group(2)}}}")
            last = match.end()
        parts.append(_escape(value[last:]))
        return "".join(parts)
    if isinstance(value, dict):
        return {k: _render_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_value(v) for v in value]
    return value


class TerraformExecutor:
    """Plans and applies one environment's Infrastructure."""

    def __init__(self, env: Environment, repo: Repo, state: EnvironmentState, lock_timeout: float = 30.0):
        self.env = env
        self.repo = repo
        self.state = state
        self.lock_timeout = lock_timeout
        self.modules = [r for r in env.resources if r.kind == "Infrastructure"]
        self.workdir = state.terraform_dir
        self._outputs: list[tuple[str, str]] = []

    @property
    def needed(self) -> bool:
        """Whether Terraform runs: the environment has modules, or it may hold resources of
        modules since removed (a local state with resources, or a remote backend), which the
        plan then destroys."""
        if self.modules:
            return True
        backend = self._backend()
        if "local" in backend:
            try:
                return bool(json.loads(Path(backend["local"]["path"]).read_text()).get("resources"))
            except (OSError, ValueError):
                return False
        return True

    def _source(self, module: Resource) -> str:
        folder = local_module_folder(module)
        if folder is None:
            return module.spec["source"]
        relative = os.path.relpath(folder, self.workdir)
        return relative if relative.startswith("../") else f"./{relative}"

    def _backend(self) -> dict:
        backend = self.env.settings.terraform_backend
        config = dict(self.env.settings.terraform_backend_config)
        if backend == "local":
            path = config.get("path")
            config["path"] = str((self.repo.repo_root / path) if path else self.state.terraform_state)
        return {backend: config}

    def render(self) -> dict:
        """The root module as Terraform JSON."""
        modules: dict[str, dict] = {}
        outputs: dict[str, dict] = {}
        self._outputs = []
        for module in self.modules:
            block = {"source": self._source(module)}
            if module.spec.get("version"):
                block["version"] = module.spec["version"]
            block.update(_render_value(module.spec.get("variables") or {}))
            modules[module.name] = block
            for output in sorted(declared_outputs(module)):
                name = f"stackward_{len(self._outputs):04d}"
                self._outputs.append((module.name, output))
                outputs[name] = {"value": f"${{module.{module.name}.{output}}}"}
        root: dict[str, Any] = {"terraform": {"backend": self._backend()}}
        if modules:  # none left: the plan destroys what the state still holds
            root["module"] = modules
        if outputs:  # Terraform's JSON syntax refuses an empty output block
            root["output"] = outputs
        return root

    def _terraform(self) -> Terraform:
        if shutil.which("terraform") is None:
            raise TerraformError(
                f"{self.env.name}: terraform is not installed or not on PATH; install Terraform "
                "1.5 or newer and run again"
            )
        os.environ.setdefault("TF_IN_AUTOMATION", "1")
        os.environ.setdefault("CHECKPOINT_DISABLE", "1")
        return Terraform(working_dir=str(self.workdir))

    def _run(self, tf: Terraform, step: str, *args: str, ok: tuple[int, ...] = (0,), **options: Any) -> str:
        code, out, err = tf.cmd(step, *args, no_color=IsFlagged, **options)
        if code not in ok:
            raise TerraformError(_explain(self.env.name, step, err or out))
        return out

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

    def plan(self) -> TerraformPlan:
        """`terraform plan -out`, then `show -json` read into the change model."""
        tf = self.init()
        self._run(
            tf,
            "plan",
            ok=(0, 2),
            input=False,
            out="tfplan",
            detailed_exitcode=IsFlagged,
            lock_timeout=f"{self.lock_timeout:.0f}s",
        )
        raw = json.loads(self._run(tf, "show", "tfplan", json=IsFlagged))
        return self._read_plan(raw)

    def _read_plan(self, raw: dict) -> TerraformPlan:
        changes = []
        for rc in raw.get("resource_changes", []):
            action = _ACTIONS.get(tuple(rc["change"]["actions"]))
            if action is None:
                continue  # data source reads
            changes.append(
                Change(
                    "terraform",
                    rc["type"],
                    rc["address"],
                    rc["address"],
                    action,
                    tuple(_fields(rc["change"]))
                    if action in (Action.UPDATE, Action.REPLACE, Action.CREATE)
                    else (),
                    rc.get("action_reason", "") if action is Action.REPLACE else "",
                )
            )
        planned = raw.get("planned_values", {}).get("outputs", {})
        output_changes = raw.get("output_changes", {})
        outputs: Outputs = {}
        sensitive = set()
        for index, (module, output) in enumerate(self._outputs):
            name = f"stackward_{index:04d}"
            if output_changes.get(name, {}).get("after_unknown") or "value" not in planned.get(name, {}):
                continue
            outputs.setdefault(module, {})[output] = planned[name]["value"]
            if planned[name].get("sensitive"):
                sensitive.add((module, output))
        return TerraformPlan(changes, outputs, sensitive, raw)

    def apply(self) -> Outputs:
        """Apply the saved plan (exactly what was planned), then read the outputs."""
        tf = self._terraform()
        self._run(tf, "apply", "tfplan", input=False, lock_timeout=f"{self.lock_timeout:.0f}s")
        return self.outputs(tf)

    def outputs(self, tf: Terraform | None = None) -> Outputs:
        tf = tf or self._terraform()
        values = json.loads(self._run(tf, "output", json=IsFlagged) or "{}")
        outputs: Outputs = {}
        for index, (module, output) in enumerate(self._outputs):
            name = f"stackward_{index:04d}"
            if name in values:
                outputs.setdefault(module, {})[output] = values[name]["value"]
        return outputs


def _mask(value: Any, sensitive: Any, unknown: Any) -> Any:
    """Terraform's value with sensitive parts as (sensitive) and unknown ones as (known after apply);
    `sensitive`/`unknown` have the value's shape (dicts and lists of booleans)."""
    if sensitive is True:
        return SENSITIVE
    if unknown is True:
        return UNKNOWN
    if isinstance(value, dict):
        return {
            k: _mask(
                v,
                sensitive.get(k) if isinstance(sensitive, dict) else None,
                unknown.get(k) if isinstance(unknown, dict) else None,
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _mask(
                v,
                sensitive[i] if isinstance(sensitive, list) and i < len(sensitive) else None,
                unknown[i] if isinstance(unknown, list) and i < len(unknown) else None,
            )
            for i, v in enumerate(value)
        ]
    return value


def _fields(change: dict) -> list[FieldChange]:
    before = _mask(change.get("before") or {}, change.get("before_sensitive"), None)
    after = _mask(change.get("after") or {}, change.get("after_sensitive"), change.get("after_unknown"))
    for key, unknown in (change.get("after_unknown") or {}).items():
        if unknown is True:
            after[key] = UNKNOWN
    return [
        FieldChange(key, before.get(key), after.get(key))
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]


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
