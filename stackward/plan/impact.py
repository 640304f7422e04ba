"""What a change touches beyond the store: the pipelines, schedules and deployments that run on a
stack or component being updated, replaced, deleted or adopted ("what breaks if this merges?").

Pure functions: which stacks each change reaches (`affected_stacks`), and the store's answer
per stack (stackward.zenml.reading.impact_on) merged per change and said in one line. The
impact is shown with the plan and given to the policies; it is not part of what is reviewed
(runs come and go without the plan changing).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stackward.plan.changes import Action, Change
from stackward.zenml.registrations import Registration

TOUCHED = (Action.UPDATE, Action.REPLACE, Action.DELETE, Action.ADOPT)


def affected_stacks(changes: list[Change], actual: list[Registration]) -> dict[str, list[Registration]]:
    """Change address -> the stacks in the store it reaches: a stack itself, or every stack
    (whoever owns it) that uses a component."""
    stacks = [r for r in actual if r.kind == "Stack" and r.id]
    out: dict[str, list[Registration]] = {}
    for change in changes:
        if change.action not in TOUCHED:
            continue
        if change.kind == "Stack":
            reached = [s for s in stacks if s.name == change.name]
        elif change.kind == "StackComponent":
            reached = [s for s in stacks if change.name in s.fields.get("components", {}).values()]
        else:
            continue
        if reached:
            out[change.address] = reached
    return out


def orchestrators(stacks: list[Registration], actual: list[Registration]) -> dict[str, str]:
    """Stack id -> the id of its orchestrator ("" when it has none known)."""
    ids = {(r.name, r.type): r.id for r in actual if r.kind == "StackComponent"}
    return {
        s.id: ids.get((s.fields.get("components", {}).get("orchestrator", ""), "orchestrator"), "")
        for s in stacks
    }


def merged(stacks: list[Registration], per_stack: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The impact of one change: its stacks' impacts added up."""
    out: dict[str, Any] = {
        "stacks": sorted(s.name for s in stacks),
        "pipelines": [],
        "runs": 0,
        "last_run": "",
        "schedules": [],
        "deployments": [],
        "snapshots": 0,
        "builds": 0,
    }
    for stack in stacks:
        found = per_stack.get(stack.id, {})
        for key in ("pipelines", "schedules", "deployments"):
            out[key] = sorted({*out[key], *found.get(key, [])})
        for key in ("runs", "snapshots", "builds"):
            out[key] += int(found.get(key, 0))
        out["last_run"] = max(out["last_run"], found.get("last_run", ""))
    return out


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _names(names: list[str], shown: int = 5) -> str:
    more = f", +{len(names) - shown} more" if len(names) > shown else ""
    return f" ({', '.join(names[:shown])}{more})" if names else ""


def _ago(when: str, now: datetime) -> str:
    try:
        then = datetime.fromisoformat(when)
    except ValueError:
        return when
    seconds = (now - (then if then.tzinfo else then.replace(tzinfo=UTC))).total_seconds()
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def describe(impact: dict[str, Any], component: bool, now: datetime | None = None) -> str:
    """One line: 'used by 4 pipelines (a, b, c, d), 2 active schedules; last run 3 h ago',
    naming the stacks a component reaches it through."""
    parts = [
        _count(len(impact["pipelines"]), "pipeline") + _names(impact["pipelines"]),
        *(
            _count(len(impact[key]), noun) + _names(impact[key])
            for key, noun in (("schedules", "active schedule"), ("deployments", "deployment"))
            if impact[key]
        ),
        *(
            _count(impact[key], noun)
            for key, noun in (("snapshots", "snapshot"), ("builds", "build"))
            if impact[key]
        ),
    ]
    where = f" (through stack {', '.join(impact['stacks'])})" if component else ""
    if not impact["runs"] and not impact["schedules"] and not impact["deployments"]:
        return f"nothing has run on it yet{where}"
    last = f"; last run {_ago(impact['last_run'], now or datetime.now(UTC))}" if impact["last_run"] else ""
    return f"used by {', '.join(parts)}{last}{where}"
