"""Benchmark: validate a generated repo of 50 environments x 200 resources.

Prints resources validated per second, peak memory, and the wall time of
`stackward validate environments/` on the examples once warm. Targets (issue 2):
10,000 resources in under 2 s; the examples in under 1 s.

    .venv/bin/python bench/validate_bench.py [--environments 50] [--resources 200]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stackward.checks.validate import validate
from stackward.settings import Settings
from stackward.zenml.catalog import load_catalog

HEAD = "apiVersion: stackward.dev/v1alpha1\n"
ROOT = Path(__file__).resolve().parent.parent


def generate(root: Path, environments: int, per_env: int) -> int:
    """Write the repo; returns the number of resources it declares."""
    module = root / "_modules" / "bucket"
    module.mkdir(parents=True)
    (module / "main.tf").write_text('variable "name" {}\noutput "bucket" { value = var.name }\n')
    total = 0
    for e in range(environments):
        env = f"env{e:03d}"
        folder = root / env
        folder.mkdir()
        (folder / "environment.yaml").write_text(
            HEAD
            + f"kind: Environment\nmetadata: {{name: {env}}}\nspec:\n  labels: {{team: ml, environment: {env}}}\n"
            "  variables: {project: acme, region: europe-west4}\n"
        )
        docs = [
            HEAD + "kind: Infrastructure\nmetadata: {name: base}\nspec:\n"
            "  source: ../_modules/bucket\n  variables: {name: b}\n  outputs: [bucket]\n",
            HEAD + f"kind: ServiceConnector\nmetadata: {{name: {env}-gcp}}\nspec:\n  type: gcp\n"
            "  authMethod: service-account\n  configuration: {project_id: '${var.project}'}\n"
            "  secrets: {service_account_json: {fromEnv: GCP_KEY}}\n",
        ]
        groups = (per_env - 2) // 4
        for i in range(groups):
            docs.append(
                HEAD + f"kind: StackComponent\nmetadata: {{name: {env}-store-{i}}}\nspec:\n"
                "  type: artifact_store\n  flavor: gcp\n"
                f"  configuration: {{path: 'gs://${{infra.base.bucket}}/{i}'}}\n  connector: {env}-gcp\n"
            )
            docs.append(
                HEAD + f"kind: StackComponent\nmetadata: {{name: {env}-orch-{i}}}\nspec:\n"
                "  type: orchestrator\n  flavor: vertex\n  configuration: {location: '${var.region}'}\n"
                f"  connector: {env}-gcp\n"
            )
            docs.append(
                HEAD + f"kind: StackComponent\nmetadata: {{name: {env}-reg-{i}}}\nspec:\n"
                "  type: container_registry\n  flavor: gcp\n"
                f"  configuration: {{uri: europe-docker.pkg.dev/acme/r{i}}}\n  connector: {env}-gcp\n"
            )
            docs.append(
                HEAD + f"kind: Stack\nmetadata: {{name: {env}-stack-{i}, labels: {{n: '{i}'}}}}\nspec:\n"
                f"  components: {{artifact_store: {env}-store-{i}, orchestrator: {env}-orch-{i},"
                f" container_registry: {env}-reg-{i}}}\n"
            )
        for extra in range(per_env - len(docs)):
            docs.append(
                HEAD + f"kind: ServiceConnector\nmetadata: {{name: {env}-gcp-{extra}}}\nspec:\n"
                "  type: gcp\n  authMethod: implicit\n  configuration: {project_id: acme}\n"
            )
        for start in range(0, len(docs), 50):
            (folder / f"specs-{start // 50}.yaml").write_text("---\n".join(docs[start : start + 50]))
        total += len(docs)
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--environments", type=int, default=50)
    parser.add_argument("--resources", type=int, default=200)
    args = parser.parse_args()
    load_catalog(Settings.load().cache_dir)  # warm: the catalog is built once per zenml version
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "environments"
        total = generate(root, args.environments, args.resources)
        start = time.perf_counter()
        report = validate(root)
        elapsed = time.perf_counter() - start
        assert report.ok, report.errors[:3]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"generated repo: {args.environments} environments, {total} resources")
    print(
        f"validate (schema + references + flavor configs): {elapsed:.2f} s, "
        f"{total / elapsed:,.0f} resources/s (target: 10,000 in < 2 s)"
    )
    print(f"peak memory (RSS): {peak_mib:.0f} MiB")
    cli = shutil.which("stackward", path=str(Path(sys.executable).parent)) or "stackward"
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([cli, "validate", str(ROOT / "environments")], check=True, capture_output=True)
        runs.append(time.perf_counter() - start)
    print(f"`stackward validate environments/` warm: best {min(runs):.2f} s of 3 (target: < 1 s)")


if __name__ == "__main__":
    main()
