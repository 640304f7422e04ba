"""Why an apply refuses before anything changes: the plan moved since it was reviewed, a
secret value's variable is not set, or a value would reach ZenML still unknown."""

from __future__ import annotations

import os

from stackward.errors import EnvironmentFailed
from stackward.plan.changes import UNKNOWN, Action, EnvironmentPlan
from stackward.spec.model import Environment
from stackward.zenml.registrations import Registration

Reviewed = EnvironmentPlan | str | None  # the reviewed plan, only its hash, or nothing to hold to


class ApplyRefused(EnvironmentFailed):
    """Applying would not do what was reviewed (stale plan, conflicts, denied by policy)."""


def stale_plan_message(reviewed: EnvironmentPlan, current: EnvironmentPlan) -> str:
    """How the world or the specs moved since the plan was reviewed."""
    before = {c.address: c for c in reviewed.changes if c.action is not Action.NO_OP}
    after = {c.address: c for c in current.changes if c.action is not Action.NO_OP}
    lines = []
    for address in sorted(set(before) | set(after)):
        old, new = before.get(address), after.get(address)
        if old is None:
            lines.append(f"  + now also: {new.action.value} {address}")
        elif new is None:
            lines.append(f"  - no longer: {old.action.value} {address}")
        elif old != new:
            lines.append(f"  ~ changed: {address} ({old.action.value} -> {new.action.value})")
    return "\n".join(lines) or "  (the same changes, in a different order)"


def refuse_if_moved(name: str, plan: EnvironmentPlan, reviewed: Reviewed) -> None:
    """ApplyRefused when planning again did not give the reviewed plan (or its hash)."""
    if isinstance(reviewed, EnvironmentPlan) and plan.digest() != reviewed.digest():
        raise ApplyRefused(
            f"{name}: the plan changed since it was reviewed, so nothing was applied:\n"
            f"{stale_plan_message(reviewed, plan)}\n  hint: plan again and review the new plan"
        )
    if isinstance(reviewed, str) and plan.digest() != reviewed:
        raise ApplyRefused(
            f"{name}: the plan changed since it was reviewed (reviewed {reviewed[:12]}, "
            f"now {plan.digest()[:12]}: the specs or the live state moved), so nothing was applied\n"
            "  hint: plan again on a pull request and review the new plan"
        )


def secrets_are_set(env: Environment) -> None:
    """Every environment variable a secret value comes from is set, before anything changes
    (the ZenML secrets the specs use were checked by the plan, stackward.plan.preflight)."""
    missing = sorted(
        f"{ref['fromEnv']} (secret {key} of {resource.kind} {resource.name})"
        for resource, key, ref in env.secret_references()
        if "fromEnv" in ref and ref["fromEnv"] not in os.environ
    )
    if missing:
        raise ApplyRefused(
            f"{env.name}: nothing was applied: these environment variables are not set: {', '.join(missing)}"
        )


def refuse_unknown(name: str, wanted: list[Registration]) -> None:
    """No registration goes to ZenML with a value Terraform has not given (an output that is
    null, or missing from the state, after Terraform applied)."""
    unknown = [f"{r.kind} {r.name}" for r in wanted if r.unknown or r.unknown_secrets]
    if unknown:
        raise ApplyRefused(
            f"{name}: nothing was registered in ZenML: after Terraform, {', '.join(unknown)} "
            f"would still hold {UNKNOWN}\n"
            "  hint: make sure the module outputs these use have a value after apply (not null)"
        )
