"""Plans for people: a summary line per environment, destroys and replaces first and loud."""

from __future__ import annotations

import json
from typing import Any

import click

from stackward.output.markdown import CONTROL, one_line, shorten
from stackward.plan.changes import SYMBOLS, Action, Change, EnvironmentPlan

_COLOURS = {
    Action.CREATE: "green",
    Action.UPDATE: "yellow",
    Action.DELETE: "red",
    Action.REPLACE: "magenta",
    Action.CONFLICT: "red",
    Action.ADOPT: "cyan",
}


def format_value(value: Any) -> str:
    """A plan value as people read it, on one line: strings as they are (as JSON when they hold a
    line break or another control character), anything else as JSON; shortened."""
    plain = isinstance(value, str) and not CONTROL.search(value)
    text = value if plain else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


_DIFF_SIGNS = {
    Action.CREATE: "+",
    Action.DELETE: "-",
    Action.UPDATE: "!",
    Action.REPLACE: "!",
    Action.ADOPT: "!",
}


def diff_lines(plan: EnvironmentPlan, limit: int) -> list[str]:
    """The changes as lines of a `diff` block, names and reasons cut to `limit` characters: the
    first column colours the line (+ green, - red, ! orange), the action is said once, values
    are as `format_value` writes them."""
    lines = []
    for change in plan.changes:
        if change.action is Action.NO_OP:
            continue
        why = f": {shorten(one_line(change.reason), limit)}" if change.reason else ""
        why += "".join(f" ({shorten(one_line(n), limit)})" for n in change.notes)
        address = shorten(one_line(change.address), limit)
        lines.append(f"{_DIFF_SIGNS.get(change.action, '#')} {address}  # {change.action.value}{why}")
        for f in change.fields:
            path = shorten(one_line(f.path), limit)
            lines.append(
                f"    {path}: {format_value(f.before)} -> {format_value(f.after)}"
                if change.action is not Action.CREATE
                else f"    {path}: {format_value(f.after)}"
            )
    return lines


def render_change(change: Change) -> list[str]:
    """A change's lines; names and reasons on one line each, so none can start a line of its own."""
    head = f"  {SYMBOLS[change.action]} {one_line(change.address)}"
    if change.action in (Action.REPLACE, Action.ADOPT):
        head += f"  ({change.action.value})"
    lines = [
        click.style(
            head, fg=_COLOURS.get(change.action), bold=change.action in (Action.DELETE, Action.REPLACE)
        )
    ]
    if change.reason:
        lines.append(f"      because {one_line(change.reason)}")
    lines += [f"      note: {one_line(note)}" for note in change.notes]
    for field in change.fields:
        path = one_line(field.path)
        if change.action is Action.CREATE:
            lines.append(f"      {path}: {format_value(field.after)}")
        else:
            lines.append(f"      {path}: {format_value(field.before)} -> {format_value(field.after)}")
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
    lines += [click.style(f"  warning: {one_line(w)}", fg="yellow") for w in plan.warnings]
    return "\n".join(lines)


def render(plans: list[EnvironmentPlan], digest: str = "") -> str:
    blocks = [render_environment(p) for p in plans]
    if digest:
        blocks.append(f"plan hash: {digest}")
    return "\n".join(blocks)
