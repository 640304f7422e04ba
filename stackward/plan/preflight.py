"""What a plan checks against the ZenML store before it says what would change: secrets that
components and connectors reference must exist, secret values are compared for rotation,
connectors are verified where asked, and what changes says what runs on it.

Each step asks the environment's ZenML worker, which holds the secret values; only outcomes
come back. Nothing here changes the store.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from stackward.diagnostics import JsonPath, display_path
from stackward.errors import EnvironmentFailed
from stackward.plan.changes import Change
from stackward.plan.impact import affected_stacks, describe, merged, orchestrators
from stackward.spec.model import Environment, Resource
from stackward.zenml.catalog import is_secret_reference
from stackward.zenml.checking import IMPLICIT_SETTING
from stackward.zenml.diff import RECREATED, SecretStatus, adopting, key_of
from stackward.zenml.executor import ZenmlExecutor
from stackward.zenml.registrations import Registration


class MissingSecrets(EnvironmentFailed):
    """Specs reference ZenML secrets that neither the store nor the environment has."""


def secret_references(env: Environment) -> list[tuple[Resource, JsonPath, str, str | None]]:
    """(resource, path, secret name, key or None) for every ZenML secret the environment's
    specs use: `{{name.key}}` in component configuration, `secrets` lists of components and
    stacks, and connector secrets `fromZenmlSecret`."""
    out: list[tuple[Resource, JsonPath, str, str | None]] = []
    for resource in env.resources:
        spec = resource.spec
        if resource.kind == "StackComponent":
            for field, value in (spec.get("configuration") or {}).items():
                if is_secret_reference(value):
                    name, _, key = value[2:-2].strip().partition(".")
                    out.append((resource, ("spec", "configuration", field), name, key))
        if resource.kind in ("StackComponent", "Stack"):
            for index, name in enumerate(spec.get("secrets") or []):
                out.append((resource, ("spec", "secrets", index), name, None))
        if resource.kind == "ServiceConnector":
            for key, ref in (spec.get("secrets") or {}).items():
                source = ref.get("fromZenmlSecret") if isinstance(ref, dict) else None
                if isinstance(source, dict):
                    path = ("spec", "secrets", key, "fromZenmlSecret")
                    out.append((resource, path, source["name"], source["key"]))
    return out


def require_secrets(env: Environment, zenml: ZenmlExecutor) -> None:
    """MissingSecrets, at the file and line of each use, when a referenced secret (or its key)
    is in neither the store nor a Secret of the environment (those are checked by validate)."""
    declared = set(env.of_kind("Secret"))
    uses = [u for u in secret_references(env) if u[2] not in declared]
    missing = set(zenml.missing_secrets(sorted({(name, key) for _, _, name, key in uses})))
    lines = []
    for resource, path, name, key in uses:
        shown = f"{name}.{key}" if key else name
        if shown not in missing:
            continue
        where = resource.location(path)
        at = f"{display_path(Path(where.file))}:{where.line}: " if where else ""
        what = f"key {key} of ZenML secret {name}" if key else f"ZenML secret {name}"
        lines.append(
            f"  {at}{resource.kind} {resource.name} uses {what}, which is not in the ZenML store "
            f"and no Secret of this environment declares it\n"
            f"    hint: declare it as a Secret document (kind: Secret, metadata.name: {name}), "
            "or create it in ZenML first"
        )
    if lines:
        raise MissingSecrets(f"{env.name}: nothing can be planned or applied:\n" + "\n".join(lines))


def compared_items(env_name: str, wanted: list[Registration], actual: list[Registration]) -> list[dict]:
    """What the worker compares: each connector and Secret that exists, is owned (or adopted)
    and has secret values."""
    have = {key_of(r): r for r in actual}
    items = []
    for want in wanted:
        current = have.get(key_of(want))
        if want.secrets and current is not None and (current.owner == env_name or adopting(want, current)):
            items.append(
                {
                    "kind": want.kind,
                    "name": want.name,
                    "id": current.id,
                    "secrets": want.secrets,
                    "values": want.secret_values,
                }
            )
    return items


def not_compared(status: SecretStatus) -> list[str]:
    """Warnings for secret values the plan could not compare (their source is not readable here)."""
    return [
        f"{kind} {name}: secret {key} was not compared with the live value ({why.removeprefix('not compared: ')}); "
        "a rotation of it is not shown in this plan, and an apply that finds one refuses this plan"
        for (kind, name), keys in sorted(status.items())
        for key, why in sorted(keys.items())
        if why.startswith("not compared")
    ]


def verify_connectors(
    env: Environment, wanted: list[Registration], zenml: ZenmlExecutor, verify_all: bool
) -> list[str]:
    """ZenML's verification of the connectors asked for (`verify: true`, or every one with
    `verify_all`): EnvironmentFailed with ZenML's message when one fails. On a ZenML server,
    the warnings for implicit auth methods the server refuses."""
    connectors = env.of_kind("ServiceConnector")
    asked = []
    for want in wanted:
        if want.kind != "ServiceConnector":
            continue
        verify = verify_all or connectors[want.name].spec.get("verify") is True
        implicit = not zenml.embedded and want.fields["auth_method"] == "implicit"
        if verify or implicit:
            asked.append(
                {
                    "name": want.name,
                    "verify": verify,
                    **{k: want.fields[k] for k in ("type", "auth_method", "resource_type", "resource_id")},
                    "configuration": want.fields["configuration"],
                    "secrets": want.secrets,
                    "values": want.secret_values,
                }
            )
    results = zenml.verify(asked)
    failed = [f"  ServiceConnector {r['name']}: {r['error']}" for r in results if "error" in r]
    if failed:
        raise EnvironmentFailed(
            f"{env.name}: connector verification failed, so nothing can be applied:\n" + "\n".join(failed)
        )
    return [
        f"ServiceConnector {r['name']} uses implicit authentication, which this ZenML server refuses "
        f"when the connector is used: set {IMPLICIT_SETTING}=true in the server's environment"
        for r in results
        if r.get("warning") == "implicit"
    ]


def with_history(changes: list[Change], actual: list[Registration], zenml: ZenmlExecutor) -> list[Change]:
    """Changes with what runs on what they touch (stackward.plan.impact): each stack or
    component updated, replaced, deleted or adopted carries its pipelines, schedules and
    deployments, and notes them; a stack updated in place to re-created components notes that
    its runs stay linked."""
    reached = affected_stacks(changes, actual)
    stacks = list({s.id: s for found in reached.values() for s in found}.values())
    per_stack = zenml.impact(orchestrators(stacks, actual)) if stacks else {}
    out = []
    for change in changes:
        found = reached.get(change.address)
        if not found:
            out.append(change)
            continue
        impact = merged(found, per_stack)
        notes = [describe(impact, component=change.kind == "StackComponent")]
        moved = change.kind == "Stack" and any(str(f.after).endswith(RECREATED) for f in change.fields)
        if moved and impact["pipelines"]:
            notes.append(f"the runs of {', '.join(impact['pipelines'])} stay linked to this stack")
        out.append(replace(change, notes=(*change.notes, *notes), impact=impact))
    return out
