"""ZenML registrations as stackward wants them: `desired()` builds them from a resolved
environment and the Terraform outputs (pure, no I/O); stackward.zenml.diff compares them with
what the store has.

Ownership: everything stackward creates carries labels naming the tool, the environment and
a hash of its spec; anything else is never modified or deleted. ZenML secrets have no labels:
stackward keeps their ownership in a secret of its own per environment (OWNERSHIP_RECORD).

Secret values never enter a Registration's fields: `secrets` holds references, and
`secret_values` the values known in this process (Terraform outputs for `fromInfra`), which
go only to the ZenML worker.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from stackward.plan.changes import UNKNOWN
from stackward.spec.interpolation import INFRA_REFERENCE
from stackward.spec.model import Environment

MANAGED_BY = "stackward.managed-by"
ENVIRONMENT = "stackward.environment"
SPEC_HASH = "stackward.spec-hash"
OWNERSHIP = (MANAGED_BY, ENVIRONMENT, SPEC_HASH)
KINDS = ("Secret", "ServiceConnector", "StackComponent", "Stack")
OWNERSHIP_RECORD = "stackward-owned-{env}"  # the ZenML secret listing the secrets an environment owns


def ownership_record(env_name: str) -> str:
    """Name of the ZenML secret that lists the secrets `env_name` owns (ZenML secrets have no labels)."""
    return OWNERSHIP_RECORD.format(env=env_name)


@dataclass(frozen=True)
class Registration:
    """One ZenML resource as stackward wants it (or as the store has it)."""

    kind: str
    name: str
    fields: dict[str, Any]  # comparable fields (configuration, connector, components, ...)
    labels: dict[str, str] = field(default_factory=dict)
    secret_keys: frozenset[str] = frozenset()  # configuration keys whose values are secret
    secrets: dict[str, dict] = field(
        default_factory=dict
    )  # key -> reference (fromEnv / fromInfra / fromZenmlSecret)
    unknown: bool = False  # holds values known only after Terraform applies
    id: str = ""
    # values of `fromInfra` references known here (for the worker only; never shown or stored)
    secret_values: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    unknown_secrets: frozenset[str] = frozenset()  # `fromInfra` keys whose value Terraform has not given yet
    pipelines: tuple[str, ...] = field(
        default=(), compare=False
    )  # a stack's pipelines with runs on it (as read)
    adopt: bool = False  # the spec takes over a resource of this name registered by hand

    @property
    def owner(self) -> str | None:
        return self.labels.get(ENVIRONMENT) if self.labels.get(MANAGED_BY) == "stackward" else None

    @property
    def type(self) -> str:
        return self.fields.get("type", "")


def _substitute(value: Any, outputs: dict[str, dict[str, Any]]) -> tuple[Any, bool]:
    """Fill ${infra.X.Y} from Terraform outputs; (value, still unknown)."""
    if isinstance(value, str):
        whole = INFRA_REFERENCE.fullmatch(value)
        if whole:
            known = outputs.get(whole.group(1), {})
            return (known[whole.group(2)], False) if whole.group(2) in known else (UNKNOWN, True)
        unknown = False

        def fill(match: re.Match) -> str:
            nonlocal unknown
            known = outputs.get(match.group(1), {})
            if match.group(2) in known:
                value = known[match.group(2)]
                return (
                    value if isinstance(value, str) else json.dumps(value)
                )  # lists/maps as JSON, not Python
            unknown = True
            return UNKNOWN

        return INFRA_REFERENCE.sub(fill, value), unknown
    if isinstance(value, dict):
        items = {k: _substitute(v, outputs) for k, v in value.items()}
        return {k: v for k, (v, _) in items.items()}, any(u for _, u in items.values())
    if isinstance(value, list):
        items = [_substitute(v, outputs) for v in value]
        return [v for v, _ in items], any(u for _, u in items)
    return value, False


def _spec_hash(kind: str, fields: dict, labels: dict, secrets: dict) -> str:
    text = json.dumps(
        {"kind": kind, "fields": fields, "labels": labels, "secrets": secrets}, sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _resource_type(spec: dict, only: tuple[str, ...]) -> str | None:
    """The one resource type a connector is limited to, as ZenML stores it (None: multi-type)."""
    listed = spec.get("resourceTypes")
    if isinstance(listed, list) and len(listed) == 1:
        return listed[0]
    if spec.get("resourceType"):
        return spec["resourceType"]
    return only[0] if len(only) == 1 and not listed else None


def _infra_values(
    secrets: dict[str, dict], outputs: dict[str, dict[str, Any]]
) -> tuple[dict[str, str], frozenset[str]]:
    """Values of the `fromInfra` references that Terraform has given, and the keys still unknown."""
    values, unknown = {}, set()
    for key, ref in secrets.items():
        source = ref.get("fromInfra")
        if not isinstance(source, dict):
            continue
        known = outputs.get(source.get("module", ""), {})
        if source.get("output") in known and known[source["output"]] is not None:
            value = known[source["output"]]
            values[key] = value if isinstance(value, str) else json.dumps(value)
        else:
            unknown.add(key)
    return values, frozenset(unknown)


def _fields(kind: str, spec: dict, description: str, only: tuple[str, ...]) -> dict[str, Any]:
    if kind == "Secret":
        return {"private": bool(spec.get("private", False)), "keys": sorted(spec.get("values") or {})}
    if kind == "ServiceConnector":
        return {
            "type": spec["type"],
            "auth_method": spec["authMethod"],
            "resource_type": _resource_type(spec, only),
            "resource_id": spec.get("resourceId"),
            "configuration": dict(spec.get("configuration") or {}),
            "expiration_seconds": spec.get("expirationSeconds"),
            "description": description,
        }
    extra = {"environment": dict(spec.get("environment") or {}), "secrets": sorted(spec.get("secrets") or [])}
    if kind == "StackComponent":
        return {
            "type": spec["type"],
            "flavor": spec["flavor"],
            "configuration": dict(spec.get("configuration") or {}),
            "connector": spec.get("connector"),
            "connector_resource_id": spec.get("connectorResourceId"),
            **extra,
        }
    return {"components": dict(spec["components"]), "description": description, **extra}


def desired(
    env: Environment,
    outputs: dict[str, dict[str, Any]],
    resource_types: dict[str, tuple[str, ...]] | None = None,
) -> list[Registration]:
    """The registrations the environment's specs declare, in creation order.

    `resource_types` (connector type -> its resource types) lets a connector of a type with a
    single resource type read back the way ZenML stores it."""
    out = []
    for resource in env.resources:
        if resource.kind not in KINDS:
            continue
        spec, unknown = _substitute(resource.spec, outputs)
        secrets: dict[str, dict] = {}
        if resource.kind in ("ServiceConnector", "Secret"):
            secrets = dict(spec.get("secrets" if resource.kind == "ServiceConnector" else "values") or {})
        description = resource.data.get("metadata", {}).get("description") or ""
        only = (resource_types or {}).get(spec.get("type", ""), ())
        fields = _fields(resource.kind, spec, description, only)
        labels = {k: str(v) for k, v in resource.labels.items()} if resource.kind != "Secret" else {}
        labels.update({MANAGED_BY: "stackward", ENVIRONMENT: env.name})
        labels[SPEC_HASH] = _spec_hash(resource.kind, fields, labels, secrets)
        values, unknown_secrets = _infra_values(secrets, outputs)
        adopt = resource.data.get("metadata", {}).get("adopt") is True
        out.append(
            Registration(
                resource.kind,
                resource.name,
                fields,
                labels,
                frozenset(secrets),
                secrets,
                unknown,
                secret_values=values,
                unknown_secrets=unknown_secrets,
                adopt=adopt,
            )
        )
    order = {kind: index for index, kind in enumerate(KINDS)}
    return sorted(out, key=lambda r: order[r.kind])
