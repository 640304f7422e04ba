"""The one result model every check produces and every output format renders."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

JsonPath = tuple[str | int, ...]


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTICE = "notice"


@dataclass(frozen=True, order=True)
class Location:
    """A place in a spec file; line and column are 1-based."""

    file: str
    line: int = 0
    column: int = 0


def display_path(path: Path) -> str:
    """Path as users should see it: relative to the working directory when inside it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return str(path) if rel.startswith("..") else rel


def format_json_path(path: JsonPath) -> str:
    """Render ('spec', 'components', 0) as $.spec.components[0]."""
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


@dataclass(frozen=True)
class Diagnostic:
    """One finding: what is wrong, where, and what to do about it."""

    code: str
    message: str
    hint: str = ""
    location: Location | None = None
    path: JsonPath = ()
    severity: Severity = Severity.ERROR
    environments: tuple[str, ...] = field(default=())

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def key(self) -> tuple:
        """Identity used to report a finding once when several environments share it."""
        return (self.code, self.message, self.location, self.path, self.severity)

    def for_environment(self, name: str | None) -> Diagnostic:
        if name is None or name in self.environments:
            return self
        return replace(self, environments=(*self.environments, name))

    def sort_key(self) -> tuple:
        loc = self.location or Location("")
        return (loc.file, loc.line, loc.column, self.code, self.message)

    def to_dict(self) -> dict:
        loc = self.location
        return {
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
            "file": loc.file if loc else None,
            "line": loc.line or None if loc else None,
            "column": loc.column or None if loc else None,
            "path": format_json_path(self.path) if self.path else None,
            "environments": list(self.environments),
        }


def merge_diagnostics(items: list[Diagnostic]) -> list[Diagnostic]:
    """Collapse findings reported by several environments into one, sorted by place."""
    merged: dict[tuple, Diagnostic] = {}
    for diag in items:
        key = diag.key()
        if key in merged:
            for env in diag.environments:
                merged[key] = merged[key].for_environment(env)
        else:
            merged[key] = diag
    return sorted(merged.values(), key=Diagnostic.sort_key)
