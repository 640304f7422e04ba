"""Benchmark: GitHub API calls and wall time of one pull-request event (the action's plan run)
for 1, 10 and 50 changed environments, against the local GitHub API stand-in of the tests.

Each environment holds a Terraform module of terraform_data resources (offline). Prints calls
per event for both settings of the `statuses` input: `aggregate` (the default: one `stackward`
status, pending then final, so the calls stay fixed: at most 6 however many environments) and
`per-environment` (a pending and a final `stackward/<env>` status per environment, growing by
two calls per environment).

Then the same event over embedded environments that hold ZenML stacks (applied on the base
first, so every plan reads its store), for 1 and 10 changed environments, with the default
`plan_concurrency` and with 1: target (issue 15) the 10-environment run within 2x of the
single environment's.

    .venv/bin/python bench/action_bench.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
UNGATED = {"STACKWARD_POLICY_GATE": "false"}
sys.path.insert(0, str(ROOT / "tests"))
from conftest import git  # noqa: E402
from fixtures_path import shared_fixtures  # noqa: E402
from github_standin import GitHubStandIn  # noqa: E402

HEAD = "apiVersion: stackward.dev/v1alpha1\n"
REPOSITORY = "Codertocat/Hello-World"
PAYLOAD = shared_fixtures() / "github-webhooks" / "pull_request.opened.json"


def make_repo(repo: Path, environments: int) -> tuple[str, str]:
    module = repo / "environments" / "_modules" / "data"
    module.mkdir(parents=True)
    (module / "main.tf").write_text(
        'variable "size" {}\nresource "terraform_data" "r" {\n  count = var.size\n  input = count.index\n}\n'
    )
    for i in range(environments):
        env = repo / "environments" / f"env{i:02d}"
        env.mkdir()
        (env / "environment.yaml").write_text(
            HEAD
            + f"kind: Environment\nmetadata: {{name: env{i:02d}}}\nspec: {{bases: [], labels: {{environment: env{i:02d}, team: bench}}}}\n"
        )
        (env / "infra.yaml").write_text(
            HEAD + "kind: Infrastructure\nmetadata: {name: data}\nspec:\n"
            "  source: ../_modules/data\n  variables: {size: 5}\n"
        )
    shutil.copytree(ROOT / "policies", repo / "policies")  # the default policies (the gate fails closed)
    git(repo.parent, "init", "-q", "-b", "master", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    base = git(repo, "rev-parse", "HEAD")
    for i in range(environments):
        path = repo / "environments" / f"env{i:02d}" / "infra.yaml"
        path.write_text(path.read_text().replace("size: 5", "size: 6"))
    git(repo, "commit", "-qam", "grow every environment")
    return base, git(repo, "rev-parse", "HEAD")


def embedded_repo(repo: Path, environments: int, state: Path) -> tuple[str, str]:
    """Embedded environments like the `local` example (a stack of a local orchestrator and an
    artifact store whose path a Terraform output gives), applied at the base; the head adds a
    component to each. The default policies would deny the example's names and labels in
    these environments, so this case runs with the gate off (UNGATED)."""
    shutil.copytree(ROOT / "environments" / "_modules", repo / "environments" / "_modules")
    for i in range(environments):
        env = repo / "environments" / f"env{i:02d}"
        shutil.copytree(ROOT / "environments" / "local", env)
        spec = env / "environment.yaml"
        spec.write_text(spec.read_text().replace("name: local", f"name: env{i:02d}"))
    git(repo.parent, "init", "-q", "-b", "master", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    base = git(repo, "rev-parse", "HEAD")
    subprocess.run(
        [str(BIN / "stackward"), "apply", "environments", "--state-dir", str(state)],
        cwd=repo,
        check=True,
        capture_output=True,
        env={**os.environ, **UNGATED, "STACKWARD_ALLOW_EPHEMERAL_STATE": "true"},
    )
    for i in range(environments):
        stack = repo / "environments" / f"env{i:02d}" / "stack.yaml"
        stack.write_text(
            stack.read_text() + "---\napiVersion: stackward.dev/v1alpha1\nkind: StackComponent\n"
            "metadata:\n  name: second-orchestrator\nspec:\n  type: orchestrator\n  flavor: local\n"
        )
    git(repo, "commit", "-qam", "a second orchestrator in every environment")
    return base, git(repo, "rev-parse", "HEAD")


def main() -> None:
    for statuses in ("aggregate", "per-environment"):
        print(f"statuses: {statuses}")
        for count in (1, 10, 50):
            run_event(count, statuses)
    print("embedded environments with ZenML stacks (statuses: aggregate)")
    for concurrency in ("4", "1"):
        single = run_event(1, "aggregate", embedded=True, concurrency=concurrency)
        ten = run_event(10, "aggregate", embedded=True, concurrency=concurrency)
        print(
            f"  plan_concurrency {concurrency}: 10 environments take {ten / single:.2f}x one "
            "environment's run (target: <= 2x)"
        )


def run_event(count: int, statuses: str, embedded: bool = False, concurrency: str = "4") -> float:
    """The wall time of one pull-request event over `count` changed environments (printed
    with its API calls)."""
    with tempfile.TemporaryDirectory() as tmp, GitHubStandIn(REPOSITORY) as github:
        repo = Path(tmp) / "repo"
        if embedded:
            base, head = embedded_repo(repo, count, Path(tmp) / "state")
        else:
            base, head = make_repo(repo, count)
        event = json.loads(PAYLOAD.read_text())
        event["pull_request"]["head"]["sha"], event["pull_request"]["base"]["sha"] = head, base
        event_path = Path(tmp) / "event.json"
        event_path.write_text(json.dumps(event))
        env = {
            **os.environ,
            "GITHUB_EVENT_NAME": "pull_request",
            "GITHUB_EVENT_PATH": str(event_path),
            "GITHUB_REPOSITORY": REPOSITORY,
            "GITHUB_SHA": head,
            "GITHUB_API_URL": github.url,
            "GITHUB_TOKEN": "bench",
            "STACKWARD_STATE_DIR": str(Path(tmp) / "state"),
            "STACKWARD_STATUSES": statuses,
            "STACKWARD_PLAN_CONCURRENCY": concurrency,
            **(UNGATED if embedded else {}),
        }
        start = time.perf_counter()
        proc = subprocess.run(
            [str(BIN / "stackward"), "action"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"the action failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        calls = Counter(method for method, _ in github.requests)
        print(
            f"{count:2d} changed environment(s): {len(github.requests)} API calls "
            f"({dict(sorted(calls.items()))}), {elapsed:.1f} s wall time"
        )
        return elapsed


if __name__ == "__main__":
    main()
