"""Planning many environments in one run: at once (`plan_concurrency`), with one ZenML process
reading every embedded store, and each environment's failure kept with it. Real Terraform and
real embedded ZenML stores; the ZenML workers' starts are observed, not replaced."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from conftest import EXAMPLES
from zenml_tools import copy_store

from stackward.pipeline import Pipeline
from stackward.settings import Settings
from stackward.zenml import forkserver

NAMES = ("alpha", "beta", "gamma")


@pytest.fixture
def many(tmp_path: Path, store_template: Path) -> tuple[Path, Path]:
    """Three copies of the offline `local` environment, each with a store that exists, and
    `broken`, whose Terraform module fails at plan time: (environments folder, state folder)."""
    root, state = tmp_path / "environments", tmp_path / "state"
    shutil.copytree(EXAMPLES / "_modules", root / "_modules")
    for name in (*NAMES, "broken"):
        shutil.copytree(EXAMPLES / "local", root / name)
        spec = root / name / "environment.yaml"
        spec.write_text(spec.read_text().replace("name: local", f"name: {name}"))
    for name in NAMES:
        copy_store(store_template, state, name)
    module = root / "_modules" / "broken"
    module.mkdir()
    (module / "main.tf").write_text(
        'variable "environment" {}\nvariable "artifact_root" {}\n'
        'resource "terraform_data" "r" {\n  input = file("${path.module}/missing.txt")\n}\n'
        'output "artifact_path" {\n  value = "/nowhere"\n}\n'
    )
    infra = root / "broken" / "infrastructure.yaml"
    infra.write_text(infra.read_text().replace("../_modules/local-base", "../_modules/broken"))
    return root, state


def test_environments_plan_at_once_and_one_zenml_process_reads_every_store(
    many: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
):
    root, state = many
    started: list[list[str]] = []
    real_start = forkserver.start

    def observed(args: list[str], environment: dict[str, str]) -> forkserver.ForkedProcess:
        started.append(args)  # the real worker, its arguments noted
        return real_start(args, environment)

    monkeypatch.setattr(forkserver, "start", observed)
    threads: dict[str, set[str]] = {}

    def progress(message: str) -> None:
        env = message.split(":", 1)[0]
        threads.setdefault(env, set()).add(threading.current_thread().name)

    settings = Settings(path=root, state_dir=state, policy_gate=False, plan_concurrency=4)
    pipeline = Pipeline(settings, progress=progress)
    report = pipeline.checked()
    outcome = pipeline.plan(report, report.environments)

    assert list(outcome.planned) == ["alpha", "beta", "broken", "gamma"]  # the order is kept
    for name in NAMES:
        plan = outcome.planned[name].plan
        assert not plan.error, plan.error
        assert {c.address for c in plan.changes} >= {
            "zenml.StackComponent.local-orchestrator",
            "zenml.Stack.local-stack",
            "module.base.terraform_data.artifact_store",
        }
    broken = outcome.planned["broken"].plan
    assert broken.error and "broken" in broken.error and "missing.txt" in broken.error
    assert not broken.changes

    assert started == [["--reader"]]  # one ZenML worker, for every store
    assert len(set().union(*threads.values())) >= 2  # planned on more than one thread
    assert all(name.startswith("stackward-plan") for name in set().union(*threads.values()))


def test_one_at_a_time_gives_the_same_plans(many: tuple[Path, Path]):
    root, state = many
    plans = {}
    for concurrency in (1, 4):
        settings = Settings(path=root, state_dir=state, policy_gate=False, plan_concurrency=concurrency)
        pipeline = Pipeline(settings)
        report = pipeline.checked()
        outcome = pipeline.plan(report, report.environments)
        plans[concurrency] = {n: (p.plan.digest(), p.plan.error) for n, p in outcome.planned.items()}
    assert plans[1] == plans[4]
