"""The ZenML side of the registrations executor: a process forked by stackward.zenml.forkserver,
which calls `main()` with the request's arguments in sys.argv.

ZenML keeps a process-wide global configuration and client, so each environment gets its own
worker process whose environment (ZENML_CONFIG_PATH, or ZENML_STORE_URL and
ZENML_STORE_API_KEY) points at that environment's store. Protocol: one JSON request per line
on stdin; replies are JSON lines on the original stdout (anything ZenML prints goes to stderr).

Requests:
    {"op": "read"}                   -> {"registrations": [...]}
    {"op": "apply", "ops": [...]}    -> per call {"ready": address}, answered on stdin with
                                        {"go": true} to make it (then {"done": address, "op": ...})
                                        or {"stop": true} to make no more calls (nothing more is
                                        sent); then {"ok": true}, or {"error": ...} at a failed call
    {"op": "compare", "items": [...]}  -> {"status": [[kind, name, {key: "changed"|"same"|why}], ...]}
    {"op": "missing_secrets", "refs": [[name, key or null], ...]} -> {"missing": [...]}
    {"op": "verify", "connectors": [...], "embedded": bool} -> {"results": [{name, error|warning}]}
    {"op": "impact", "stacks": {id: orchestrator id or ""}} -> {"impact": {id: what runs on it}}

Secret values reach the worker only as references (it reads environment variables itself) or,
for Terraform outputs, inside a request; no reply ever holds one.

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

from stackward.zenml.checking import StoreChecks, desired_value
from stackward.zenml.diff import REPLACING_SUFFIX
from stackward.zenml.reading import impact_on, read_registrations
from stackward.zenml.registrations import ENVIRONMENT, ownership_record


def _key(kind: str, name: str, type_: str) -> tuple:
    """ZenML component names are unique per component type only."""
    return (kind, name, type_) if kind == "StackComponent" else (kind, name)


class Worker:
    def __init__(self, out: TextIO, requests: TextIO):
        from zenml.client import Client
        from zenml.enums import StackComponentType

        self.out = out
        self.requests = requests  # where the answers to {"ready": …} come from
        self.client = Client()
        self.checks = StoreChecks(self.client)
        self.types = StackComponentType
        self.ids: dict[tuple, Any] = {}
        self.current: dict[tuple, dict] = {}
        self.replaced: dict[tuple, Any] = {}  # a replaced component's key -> the old one's id

    def send(self, message: dict) -> None:
        send_line(self.out, message)

    def go(self, address: str | None) -> bool:
        """Whether the client says to make the call at `address` (it checks first that it may:
        an apply confirms it still holds its lock); no when the client is gone."""
        self.send({"ready": address})
        answer = self.requests.readline()
        return bool(answer) and json.loads(answer).get("go") is True

    def read(self) -> list[dict]:
        """Every secret, connector, component and stack in the store, with its id."""
        out = read_registrations(self.client.zen_store)
        self.ids = {_key(r["kind"], r["name"], r["fields"].get("type", "")): r["id"] for r in out}
        self.current = {_key(r["kind"], r["name"], r["fields"].get("type", "")): r for r in out}
        return out

    def _values(self, op: dict) -> dict[str, str]:
        """The secret values of a connector or Secret op, read here (never sent back)."""
        return {
            k: desired_value(self.client, ref, op.get("values", {}), k) for k, ref in op["secrets"].items()
        }

    def _labels(self, key: tuple, labels: dict) -> dict:
        """Desired labels, with None for labels to remove (ZenML merges labels on update)."""
        old = self.current.get(key, {}).get("labels", {})
        return {**{k: None for k in old if k not in labels}, **labels}

    def _old(self, key: tuple, field: str) -> Any:
        return self.current.get(key, {}).get("fields", {}).get(field)

    def _record(self, env: str, name: str, owned: bool) -> None:
        """Add or remove `name` in the environment's ownership record of secrets."""
        record = ownership_record(env)
        try:
            listed = self.client.get_secret(record, allow_partial_name_match=False).secret_values
        except KeyError:
            if owned:
                self.client.create_secret(record, {name: "owned"})
            return
        if owned:
            self.client.update_secret(record, add_or_update_values={name: "owned"})
        elif name in listed:
            self.client.update_secret(record, remove_values=[name])

    def _secret_change(self, op: dict, key: tuple) -> None:
        name = op["name"]
        if op["op"] == "delete":
            self.client.delete_secret(self.ids[key])
            self._record(self.current[key]["labels"][ENVIRONMENT], name, owned=False)
            return
        values, private = self._values(op), op["fields"]["private"]
        if op["op"] == "create":
            self._record(
                op["labels"][ENVIRONMENT], name, owned=True
            )  # first: a secret made but not recorded would be a conflict
            model = self.client.create_secret(name, values, private=private)
        else:
            held = self._old(key, "keys") or []
            if op.get("adopt"):  # taken over: listed as owned first, as a new one is
                self._record(op["labels"][ENVIRONMENT], name, owned=True)
                held = list(self.client.get_secret(self.ids[key]).secret_values)  # unread until owned
            gone = [k for k in held if k not in values]
            model = self.client.update_secret(
                self.ids[key],
                update_private=private,
                add_or_update_values=values,
                remove_values=gone or None,
            )
        self.ids[key] = model.id

    def _connector(self, op: dict, key: tuple) -> None:
        fields = op["fields"]
        config = {**fields["configuration"], **self._values(op)}
        common = dict(
            auth_method=fields["auth_method"],
            resource_type=fields["resource_type"],
            configuration=config,
            resource_id=fields["resource_id"],
            description=fields["description"],
            expiration_seconds=fields["expiration_seconds"],
            verify=False,
            list_resources=False,
        )
        if op["op"] == "create":
            model, _ = self.client.create_service_connector(
                name=op["name"], connector_type=fields["type"], labels=op["labels"], **common
            )
        else:
            model, _ = self.client.update_service_connector(
                self.ids[key], labels=self._labels(key, op["labels"]), **common
            )
        self.ids[key] = model.id

    def _component(self, op: dict, key: tuple) -> None:
        fields, name = op["fields"], op["name"]
        comp_type = self.types(fields["type"])
        connector = fields.get("connector")
        if op["op"] == "create":
            if op.get("replacing"):  # the old one stays until its stacks point at this one
                self.replaced[key] = self.ids[key]
                name += REPLACING_SUFFIX
            model = self.client.create_stack_component(
                name,
                fields["flavor"],
                comp_type,
                fields["configuration"],
                labels=op["labels"],
                secrets=fields["secrets"] or None,
                environment=fields["environment"],
            )
        else:
            old = self._old(key, "configuration") or {}
            config = {**{k: None for k in old if k not in fields["configuration"]}, **fields["configuration"]}
            had = set(self._old(key, "secrets") or [])
            model = self.client.update_stack_component(
                self.ids[key],
                comp_type,
                configuration=config,
                labels=self._labels(key, op["labels"]),
                disconnect=True if connector is None and self._old(key, "connector") else None,
                environment=fields["environment"],
                add_secrets=sorted(set(fields["secrets"]) - had) or None,
                remove_secrets=sorted(had - set(fields["secrets"])) or None,
            )
        if connector:
            model = self.client.update_stack_component(
                model.id,
                comp_type,
                connector_id=self.ids[("ServiceConnector", connector)],
                connector_resource_id=fields.get("connector_resource_id"),
            )
        self.ids[key] = model.id

    def _stack(self, op: dict, key: tuple) -> None:
        fields = op["fields"]
        components = {
            self.types(t): [self.ids[_key("StackComponent", c, t)]] for t, c in fields["components"].items()
        }
        if op["op"] == "create":
            model = self.client.create_stack(
                op["name"], components=components, labels=op["labels"], secrets=fields["secrets"] or None
            )
            had = set(fields["secrets"])
        else:
            for slot in self._old(key, "components") or {}:
                if slot not in fields["components"]:
                    components[self.types(slot)] = []
            model = self.client.update_stack(
                self.ids[key], component_updates=components, labels=self._labels(key, op["labels"])
            )
            had = set(self._old(key, "secrets") or [])
        model = self.client.update_stack(  # description and environment are not taken on create
            model.id,
            description=fields["description"],
            environment=fields["environment"],
            add_secrets=sorted(set(fields["secrets"]) - had) or None,
            remove_secrets=sorted(had - set(fields["secrets"])) or None,
        )
        self.ids[key] = model.id

    def apply(self, op: dict) -> None:
        kind = op["kind"]
        key = _key(kind, op["name"], op.get("type", ""))
        if op["op"] == "disconnect":
            self.client.update_stack_component(self.ids[key], self.types(op["type"]), disconnect=True)
        elif op["op"] == "finish_replace":  # its stacks use the new one now: drop the old, rename the new
            self.client.delete_stack_component(self.replaced.pop(key), self.types(op["type"]))
            self.client.update_stack_component(self.ids[key], self.types(op["type"]), name=op["name"])
        elif kind == "Secret":
            self._secret_change(op, key)
        elif op["op"] == "delete":
            if kind == "Stack":
                self.client.delete_stack(self.ids[key])
            elif kind == "StackComponent":
                self.client.delete_stack_component(self.ids[key], self.types(op["type"]))
            else:
                self.client.delete_service_connector(self.ids[key])
            self.ids.pop(key, None)
            self.current.pop(key, None)
        elif kind == "ServiceConnector":
            self._connector(op, key)
        elif kind == "StackComponent":
            self._component(op, key)
        else:
            self._stack(op, key)

    def handle(self, request: dict) -> None:
        """Answer one request of the protocol."""
        op = request["op"]
        if op == "read":
            self.send({"registrations": self.read()})
        elif op == "compare":
            self.send({"status": self.checks.compare(request["items"])})
        elif op == "missing_secrets":
            self.send({"missing": self.checks.missing(request["refs"])})
        elif op == "verify":
            self.send({"results": self.checks.verify(request["connectors"], request["embedded"])})
        elif op == "impact":
            self.send({"impact": impact_on(self.client.zen_store, request["stacks"])})
        elif op == "apply":
            self.read()
            for change in request["ops"]:
                if not self.go(change.get("address")):
                    return
                try:
                    self.apply(change)
                except Exception as exc:
                    self.send(
                        {
                            "error": f"{change['op']} {change['kind']} {change['name']}: {exc}",
                            "address": change.get("address"),
                        }
                    )
                    return
                self.send({"done": change.get("address"), "op": change["op"]})
            self.send({"ok": True})


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
    while line := sys.stdin.readline():  # not `for line in sys.stdin`: Worker.go reads it too
        request = json.loads(line)
        try:
            worker = worker or Worker(protocol, sys.stdin)
            worker.handle(request)
        except Exception as exc:
            message = {"error": f"{type(exc).__name__}: {exc}"}
            send_line(protocol, message)
