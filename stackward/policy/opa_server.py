"""Policies evaluated by a running OPA server, through opa-python-client.

Either stackward uploads the policy files (PUT /v1/policies/<id>), or the server already
has them (a bundle) and stackward only queries: POST /v1/data/<namespace> with the input.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import requests
from opa_client import OpaClient
from opa_client.errors import RegoParseError

from stackward.diagnostics import Diagnostic, Location
from stackward.policy.engine import DEFAULT_NAMESPACE, PolicyEngineError
from stackward.policy.sources import PolicyFile

POLICY_ID_PREFIX = "stackward/"


class OpaServerEngine:
    """An OPA server at `url`; `token` is sent as a bearer token."""

    name = "opa-server"

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        upload: bool = True,
        timeout: float = 10.0,
    ):
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise PolicyEngineError(f"OPA URL {url!r} must look like http://host:8181")
        self.url = url
        self.namespace = namespace
        self.upload = upload
        self._client = OpaClient(
            host=parsed.hostname,
            port=parsed.port or (443 if parsed.scheme == "https" else 8181),
            ssl=parsed.scheme == "https",
            token=token,
            timeout=timeout,
        )

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
        if not self.upload:
            return []
        found = []
        for policy in files:
            try:
                self._client.update_policy_from_string(
                    policy.text, POLICY_ID_PREFIX + policy.name, rego_compat=False
                )
            except RegoParseError as exc:
                found.extend(_compile_errors(exc, policy.name))
            except (requests.RequestException, ValueError) as exc:
                raise self._fail(exc) from None
        return found

    def evaluate(self, document: dict) -> Any:
        try:
            answer = self._client.query_rule(document, self.namespace)
        except (requests.RequestException, ValueError) as exc:
            raise self._fail(exc) from None
        return answer.get("result")  # {} when undefined


def _compile_errors(exc: RegoParseError, name: str) -> list[Diagnostic]:
    out = []
    for error in exc.errors or [{"message": exc.message}]:
        location = error.get("location") or {}
        file = str(location.get("file") or name).removeprefix(POLICY_ID_PREFIX)
        out.append(
            Diagnostic(
                "policy.load",
                f"policy error: {error.get('message', exc.message)}",
                "fix the policy; until it loads, the policy check fails",
                Location(file, int(location.get("row") or 0), int(location.get("col") or 0)),
            )
        )
    return out
