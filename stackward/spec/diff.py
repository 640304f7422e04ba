"""How two environments differ: the same resource (by name without the environment prefix)
compared field by field, and what only one of them declares (`diff_environments`), or what
only one of them has registered in its ZenML store (`diff_registered`, `stackward diff --live`)."""

from __future__ import annotations

from typing import Any

from stackward.plan.changes import diff_fields
from stackward.spec.model import Environment, Resource
from stackward.zenml.registrations import OWNERSHIP, Registration


def _key(resource: Resource, env: str) -> tuple[str, str]:
    return resource.kind, resource.name.removeprefix(f"{env}-")


def _neutral(value: Any, env: str) -> Any:
    """`value` with its environment's name written as <env>."""
    if isinstance(value, str):
        return value.replace(env, "<env>")
    if isinstance(value, dict):
        return {_neutral(k, env): _neutral(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_neutral(v, env) for v in value]
    return value


def _comparable(resource: Resource, env: str) -> dict:
    """The resource with its own environment's name written as <env>."""
    return {"spec": _neutral(resource.spec, env), "labels": _neutral(resource.labels, env)}


def diff_environments(a: Environment, b: Environment) -> list[str]:
    """Readable lines: settings first, then resources only in one, then field differences."""
    lines = []
    for change in diff_fields(a.settings.raw, b.settings.raw, "Environment."):
        lines.append(f"~ {change.path}: {a.name}={change.before!r} {b.name}={change.after!r}")
    left = {_key(r, a.name): r for r in a.resources}
    right = {_key(r, b.name): r for r in b.resources}
    for key in sorted(set(left) - set(right)):
        lines.append(f"< only in {a.name}: {key[0]} {left[key].name}")
    for key in sorted(set(right) - set(left)):
        lines.append(f"> only in {b.name}: {key[0]} {right[key].name}")
    for key in sorted(set(left) & set(right)):
        for change in diff_fields(_comparable(left[key], a.name), _comparable(right[key], b.name)):
            lines.append(
                f"~ {key[0]} {key[1]}: {change.path}: {a.name}={change.before!r} {b.name}={change.after!r}"
            )
    return lines


def _registered(reg: Registration, env: str) -> dict:
    """A registration as an environment's store holds it, stackward's ownership labels left out
    (they name the environment) and the environment's name written as <env>."""
    labels = {k: v for k, v in reg.labels.items() if k not in OWNERSHIP}
    return _neutral({**reg.fields, "labels": labels, "secret keys": sorted(reg.secret_keys)}, env)


def diff_registered(
    a: str, registered_a: list[Registration], b: str, registered_b: list[Registration]
) -> list[str]:
    """Readable lines: what only one store holds, then field differences of what both hold
    (names compared without their environment prefix; secret values are never read)."""

    def key(reg: Registration, env: str) -> tuple[str, ...]:
        name = reg.name.removeprefix(f"{env}-")
        return (reg.kind, name, reg.type) if reg.kind == "StackComponent" else (reg.kind, name)

    left = {key(r, a): r for r in registered_a}
    right = {key(r, b): r for r in registered_b}
    lines = [f"< only in {a}: {k[0]} {left[k].name}" for k in sorted(set(left) - set(right))]
    lines += [f"> only in {b}: {k[0]} {right[k].name}" for k in sorted(set(right) - set(left))]
    for k in sorted(set(left) & set(right)):
        for change in diff_fields(_registered(left[k], a), _registered(right[k], b)):
            lines.append(f"~ {k[0]} {k[1]}: {change.path}: {a}={change.before!r} {b}={change.after!r}")
    return lines
