"""Terraform's JSON read into stackward's change model (pure functions: no files, no terraform).

`read_plan` reads `terraform show -json <plan>`: each resource change becomes a `Change`
(data source reads are left out), with sensitive values as `(sensitive)` and values only
known after apply as `(known after apply)`; the root module's exported outputs known before
apply are read back per module. `read_outputs` reads `terraform output -json` the same way,
and `unchanged_plan` makes the plan of a `terraform plan` that found nothing to change from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stackward.plan.changes import SENSITIVE, UNKNOWN, Action, Change, FieldChange
from stackward.terraform.render import OutputsIndex, output_name

_ACTIONS = {
    ("no-op",): Action.NO_OP,
    ("create",): Action.CREATE,
    ("update",): Action.UPDATE,
    ("delete",): Action.DELETE,
    ("delete", "create"): Action.REPLACE,
    ("create", "delete"): Action.REPLACE,
}
Outputs = dict[str, dict[str, Any]]  # module -> output -> value


@dataclass
class TerraformPlan:
    """One environment's Terraform plan in the change model."""

    changes: list[Change]
    outputs: Outputs  # values known before apply (unchanged, or already in the state)
    sensitive: set[tuple[str, str]] = field(default_factory=set)  # (module, output) pairs
    raw: dict = field(default_factory=dict)  # `terraform show -json`, for policies


def read_plan(raw: dict, outputs_index: OutputsIndex) -> TerraformPlan:
    """The plan `terraform show -json` describes; `outputs_index` is the rendered root's."""
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
    for index, (module, output) in enumerate(outputs_index):
        name = output_name(index)
        if output_changes.get(name, {}).get("after_unknown") or "value" not in planned.get(name, {}):
            continue
        outputs.setdefault(module, {})[output] = planned[name]["value"]
        if planned[name].get("sensitive"):
            sensitive.add((module, output))
    return TerraformPlan(changes, outputs, sensitive, raw)


def read_outputs(values: dict, outputs_index: OutputsIndex) -> tuple[Outputs, list[Any]]:
    """Module -> output -> value from `terraform output -json` (`outputs_index` is the rendered
    root's), and the values of the outputs Terraform marks sensitive."""
    outputs: Outputs = {}
    sensitive: list[Any] = []
    for index, (module, output) in enumerate(outputs_index):
        name = output_name(index)
        if name in values:
            outputs.setdefault(module, {})[output] = values[name]["value"]
            if values[name].get("sensitive"):
                sensitive.append(values[name]["value"])
    return outputs, sensitive


def unchanged_plan(values: dict, outputs_index: OutputsIndex) -> TerraformPlan:
    """The plan of a `terraform plan` that found no changes (exit code 0 of
    `-detailed-exitcode`), from `terraform output -json` instead of `show -json`.

    No changes means no output changes either (Terraform counts those, exit code 2), so the
    state's outputs are the planned ones, with the same `sensitive` marks. An output of the
    root module missing from the state is null (Terraform keeps no null outputs); `show -json`
    gives it as null too. The resources' no-op changes and the raw plan are left out."""
    outputs: Outputs = {}
    sensitive = set()
    for index, (module, output) in enumerate(outputs_index):
        name = output_name(index)
        outputs.setdefault(module, {})[output] = values.get(name, {}).get("value")
        if values.get(name, {}).get("sensitive"):
            sensitive.add((module, output))
    return TerraformPlan([], outputs, sensitive, {})


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
    """The top-level attributes a resource change alters, before and after, masked."""
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
