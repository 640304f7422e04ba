"""Data documents beside the policies: `.json` and `.yaml` files loaded as `data`.

As conftest's `--data` does: each file's top level is an object merged into the root of
`data` (a file `{"allowed": {...}}` is read by a policy as `data.allowed`); objects under the
same key in several files are merged; two different values at the same place are an error
naming both files, never a silent pick.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from stackward.diagnostics import Diagnostic, Location
from stackward.policy.sources import PolicyFile

_HINT = "data documents are JSON or YAML objects, merged into `data` (as conftest's --data)"


def _jsonable(value: Any) -> Any:
    """YAML's own types (dates, timestamps) as the strings JSON would carry."""
    return json.loads(json.dumps(value, default=str))


def parse(document: PolicyFile) -> tuple[dict | None, Diagnostic | None]:
    """The document's top-level object, or a finding at the file (and line) that is wrong."""
    try:
        if document.name.endswith(".json"):
            value = json.loads(document.text)
        else:
            value = yaml.safe_load(document.text)
    except json.JSONDecodeError as exc:
        return None, Diagnostic(
            "policy.data",
            f"data document is not JSON: {exc.msg}",
            _HINT,
            Location(document.name, exc.lineno, exc.colno),
        )
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = Location(document.name, mark.line + 1, mark.column + 1) if mark else Location(document.name)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, Diagnostic("policy.data", f"data document is not YAML: {problem}", _HINT, where)
    if value is None:
        return {}, None
    if not isinstance(value, dict):
        return None, Diagnostic(
            "policy.data",
            f"data document is a {type(value).__name__}, not an object: its top level is merged into `data`",
            _HINT,
            Location(document.name, 1, 1),
        )
    return _jsonable(value), None


def _merge(into: dict, value: dict, owners: dict, name: str, path: tuple[str, ...]) -> list[str]:
    conflicts = []
    for key, item in value.items():
        where = (*path, str(key))
        if key not in into:
            into[key] = item
            owners[where] = name
        elif isinstance(into[key], dict) and isinstance(item, dict):
            conflicts += _merge(into[key], item, owners, name, where)
        elif into[key] != item:
            first = next((owners[p] for p in _prefixes(where) if p in owners), "another document")
            conflicts.append(f"data.{'.'.join(where)} is set by {first} and by {name}")
    return conflicts


def _prefixes(path: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [path[:i] for i in range(len(path), 0, -1)]


def load(documents: list[PolicyFile]) -> tuple[dict, list[Diagnostic]]:
    """The merged `data` of `documents` (in name order) and the findings on those that are wrong."""
    merged: dict = {}
    owners: dict[tuple[str, ...], str] = {}
    found = []
    for document in sorted(documents, key=lambda d: d.name):
        value, problem = parse(document)
        if problem is not None:
            found.append(problem)
            continue
        for conflict in _merge(merged, value or {}, owners, document.name, ()):
            found.append(
                Diagnostic(
                    "policy.data",
                    f"conflicting data: {conflict}",
                    "give each value one place: two documents cannot set the same key to different values",
                    Location(document.name, 1, 1),
                )
            )
    return merged, found
