"""A plan without Terraform changes skips `terraform show -json` (issue 15, 5b), unless the
policy gate may read the JSON plan; inits that share a plugin cache take turns. The real
terraform binary runs, its commands logged."""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import threading
import time
from pathlib import Path

import pytest
from conftest import EXAMPLES, run
from zenml_tools import copy_store


@pytest.fixture
def repo(tmp_path: Path, store_template: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "environments"
    shutil.copytree(EXAMPLES / "local", root / "local")
    shutil.copytree(EXAMPLES / "_modules", root / "_modules")
    shutil.copytree(EXAMPLES.parent / "policies", tmp_path / "policies")
    monkeypatch.setenv("STACKWARD_POLICIES", str(tmp_path / "policies"))
    copy_store(store_template, tmp_path / "state", "local")
    # terraform itself, with each command it is asked to run written to a log
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "terraform"
    wrapper.write_text(
        f'#!/bin/sh\necho "$1" >> {tmp_path / "terraform.log"}\nexec {shutil.which("terraform")} "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return root


def stackward(repo: Path, *args: str):
    return run(*args[:1], str(repo), *args[1:], "--state-dir", str(repo.parent / "state"))


def commands(repo: Path) -> list[str]:
    log = repo.parent / "terraform.log"
    ran = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return ran


def test_a_plan_without_changes_runs_no_terraform_show(repo: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STACKWARD_POLICY_GATE", "false")
    first = stackward(repo, "plan", "--env", "local")
    assert first.exit_code in (0, 2), first.output
    assert "show" in commands(repo)  # changes: rendered as before
    assert stackward(repo, "apply", "--env", "local").exit_code == 0
    commands(repo)
    again = stackward(repo, "plan", "--env", "local")
    assert again.exit_code == 0, again.output
    ran = commands(repo)
    assert "plan" in ran and "show" not in ran, ran
    assert "output" in ran  # the registrations still get Terraform's outputs
    assert "no changes" in again.output.lower() or "+0 ~0 -0" in again.output, again.output


def test_the_policy_gate_keeps_the_json_plan_when_nothing_changes(repo: Path):
    assert stackward(repo, "apply", "--env", "local").exit_code == 0
    commands(repo)
    again = stackward(repo, "plan", "--env", "local")
    assert again.exit_code == 0, again.output
    assert "show" in commands(repo)  # input.terraform_plan is there for the policies, as before


def test_an_init_waits_its_turn_at_a_shared_plugin_cache(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Terraform's plugin cache is not safe for concurrent inits: an init waits while another
    stackward process (here, the test) holds the cache, and runs once it is released."""
    cache = tmp_path / "plugin-cache"
    cache.mkdir()
    monkeypatch.setenv("TF_PLUGIN_CACHE_DIR", str(cache))
    results = []
    with open(cache / ".stackward-init.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        planning = threading.Thread(target=lambda: results.append(stackward(repo, "plan", "--env", "local")))
        planning.start()
        deadline = time.monotonic() + 120
        while not list((tmp_path / "state").rglob("main.tf.json")):  # rendered: init is next
            assert time.monotonic() < deadline and planning.is_alive(), results
            time.sleep(0.1)
        time.sleep(1)
        assert "init" not in commands(repo)  # waiting for the cache
    planning.join(120)
    assert results and results[0].exit_code in (0, 2), results and results[0].output
    assert "init" in commands(repo)
