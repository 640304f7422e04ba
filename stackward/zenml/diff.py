"""The changes between desired and actual ZenML registrations, and the calls that make them.

Pure functions, no I/O: `plan_registrations()` from desired and actual (touching only what
the environment owns, with the follow-on replaces ZenML forces), `operations()` turning the
changes into the ordered calls the ZenML executor makes.
"""

from __future__ import annotations

from stackward.plan.changes import SENSITIVE, Action, Change, FieldChange, diff_fields
from stackward.zenml.registrations import KINDS, OWNERSHIP, SPEC_HASH, Registration


def _comparable(reg: Registration) -> dict:
    """Fields a plan compares: secrets are compared through the spec hash only."""
    fields = dict(reg.fields)
    config = fields.get("configuration")
    if isinstance(config, dict):
        fields["configuration"] = {k: v for k, v in config.items() if k not in reg.secret_keys}
    fields["labels"] = dict(reg.labels)
    return fields


def _replace_reason(kind: str, want: Registration, have: Registration) -> str:
    if kind == "ServiceConnector" and want.fields["type"] != have.fields["type"]:
        return f"connector type changes from {have.fields['type']} to {want.fields['type']} (ZenML cannot change it in place)"
    if kind == "StackComponent":
        if want.fields["type"] != have.fields["type"]:
            return f"component type changes from {have.fields['type']} to {want.fields['type']}"
        if want.fields["flavor"] != have.fields["flavor"]:
            return f"flavor changes from {have.fields['flavor']} to {want.fields['flavor']} (ZenML cannot change it in place)"
    return ""


def _address(kind: str, name: str) -> str:
    return f"zenml.{kind}.{name}"


def key_of(reg: Registration) -> tuple[str, ...]:
    """Identity in the store: ZenML component names are unique per component type only."""
    return (reg.kind, reg.name, reg.type) if reg.kind == "StackComponent" else (reg.kind, reg.name)


def plan_registrations(env_name: str, wanted: list[Registration], actual: list[Registration]) -> list[Change]:
    """Changes that make the store match the specs, touching only what stackward owns."""
    have = {key_of(r): r for r in actual}
    changes: list[Change] = []
    for want in wanted:
        key = key_of(want)
        current = have.get(key)
        address = _address(want.kind, want.name)
        if current is None:
            after = _comparable(want)
            after["labels"] = {k: v for k, v in after["labels"].items() if k not in OWNERSHIP}
            fields = diff_fields({}, after)
            if want.secrets:
                fields.append(FieldChange("secrets", None, {k: SENSITIVE for k in want.secrets}))
            changes.append(Change("zenml", want.kind, want.name, address, Action.CREATE, tuple(fields)))
            continue
        if current.owner != env_name:
            owner = (
                f"environment {current.owner}"
                if current.owner
                else "no one (registered by hand, or ZenML's default)"
            )
            changes.append(
                Change(
                    "zenml",
                    want.kind,
                    want.name,
                    address,
                    Action.CONFLICT,
                    reason=f"a {want.kind} named {want.name!r} already exists and belongs to {owner}; "
                    "stackward never changes what it does not own: rename yours, or delete or relabel the existing one",
                )
            )
            continue
        reason = _replace_reason(want.kind, want, current)
        fields = diff_fields(_comparable(current), _comparable(want))
        if (
            want.labels.get(SPEC_HASH) != current.labels.get(SPEC_HASH)
            and want.secrets
            and not any(f.path.startswith("configuration") or f.path == "auth_method" for f in fields)
        ):
            fields.append(FieldChange("secrets", SENSITIVE, SENSITIVE))
        fields = [f for f in fields if f.path != f"labels.{SPEC_HASH}"]
        if reason:
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
    """Follow-on changes ZenML forces: a stack that uses (now, or after the change) a component
    being deleted or replaced is replaced too (ZenML will not delete a component a stack uses);
    a component using a replaced connector is reconnected. A stack stackward does not own that
    uses such a component makes the change a conflict: nothing of the environment is applied."""
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
        elif change.kind == "Stack" and change.action in (Action.NO_OP, Action.UPDATE) and target is not None:
            now_used = (
                set(stacks[change.name].fields["components"].values()) if change.name in stacks else set()
            )
            used = sorted(
                (now_used & going) | (set(target.fields["components"].values()) & replaced_components)
            )
            if used:
                change = Change(
                    change.layer,
                    change.kind,
                    change.name,
                    change.address,
                    Action.REPLACE,
                    change.fields,
                    f"its component {', '.join(used)} is deleted or replaced",
                )
        elif (
            change.kind == "StackComponent"
            and target is not None
            and change.action in (Action.NO_OP, Action.UPDATE)
        ) and target.fields.get("connector") in replaced_connectors:
            reconnect = FieldChange(
                "connector", target.fields["connector"], f"{target.fields['connector']} (re-created)"
            )
            change = Change(
                change.layer,
                change.kind,
                change.name,
                change.address,
                Action.UPDATE,
                (*change.fields, reconnect),
            )
        out.append(change)
    return out


def operations(
    changes: list[Change], wanted: list[Registration], actual: list[Registration], env_name: str
) -> list[dict]:
    """Changes as ordered executor calls: tear down stacks -> components -> connectors,
    then build connectors -> components -> stacks."""
    want = {(w.kind, w.name): w for w in wanted}
    owned = {(r.kind, r.name): r for r in actual if r.owner == env_name}
    ops: list[dict] = []
    teardown = [c for c in changes if c.action in (Action.DELETE, Action.REPLACE)]
    reconnect = {
        c.name
        for c in changes
        if c.kind == "StackComponent"
        and c.action is Action.UPDATE
        and any(f.path == "connector" for f in c.fields)
    }
    for kind in reversed(KINDS):
        if kind == "ServiceConnector":
            ops += [
                {
                    "op": "disconnect",
                    "kind": "StackComponent",
                    "name": name,
                    "type": want[("StackComponent", name)].type,
                }
                for name in sorted(reconnect)
            ]
        for c in teardown:
            if c.kind == kind:
                current = owned.get((c.kind, c.name))
                ops.append(
                    {
                        "op": "delete",
                        "kind": c.kind,
                        "name": c.name,
                        "address": c.address,
                        "type": current.type if current else "",
                    }
                )
    for kind in KINDS:
        for change in changes:
            if change.kind != kind or change.action not in (Action.CREATE, Action.REPLACE, Action.UPDATE):
                continue
            reg = want[(change.kind, change.name)]
            op = "update" if change.action is Action.UPDATE else "create"
            ops.append(
                {
                    "op": op,
                    "kind": kind,
                    "name": reg.name,
                    "address": change.address,
                    "type": reg.type,
                    "fields": reg.fields,
                    "labels": reg.labels,
                    "secrets": reg.secrets,
                }
            )
    return ops
