"""How two environments differ: the same resource (by name without the environment prefix)
compared field by field, and what only one of them declares."""

from __future__ import annotations

from stackward.plan.changes import diff_fields
from stackward.spec.model import Environment, Resource


def _key(resource: Resource, env: str) -> tuple[str, str]:
    return resource.kind, resource.name.removeprefix(f"{env}-")


def _comparable(resource: Resource, env: str) -> dict:
    """The resource with its own environment's name written as <env>."""
    text_env = env

    def neutral(value):
        if isinstance(value, str):
            return value.replace(text_env, "<env>")
        if isinstance(value, dict):
            return {k: neutral(v) for k, v in value.items()}
        if isinstance(value, list):
            return [neutral(v) for v in value]
        return value

    return {"spec": neutral(resource.spec), "labels": neutral(resource.labels)}


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
