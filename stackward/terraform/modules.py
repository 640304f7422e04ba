"""What stackward knows about a Terraform module source before running Terraform."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

_BLOCK = re.compile(r'^[ \t]*(variable|output)[ \t]+"([^"\n]+)"', re.MULTILINE)
MAX_MODULE_FILE_BYTES = 1024 * 1024
_REGISTRY = re.compile(r"^([a-z0-9.-]+/)?[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+(//.*)?$")
_GIT_PREFIXES = ("git::", "github.com/", "bitbucket.org/", "git@")
_REMOTE_GIT = tuple(
    f"git::{remote}"
    for remote in ("https://", "http://", "ssh://", "git://", "git@", "github.com/", "bitbucket.org/")
)


class SourceKind(StrEnum):
    LOCAL = "local"
    GIT = "git"
    REGISTRY = "registry"
    OTHER = "other"


def classify(source: str) -> SourceKind:
    """Which of Terraform's module source forms `source` is."""
    if source.startswith(("./", "../")):
        return SourceKind.LOCAL
    if source.startswith(_GIT_PREFIXES):
        return SourceKind.GIT
    if _REGISTRY.match(source):
        return SourceKind.REGISTRY
    return SourceKind.OTHER


def refusal(source: str) -> str | None:
    """Why stackward never runs a module from `source` (a path or URL on this machine, or a form
    that cannot be pinned), or None for a local path, a git repository elsewhere, or the registry."""
    kind = classify(source)
    if kind is SourceKind.GIT and source.startswith("git::") and not source.startswith(_REMOTE_GIT):
        return "it is a git repository on this machine, outside the repository"
    if kind is not SourceKind.OTHER:
        return None
    if source.startswith(("/", "~", "file:")):
        return "it reads a module from this machine, outside the repository"
    if source.startswith(("http://", "https://")):
        return "an archive at a URL cannot be pinned to a version"
    return "it is neither a local path inside the repository nor a pinned remote source"


def is_pinned(source: str, version: str | None) -> bool:
    """A remote source is pinned by a git ref or, for the registry, an exact version."""
    kind = classify(source)
    if kind is SourceKind.GIT:
        return bool(re.search(r"[?&]ref=[^&]+", source))
    if kind is SourceKind.REGISTRY:
        return bool(version) and bool(re.fullmatch(r"=?\s*v?\d+\.\d+\.\d+\S*", version or ""))
    return kind is SourceKind.LOCAL


@dataclass(frozen=True)
class ModuleInterface:
    """The variables and outputs a local module declares."""

    variables: frozenset[str]
    outputs: frozenset[str]


def read_interface(folder: Path) -> ModuleInterface:
    """Scan a local module's .tf and .tf.json files for variable and output blocks."""
    variables: set[str] = set()
    outputs: set[str] = set()
    for path in sorted(folder.glob("*.tf")):
        if path.stat().st_size > MAX_MODULE_FILE_BYTES:
            continue
        for block, name in _BLOCK.findall(path.read_text(errors="replace")):
            (variables if block == "variable" else outputs).add(name)
    for path in sorted(folder.glob("*.tf.json")):
        if path.stat().st_size > MAX_MODULE_FILE_BYTES:
            continue
        try:
            data = json.loads(path.read_text())
        except (ValueError, OSError):
            continue
        if isinstance(data, dict):
            variables.update(data.get("variable", {}) or {})
            outputs.update(data.get("output", {}) or {})
    return ModuleInterface(frozenset(variables), frozenset(outputs))


def has_terraform_files(folder: Path) -> bool:
    return any(folder.glob("*.tf")) or any(folder.glob("*.tf.json"))
