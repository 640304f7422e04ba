"""GitHub webhook checks: the signature (HMAC-SHA256, constant time) and what an event asks for."""

from __future__ import annotations

import hashlib
import hmac


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """`X-Hub-Signature-256` matches the body (never true without a secret or a header)."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


def push_to(event: dict, branch: str) -> str | None:
    """Why a push is ignored, or None when it is a push to the watched branch."""
    ref = event.get("ref", "")
    if event.get("deleted"):
        return f"{ref} was deleted"
    if ref != f"refs/heads/{branch}":
        return f"{ref} is not the watched branch {branch}"
    return None
