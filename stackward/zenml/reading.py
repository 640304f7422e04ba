"""What a ZenML store holds, as the registrations diff compares it: runs inside a process that
imports zenml (the worker, or the shared store reader), given a ZenML store object.

Secret values are never read back here: a connector's `configuration` leaves out its auth
method's secret keys, and a Secret is its name, privacy and key names.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import SecretStr

from stackward.zenml.registrations import ENVIRONMENT, MANAGED_BY, OWNERSHIP_RECORD

_RECORD_PREFIX = OWNERSHIP_RECORD.split("{env}")[0]


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _all(list_method: Any, filter_class: Any, **filters: Any) -> list:
    """Every item of a store list method, page by page, hydrated (labels and configuration)."""
    from zenml.utils.pagination_utils import depaginate

    return depaginate(lambda page=1: list_method(filter_class(page=page, size=1000, **filters), hydrate=True))


def _secret_keys(connector: Any, config: dict) -> frozenset[str]:
    """The secret configuration keys of a connector's auth method (the catalog's definition);
    every key of `config` when neither this zenml nor the store knows the auth method.

    Secret values are not marked in what a store returns: a ZenML server's REST answers carry
    every value as a plain string, and a server without a connector type's libraries keeps that
    type's secrets in its plain configuration."""
    from stackward.zenml.catalog import auth_method_secret_fields

    connector_type = connector.connector_type  # ZenML fills in the type's model where it knows it
    method = (
        None
        if isinstance(connector_type, str)
        else connector_type.auth_method_dict.get(connector.auth_method)
    )
    return frozenset(config) if method is None else frozenset(auth_method_secret_fields(method.config_schema))


def owned_secrets(store: Any, secrets: list) -> dict[str, str]:
    """Secret name -> the environment whose ownership record lists it."""
    owners: dict[str, str] = {}
    for secret in secrets:
        if secret.name.startswith(_RECORD_PREFIX):
            env = secret.name[len(_RECORD_PREFIX) :]
            for name in store.get_secret(secret.id).secret_values:
                owners.setdefault(name, env)
    return owners


def _secrets(store: Any) -> tuple[list[dict], dict[str, str]]:
    """The store's secrets (ownership records left out) and their names by id."""
    from zenml.models import SecretFilter

    listed = _all(store.list_secrets, SecretFilter)
    owners = owned_secrets(store, listed)
    out = []
    for secret in listed:
        if secret.name.startswith(_RECORD_PREFIX):
            continue
        owner = owners.get(secret.name)
        keys = sorted(store.get_secret(secret.id).secret_values) if owner else []  # only what is compared
        out.append(
            {
                "kind": "Secret",
                "name": secret.name,
                "id": str(secret.id),
                "fields": {"private": secret.private, "keys": keys},
                "labels": {MANAGED_BY: "stackward", ENVIRONMENT: owner} if owner else {},
            }
        )
    return out, {str(s.id): s.name for s in listed}


def _secret_names(ids: list[UUID], names: dict[str, str]) -> list[str]:
    return sorted(names.get(str(i), str(i)) for i in ids or [])


def read_registrations(store: Any) -> list[dict]:
    """Every secret, connector, component and stack in a ZenML store, with its id."""
    from zenml.models import ComponentFilter, ServiceConnectorFilter, StackFilter

    out, secret_names = _secrets(store)
    connectors: dict[str, str] = {}
    for c in _all(store.list_service_connectors, ServiceConnectorFilter):
        config = dict(c.configuration or {})
        secret = _secret_keys(c, config)
        if (c.labels or {}).get(MANAGED_BY) == "stackward":  # which secret keys it holds (not their values)
            expanded = store.get_service_connector(c.id, expand_secrets=True).configuration or {}
            config.update(dict.fromkeys(k for k in expanded if k in secret and k not in config))
        connectors[str(c.id)] = c.name
        out.append(
            {
                "kind": "ServiceConnector",
                "name": c.name,
                "id": str(c.id),
                "fields": {
                    "type": getattr(c.connector_type, "connector_type", c.connector_type),
                    "auth_method": c.auth_method,
                    "resource_type": None if c.is_multi_type else c.resource_types[0],
                    "resource_id": c.resource_id,
                    "configuration": {k: v for k, v in config.items() if k not in secret},
                    "expiration_seconds": c.expiration_seconds,
                    "description": c.description or "",
                },
                "secret_keys": sorted(k for k in config if k in secret),
                "labels": dict(c.labels or {}),
            }
        )
    for c in _all(store.list_stack_components, ComponentFilter):
        out.append(
            {
                "kind": "StackComponent",
                "name": c.name,
                "id": str(c.id),
                "fields": {
                    "type": c.type.value,
                    "flavor": c.flavor_name,
                    "configuration": {k: _plain(v) for k, v in (c.configuration or {}).items()},
                    "connector": connectors.get(str(c.connector.id)) if c.connector else None,
                    "connector_resource_id": c.connector_resource_id,
                    "environment": dict(c.environment or {}),
                    "secrets": _secret_names(c.secrets, secret_names),
                },
                "labels": dict(c.labels or {}),
            }
        )
    for s in _all(store.list_stacks, StackFilter):
        out.append(
            {
                "kind": "Stack",
                "name": s.name,
                "id": str(s.id),
                "fields": {
                    "components": {t.value: comps[0].name for t, comps in s.components.items() if comps},
                    "description": s.description or "",
                    "environment": dict(s.environment or {}),
                    "secrets": _secret_names(s.secrets, secret_names),
                },
                "labels": dict(s.labels or {}),
            }
        )
    return out


def impact_on(store: Any, stacks: dict[str, str], limit: int = 1000) -> dict[str, dict[str, Any]]:
    """What runs on each stack (id -> its orchestrator's id, or ""): the pipelines of its runs
    among the store's latest `limit`, their count and the last one's time, the active
    schedules on its orchestrator, the deployments on it, and how many snapshots and builds
    reference it. A few list calls for all the stacks, and two counts per stack."""
    from zenml.models import (
        DeploymentFilter,
        PipelineBuildFilter,
        PipelineRunFilter,
        PipelineSnapshotFilter,
        ScheduleFilter,
    )

    out: dict[str, dict[str, Any]] = {
        sid: {"pipelines": [], "runs": 0, "last_run": "", "schedules": [], "deployments": []}
        for sid in stacks
    }
    runs = store.list_runs(PipelineRunFilter(size=limit, sort_by="desc:created"), hydrate=False).items
    for run in runs:
        entry = out.get(str(run.stack.id)) if run.stack is not None else None
        if entry is None:
            continue
        entry["runs"] += 1
        entry["last_run"] = entry["last_run"] or run.created.isoformat()  # newest first
        if run.pipeline is not None and run.pipeline.name not in entry["pipelines"]:
            entry["pipelines"].append(run.pipeline.name)
    on_orchestrator: dict[str, list[str]] = {}
    for sid, orchestrator in stacks.items():
        on_orchestrator.setdefault(orchestrator, []).append(sid)
    schedules = store.list_schedules(ScheduleFilter(active=True, size=limit), hydrate=True).items
    for schedule in schedules:
        for sid in on_orchestrator.get(str(schedule.orchestrator_id), []):
            out[sid]["schedules"].append(schedule.name)
    for deployment in store.list_deployments(DeploymentFilter(size=limit), hydrate=False).items:
        stack = deployment.stack
        if stack is not None and str(stack.id) in out:
            out[str(stack.id)]["deployments"].append(deployment.name)
    for sid, entry in out.items():
        entry["pipelines"].sort()
        entry["snapshots"] = store.list_snapshots(PipelineSnapshotFilter(stack=sid, size=1)).total
        entry["builds"] = store.list_builds(PipelineBuildFilter(stack_id=UUID(sid), size=1)).total
    return out
