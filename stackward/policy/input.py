"""The document policies see as `input`, one per environment.

Documented with a full example in docs/policies.md. Resources carry their source file and
line so that findings point at them; secrets are references in specs, so none can appear.
`base` holds the environment as the base branch has it (stackward.policy.base), which a pull
request cannot rewrite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stackward.spec.model import Environment, Repo, Resource


@dataclass(frozen=True)
class PullRequest:
    """What policies may know about the pull request being checked."""

    number: int
    author: str
    labels: tuple[str, ...] = ()
    base_sha: str = ""
    head_sha: str = ""
    changed_files: tuple[str, ...] = field(default=())

    def to_input(self) -> dict:
        return {
            "number": self.number,
            "author": self.author,
            "labels": list(self.labels),
            "base_sha": self.base_sha,
            "head_sha": self.head_sha,
            "changed_files": list(self.changed_files),
        }


def _resource(resource: Resource) -> dict:
    loc = resource.location(("metadata", "name"))
    return {
        "kind": resource.kind,
        "name": resource.name,
        "labels": resource.labels,
        "spec": resource.spec,
        "source": {"file": loc.file, "line": loc.line} if loc else None,
    }


def environment_part(env: Environment, repo: Repo) -> dict[str, Any]:
    """What the input says about the environment itself: `environment`, `environments`, `resources`."""
    settings = env.settings
    return {
        "environment": {
            "name": env.name,
            "labels": settings.labels,
            "promotion": {"after": settings.promotion_after},
            "drift": settings.drift,
            "zenml": {"mode": settings.zenml_mode},
        },
        "environments": sorted(repo.environments),
        "resources": [_resource(r) for r in env.resources],
    }


def build_input(
    env: Environment,
    repo: Repo,
    *,
    base: dict | None = None,
    pull_request: PullRequest | None = None,
    changes: list[dict] | None = None,
    terraform_plan: dict | None = None,
) -> dict[str, Any]:
    """The policy input for one environment (plan keys stay empty until a plan exists); `base`
    is the environment part as it is at the base ref, None outside a PR or for a new environment."""
    return {
        **environment_part(env, repo),
        "base": base,
        "changes": changes or [],
        "terraform_plan": terraform_plan,
        "pull_request": pull_request.to_input() if pull_request else None,
    }
