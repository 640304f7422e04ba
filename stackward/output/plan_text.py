"""Plans for people: a summary line per environment, destroys and replaces first and loud."""

from __future__ import annotations

import json
from typing import Any

import click

from stackward.plan.changes import SYMBOLS, Action, Change, EnvironmentPlan

_COLOURS = {
    Action.CREATE: "green",
    Action.UPDATE: "yellow",
    Action.DELETE: "red",
    Action.REPLACE: "magenta",
    Action.CONFLICT: "red",
}


def format_value(value: Any) -> str:
    """A plan value as people read it: strings as they are, anything else as JSON, shortened."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def render_change(change: Change) -> list[str]:
    head = f"  {SYMBOLS[change.action]} {change.address}"
    if change.action is Action.REPLACE:
        head += "  (replace)"
    lines = [
        click.style(
            head, fg=_COLOURS.get(change.action), bold=change.action in (Action.DELETE, Action.REPLACE)
        )
    ]
    if change.reason:
        lines.append(f"      because {change.reason}")
    for field in change.fields:
        if change.action is Action.CREATE:
            lines.append(f"      {field.path}: {format_value(field.after)}")
        else:
            lines.append(f"      {field.path}: {format_value(field.before)} -> {format_value(field.after)}")
    return lines


def render_environment(plan: EnvironmentPlan) -> str:
    if plan.error:
        return click.style(f"{plan.environment}: could not plan: {plan.error}", fg="red")
    lines = [click.style(f"{plan.environment}: {plan.summary()}", bold=True)]
    if plan.destructive:
        lines.append(
            click.style(
                f"  WARNING: {len(plan.destructive)} resource(s) will be destroyed or replaced",
                fg="red",
                bold=True,
            )
        )
    ordered = sorted(
        (c for c in plan.changes if c.action is not Action.NO_OP),
        key=lambda c: (
            c.action not in (Action.CONFLICT, Action.DELETE, Action.REPLACE),
            c.layer != "terraform",
        ),
    )
    for change in ordered:
        lines.extend(render_change(change))
    if not plan.has_changes:
        lines.append("  no changes")
    return "\n".join(lines)


def render(plans: list[EnvironmentPlan], digest: str = "") -> str:
    blocks = [render_environment(p) for p in plans]
    if digest:
        blocks.append(f"plan hash: {digest}")
    return "\n".join(blocks)
