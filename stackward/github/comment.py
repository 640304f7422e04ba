"""stackward's pull-request comment: a hidden marker that renders and parses back.

The marker (`<!-- stackward {json} -->`, first in the body) is how the comment is found again
and how a merge knows what was reviewed: the head SHA the plan was computed for and each
environment's plan hash.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace

MARKER = "<!-- stackward "
_MARKER = re.compile(r"\s*<!-- stackward (\{.*?\}) -->", re.DOTALL)  # at the start of the body only
_UNSAFE_IN_COMMENT = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


@dataclass(frozen=True)
class CommentState:
    """What a plan comment stands for."""

    head_sha: str
    plans: dict[str, str] = field(default_factory=dict)  # environment -> plan hash
    closed: bool = False
    truncated: bool = False
    planned: bool = True  # False for fork PRs: checked, not planned

    def render(self, body: str) -> str:
        """`body` under the marker; JSON escapes `<`, `>` and `&`, so no name ends the HTML comment."""
        payload = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return f"{MARKER}{payload.translate(_UNSAFE_IN_COMMENT)} -->\n{body}"

    def closing(self) -> CommentState:
        return replace(self, closed=True)


def parse(text: str) -> CommentState | None:
    """The state in a comment body, or None when it is not stackward's. The marker must open the
    body: one quoted or pasted further down does not count."""
    match = _MARKER.match(text or "")
    if match is None:
        return None
    try:
        data = json.loads(match.group(1))
        return CommentState(
            head_sha=str(data["head_sha"]),
            plans={str(k): str(v) for k, v in (data.get("plans") or {}).items()},
            closed=bool(data.get("closed", False)),
            truncated=bool(data.get("truncated", False)),
            planned=bool(data.get("planned", True)),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
