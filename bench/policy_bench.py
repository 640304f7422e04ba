"""Benchmark: the default policies on 10,000 resources (50 environments x 200).

Prints policy evaluations (one per environment) per second and resources judged per
second, for the embedded engine. Target (issue 3): the whole set in under 1 s.

    .venv/bin/python bench/policy_bench.py [--environments 50] [--resources 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from validate_bench import generate

from stackward.policy.check import PolicyOptions, check_policies
from stackward.spec.discover import discover
from stackward.spec.resolve import Resolver

POLICIES = Path(__file__).resolve().parent.parent / "policies"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--environments", type=int, default=50)
    parser.add_argument("--resources", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "environments"
        total = generate(root, args.environments, args.resources)
        repo, _ = discover(root)
        resolver = Resolver(repo)
        environments = [resolver.resolve(name) for name in sorted(repo.environments)]
        options = PolicyOptions(folder=POLICIES)
        start = time.perf_counter()
        outcome = check_policies(environments, repo, options)
        elapsed = time.perf_counter() - start
    findings = len(outcome.diagnostics)
    print(
        f"default policies on {len(environments)} environments, {total} resources: {elapsed:.2f} s "
        f"(target: < 1 s), {findings} findings"
    )
    print(f"{len(environments) / elapsed:,.1f} policy evaluations/s, {total / elapsed:,.0f} resources/s")


if __name__ == "__main__":
    main()
