"""Checks against ZenML's own definitions: component types, flavors and their config
schemas, connector types and auth methods, and secrets that must not be written inline.

Secret values are never part of a message: secret fields are taken out of the schemas
before validation and checked on their own.
"""

from __future__ import annotations

from typing import Any

from stackward.diagnostics import Diagnostic, JsonPath
from stackward.spec.interpolation import has_placeholder
from stackward.spec.model import Environment, Resource
from stackward.spec.schema import SchemaChecker, schema_diagnostics, suggest
from stackward.zenml.catalog import (
    REQUIRED_SLOTS,
    AuthMethodInfo,
    Catalog,
    ConnectorTypeInfo,
    is_secret_reference,
)

_checkers: dict[tuple[str, ...], SchemaChecker] = {}


def _checker(key: tuple[str, ...], schema: dict, secret_fields: tuple[str, ...]) -> SchemaChecker:
    """One compiled checker per flavor or auth method, secret fields taken out."""
    if key not in _checkers:
        schema = {"additionalProperties": False, **_without(schema, secret_fields)}
        _checkers[key] = SchemaChecker(schema)
    return _checkers[key]


def _without(schema: dict, fields: tuple[str, ...]) -> dict:
    """The schema with `fields` taken out of properties and required."""
    if not fields:
        return schema
    return {
        **schema,
        "properties": {k: v for k, v in schema.get("properties", {}).items() if k not in fields},
        "required": [k for k in schema.get("required", []) if k not in fields],
        "additionalProperties": schema.get("additionalProperties", False),
    }


def _validate_config(
    resource: Resource, checker: SchemaChecker, config: Any, base: JsonPath, code: str
) -> list[Diagnostic]:
    def unknown_until_apply(path: JsonPath) -> bool:
        value: Any = resource.data
        for part in path:
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                return False
        return has_placeholder(value)

    return schema_diagnostics(
        checker, config, resource.positions, base=base, code=code, skip=unknown_until_apply
    )


def check_component(component: Resource, env: Environment, catalog: Catalog) -> list[Diagnostic]:
    spec = component.spec
    ctype, flavor_name = spec.get("type"), spec.get("flavor")
    if not isinstance(ctype, str) or not isinstance(flavor_name, str):
        return []  # the schema reports it
    if ctype not in catalog.component_types:
        return [
            component.diagnostic(
                "zenml.component-type",
                f"{ctype!r} is not a ZenML stack component type",
                suggest(ctype, catalog.component_types),
                ("spec", "type"),
            )
        ]
    flavor = catalog.flavors.get(ctype, {}).get(flavor_name)
    if flavor is None:
        return [
            component.diagnostic(
                "zenml.flavor",
                f"zenml {catalog.zenml_version} has no {ctype} flavor {flavor_name!r}",
                suggest(flavor_name, catalog.flavors.get(ctype, {})),
                ("spec", "flavor"),
            )
        ]
    config = spec.get("configuration") or {}
    if not isinstance(config, dict):
        return []
    out = []
    for name in flavor.secret_fields:
        value = config.get(name)
        if value is not None and not is_secret_reference(value):
            out.append(
                component.diagnostic(
                    "secret.inline",
                    f"{name} of {flavor_name} {ctype} is a secret and is written inline",
                    f"store it in a ZenML secret and write a reference: {name}: '{{{{my_secret.{name}}}}}'",
                    ("spec", "configuration", name),
                )
            )
    checker = _checker(("flavor", ctype, flavor_name), flavor.schema, flavor.secret_fields)
    public = {k: v for k, v in config.items() if k not in flavor.secret_fields}
    out += _validate_config(component, checker, public, ("spec", "configuration"), "zenml.config")
    out += _check_connector_fit(component, flavor.connector_type, flavor.resource_type, env, catalog)
    return out


def _check_connector_fit(
    component: Resource,
    connector_type: str | None,
    resource_type: str | None,
    env: Environment,
    catalog: Catalog,
) -> list[Diagnostic]:
    name = component.spec.get("connector")
    connector = env.of_kind("ServiceConnector").get(name) if isinstance(name, str) else None
    if connector is None:
        return []  # none set, or dangling (reported by the reference checks)
    path = ("spec", "connector")
    flavor = f"{component.spec['flavor']} {component.spec['type']}"
    ctype = connector.spec.get("type")
    if not isinstance(ctype, str):
        return []  # the schema reports it
    if resource_type is None:
        return [
            component.diagnostic(
                "zenml.connector",
                f"the {flavor} flavor does not use service connectors",
                "remove spec.connector",
                path,
            )
        ]
    if connector_type and ctype != connector_type:
        return [
            component.diagnostic(
                "zenml.connector",
                f"the {flavor} needs a {connector_type} connector; {connector.name!r} is {ctype}",
                f"use a ServiceConnector of type {connector_type}",
                path,
            )
        ]
    info = catalog.connectors.get(ctype)
    if info is not None and resource_type not in info.resource_types:
        return [
            component.diagnostic(
                "zenml.connector",
                f"connector {connector.name!r} ({ctype}) cannot give access to {resource_type}, "
                f"which the {flavor} needs",
                f"use a connector whose type supports {resource_type}",
                path,
            )
        ]
    limited = connector.spec.get("resourceType")
    if isinstance(limited, str) and limited != resource_type:
        return [
            component.diagnostic(
                "zenml.connector",
                f"connector {connector.name!r} is limited to {limited}; the {flavor} needs {resource_type}",
                f"use a connector for {resource_type}, or drop resourceType from {connector.name}",
                path,
            )
        ]
    listed = connector.spec.get("resourceTypes")
    if isinstance(listed, list) and resource_type not in listed:
        return [
            component.diagnostic(
                "zenml.connector",
                f"connector {connector.name!r} lists resourceTypes {', '.join(map(str, listed))}; the "
                f"{flavor} needs {resource_type}",
                f"add {resource_type} to resourceTypes of {connector.name}, or use another connector",
                path,
            )
        ]
    method = connector.spec.get("authMethod")
    if (
        info is not None
        and isinstance(method, str)
        and not isinstance(limited, str)
        and not isinstance(listed, list)
        and method in info.auth_methods
        and method not in info.methods_for(resource_type)
    ):
        return [
            component.diagnostic(
                "zenml.connector",
                f"the {ctype} {method} auth method of connector {connector.name!r} cannot give "
                f"access to {resource_type}, which the {flavor} needs",
                f"use a connector whose auth method can: {', '.join(info.methods_for(resource_type))}",
                path,
            )
        ]
    return []


def check_connector(connector: Resource, catalog: Catalog) -> list[Diagnostic]:
    spec = connector.spec
    ctype, method_name = spec.get("type"), spec.get("authMethod")
    if not isinstance(ctype, str) or not isinstance(method_name, str):
        return []
    info = catalog.connectors.get(ctype)
    if info is None:
        return [
            connector.diagnostic(
                "zenml.connector-type",
                f"zenml {catalog.zenml_version} has no service connector type {ctype!r}",
                suggest(ctype, catalog.connectors),
                ("spec", "type"),
            )
        ]
    method = info.auth_methods.get(method_name)
    if method is None:
        return [
            connector.diagnostic(
                "zenml.auth-method",
                f"{method_name!r} is not an auth method of {ctype} connectors",
                suggest(method_name, info.auth_methods),
                ("spec", "authMethod"),
            )
        ]
    out = []
    resource_type = spec.get("resourceType")
    if isinstance(resource_type, str):
        out += _check_resource_type(connector, info, method_name, resource_type, ("spec", "resourceType"))
    resource_types = spec.get("resourceTypes")
    for index, listed in enumerate(resource_types if isinstance(resource_types, list) else []):
        if isinstance(listed, str):
            out += _check_resource_type(
                connector, info, method_name, listed, ("spec", "resourceTypes", index)
            )
    out += _check_expiration(connector, info, method)
    config = spec.get("configuration") or {}
    secrets = spec.get("secrets") or {}
    if not isinstance(config, dict) or not isinstance(secrets, dict):
        return out
    for name in config:
        if name in method.secret_fields:
            out.append(
                connector.diagnostic(
                    "secret.inline",
                    f"{name} is a secret of the {ctype} {method_name} auth method and is written inline",
                    f"remove it from configuration and reference it: secrets: {{{name}: {{fromEnv: VAR_NAME}}}}",
                    ("spec", "configuration", name),
                )
            )
    for name in secrets:
        if name not in method.secret_fields:
            where = "configuration" if name in method.schema.get("properties", {}) else None
            out.append(
                connector.diagnostic(
                    "zenml.auth-config",
                    f"{name!r} is not a secret of the {ctype} {method_name} auth method",
                    f"put {name} under configuration"
                    if where
                    else suggest(name, method.secret_fields) or f"{method_name} takes no secrets",
                    ("spec", "secrets", name),
                )
            )
    for name in method.schema.get("required", []):
        if name in method.secret_fields and name not in secrets and name not in config:
            out.append(
                connector.diagnostic(
                    "zenml.auth-config",
                    f"the {ctype} {method_name} auth method needs the secret {name}",
                    f"add secrets: {{{name}: {{fromEnv: VAR_NAME}}}}",
                    ("spec", "secrets") if "secrets" in spec else ("spec",),
                )
            )
    public = {k: v for k, v in config.items() if k not in method.secret_fields}
    checker = _checker(("auth", ctype, method_name), method.schema, method.secret_fields)
    out += _validate_config(connector, checker, public, ("spec", "configuration"), "zenml.auth-config")
    return out


def _check_resource_type(
    connector: Resource, info: ConnectorTypeInfo, method: str, resource_type: str, path: JsonPath
) -> list[Diagnostic]:
    """A resource type the connector is limited to: one of its type's, reachable with its auth
    method."""
    if resource_type not in info.resource_types:
        return [
            connector.diagnostic(
                "zenml.resource-type",
                f"{resource_type!r} is not a resource type of {info.type} connectors",
                suggest(resource_type, info.resource_types),
                path,
            )
        ]
    methods = info.methods_for(resource_type)
    if method in methods:
        return []
    return [
        connector.diagnostic(
            "zenml.resource-type",
            f"the {info.type} {method} auth method cannot give access to {resource_type}",
            f"use an auth method that can: {', '.join(methods)}"
            if methods
            else f"no {info.type} auth method gives access to {resource_type}; remove it",
            path,
        )
    ]


def _check_expiration(
    connector: Resource, info: ConnectorTypeInfo, method: AuthMethodInfo
) -> list[Diagnostic]:
    """expirationSeconds only for auth methods that issue temporary credentials, within the
    range they allow (ZenML's AuthenticationMethodModel.validate_expiration)."""
    seconds = connector.spec.get("expirationSeconds")
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 1:
        return []  # absent, or the schema reports it
    path = ("spec", "expirationSeconds")
    if not method.issues_temporary_credentials:
        temporary = [m.name for m in info.auth_methods.values() if m.issues_temporary_credentials]
        return [
            connector.diagnostic(
                "zenml.expiration",
                f"the {info.type} {method.name} auth method issues no temporary credentials, so "
                "expirationSeconds does not apply",
                "remove expirationSeconds"
                + (f", or use an auth method that issues them: {', '.join(temporary)}" if temporary else ""),
                path,
            )
        ]
    low, high = method.min_expiration_seconds, method.max_expiration_seconds
    if (low is None or seconds >= low) and (high is None or seconds <= high):
        return []
    if low is not None and high is not None:
        allowed = f"{low} to {high} seconds"
    elif low is not None:
        allowed = f"at least {low} seconds"
    else:
        allowed = f"at most {high} seconds"
    default = method.default_expiration_seconds
    return [
        connector.diagnostic(
            "zenml.expiration",
            f"expirationSeconds {seconds} is outside what the {info.type} {method.name} auth method "
            f"allows: {allowed}",
            f"set expirationSeconds to {allowed}"
            + (f", or remove it for the default of {default} seconds" if default is not None else ""),
            path,
        )
    ]


def check_stack(stack: Resource, catalog: Catalog) -> list[Diagnostic]:
    slots = stack.spec.get("components")
    if not isinstance(slots, dict):
        return []
    out = [
        stack.diagnostic(
            "zenml.slot",
            f"{slot!r} is not a ZenML stack component type",
            suggest(slot, catalog.component_types),
            ("spec", "components", slot),
        )
        for slot in slots
        if slot not in catalog.component_types
    ]
    for slot in REQUIRED_SLOTS:
        if slot not in slots:
            out.append(
                stack.diagnostic(
                    "zenml.slot",
                    f"Stack {stack.name!r} has no {slot}; every ZenML stack needs one",
                    f"add components.{slot}: <name of a {slot} StackComponent>",
                    ("spec", "components"),
                )
            )
    return out


def check_zenml(env: Environment, catalog: Catalog) -> list[Diagnostic]:
    """All ZenML checks for one environment."""
    out: list[Diagnostic] = []
    for resource in env.resources:
        if resource.kind == "StackComponent":
            out += check_component(resource, env, catalog)
        elif resource.kind == "ServiceConnector":
            out += check_connector(resource, catalog)
        elif resource.kind == "Stack":
            out += check_stack(resource, catalog)
    return out
