"""Policies evaluated by a running OPA server, through opa-python-client.

Either stackward uploads the policy files (PUT /v1/policies/<id>) and data documents
(PUT /v1/data/<key>), or the server already has them (a bundle) and stackward only queries:
POST /v1/data/<namespace> with the input, once per namespace.

Rego versions over the REST API: OPA 1.x parses every uploaded module with the server's own
version (`opa run` parses v1; `opa run --v0-compatible` parses v0, and reads a module that
imports `rego.v1` as v1); there is no per-request switch. So stackward uploads its v1 files
with `import rego.v1` added on the package line (a no-op for a v1 server, the v1 marker for a
v0-compatible one) and v0 files as written: a v1 server refuses those, and the finding says
to start OPA with `--v0-compatible` or to rewrite the file as v1.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlparse

import requests
from opa_client import OpaClient
from opa_client.errors import RegoParseError

from stackward.diagnostics import Diagnostic, Location
from stackward.policy import data as data_documents
from stackward.policy.embedded import V0_SIGNALS, add_policy, new_regorus
from stackward.policy.engine import (
    ALL_NAMESPACES,
    DEFAULT_NAMESPACES,
    PolicyEngineError,
    namespaces_of,
    top_packages,
)
from stackward.policy.sources import PolicyFile

POLICY_ID_PREFIX = "stackward/"
_PACKAGE_LINE = re.compile(r"^([ \t]*package[ \t]+[A-Za-z0-9_.\[\]\"-]+)", re.MULTILINE)
_VERSION_IMPORT = re.compile(r"^[ \t]*import[ \t]+(rego\.v1|future\.keywords)\b", re.MULTILINE)
_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z0-9_.]+)", re.MULTILINE)
V0_HINT = (
    "this file is Rego v0 and the OPA server reads Rego v1: start OPA with --v0-compatible (stackward "
    "marks its v1 files with `import rego.v1`, so both load), or rewrite the file as v1 (`opa fmt --v0-v1`)"
)


def rego_version(policy: PolicyFile) -> int:
    """1, or 0 when Rego v1 refuses the file for its v0 rule syntax (as the embedded engine reads it)."""
    version, _ = add_policy(new_regorus(), policy)
    return version


def as_uploaded(policy: PolicyFile, version: int) -> str:
    """The text to upload: a v1 file with `import rego.v1` on its package line (lines unchanged)."""
    if version == 0 or _VERSION_IMPORT.search(policy.text):
        return policy.text
    return _PACKAGE_LINE.sub(lambda m: m.group(1) + " import rego.v1", policy.text, count=1)


class OpaServerEngine:
    """An OPA server at `url`; `token` is sent as a bearer token."""

    name = "opa-server"

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        namespaces: str | list[str] | tuple[str, ...] | None = DEFAULT_NAMESPACES,
        upload: bool = True,
        timeout: float = 10.0,
    ):
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise PolicyEngineError(f"OPA URL {url!r} must look like http://host:8181")
        self.url = url
        self.namespaces = namespaces_of(namespaces)
        self.upload = upload
        self._packages: list[str] = []
        self._client = OpaClient(
            host=parsed.hostname,
            port=parsed.port or (443 if parsed.scheme == "https" else 8181),
            ssl=parsed.scheme == "https",
            token=token,
            timeout=timeout,
        )
        self._token = token
        self._timeout = timeout

    def _fail(self, exc: Exception) -> PolicyEngineError:
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            status = exc.response.status_code
            if status in (401, 403):
                return PolicyEngineError(
                    f"OPA at {self.url} refused the token (HTTP {status}); check STACKWARD_OPA_TOKEN"
                )
            return PolicyEngineError(f"OPA at {self.url} answered HTTP {status}: {exc.response.text[:200]}")
        return PolicyEngineError(f"cannot reach OPA at {self.url}: {type(exc).__name__}")

    def load(self, files: list[PolicyFile]) -> list[Diagnostic]:
        policies = [f for f in files if not f.is_data]
        self._packages = sorted({m.group(1) for p in policies for m in [_PACKAGE.search(p.text)] if m})
        if not self.upload:
            return []
        merged, found = data_documents.load([f for f in files if f.is_data])
        if found:
            return found
        for policy in policies:
            version = rego_version(policy)
            try:
                self._client.update_policy_from_string(
                    as_uploaded(policy, version), POLICY_ID_PREFIX + policy.name, rego_compat=False
                )
            except RegoParseError as exc:
                found.extend(_compile_errors(exc, policy.name, version))
            except (requests.RequestException, ValueError) as exc:
                raise self._fail(exc) from None
        if not found:
            for key, value in merged.items():
                self._put_data(str(key), value)
        return found

    def _put_data(self, key: str, value: Any) -> None:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            response = requests.put(
                f"{self._client.root_url}/data/{quote(key, safe='')}",
                json=value,
                headers=headers,
                timeout=self._timeout,
            )
            response.raise_for_status()
        except requests.RequestException as exc:
            raise self._fail(exc) from None

    def queried(self) -> tuple[str, ...]:
        if self.namespaces == (ALL_NAMESPACES,):
            return top_packages(self._packages) if self.upload else ("",)
        return self.namespaces

    def evaluate(self, document: dict) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for namespace in self.queried():
            try:
                answer = self._client.query_rule(document, namespace)
            except (requests.RequestException, ValueError) as exc:
                raise self._fail(exc) from None
            value = answer.get("result")  # absent when undefined
            if value is None:
                continue
            if namespace == "" and isinstance(value, dict):  # every package of a preloaded server
                out.update({k: v for k, v in value.items() if k != "system"})
            else:
                out[namespace] = value
        return out


def _compile_errors(exc: RegoParseError, name: str, version: int = 1) -> list[Diagnostic]:
    out = []
    for error in exc.errors or [{"message": exc.message}]:
        location = error.get("location") or {}
        file = str(location.get("file") or name).removeprefix(POLICY_ID_PREFIX)
        message = str(error.get("message", exc.message))
        v0 = version == 0 and any(signal in message for signal in V0_SIGNALS)
        out.append(
            Diagnostic(
                "policy.load",
                f"policy error: {message}",
                V0_HINT if v0 else "fix the policy; until it loads, the policy check fails",
                Location(file, int(location.get("row") or 0), int(location.get("col") or 0)),
            )
        )
    return out
