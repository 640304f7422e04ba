"""Shared fixtures: a ZenML catalog built once per session, repos on disk, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from stackward.cli import main
from stackward.settings import Settings
from stackward.zenml.catalog import load_catalog

EXAMPLES = Path(__file__).resolve().parent.parent / "environments"


@pytest.fixture(scope="session", autouse=True)
def catalog(tmp_path_factory: pytest.TempPathFactory):
    """The catalog of the installed zenml, built from scratch into a private cache."""
    os.environ["STACKWARD_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    load_catalog.cache_clear()
    return load_catalog(Settings.load().cache_dir)


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A private copy of the example environments folder."""
    target = tmp_path / "environments"
    shutil.copytree(EXAMPLES, target)
    return target


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


@dataclass
class Result:
    exit_code: int
    output: str

    @property
    def json(self) -> dict:
        return json.loads(self.output)

    def findings(self, code: str | None = None) -> list[dict]:
        return [d for d in self.json["diagnostics"] if code is None or d["code"] == code]


def run(*args: str) -> Result:
    """Run the stackward CLI in-process, as a user would from a shell."""
    result = CliRunner().invoke(main, list(args))
    output = result.output  # stdout and stderr as the user sees them
    assert "Traceback" not in output
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, output)


def validate_json(path: Path, *args: str) -> Result:
    result = CliRunner().invoke(main, ["validate", str(path), "--format", "json", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout)


@pytest.fixture(scope="session")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh embedded ZenML store, made once per session; tests copy it (seconds saved each)."""
    from zenml_tools import make_store

    return make_store(tmp_path_factory.mktemp("zenml-template"))


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` as a test author; its output."""
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def local_repo(
    root: Path, store_template: Path, *, name: str = "repo", files: dict[str, str] | None = None
) -> tuple[Path, Path]:
    """A git repository (branch master) holding the offline `local` environment, the default
    policies (plus `files`), and a state folder with a fresh ZenML store for it: (repository,
    state folder)."""
    from zenml_tools import copy_store

    repo = root / name
    shutil.copytree(EXAMPLES / "local", repo / "environments" / "local")
    shutil.copytree(EXAMPLES / "_modules", repo / "environments" / "_modules")
    shutil.copytree(EXAMPLES.parent / "policies", repo / "policies")
    (repo / ".gitignore").write_text(".stackward/\n")
    write(repo, files or {})
    git(root, "init", "-q", "-b", "master", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "environments")
    state = root / "state"
    copy_store(store_template, state, "local")
    return repo, state


@pytest.fixture(scope="session")
def zenml_server():
    """A real ZenML server for the session (see tests/zenml_server.py): (its URL, an API key).
    It runs without the kubernetes package, so it lacks ZenML's kubernetes connector type and
    keeps that type's secrets in plain configuration, as any server lacking a type's libraries."""
    from zenml_server import serve_zenml

    with serve_zenml(without=("kubernetes",)) as server:
        yield server
