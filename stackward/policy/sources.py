"""Where policy files come from: the working tree, or a git ref (a PR's base branch)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from stackward.diagnostics import display_path
from stackward.errors import UsageError


class PolicySourceError(UsageError):
    """Policies could not be read (missing folder, unknown git ref)."""


@dataclass(frozen=True)
class PolicyFile:
    """One .rego file: the name used in messages and its text."""

    name: str
    text: str

    @property
    def is_test(self) -> bool:
        return self.name.endswith("_test.rego")


def from_folder(folder: Path) -> list[PolicyFile]:
    """Every .rego file below `folder`, in name order."""
    if not folder.is_dir():
        raise PolicySourceError(f"{folder}: no such policies folder")
    return [
        PolicyFile(display_path(path), path.read_text(encoding="utf-8", errors="replace"))
        for path in sorted(folder.rglob("*.rego"))
    ]


def run_git(repo: Path, *args: str) -> str:
    """git's output in `repo`; PolicySourceError with git's message when it fails."""
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise PolicySourceError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def from_git_ref(folder: Path, ref: str) -> list[PolicyFile]:
    """The .rego files of `folder` as they are at `ref` (e.g. the PR's base branch)."""
    top = Path(
        run_git(folder.parent if not folder.exists() else folder, "rev-parse", "--show-toplevel").strip()
    )
    relative = folder.resolve().relative_to(top.resolve()).as_posix()
    names = run_git(top, "ls-tree", "-r", "--name-only", ref, "--", relative).splitlines()
    return [
        PolicyFile(name, run_git(top, "show", f"{ref}:{name}"))
        for name in sorted(names)
        if name.endswith(".rego")
    ]


def changed_since(folder: Path, ref: str) -> list[str]:
    """Policy files that differ between `ref` and the working tree."""
    top = Path(run_git(folder, "rev-parse", "--show-toplevel").strip())
    relative = folder.resolve().relative_to(top.resolve()).as_posix()
    out = run_git(top, "diff", "--name-only", ref, "--", relative)
    untracked = run_git(top, "ls-files", "--others", "--exclude-standard", "--", relative)
    return sorted({*out.splitlines(), *untracked.splitlines()})
