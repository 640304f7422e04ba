"""Where policy files come from: the working tree, or a git ref (a PR's base branch).

A policies folder holds Rego files and data documents (`.json`, `.yaml`, `.yml`), which are
loaded as `data` the way conftest's `--data` loads them. Unit tests (`*_test.rego`) and test
data (`*_test.json`, `*_mock.json`, `*.mock.json`, …, or anything under a `testdata`, `tests`
or `mocks` folder) are loaded by `stackward policy test` only. Hidden files and folders
(`.regal/`, `.manifest`) are not read.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from stackward.diagnostics import display_path
from stackward.errors import UsageError


class PolicySourceError(UsageError):
    """Policies could not be read (missing folder, unknown git ref)."""


DATA_SUFFIXES = (".json", ".yaml", ".yml")
TEST_DATA_FOLDERS = frozenset({"testdata", "test-data", "test_data", "tests", "mocks", "mock", "fixtures"})
_TEST_DATA_STEMS = ("_test", ".test", "_mock", ".mock", "-mock", "_mocks")


@dataclass(frozen=True)
class PolicyFile:
    """One .rego file or data document: the name used in messages and its text."""

    name: str
    text: str
    relative: str = ""  # the path below the policies folder (test data is recognised by it)

    @property
    def is_data(self) -> bool:
        return self.name.endswith(DATA_SUFFIXES)

    @property
    def is_test(self) -> bool:
        """Unit tests and test data: loaded by `stackward policy test` only."""
        if not self.is_data:
            return self.name.endswith("_test.rego")
        path = PurePosixPath((self.relative or self.name).replace("\\", "/"))
        stem = path.name.rsplit(".", 1)[0]
        return stem.endswith(_TEST_DATA_STEMS) or any(p in TEST_DATA_FOLDERS for p in path.parts[:-1])


def _wanted(relative: PurePosixPath) -> bool:
    if any(part.startswith(".") for part in relative.parts):
        return False
    return relative.suffix == ".rego" or relative.name.endswith(DATA_SUFFIXES)


def from_folder(folder: Path) -> list[PolicyFile]:
    """Every .rego file and data document below `folder`, in name order."""
    if not folder.is_dir():
        raise PolicySourceError(f"{folder}: no such policies folder")
    out = []
    for path in sorted(folder.rglob("*")):
        relative = PurePosixPath(path.relative_to(folder).as_posix())
        if path.is_file() and _wanted(relative):
            text = path.read_text(encoding="utf-8", errors="replace")
            out.append(PolicyFile(display_path(path), text, str(relative)))
    return out


def run_git(repo: Path, *args: str) -> str:
    """git's output in `repo`; PolicySourceError with git's message when it fails."""
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise PolicySourceError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def from_git_ref(folder: Path, ref: str) -> list[PolicyFile]:
    """The .rego files and data documents of `folder` as they are at `ref` (the PR's base branch)."""
    top = Path(
        run_git(folder.parent if not folder.exists() else folder, "rev-parse", "--show-toplevel").strip()
    )
    relative = folder.resolve().relative_to(top.resolve()).as_posix()
    names = run_git(top, "ls-tree", "-r", "--name-only", ref, "--", relative).splitlines()
    out = []
    for name in sorted(names):
        below = PurePosixPath(name).relative_to(relative) if relative != "." else PurePosixPath(name)
        if _wanted(below):
            out.append(PolicyFile(name, run_git(top, "show", f"{ref}:{name}"), str(below)))
    return out


def changed_since(folder: Path, ref: str) -> list[str]:
    """Policy files that differ between `ref` and the working tree."""
    top = Path(run_git(folder, "rev-parse", "--show-toplevel").strip())
    relative = folder.resolve().relative_to(top.resolve()).as_posix()
    out = run_git(top, "diff", "--name-only", ref, "--", relative)
    untracked = run_git(top, "ls-files", "--others", "--exclude-standard", "--", relative)
    return sorted({*out.splitlines(), *untracked.splitlines()})
