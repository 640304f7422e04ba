"""Benchmark (printed figures, not a timed test): `stackward plan` of an infrastructure-only
environment against a bare `terraform plan` of the same rendered module, with 300 and 3,000
terraform_data resources, with changes (nothing applied yet) and without (after an apply).
Target (issue 15): within 1.15x at 300 resources.

With the policy gate off a plan without changes skips `terraform show -json`; with the gate on
(the default) it keeps it, since the policies may read the JSON plan: both are printed.

stackward runs as installed (bytecode compiled, as the Action's cached environment has it;
PYTHONDONTWRITEBYTECODE is cleared so the first run writes it). Also printed: the floor
under any wrapper, Terraform's own part (`plan -out` and, with changes, `show -json` of the
saved plan) plus a bare Python start-up, to show how much is stackward's own.

    .venv/bin/python bench/terraform_bench.py [RESOURCES ...]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from apply_bench import BIN, infra_repo

RUNS = 3


def timed(command: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, **kwargs)  # stackward plan exits 2 on changes
    return time.perf_counter() - start


def best(command: list[str], **kwargs) -> float:
    return min(timed(command, **kwargs) for _ in range(RUNS))


def main(sizes: list[int]) -> None:
    for resources in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root, state = Path(tmp) / "environments", Path(tmp) / "state"
            root.mkdir()
            infra_repo(root, resources)
            base = [str(root), "--env", "infra", "--state-dir", str(state)]
            installed = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            gate_off = {**installed, "STACKWARD_POLICY_GATE": "false"}
            gate_on = {**installed, "STACKWARD_POLICY_GATE": "true", "STACKWARD_POLICIES": tmp}
            plan = [str(BIN / "stackward"), "plan", *base]
            timed(plan, env=gate_off)  # first run: terraform init
            workdir = state / "infra" / "terraform"
            bare_cmd = ["terraform", "plan", "-input=false", "-no-color", "-lock=false"]
            for case in ("with changes", "no changes"):
                if case == "no changes":
                    subprocess.run(
                        [str(BIN / "stackward"), "apply", *base],
                        env=gate_off,
                        check=True,
                        capture_output=True,
                    )
                bare = best(bare_cmd, cwd=workdir)
                floor = (
                    best([*bare_cmd, "-out=bench.tfplan"], cwd=workdir)
                    + (
                        best(["terraform", "show", "-json", "bench.tfplan"], cwd=workdir)
                        if case == "with changes"
                        else 0
                    )
                    + best([sys.executable, "-c", "pass"])
                )
                print(
                    f"{resources} terraform_data, {case}: Terraform's own part and a Python start-up "
                    f"{floor:.2f} s ({floor / bare:.2f}x the bare plan)",
                    flush=True,
                )
                for gate, env in (("gate off", gate_off), ("gate on", gate_on)):
                    ours = best(plan, env=env)
                    print(
                        f"{resources} terraform_data, {case}, {gate}: stackward plan {ours:.2f} s, "
                        f"bare terraform plan {bare:.2f} s, ratio {ours / bare:.2f}x"
                        + (" (target: <= 1.15x)" if resources == 300 else ""),
                        flush=True,
                    )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [300, 3000])
