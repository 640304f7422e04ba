"""The changes between desired and actual ZenML registrations, and the calls that make them.

Pure functions, no I/O: `plan_registrations()` from desired and actual (touching only what
the environment owns, with the follow-on changes ZenML forces), `operations()` turning the
changes into the ordered calls the ZenML executor makes.

A resource registered by hand (owned by no environment) whose spec says `adopt: true` is
adopted: the plan shows its differences under `adopt`, and applying it is an update that
stamps stackward's ownership labels and converges it to the spec. Without `adopt: true` it is
a conflict, and a resource another environment owns is never adopted.

A replaced component keeps its stacks: the new component is created under a temporary name,
the stacks are updated to it in place, and only then is the old one deleted and the new one
renamed. Deleting a stack would unlink its pipeline runs, snapshots and builds in ZenML.
"""

from __future__ import annotations

from dataclasses import replace

from stackward.plan.changes import SENSITIVE, UNKNOWN, Action, Change, FieldChange, diff_fields
from stackward.zenml.registrations import KINDS, OWNERSHIP, SPEC_HASH, Registration

ROTATED = "(sensitive, changed)"
RECREATED = "(re-created)"  # how a stack's or component's plan shows a dependency made again
REPLACING_SUFFIX = "-stackward-replacing"  # the temporary name of a component's replacement
SecretStatus = dict[
    tuple[str, str], dict[str, str]
]  # (kind, name) -> key -> "changed" | "same" | why not compared


def _secret_prefix(reg: Registration) -> str:
    return "values" if reg.kind == "Secret" else "secrets"


def _unset_keys(want: Registration, have: Registration) -> frozenset[str]:
    """Configuration keys the store has, the spec does not set, and the spec did not change
    since stackward last wrote it: values ZenML filled in (defaults its validators set), which
    are not the spec's to manage. After a spec change every key counts, so a key taken out of
    the spec is unset."""
    config = have.fields.get("configuration")
    if not isinstance(config, dict) or want.labels.get(SPEC_HASH) != have.labels.get(SPEC_HASH):
        return frozenset()
    return frozenset(k for k in config if k not in want.fields.get("configuration", {}))


def _comparable(reg: Registration, ignored: frozenset[str] = frozenset()) -> dict:
    """Fields a plan compares: secret values are compared by the worker (see SecretStatus),
    and secrets have no labels in ZenML."""
    fields = dict(reg.fields)
    config = fields.get("configuration")
    if isinstance(config, dict):
        fields["configuration"] = {
            k: v for k, v in config.items() if k not in reg.secret_keys and k not in ignored
        }
    if reg.kind != "Secret":
        fields["labels"] = {k: v for k, v in reg.labels.items() if k != SPEC_HASH}
    return fields


def _replace_reason(kind: str, want: Registration, have: Registration) -> str:
    if kind == "ServiceConnector" and want.fields["type"] != have.fields["type"]:
        return f"connector type changes from {have.fields['type']} to {want.fields['type']} (ZenML cannot change it in place)"
    if kind == "StackComponent" and want.fields["flavor"] != have.fields["flavor"]:
        return f"flavor changes from {have.fields['flavor']} to {want.fields['flavor']} (ZenML cannot change it in place)"
    return ""


def _address(kind: str, name: str) -> str:
    return f"zenml.{kind}.{name}"


def key_of(reg: Registration) -> tuple[str, ...]:
    """Identity in the store: ZenML component names are unique per component type only."""
    return (reg.kind, reg.name, reg.type) if reg.kind == "StackComponent" else (reg.kind, reg.name)


def _secret_changes(want: Registration, have: Registration, status: dict[str, str]) -> list[FieldChange]:
    """Secret values that change: rotated (compared in memory by the worker), known only after
    Terraform applies, added or removed. Never a value."""
    prefix = _secret_prefix(want)
    held = set(have.secret_keys) if want.kind == "ServiceConnector" else set(have.fields.get("keys", ()))
    out = []
    for key in sorted(want.secrets):
        path = f"{prefix}.{key}"
        if key not in held:
            if want.kind == "ServiceConnector":  # a Secret's new keys show in its `keys`
                out.append(FieldChange(path, None, UNKNOWN if key in want.unknown_secrets else SENSITIVE))
        elif key in want.unknown_secrets:
            out.append(FieldChange(path, SENSITIVE, UNKNOWN))
        elif status.get(key) == "changed":
            out.append(FieldChange(path, SENSITIVE, ROTATED))
    if want.kind == "ServiceConnector":
        out += [FieldChange(f"{prefix}.{k}", SENSITIVE, None) for k in sorted(held - set(want.secrets))]
    return out


def adopting(want: Registration, current: Registration) -> bool:
    """The spec adopts `current`: it says `adopt: true`, and no environment owns `current`."""
    return want.adopt and current.owner is None


def _conflict(want: Registration, current: Registration) -> Change:
    if current.owner:
        reason = (
            f"a {want.kind} named {want.name!r} already exists and belongs to environment {current.owner}; "
            "stackward never changes what another environment owns: rename yours"
        )
    else:
        reason = (
            f"a {want.kind} named {want.name!r} already exists, registered by hand (or ZenML's default); "
            "stackward never changes what it does not own: rename yours, delete the existing one, or "
            "adopt it with `adopt: true` in the spec's metadata (the plan then shows what adopting changes)"
        )
    return Change(
        "zenml", want.kind, want.name, _address(want.kind, want.name), Action.CONFLICT, reason=reason
    )


def plan_registrations(
    env_name: str,
    wanted: list[Registration],
    actual: list[Registration],
    secret_status: SecretStatus | None = None,
) -> list[Change]:
    """Changes that make the store match the specs, touching only what stackward owns.
    `secret_status` says which secret values the worker found rotated."""
    secret_status = secret_status or {}
    have = {key_of(r): r for r in actual}
    changes: list[Change] = []
    for want in wanted:
        current = have.get(key_of(want))
        address = _address(want.kind, want.name)
        if current is None:
            after = _comparable(want)
            if "labels" in after:
                after["labels"] = {k: v for k, v in after["labels"].items() if k not in OWNERSHIP}
            fields = diff_fields({}, {k: v for k, v in after.items() if v not in (None, {}, [], "")})
            if want.secrets:
                shown = {k: UNKNOWN if k in want.unknown_secrets else SENSITIVE for k in want.secrets}
                fields.append(FieldChange(_secret_prefix(want), None, shown))
            changes.append(Change("zenml", want.kind, want.name, address, Action.CREATE, tuple(fields)))
            continue
        adopt = adopting(want, current)
        if current.owner != env_name and not adopt:
            changes.append(_conflict(want, current))
            continue
        reason = _replace_reason(want.kind, want, current)
        fields = diff_fields(_comparable(current, _unset_keys(want, current)), _comparable(want))
        fields += _secret_changes(want, current, secret_status.get((want.kind, want.name), {}))
        if adopt:
            if reason:
                reason = f"it cannot be adopted: its {reason}; delete it, or match the spec to it"
                changes.append(Change("zenml", want.kind, want.name, address, Action.CONFLICT, reason=reason))
            else:
                why = "registered by hand; adopted: stackward's ownership labels are stamped and it follows this spec from now on"
                if want.kind == "Secret":
                    why += " (keys the spec does not list are removed)"
                changes.append(
                    Change("zenml", want.kind, want.name, address, Action.ADOPT, tuple(fields), why)
                )
        elif reason:
            changes.append(
                Change("zenml", want.kind, want.name, address, Action.REPLACE, tuple(fields), reason)
            )
        elif fields:
            changes.append(Change("zenml", want.kind, want.name, address, Action.UPDATE, tuple(fields)))
        else:
            changes.append(Change("zenml", want.kind, want.name, address, Action.NO_OP))
    wanted_keys = {key_of(w) for w in wanted}
    for current in actual:
        if current.owner == env_name and key_of(current) not in wanted_keys:
            changes.append(
                Change(
                    "zenml",
                    current.kind,
                    current.name,
                    _address(current.kind, current.name),
                    Action.DELETE,
                    reason="no longer in the specs (pruned)",
                )
            )
    return _cascade(changes, wanted, actual, env_name)


def _cascade(
    changes: list[Change], wanted: list[Registration], actual: list[Registration], env_name: str
) -> list[Change]:
    """Follow-on changes ZenML forces. A stack of the environment that uses a replaced
    component is updated in place to point at the new one (its id, and so its pipelines'
    history, stays); a component using a replaced connector is reconnected. A stack stackward
    does not own that uses a component being deleted or replaced makes that change a conflict:
    nothing of the environment is applied."""
    going = {
        c.name for c in changes if c.kind == "StackComponent" and c.action in (Action.DELETE, Action.REPLACE)
    }
    replaced_components = {
        c.name for c in changes if c.kind == "StackComponent" and c.action is Action.REPLACE
    }
    replaced_connectors = {
        c.name for c in changes if c.kind == "ServiceConnector" and c.action is Action.REPLACE
    }
    stacks = {r.name: r for r in actual if r.kind == "Stack"}
    blocked = {
        name: sorted(
            s.name for s in stacks.values() if s.owner != env_name and name in s.fields["components"].values()
        )
        for name in going
    }
    want = {(w.kind, w.name): w for w in wanted}
    out = []
    for change in changes:
        target = want.get((change.kind, change.name))
        if (
            change.kind == "StackComponent"
            and blocked.get(change.name)
            and change.action is not Action.CONFLICT
        ):
            users = ", ".join(blocked[change.name])
            change = Change(
                change.layer,
                change.kind,
                change.name,
                change.address,
                Action.CONFLICT,
                change.fields,
                f"it would be {change.action.value}d, but stack {users} (not managed by stackward) uses it; "
                "move that stack off it first",
            )
        elif (
            change.kind == "Stack" and change.action in (Action.NO_OP, Action.UPDATE, Action.ADOPT) and target
        ):
            recreated = [
                FieldChange(f"components.{slot}", name, f"{name} {RECREATED}")
                for slot, name in sorted(target.fields["components"].items())
                if name in replaced_components
            ]
            if recreated:
                change = replace(
                    change,
                    action=Action.ADOPT if change.action is Action.ADOPT else Action.UPDATE,
                    fields=(*change.fields, *recreated),
                    reason=change.reason
                    or "updated in place to its re-created components (it keeps its id and its pipeline runs)",
                )
        elif (
            change.kind == "StackComponent"
            and target is not None
            and change.action in (Action.NO_OP, Action.UPDATE, Action.ADOPT)
        ) and target.fields.get("connector") in replaced_connectors:
            reconnect = FieldChange(
                "connector", target.fields["connector"], f"{target.fields['connector']} {RECREATED}"
            )
            change = replace(
                change,
                action=Action.ADOPT if change.action is Action.ADOPT else Action.UPDATE,
                fields=(*change.fields, reconnect),
            )
        out.append(change)
    return out


def _build_op(change: Change, reg: Registration) -> dict:
    return {
        "op": "update" if change.action in (Action.UPDATE, Action.ADOPT) else "create",
        "adopt": change.action is Action.ADOPT,
        "kind": reg.kind,
        "name": reg.name,
        "address": change.address,
        "type": reg.type,
        "fields": reg.fields,
        "labels": reg.labels,
        "secrets": reg.secrets,
        "values": reg.secret_values,  # Terraform outputs behind `fromInfra`: for the worker only
        "replacing": change.action is Action.REPLACE and reg.kind == "StackComponent",
    }


def operations(
    changes: list[Change], wanted: list[Registration], actual: list[Registration], env_name: str
) -> list[dict]:
    """Changes as ordered executor calls.

    Build first: secrets, then connectors (a replaced connector's components are disconnected
    and the old one deleted before the new one is made), components (a replaced component's
    replacement under a temporary name) and stacks. Then tear down what goes: stacks,
    components (and the old version of each replaced one, whose replacement then takes its
    name), connectors and secrets, so nothing is deleted while something still uses it."""
    want = {(w.kind, w.name): w for w in wanted}
    owned = {(r.kind, r.name): r for r in actual if r.owner == env_name}
    by_kind = {kind: [c for c in changes if c.kind == kind] for kind in KINDS}
    ops: list[dict] = []

    def delete(change: Change) -> dict:
        current = owned.get((change.kind, change.name))
        return {
            "op": "delete",
            "kind": change.kind,
            "name": change.name,
            "address": change.address,
            "type": current.type if current else "",
        }

    replaced_connectors = {c.name for c in by_kind["ServiceConnector"] if c.action is Action.REPLACE}
    reconnect = sorted(  # components still on a connector that is about to be deleted and made again
        (r.name, r.type)
        for r in owned.values()
        if r.kind == "StackComponent" and r.fields.get("connector") in replaced_connectors
    )
    for kind in KINDS:
        if kind == "ServiceConnector":
            ops += [
                {"op": "disconnect", "kind": "StackComponent", "name": n, "type": t} for n, t in reconnect
            ]
            ops += [delete(c) for c in by_kind[kind] if c.action is Action.REPLACE]
        for change in by_kind[kind]:
            if change.action in (Action.CREATE, Action.REPLACE, Action.UPDATE, Action.ADOPT):
                ops.append(_build_op(change, want[(change.kind, change.name)]))
    for kind in reversed(KINDS):
        for change in by_kind[kind]:
            if change.action is Action.DELETE:
                ops.append(delete(change))
            elif change.action is Action.REPLACE and kind == "StackComponent":
                ops.append({**delete(change), "op": "finish_replace"})
    return ops
