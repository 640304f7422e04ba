"""The ZenML side of the registrations executor, run as `python -m stackward.zenml.worker`.

ZenML keeps a process-wide global configuration and client, so each environment gets its own
worker process whose environment (ZENML_CONFIG_PATH, or ZENML_STORE_URL and
ZENML_STORE_API_KEY) points at that environment's store. Protocol: one JSON request per line
on stdin; replies are JSON lines on the original stdout (anything ZenML prints goes to stderr).

Requests:
    {"op": "read"}                   -> {"registrations": [...]}
    {"op": "apply", "ops": [...]}    -> {"done": address} per call, then {"ok": true} or {"error": ...}
    {"op": "missing_secrets", "refs": [[name, key], ...]} -> {"missing": [...]}

With `--reader` the process instead serves read requests for many embedded stores, each opened
by its database file (a long-running service reads every environment this way, paying for the
zenml import once); see stackward.zenml.store_reader:
    {"op": "read", "database": "/path/to/zenml.db"}   -> {"registrations": [...]}
                                                       or {"unavailable": why} or {"error": ...}
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

from pydantic import SecretStr


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _key(kind: str, name: str, type_: str) -> tuple:
    """ZenML component names are unique per component type only."""
    return (kind, name, type_) if kind == "StackComponent" else (kind, name)


def _all(list_method: Any, filter_class: Any) -> list:
    """Every item of a store list method, page by page, hydrated (labels and configuration)."""
    from zenml.utils.pagination_utils import depaginate

    return depaginate(lambda page=1: list_method(filter_class(page=page, size=1000), hydrate=True))


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


def read_registrations(store: Any) -> list[dict]:
    """Every connector, component and stack in a ZenML store, with its id. A connector's secret
    values are never read back: its `configuration` leaves out its auth method's secret keys
    (all of them when its auth method is unknown), and `secret_keys` names those it holds."""
    from zenml.models import ComponentFilter, ServiceConnectorFilter, StackFilter

    out = []
    for c in _all(store.list_service_connectors, ServiceConnectorFilter):
        config = c.configuration or {}
        secret = _secret_keys(c, config)
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
                },
                "secret_keys": sorted(k for k in config if k in secret),
                "labels": dict(c.labels or {}),
            }
        )
    connectors = {c["id"]: c["name"] for c in out}
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
                    "components": {t.value: comps[0].name for t, comps in s.components.items() if comps}
                },
                "labels": dict(s.labels or {}),
            }
        )
    return out


class Worker:
    def __init__(self, out: TextIO):
        from zenml.client import Client
        from zenml.enums import StackComponentType

        self.out = out
        self.client = Client()
        self.types = StackComponentType
        self.ids: dict[tuple[str, str], Any] = {}
        self.current: dict[tuple[str, str], dict] = {}

    def send(self, message: dict) -> None:
        send_line(self.out, message)

    def read(self) -> list[dict]:
        """Every connector, component and stack in the store, with its id."""
        out = read_registrations(self.client.zen_store)
        self.ids = {_key(r["kind"], r["name"], r["fields"].get("type", "")): r["id"] for r in out}
        self.current = {_key(r["kind"], r["name"], r["fields"].get("type", "")): r for r in out}
        return out

    def _secret(self, ref: dict, key: str, name: str) -> str:
        if "fromEnv" in ref:
            value = os.environ.get(ref["fromEnv"])
            if value is None:
                raise RuntimeError(
                    f"environment variable {ref['fromEnv']} (secret {key} of connector {name}) is not set"
                )
            return value
        source = ref["fromZenmlSecret"]
        secret = self.client.get_secret(source["name"], allow_partial_name_match=False)
        if source["key"] not in secret.secret_values:
            raise RuntimeError(
                f"ZenML secret {source['name']} has no key {source['key']} (for connector {name})"
            )
        return secret.secret_values[source["key"]]

    def missing_secrets(self, refs: list[list[str]]) -> list[str]:
        """`name.key` of each ZenML secret reference that cannot be resolved."""
        missing = []
        for name, key in refs:
            try:
                secret = self.client.get_secret(name, allow_partial_name_match=False)
            except KeyError:
                missing.append(f"{name}.{key}")
                continue
            if key not in secret.secret_values:
                missing.append(f"{name}.{key}")
        return missing

    def _labels(self, key: tuple, labels: dict) -> dict:
        """Desired labels, with None for labels to remove (ZenML merges labels on update)."""
        old = self.current.get(key, {}).get("labels", {})
        return {**{k: None for k in old if k not in labels}, **labels}

    def apply(self, op: dict) -> None:
        kind, name = op["kind"], op["name"]
        key = _key(kind, name, op.get("type", ""))
        if op["op"] == "delete":
            if kind == "Stack":
                self.client.delete_stack(self.ids[key])
            elif kind == "StackComponent":
                self.client.delete_stack_component(self.ids[key], self.types(op["type"]))
            else:
                self.client.delete_service_connector(self.ids[key])
            self.ids.pop(key, None)
            self.current.pop(key, None)
            return
        if op["op"] == "disconnect":
            self.client.update_stack_component(self.ids[key], self.types(op["type"]), disconnect=True)
            return
        fields, labels = op["fields"], op["labels"]
        if kind == "ServiceConnector":
            config = dict(fields["configuration"])
            config.update({k: self._secret(ref, k, name) for k, ref in op["secrets"].items()})
            common = dict(
                auth_method=fields["auth_method"],
                resource_type=fields["resource_type"],
                configuration=config,
                resource_id=fields["resource_id"],
                verify=False,
                list_resources=False,
            )
            if op["op"] == "create":
                model, _ = self.client.create_service_connector(
                    name=name, connector_type=fields["type"], labels=labels, **common
                )
            else:
                model, _ = self.client.update_service_connector(
                    self.ids[key], labels=self._labels(key, labels), **common
                )
            self.ids[key] = model.id
        elif kind == "StackComponent":
            comp_type = self.types(fields["type"])
            connector = fields.get("connector")
            if op["op"] == "create":
                model = self.client.create_stack_component(
                    name, fields["flavor"], comp_type, fields["configuration"], labels=labels
                )
            else:
                old = self.current.get(key, {}).get("fields", {}).get("configuration", {})
                config = {
                    **{k: None for k in old if k not in fields["configuration"]},
                    **fields["configuration"],
                }
                model = self.client.update_stack_component(
                    self.ids[key],
                    comp_type,
                    configuration=config,
                    labels=self._labels(key, labels),
                    disconnect=True
                    if connector is None and self.current.get(key, {}).get("fields", {}).get("connector")
                    else None,
                )
            if connector:
                model = self.client.update_stack_component(
                    model.id,
                    comp_type,
                    connector_id=self.ids[("ServiceConnector", connector)],
                    connector_resource_id=fields.get("connector_resource_id"),
                )
            self.ids[key] = model.id
        else:
            components = {
                self.types(t): [self.ids[_key("StackComponent", c, t)]]
                for t, c in fields["components"].items()
            }
            if op["op"] == "create":
                model = self.client.create_stack(name, components=components, labels=labels)
            else:
                old = self.current.get(key, {}).get("fields", {}).get("components", {})
                for slot in old:
                    if slot not in fields["components"]:
                        components[self.types(slot)] = []
                model = self.client.update_stack(
                    self.ids[key], component_updates=components, labels=self._labels(key, labels)
                )
            self.ids[key] = model.id


def send_line(out: TextIO, message: dict) -> None:
    """One reply line of the protocol."""
    out.write(json.dumps(message, default=str) + "\n")
    out.flush()


def main() -> None:
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever ZenML prints goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    if "--reader" in sys.argv[1:]:
        from stackward.zenml.store_reader import serve_reader

        serve_reader(sys.stdin, protocol)
        return
    worker = None
    for line in sys.stdin:
        request = json.loads(line)
        try:
            worker = worker or Worker(protocol)
            if request["op"] == "read":
                worker.send({"registrations": worker.read()})
            elif request["op"] == "missing_secrets":
                worker.send({"missing": worker.missing_secrets(request["refs"])})
            elif request["op"] == "apply":
                worker.read()
                for op in request["ops"]:
                    try:
                        worker.apply(op)
                    except Exception as exc:
                        worker.send(
                            {
                                "error": f"{op['op']} {op['kind']} {op['name']}: {exc}",
                                "address": op.get("address"),
                            }
                        )
                        break
                    worker.send({"done": op.get("address"), "op": op["op"]})
                else:
                    worker.send({"ok": True})
        except Exception as exc:
            message = {"error": f"{type(exc).__name__}: {exc}"}
            send_line(protocol, message)


if __name__ == "__main__":
    main()
    # All replies are flushed; skip ZenML's slow interpreter teardown (about a second).
    os._exit(0)
