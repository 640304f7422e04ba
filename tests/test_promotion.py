"""Per-environment state that outlives the run: the promotion gate (an environment applies a
revision only after the one it is promoted from has), `stackward history`, the refusal to
apply on an ephemeral runner without durable state, and the reconciler honouring what the
Action applied. Real git repositories, real ZenML stores and Terraform."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from action_world import BUILDER, world_fixture  # noqa: F401  (the `world` fixture)
from conftest import EXAMPLES, git, run, write
from zenml_tools import copy_store, zenml_run, zenml_state

from reconciler.config import ServiceSettings
from reconciler.metrics import Metrics
from reconciler.service import Reconciler
from reconciler.status import Reason, Type
from reconciler.store import Store
from stackward.state.ledger import Ledger
from stackward.state.local import LocalStore


def environment(name: str, after: str | None = None) -> dict[str, str]:
    """The offline `local` example as environment `name`, promoted after `after`."""
    files = {}
    for path in (EXAMPLES / "local").iterdir():
        text = path.read_text().replace("local-", f"{name}-")  # names carry their environment
        text = text.replace(f"_modules/{name}-base", "_modules/local-base")
        text = text.replace("environment: local", f"environment: {name}")
        if path.name == "environment.yaml":
            text = text.replace("  name: local\n", f"  name: {name}\n")
            if after:
                text = text.replace("spec:\n", f"spec:\n  promotion:\n    after: {after}\n", 1)
        files[f"environments/{name}/{path.name}"] = text
    return files


@pytest.fixture
def repo(tmp_path: Path, store_template: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository with `dev` and `local` (promoted after dev: both may use the local
    flavors the default policies allow only there), the default policies,
    and a state folder with a fresh ZenML store for each."""
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "_modules", root / "environments" / "_modules")
    shutil.copytree(EXAMPLES.parent / "policies", root / "policies")
    write(root, {**environment("dev"), **environment("local", after="dev"), ".gitignore": ".stackward/\n"})
    git(tmp_path, "init", "-q", "-b", "main", str(root))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "dev and local")
    for name in ("dev", "local"):
        copy_store(store_template, tmp_path / "state", name)
    monkeypatch.chdir(root)
    return root


def apply(repo: Path, env: str, *args: str):
    return run(
        "apply", str(repo / "environments"), "--env", env, "--state-dir", str(repo.parent / "state"), *args
    )


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD")


def test_an_environment_applies_a_revision_only_after_the_one_it_is_promoted_from(repo: Path):
    state = repo.parent / "state"
    first = head(repo)
    refused = apply(repo, "local")
    assert refused.exit_code == 1
    assert f"local: it is promoted after dev, which has not applied {first[:12]}" in refused.output
    assert "dev has applied nothing yet" in refused.output and "apply dev first" in refused.output
    assert "local-stack" not in zenml_state(state, "local")["stacks"]  # nothing applied
    assert apply(repo, "dev").exit_code == 0
    assert apply(repo, "local").exit_code == 0
    assert "local-stack" in zenml_state(state, "local")["stacks"]

    # A new revision reaches local only after dev applied it.
    write(
        repo,
        {
            f"environments/{name}/builder.yaml": BUILDER.replace("local-builder", f"{name}-builder")
            for name in ("dev", "local")
        },
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a builder everywhere")
    second = head(repo)
    refused = apply(repo, "local")
    assert refused.exit_code == 1
    assert f"which has not applied {second[:12]} (dev is at {first[:12]}" in refused.output
    assert "local-builder" not in zenml_state(state, "local")["components"]

    # The override goes through, and the ledger says who used it.
    forced = apply(repo, "local", "--skip-promotion-gate")
    assert forced.exit_code == 0, forced.output
    assert "local-builder" in zenml_state(state, "local")["components"]
    (skipped,) = [
        e for e in Ledger(LocalStore(state), "local").entries() if e["event"] == "promotion-gate-skipped"
    ]
    assert skipped["revision"] == second and skipped["promoted_after"] == "dev" and skipped["by"]


def test_a_promotion_loop_is_refused_at_apply(repo: Path):
    dev = repo / "environments/dev/environment.yaml"
    dev.write_text(dev.read_text().replace("spec:\n", "spec:\n  promotion:\n    after: local\n", 1))
    git(repo, "commit", "-qam", "a loop")
    refused = apply(repo, "local")
    assert refused.exit_code == 1
    assert "the promotion order loops (local -> dev -> local)" in refused.output
    assert "local-stack" not in zenml_state(repo.parent / "state", "local")["stacks"]


def test_history_shows_who_applied_which_revision(repo: Path):
    assert apply(repo, "dev").exit_code == 0
    shown = run("history", "dev", str(repo / "environments"), "--state-dir", str(repo.parent / "state"))
    assert shown.exit_code == 0, shown.output
    line = shown.output.strip().splitlines()[-1]
    assert head(repo)[:12] in line and "success" in line and "stackward (CLI)" in line
    data = json.loads(
        run(
            "history",
            "dev",
            str(repo / "environments"),
            "--state-dir",
            str(repo.parent / "state"),
            "--format",
            "json",
        ).output
    )
    assert [(a["revision"], a["result"]) for a in data] == [(head(repo), "success")]


def test_an_ephemeral_runner_refuses_to_apply_state_it_would_lose(world, monkeypatch: pytest.MonkeyPatch):
    head_sha = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    assert world.pull_request("opened", world.base, head_sha).exit_code == 0
    merge, push = world.merge(head_sha)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")  # a GitHub-hosted runner: its files vanish with the job
    monkeypatch.setenv("RUNNER_ENVIRONMENT", "github-hosted")
    refused = world.deliver("push", push, merge)
    assert refused.exit_code == 1
    report = world.github.comments[2][-1]["body"]
    assert "| **local** | ❌ failed |" in report and "vanish when the job ends" in report
    assert "local-stack" not in zenml_state(world.state, "local")["stacks"]
    monkeypatch.setenv("STACKWARD_ALLOW_EPHEMERAL_STATE", "true")  # a demo, said explicitly
    assert world.deliver("push", push, merge).exit_code == 0
    assert "local-stack" in zenml_state(world.state, "local")["stacks"]


LABEL_EDIT = """
from zenml.client import Client
from zenml.enums import StackComponentType as T
Client().update_stack_component("local-orchestrator", T.ORCHESTRATOR, labels={"team": "someone-else"})
"""


def test_the_reconciler_honours_what_the_action_applied(world, tmp_path: Path):
    head_sha = world.commit({"environments/local/builder.yaml": BUILDER}, "add a builder")
    assert world.pull_request("opened", world.base, head_sha).exit_code == 0
    merge, push = world.merge(head_sha)
    assert world.deliver("push", push, merge).exit_code == 0
    settings = ServiceSettings(path=world.repo / "environments", branch="master", state_dir=world.state)
    reconciler = Reconciler(settings, Store(f"sqlite:///{tmp_path / 'reconciler.db'}"), Metrics())
    try:
        status = reconciler.run_pass("local")  # the merge the Action applied: nothing to do
        assert status.condition(Type.READY).reason is Reason.UP_TO_DATE, status.to_dict()
        (applied,) = reconciler.history("local")
        assert applied["result"] == "applied"
        assert (
            applied["by"]
            == "stackward (GitHub Action, https://github.com/Codertocat/Hello-World/actions/runs/42)"
        )
        assert applied["revision"] == merge
        zenml_run(world.state, "local", LABEL_EDIT)  # then someone edits the live stack by hand
        status = reconciler.run_pass("local")
        # drift from what the Action applied, not a new revision to apply
        assert status.condition(Type.READY).reason is Reason.DRIFT_HEALED, status.to_dict()
        assert status.condition(Type.DRIFTED).reason is Reason.DRIFT_HEALED
        healed, _ = reconciler.history("local")
        assert healed["result"] == "healed" and healed["by"] == "stackward (reconciler)"
    finally:
        reconciler.reader.close()
