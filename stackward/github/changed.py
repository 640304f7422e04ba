"""Which environments a set of changed files touches.

An environment's own folder touches it; a shared folder it inherits (`_base`) touches it; a
Terraform module one of its Infrastructure documents uses touches it; a policy file touches
every environment (policies judge them all).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from stackward.checks.references import local_module_folder
from stackward.errors import UsageError
from stackward.spec.discover import is_environment_name
from stackward.spec.model import Environment, Repo


class GitError(UsageError):
    """Git could not answer (a commit missing from a shallow clone, not a repository)."""


def changed_files(repo_root: Path, base: str, head: str) -> list[str]:
    """Files that differ between the merge base of `base` and `head`, and `head`."""
    proc = subprocess.run(
        ["git", "-C", str(repo_root), "diff", "--name-only", f"{base}...{head}"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise GitError(
            f"git diff {base[:7]}...{head[:7]} failed: {proc.stderr.strip()}; check out the repository "
            "with its history (actions/checkout with fetch-depth: 0)"
        )
    return [line for line in proc.stdout.splitlines() if line]


def _module_folders(env: Environment) -> list[Path]:
    folders = (local_module_folder(m) for m in env.of_kind("Infrastructure").values())
    return [folder for folder in folders if folder is not None]


def _top_folder(repo: Repo, path: Path) -> str | None:
    """The folder of the environments folder that `path` is in (None: outside it)."""
    if not path.is_relative_to(repo.root) or path == repo.root:
        return None
    return path.relative_to(repo.root).parts[0]


def files_touching(repo: Repo, env: Environment, files: list[str], policies: Path | None = None) -> list[str]:
    """The changed `files` (relative to the repository root) that touch `env`."""
    policy_folder = (policies or repo.repo_root / "policies").resolve()
    modules = _module_folders(env)
    out = []
    for name in files:
        path = (repo.repo_root / name).resolve()
        top = _top_folder(repo, path)
        if (
            path.is_relative_to(policy_folder)
            or top == env.name
            or (top is not None and top not in repo.environments and top in env.bases)
            or any(path.is_relative_to(folder) for folder in modules)
        ):
            out.append(name)
    return out


def touched_environments(
    repo: Repo, environments: list[Environment], files: list[str], policies: Path | None = None
) -> list[str]:
    """Names of the environments the changed `files` (relative to the repository root) touch."""
    touched = {env.name for env in environments if files_touching(repo, env, files, policies)}
    tops = {_top_folder(repo, (repo.repo_root / name).resolve()) for name in files}
    touched |= {top for top in tops if top in repo.environments}  # also one that does not validate
    return sorted(touched)


def removed_environments(repo: Repo, files: list[str]) -> list[str]:
    """Environments whose whole folder the changed `files` delete."""
    tops = {_top_folder(repo, (repo.repo_root / name).resolve()) for name in files}
    return sorted(top for top in tops if top and is_environment_name(top) and not (repo.root / top).exists())
