"""Finding the environments: which folders of an environments folder are environments
(`dev/`, `prod/`), which are shared (`_base/`, `_modules/`), and the repository holding them."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Mapping
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


_listed: dict[str, tuple[tuple[int, int, int], list[str]]] = {}  # folder -> (its stat, folder names)
SETTLED_NS = 2_000_000_000  # a folder changed this recently may change again within its mtime's tick


def _folder_names(path: Path) -> list[str]:
    """The folders directly in `path`, hidden ones skipped, in name order; typed from the
    directory listing, without a stat per entry. A listing is kept while the folder's
    modification time (which every added, removed or renamed entry changes) stays the same and
    is older than SETTLED_NS, as git does for its index: the reconciler lists an environments
    folder once per environment it validates."""
    stat = os.stat(path)
    key = (stat.st_dev, stat.st_ino, stat.st_mtime_ns)
    kept = _listed.get(str(path))
    if kept is not None and kept[0] == key:
        return kept[1]
    with os.scandir(path) as entries:
        names = sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())
    if time.time_ns() - stat.st_mtime_ns > SETTLED_NS:
        if len(_listed) >= 64:
            _listed.clear()
        _listed[str(path)] = (key, names)
    return names


class Folders(Mapping[str, Path]):
    """Folders of `root` by name, in name order, each Path made when it is asked for: the
    reconciler validates one environment at a time out of possibly thousands."""

    def __init__(self, root: Path, names: list[str]):
        self._root = root
        self._names = names
        self._known = frozenset(names)

    def __getitem__(self, name: str) -> Path:
        if name not in self._known:
            raise KeyError(name)
        return self._root / name

    def __contains__(self, name: object) -> bool:
        return name in self._known

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"Folders({self._root}, {self._names})"


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
    names = _folder_names(path)
    holds_environments = any(_is_environment_folder(path / n) for n in names if is_environment_name(n))
    if not holds_environments and _is_environment_folder(path):
        root, selected = path.parent, path.name
        names = _folder_names(root)
    environments = Folders(root, [n for n in names if is_environment_name(n)])
    shared = Folders(root, [n for n in names if n.startswith("_")])
    return Repo(root, git_root(root), environments, shared), selected
