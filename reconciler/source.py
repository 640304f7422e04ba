"""The reconciler's source phase: the environments folder at the head of the watched branch."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from reconciler.config import ServiceSettings
from stackward.errors import StackwardError


class SourceError(StackwardError):
    """The environments repo could not be brought up to date."""


GIT_TIMEOUT = 300.0  # seconds: a remote that stops answering fails the pass instead of holding it


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git; its output, or SourceError with the command and what went wrong."""
    command = " ".join(a for a in args[:2] if not a.startswith("-"))
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise SourceError(
            f"git {command} did not finish within {GIT_TIMEOUT:.0f} s: check that the remote answers"
        ) from None
    if proc.returncode != 0:
        raise SourceError(f"git {command} failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip()


class Source:
    """The environments folder: a clone kept at the branch head, or a plain path."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.fetch_failed = False  # the last clone or fetch failed (its error is in the status)

    @property
    def clone(self) -> Path:
        assert self.settings.clone_dir is not None
        return self.settings.clone_dir

    @property
    def folder(self) -> Path:
        return self.clone / self.settings.path if self.settings.remote else self.settings.path

    @property
    def cloned(self) -> bool:
        return (self.clone / ".git").exists()

    def problem(self) -> str:
        """Why the source is not ready, or "" (for /readyz: says nothing of the remote's URL)."""
        if self.settings.remote and not self.cloned:
            return "the environments repository is not cloned yet"
        if self.fetch_failed:
            return f"the last fetch of branch {self.settings.branch} failed"
        if not self.folder.is_dir():
            return "the environments folder does not exist"
        return ""

    def _clone(self) -> None:
        """Clone into a folder beside the clone, then move it into place: a clone stopped half
        way (a timeout, a crash) never looks like a clone to the next pass."""
        partial = self.clone.with_name(f"{self.clone.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        s = self.settings
        git("clone", "--quiet", "--branch", s.branch, s.remote, str(partial))
        partial.rename(self.clone)

    def sync(self) -> tuple[Path, str]:
        """(environments folder, revision) at the head of the watched branch."""
        s = self.settings
        if s.remote:
            try:
                if not self.cloned:
                    self._clone()
                else:
                    git("fetch", "--quiet", "origin", s.branch, cwd=self.clone)
                    git("reset", "--quiet", "--hard", f"origin/{s.branch}", cwd=self.clone)
                revision = git("rev-parse", "HEAD", cwd=self.clone)
            except SourceError:
                self.fetch_failed = True
                raise
            self.fetch_failed = False
            return self.folder, revision
        try:
            revision = git("rev-parse", "HEAD", cwd=s.path if s.path.is_dir() else None)
        except SourceError:
            revision = ""
        return s.path, revision
