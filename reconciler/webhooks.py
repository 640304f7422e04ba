"""GitHub webhook checks: the signature (HMAC-SHA256, constant time), the payload (JSON or
GitHub's form encoding) and what a push event asks for."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qs

FORM = "application/x-www-form-urlencoded"
MAX_DEPTH = 64  # GitHub's payloads nest a handful of levels; deeper is not a webhook
JSON_TYPES = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


class PayloadError(ValueError):
    """The body is not a webhook payload; the message says why."""


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """`X-Hub-Signature-256` matches the body (never true without a secret or a header)."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


def payload(body: bytes, content_type: str | None) -> dict:
    """The event as a JSON object: the body itself, or its `payload` field when GitHub sends
    the webhook form-encoded (`application/x-www-form-urlencoded`)."""
    raw: str | bytes = body
    if (content_type or "").split(";")[0].strip().lower() == FORM:
        try:
            fields = parse_qs(body.decode(), strict_parsing=True, max_num_fields=10)
        except ValueError:  # not UTF-8, not a form, or too many fields
            raise PayloadError("form-encoded body is not a form with a payload field") from None
        if len(fields.get("payload", [])) != 1:
            raise PayloadError("form-encoded body has no single payload field")
        raw = fields["payload"][0]
    try:
        event: Any = json.loads(raw)
    except RecursionError:
        raise PayloadError(f"payload is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        raise PayloadError("payload is not JSON") from None
    if not isinstance(event, dict):
        raise PayloadError(f"payload is a JSON {JSON_TYPES.get(type(event), 'value')}, not an object")
    if _depth(event) > MAX_DEPTH:
        raise PayloadError(f"payload is nested deeper than {MAX_DEPTH} levels")
    return event


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in `value` (without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                break
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def push_to(event: dict, branch: str) -> str | None:
    """Why a push is ignored, or None when it is a push to the watched branch."""
    ref = event.get("ref", "")
    if event.get("deleted"):
        return f"{ref} was deleted"
    if ref != f"refs/heads/{branch}":
        return f"{ref} is not the watched branch {branch}"
    return None
