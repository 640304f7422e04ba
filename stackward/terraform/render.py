"""The root module of an environment, rendered as Terraform JSON (a pure function: no files, no terraform).

The environment's Infrastructure documents become `module` blocks, with the environment's
backend (a local backend's state always inside the environment's state folder).
`${infra.A.out}` inside a module's variables becomes a reference to module A's output; any
other `${` or `%{` stays literal.
Every declared output is exported as `stackward_0000`, `stackward_0001`, ... so that
registrations can use it; `RenderedRoot.outputs` says which module output each one carries.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from stackward.checks.references import declared_outputs, local_module_folder
from stackward.plan.state import EnvironmentState
from stackward.spec.interpolation import INFRA_REFERENCE
from stackward.spec.model import Environment, Resource

OutputsIndex = tuple[tuple[str, str], ...]  # (module, output); position i is exported as output_name(i)


def output_name(index: int) -> str:
    """The name the root module exports the `index`-th (module, output) pair under."""
    return f"stackward_{index:04d}"


@dataclass(frozen=True)
class RenderedRoot:
    """A rendered root module: the Terraform JSON, and which module output each exported output carries."""

    root: dict[str, Any]
    outputs: OutputsIndex


def infrastructure(env: Environment) -> list[Resource]:
    """The environment's Infrastructure documents (the root module's modules), in order."""
    return [r for r in env.resources if r.kind == "Infrastructure"]


def backend(env: Environment, state: EnvironmentState) -> dict[str, dict]:
    """The backend block: {type: config}. A local backend's path is inside the environment's
    state folder, relative to it (default: its terraform.tfstate); EnvironmentFailed for one
    that would leave it."""
    kind = env.settings.terraform_backend
    config = dict(env.settings.terraform_backend_config)
    if kind == "local":
        config["path"] = str(state.local_state_file(config.get("path")))
    return {kind: config}


def render_root(env: Environment, state: EnvironmentState) -> RenderedRoot:
    """The root module for `env`, to be written to `main.tf.json` in `state.terraform_dir`."""
    modules: dict[str, dict] = {}
    outputs: dict[str, dict] = {}
    index: list[tuple[str, str]] = []
    for module in infrastructure(env):
        block = {"source": _source(module, state)}
        if module.spec.get("version"):
            block["version"] = module.spec["version"]
        block.update(_render_value(module.spec.get("variables") or {}))
        modules[module.name] = block
        for output in sorted(declared_outputs(module)):
            outputs[output_name(len(index))] = {"value": f"${{module.{module.name}.{output}}}"}
            index.append((module.name, output))
    root: dict[str, Any] = {"terraform": {"backend": backend(env, state)}}
    if modules:  # none left: the plan destroys what the state still holds
        root["module"] = modules
    if outputs:  # Terraform's JSON syntax refuses an empty output block
        root["output"] = outputs
    return RenderedRoot(root, tuple(index))


def _source(module: Resource, state: EnvironmentState) -> str:
    """The module's source as the root module sees it: a local folder relative to the
    Terraform working folder, anything else as written."""
    folder = local_module_folder(module)
    if folder is None:
        return module.spec["source"]
    relative = os.path.relpath(folder, state.terraform_dir)
    return relative if relative.startswith("../") else f"./{relative}"


def _escape(text: str) -> str:
    """A literal string in Terraform JSON syntax: ${ and %{ would start templates."""
    return text.replace("${", "$${").replace("%{", "%%{")


def _render_value(value: Any) -> Any:
    """A variable's value in Terraform JSON: `${infra.A.out}` as module A's output, the rest literal."""
    if isinstance(value, str):
        parts, last = [], 0
        for match in INFRA_REFERENCE.finditer(value):
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
