"""Finding the environments: which folders of an environments folder are environments
(`dev/`, `prod/`), which are shared (`_base/`, `_modules/`), and the repository holding them."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from stackward.errors import UsageError
from stackward.spec.model import Repo

SPEC_SUFFIXES = (".yaml", ".yml")
_ENVIRONMENT_DOC = re.compile(r"^kind:[ \t]*['\"]?Environment['\"]?[ \t]*(#.*)?$", re.MULTILINE)


def spec_files(folder: Path) -> list[Path]:
    """The spec files below `folder` (hidden folders skipped), in name order."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix in SPEC_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _is_environment_folder(folder: Path) -> bool:
    for path in folder.iterdir():
        small_spec = path.suffix in SPEC_SUFFIXES and path.is_file() and path.stat().st_size < 1024 * 1024
        if small_spec and _ENVIRONMENT_DOC.search(path.read_text(errors="replace")):
            return True
    return False


def _folders(path: Path) -> Iterator[Path]:
    """The folders directly in `path`, hidden ones skipped, typed from the directory listing
    (no stat per entry: the reconciler lists an environments folder once per environment)."""
    with os.scandir(path) as entries:
        for entry in entries:
            if not entry.name.startswith(".") and entry.is_dir():
                yield path / entry.name


def git_root(start: Path) -> Path:
    """The repository holding `start` (the folder with .git), else `start` itself."""
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start


def is_environment_name(folder: str) -> bool:
    """Whether a folder of the environments folder is an environment (`_base`, `_modules` and
    hidden folders are not)."""
    return not folder.startswith((".", "_"))


def discover(path: Path) -> tuple[Repo, str | None]:
    """Find the environments under `path`; a single environment folder selects that one."""
    if not path.exists():
        raise UsageError(f"{path}: no such folder; pass the path of your environments folder")
    if not path.is_dir():
        raise UsageError(f"{path}: not a folder; pass the environments folder (e.g. environments/)")
    path = path.resolve()
    selected = None
    root = path
    holds_environments = any(
        _is_environment_folder(child) for child in _folders(path) if is_environment_name(child.name)
    )
    if not holds_environments and _is_environment_folder(path):
        root, selected = path.parent, path.name
    children = sorted(_folders(root))
    environments = {p.name: p for p in children if is_environment_name(p.name)}
    shared = {p.name: p for p in children if p.name.startswith("_")}
    return Repo(root, git_root(root), environments, shared), selected
