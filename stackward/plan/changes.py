"""One change model for both layers (ZenML registrations and Terraform resources).

A plan is, per environment, an ordered list of changes with field-level before/after.
Secret values never enter it: they are shown as `(sensitive)`. The plan serialises to
stable JSON whose hash identifies exactly what was reviewed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

SENSITIVE = "(sensitive)"
UNKNOWN = "(known after apply)"
PLAN_FORMAT = 1


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    NO_OP = "no-op"
    CONFLICT = "conflict"  # a name taken by something stackward does not own: blocks apply
    ADOPT = "adopt"  # a resource registered by hand, taken over because its spec says `adopt: true`


SYMBOLS = {
    Action.CREATE: "+",
    Action.UPDATE: "~",
    Action.DELETE: "-",
    Action.REPLACE: "±",
    Action.NO_OP: " ",
    Action.CONFLICT: "!",
    Action.ADOPT: "⇐",
}


@dataclass(frozen=True)
class FieldChange:
    """One field that differs: its path in the resource, the value before and after."""

    path: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Change:
    """One resource's planned change."""

    layer: str  # "zenml" or "terraform"
    kind: str  # ServiceConnector, StackComponent, Stack, or a Terraform resource type
    name: str
    address: str
    action: Action
    fields: tuple[FieldChange, ...] = ()
    reason: str = ""
    # what the reader should know that does not make the change (e.g. which pipelines' runs a
    # stack keeps): shown, but not part of what was reviewed, so it may move without a refusal
    notes: tuple[str, ...] = field(default=(), compare=False)
    # what runs on it, read from the store (stackward.plan.impact): pipelines, schedules,
    # deployments, snapshots and builds; shown and given to the policies, but not reviewed
    impact: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        """The change as JSON data (its values shared, not copied: a plan of thousands of
        resources is serialised on every run)."""
        return {
            "layer": self.layer,
            "kind": self.kind,
            "name": self.name,
            "address": self.address,
            "action": self.action.value,
            "fields": [{"path": f.path, "before": f.before, "after": f.after} for f in self.fields],
            "reason": self.reason,
            "notes": list(self.notes),
            "impact": self.impact,
        }

    def reviewed(self) -> dict:
        """What identifies the change in a plan's hash (its notes and impact left out)."""
        data = self.to_dict()
        del data["notes"], data["impact"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Change:
        fields = tuple(FieldChange(**f) for f in data.get("fields", []))
        return cls(
            data["layer"],
            data["kind"],
            data["name"],
            data["address"],
            Action(data["action"]),
            fields,
            data.get("reason", ""),
            tuple(str(n) for n in data.get("notes", ())),
            dict(data.get("impact") or {}),
        )


@dataclass
class EnvironmentPlan:
    """What applying one environment would do."""

    environment: str
    changes: list[Change] = field(default_factory=list)
    error: str = ""
    warnings: list[str] = field(default_factory=list)  # shown with the plan; not part of its hash

    def counts(self) -> dict[Action, int]:
        out = {action: 0 for action in Action}
        for change in self.changes:
            out[change.action] += 1
        return out

    @property
    def has_changes(self) -> bool:
        return any(c.action is not Action.NO_OP for c in self.changes)

    @property
    def destructive(self) -> list[Change]:
        return [c for c in self.changes if c.action in (Action.DELETE, Action.REPLACE)]

    @property
    def conflicts(self) -> list[Change]:
        return [c for c in self.changes if c.action is Action.CONFLICT]

    def summary(self) -> str:
        """`+2 ~1 -0 ±1`, and `⇐1` when something is adopted"""
        counts = self.counts()
        shown = [Action.CREATE, Action.UPDATE, Action.DELETE, Action.REPLACE]
        if counts[Action.ADOPT]:
            shown.append(Action.ADOPT)
        return " ".join(f"{SYMBOLS[a]}{counts[a]}" for a in shown)

    def content(self) -> dict:
        """What identifies this plan: the changes, in order (no timestamps, no raw plan, no notes)."""
        return {
            "environment": self.environment,
            "changes": [c.reviewed() for c in self.changes if c.action is not Action.NO_OP],
        }

    def digest(self) -> str:
        return _digest(self.content())

    def to_dict(self) -> dict:
        """The plan as a plan file holds it: its content with notes, hash, summary, error, warnings."""
        return {
            **self.content(),
            "changes": [c.to_dict() for c in self.changes if c.action is not Action.NO_OP],
            "hash": self.digest(),
            "summary": self.summary(),
            "error": self.error,
            "warnings": list(self.warnings),
        }


def _digest(content: Any) -> str:
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Plan:
    """A plan over one or more environments, as written by `stackward plan --out`."""

    revision: str
    environments: list[EnvironmentPlan]

    @property
    def digest(self) -> str:
        return _digest({"format": PLAN_FORMAT, "environments": [e.content() for e in self.environments]})

    def to_json(self) -> str:
        payload = {
            "format": PLAN_FORMAT,
            "revision": self.revision,
            "hash": self.digest,
            "environments": [e.to_dict() for e in self.environments],
        }
        return json.dumps(payload, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """The plan `to_json` wrote; ValueError for anything else (other JSON, a wrong shape, an edit)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"a plan is a JSON object, not {type(data).__name__}")
        if data.get("format") != PLAN_FORMAT:
            raise ValueError(f"plan format {data.get('format')!r} is not {PLAN_FORMAT}")
        try:
            environments = [_environment_plan(e) for e in data["environments"]]
        except (KeyError, TypeError, AttributeError, ValueError):
            raise ValueError("its environments are not in the shape stackward writes") from None
        plan = cls(data.get("revision", ""), environments)
        if data.get("hash") != plan.digest:
            raise ValueError("the plan file was edited after it was written (its hash does not match)")
        return plan

    def environment(self, name: str) -> EnvironmentPlan | None:
        return next((e for e in self.environments if e.environment == name), None)


def _environment_plan(data: dict) -> EnvironmentPlan:
    """One environment of a plan file (KeyError, TypeError, AttributeError or ValueError when
    it is not in the shape `Plan.to_json` writes)."""
    if not isinstance(data["environment"], str):
        raise TypeError("an environment's name is text")
    changes = [Change.from_dict(c) for c in data["changes"]]
    warnings = [str(w) for w in data.get("warnings", [])]
    return EnvironmentPlan(data["environment"], changes, data.get("error", ""), warnings)


def diff_fields(
    before: dict, after: dict, prefix: str = "", secret_keys: frozenset[str] = frozenset()
) -> list[FieldChange]:
    """Field-level differences of two flat-or-nested mappings; secret keys are masked."""
    out = []
    for key in sorted(set(before) | set(after)):
        path = f"{prefix}{key}"
        old, new = before.get(key), after.get(key)
        if key in secret_keys:
            if old != new:
                out.append(
                    FieldChange(
                        path, SENSITIVE if old is not None else None, SENSITIVE if new is not None else None
                    )
                )
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            out.extend(diff_fields(old, new, f"{path}.", secret_keys))
        elif old != new:
            out.append(FieldChange(path, old, new))
    return out


def _masked(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, SENSITIVE)
        return value
    if isinstance(value, dict):
        return {k: _masked(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, secrets) for v in value]
    return value


def mask_values(changes: list[Change], secrets: list[str]) -> list[Change]:
    """The changes with every occurrence of the given secret values shown as (sensitive)."""
    secrets = [s for s in secrets if s]
    if not secrets:
        return changes
    return [
        replace(
            c,
            fields=tuple(
                FieldChange(f.path, _masked(f.before, secrets), _masked(f.after, secrets)) for f in c.fields
            ),
        )
        for c in changes
    ]
