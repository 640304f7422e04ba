"""Plan-time checks that need secret values or the ZenML store, run inside the ZenML worker so
no value leaves it: rotation (the live value against the desired one, in memory), secrets
that components reference but nobody declares, and connector verification.

Only outcomes go back to stackward: "changed" or "same" per key, the names of missing
secrets, ZenML's verification message (scrubbed by stackward before it is shown).
"""

from __future__ import annotations

import os
from typing import Any
from uuid import UUID

IMPLICIT_SETTING = "ZENML_ENABLE_IMPLICIT_AUTH_METHODS"


class NotReadable(Exception):
    """A desired secret value that cannot be read where this runs; the message says why."""


def desired_value(client: Any, ref: dict, given: dict[str, str], key: str) -> str:
    """The value a secret reference stands for: an environment variable, a Terraform output
    stackward passed in `given`, or a key of a ZenML secret."""
    if "fromEnv" in ref:
        value = os.environ.get(ref["fromEnv"])
        if value is None:
            raise NotReadable(f"environment variable {ref['fromEnv']} is not set")
        return value
    if "fromInfra" in ref:
        if key not in given:
            raise NotReadable("its Terraform output is not known yet")
        return given[key]
    source = ref["fromZenmlSecret"]
    try:
        secret = client.get_secret(source["name"], allow_partial_name_match=False)
    except KeyError:
        raise NotReadable(f"ZenML secret {source['name']} does not exist") from None
    if source["key"] not in secret.secret_values:
        raise NotReadable(f"ZenML secret {source['name']} has no key {source['key']}")
    return secret.secret_values[source["key"]]


class StoreChecks:
    """The checks a plan asks the worker for, against its ZenML client."""

    def __init__(self, client: Any):
        self.client = client

    def _live(self, kind: str, id_: str) -> dict[str, Any]:
        if kind == "Secret":
            return dict(self.client.zen_store.get_secret(UUID(id_)).secret_values)
        connector = self.client.zen_store.get_service_connector(UUID(id_), expand_secrets=True)
        return {
            k: (v.get_secret_value() if hasattr(v, "get_secret_value") else v)
            for k, v in (connector.configuration or {}).items()
        }

    def compare(self, items: list[dict]) -> list[list]:
        """Per registration, per secret key: "changed", "same", or why it was not compared."""
        out = []
        for item in items:
            live = self._live(item["kind"], item["id"])
            status: dict[str, str] = {}
            for key, ref in item["secrets"].items():
                if key not in live:
                    continue  # a key it does not have yet: the diff shows it as added
                try:
                    want = desired_value(self.client, ref, item["values"], key)
                except NotReadable as exc:
                    status[key] = f"not compared: {exc}"
                    continue
                status[key] = "same" if str(live[key]) == want else "changed"
            out.append([item["kind"], item["name"], status])
        return out

    def missing(self, refs: list[list]) -> list[str]:
        """`name.key` (or `name` when no key is asked) of each reference the store cannot resolve."""
        missing = []
        for name, key in refs:
            try:
                secret = self.client.get_secret(name, allow_partial_name_match=False)
            except KeyError:
                missing.append(f"{name}.{key}" if key else name)
                continue
            if key and key not in secret.secret_values:
                missing.append(f"{name}.{key}")
        return missing

    def verify(self, connectors: list[dict], embedded: bool) -> list[dict]:
        """ZenML's verification of each connector config as it would be registered: an error
        when it is asked for (`verify`) and fails, and on a server a warning when the server
        refuses implicit authentication."""
        from zenml.models import ServiceConnectorRequest

        out = []
        for c in connectors:
            try:
                config = dict(c["configuration"])
                config.update(
                    {k: desired_value(self.client, ref, c["values"], k) for k, ref in c["secrets"].items()}
                )
            except NotReadable as exc:
                if c["verify"]:
                    out.append({"name": c["name"], "error": f"not verified: {exc}"})
                continue
            request = ServiceConnectorRequest(
                name=c["name"],
                connector_type=c["type"],
                auth_method=c["auth_method"],
                resource_types=[c["resource_type"]] if c["resource_type"] else [],
                resource_id=c["resource_id"],
                configuration=config,
                user=self.client.active_user.id,
            )
            try:
                result = self.client.zen_store.verify_service_connector_config(request, list_resources=False)
                error = result.error
            except Exception as exc:  # ZenML raises for configurations it cannot even try
                error = str(exc)
            if error and IMPLICIT_SETTING in error and not embedded:
                out.append({"name": c["name"], "warning": "implicit", "message": error})
            elif error and c["verify"]:
                out.append({"name": c["name"], "error": error})
        return out
