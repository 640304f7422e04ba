"""The gates an apply passes besides the policies, before anything changes:

- **promotion**: an environment with `promotion.after: X` applies a revision only after X has
  applied it (or a later revision containing it), by X's record in the state store; a loop in
  the promotion order is refused;
- **durable state**: on an ephemeral CI runner, an environment whose records, ZenML store or
  Terraform state would be files on the runner is refused (they vanish with the job).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from stackward.plan.refusals import ApplyRefused
from stackward.spec.model import Environment
from stackward.state import Applied, StateStore


def is_ancestor(repo_root: Path, older: str, newer: str) -> bool:
    """Whether commit `older` is `newer` or one of its ancestors."""
    if older == newer:
        return True
    proc = subprocess.run(
        ["git", "-C", str(repo_root), "merge-base", "--is-ancestor", older, newer], capture_output=True
    )
    return proc.returncode == 0


def upstream(env: Environment, resolve: Callable[[str], Environment | None]) -> Environment | None:
    """The environment `env` is promoted from; ApplyRefused when the promotion order loops."""
    first: Environment | None = None
    seen = [env.name]
    current: Environment | None = env
    while current is not None and current.settings.promotion_after is not None:
        name = current.settings.promotion_after
        if name in seen:
            loop = " -> ".join([*seen[seen.index(name) :], name])
            raise ApplyRefused(
                f"{env.name}: the promotion order loops ({loop}), so nothing was applied\n"
                "  hint: make promotion.after a chain (dev -> staging -> prod)"
            )
        seen.append(name)
        current = resolve(name)
        first = first or current
    return first


def check_promotion(
    env: Environment, before: Environment, store: StateStore, revision: str, repo_root: Path
) -> None:
    """ApplyRefused unless `before` (the environment `env` is promoted from) has applied
    `revision`, or a later revision containing it."""
    if not revision:
        raise ApplyRefused(
            f"{env.name}: it is promoted after {before.name}, and without a git revision there is no "
            "telling what that one applied, so nothing was applied\n"
            "  hint: apply from a git checkout, or pass --skip-promotion-gate (it is recorded in the ledger)"
        )
    applied: Applied | None = store.applied(before.name)
    if applied is not None and is_ancestor(repo_root, revision, applied.revision):
        return
    at = f"is at {applied.revision[:12]}" if applied else "has applied nothing yet"
    raise ApplyRefused(
        f"{env.name}: it is promoted after {before.name}, which has not applied {revision[:12]} "
        f"({before.name} {at}, by {store.description}), so nothing was applied\n"
        f"  hint: apply {before.name} first; or, if you must, --skip-promotion-gate (it is recorded "
        "in the ledger)"
    )


def on_ephemeral_runner() -> bool:
    """Whether this runs on a CI runner whose files vanish with the job (GitHub-hosted)."""
    return (
        os.environ.get("GITHUB_ACTIONS") == "true" and os.environ.get("RUNNER_ENVIRONMENT") != "self-hosted"
    )


def check_durable_state(env: Environment, store: StateStore) -> None:
    """ApplyRefused when applying `env` here would keep its state in files the job loses."""
    lost = []
    if not store.shared:
        lost.append("its locks, ledger and applied revision (set state_url: a PostgreSQL URL)")
    if env.settings.embedded:
        lost.append("its ZenML registrations (use zenml.mode: server)")
    if env.settings.terraform_backend == "local":
        lost.append("its Terraform state (use a remote backend: gcs, s3 or pg)")
    if lost:
        raise ApplyRefused(
            f"{env.name}: this runner's files vanish when the job ends, and they would hold "
            + "; ".join(lost)
            + ", so nothing was applied\n  hint: configure those, or for a demo pass --allow-ephemeral-state"
        )
