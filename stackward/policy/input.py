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
class Review:
    """One review of the pull request: who, what they said, on which commit."""

    user: str
    state: str  # APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED
    commit_id: str
    submitted_at: str = ""

    def to_input(self) -> dict:
        return {
            "user": self.user,
            "state": self.state,
            "commit_id": self.commit_id,
            "submitted_at": self.submitted_at,
        }


@dataclass(frozen=True)
class PullRequest:
    """What policies may know about the pull request being checked (read again at merge)."""

    number: int
    author: str
    labels: tuple[str, ...] = ()
    base_sha: str = ""
    head_sha: str = ""
    changed_files: tuple[str, ...] = field(default=())
    environment_files: dict[str, tuple[str, ...]] = field(default_factory=dict)  # env -> files touching it
    reviews: tuple[Review, ...] = ()  # in the order submitted
    requested_reviewers: tuple[str, ...] = ()
    requested_teams: tuple[str, ...] = ()  # org/slug
    code_owners: dict[str, tuple[str, ...]] = field(default_factory=dict)  # changed file -> @owners
    teams: dict[str, tuple[str, ...]] = field(default_factory=dict)  # org/slug -> members (readable ones)
    unreadable_teams: tuple[str, ...] = ()  # teams whose members the token could not read

    def approvals(self) -> list[dict]:
        """Each reviewer whose latest review (comments aside) approves, with the commit approved
        and whether that is the head commit planned. A dismissed or later changes-requested
        review takes an approval back, as on GitHub."""
        latest: dict[str, Review] = {}
        for review in self.reviews:
            if review.state != "COMMENTED":
                latest[review.user.lower()] = review
        return [
            {"user": r.user, "commit_id": r.commit_id, "on_head": r.commit_id == self.head_sha}
            for r in latest.values()
            if r.state == "APPROVED"
        ]

    def to_input(self, environment: str = "") -> dict:
        return {
            "number": self.number,
            "author": self.author,
            "labels": list(self.labels),
            "base_sha": self.base_sha,
            "head_sha": self.head_sha,
            "changed_files": list(self.changed_files),
            "environment_files": list(self.environment_files.get(environment, ())),
            "reviews": [r.to_input() for r in self.reviews],
            "approvals": self.approvals(),
            "requested_reviewers": list(self.requested_reviewers),
            "requested_teams": list(self.requested_teams),
            "code_owners": {f: list(o) for f, o in self.code_owners.items()},
            "teams": {t: list(m) for t, m in self.teams.items()},
            "unreadable_teams": list(self.unreadable_teams),
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
        "pull_request": pull_request.to_input(env.name) if pull_request else None,
    }
