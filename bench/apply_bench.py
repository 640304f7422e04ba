"""Benchmark: plan+apply of 200 ZenML registrations against the raw ZenML client calls doing
the same work (target: within 1.3x), and `stackward plan` on an infrastructure-only
environment against a bare `terraform plan` of the same rendered module (target: within 1.15x).

Both sides start from a copy of the same fresh store and run as fresh processes.

    .venv/bin/python bench/apply_bench.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAD = "apiVersion: stackward.dev/v1alpha1\n"
BIN = Path(sys.executable).parent
ZENML_ENV = {
    "ZENML_ANALYTICS_OPT_IN": "false",
    "ZENML_LOGGING_VERBOSITY": "ERROR",
    "PYTHONWARNINGS": "ignore",
}

RAW = """
from zenml.client import Client
from zenml.enums import StackComponentType as T
from zenml.utils.pagination_utils import depaginate
c = Client()
for method in (c.list_service_connectors, c.list_stack_components, c.list_stacks):
    depaginate(method, size=1000, hydrate=True)
for i in range(10):
    c.create_stack_component(f"bench-orch-{i}", "local", T.ORCHESTRATOR, {}, labels={"team": "ml"})
    c.create_stack_component(f"bench-store-{i}", "local", T.ARTIFACT_STORE, {"path": f"/tmp/bench/{i}"}, labels={"team": "ml"})
for i in range(170):
    c.create_stack_component(f"bench-builder-{i}", "local", T.IMAGE_BUILDER, {}, labels={"team": "ml"})
for i in range(10):
    c.create_stack(f"bench-stack-{i}", components={T.ORCHESTRATOR: f"bench-orch-{i}", T.ARTIFACT_STORE: f"bench-store-{i}"}, labels={"team": "ml"})
"""


def timed(command: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, **kwargs)
    return time.perf_counter() - start


def registrations_repo(root: Path) -> None:
    env = root / "bench"
    env.mkdir(parents=True)
    (env / "environment.yaml").write_text(
        HEAD + "kind: Environment\nmetadata: {name: bench}\nspec:\n  bases: []\n  labels: {team: ml}\n"
    )
    docs = []
    for i in range(10):
        docs.append(
            HEAD
            + f"kind: StackComponent\nmetadata: {{name: bench-orch-{i}}}\nspec: {{type: orchestrator, flavor: local}}\n"
        )
        docs.append(
            HEAD
            + f"kind: StackComponent\nmetadata: {{name: bench-store-{i}}}\nspec:\n  type: artifact_store\n"
            f"  flavor: local\n  configuration: {{path: /tmp/bench/{i}}}\n"
        )
        docs.append(
            HEAD + f"kind: Stack\nmetadata: {{name: bench-stack-{i}}}\nspec:\n  components: "
            f"{{orchestrator: bench-orch-{i}, artifact_store: bench-store-{i}}}\n"
        )
    for i in range(170):
        docs.append(
            HEAD
            + f"kind: StackComponent\nmetadata: {{name: bench-builder-{i}}}\nspec: {{type: image_builder, flavor: local}}\n"
        )
    (env / "specs.yaml").write_text("---\n".join(docs))


def infra_repo(root: Path, resources: int) -> None:
    module = root / "_modules" / "many"
    module.mkdir(parents=True)
    (module / "main.tf").write_text(
        f'resource "terraform_data" "r" {{\n  count = {resources}\n  input = "value-${{count.index}}"\n}}\n'
        'output "first" { value = terraform_data.r[0].output }\n'
    )
    env = root / "infra"
    env.mkdir()
    (env / "environment.yaml").write_text(
        HEAD + "kind: Environment\nmetadata: {name: infra}\nspec: {bases: []}\n"
    )
    (env / "infrastructure.yaml").write_text(
        HEAD
        + "kind: Infrastructure\nmetadata: {name: many}\nspec:\n  source: ../_modules/many\n  outputs: [first]\n"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        template = tmp / "template"
        env = {**os.environ, **ZENML_ENV, "ZENML_CONFIG_PATH": str(template)}
        script = tmp / "raw.py"
        script.write_text("from zenml.client import Client\nClient().list_stacks()\n")
        subprocess.run([sys.executable, str(script)], check=True, capture_output=True, env=env, cwd=tmp)

        root = tmp / "repo" / "environments"
        registrations_repo(root)
        state = tmp / "state"
        shutil.copytree(template / "local_stores", state / "bench" / "zenml" / "local_stores")
        ours = timed(
            [str(BIN / "stackward"), "apply", str(root), "--env", "bench", "--state-dir", str(state)]
        )
        raw_config = tmp / "raw-store"
        shutil.copytree(template / "local_stores", raw_config / "local_stores")
        script.write_text(RAW)
        raw = timed([sys.executable, str(script)], env={**env, "ZENML_CONFIG_PATH": str(raw_config)}, cwd=tmp)
        print(
            f"200 registrations: stackward plan+apply {ours:.1f} s, raw ZenML client {raw:.1f} s, "
            f"ratio {ours / raw:.2f}x (target: <= 1.3x)"
        )

        for resources in (300, 3000):
            shutil.rmtree(root / "_modules", ignore_errors=True)
            shutil.rmtree(root / "infra", ignore_errors=True)
            shutil.rmtree(state / "infra", ignore_errors=True)
            infra_repo(root, resources)
            command = [str(BIN / "stackward"), "plan", str(root), "--env", "infra", "--state-dir", str(state)]
            timed(command)  # first run: terraform init
            ours = min(timed(command) for _ in range(3))
            workdir = state / "infra" / "terraform"
            bare = min(
                timed(["terraform", "plan", "-input=false", "-no-color", "-lock=false"], cwd=workdir)
                for _ in range(3)
            )
            print(
                f"infrastructure-only plan ({resources} terraform_data): stackward plan {ours:.2f} s, bare "
                f"terraform plan {bare:.2f} s, ratio {ours / bare:.2f}x (target: <= 1.15x)"
            )


if __name__ == "__main__":
    main()
