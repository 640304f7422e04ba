"""What policies know of a pull request's review: who approved which commit, whose review is
requested, the code owners of each changed file, and the members of the teams that own them.

Read when the pull request is planned and again when it is merged, so an approval rule holds
at apply too. CODEOWNERS is read as the base branch has it (GitHub's syntax and search order):
a pull request cannot name its own owners.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from codeowners import CodeOwners

from stackward.github.changed import changed_files, files_touching
from stackward.github.client import GitHubClient
from stackward.policy.input import PullRequest, Review
from stackward.spec.model import Environment, Repo

CODEOWNERS_PATHS = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")  # GitHub's order


def codeowners_at(repo_root: Path, ref: str) -> str:
    """The CODEOWNERS file at git `ref` ("" when there is none)."""
    for path in CODEOWNERS_PATHS:
        proc = subprocess.run(
            ["git", "-C", str(repo_root), "show", f"{ref}:{path}"], capture_output=True, text=True
        )
        if proc.returncode == 0:
            return proc.stdout
    return ""


def owners_of(codeowners: str, files: list[str]) -> dict[str, tuple[str, ...]]:
    """Each file's owners (`@user`, `@org/team`, or an e-mail), by the last matching rule."""
    if not codeowners.strip():
        return {}
    rules = CodeOwners(codeowners)
    return {name: tuple(owner for _, owner in rules.of(name)) for name in files}


def pull_request_context(
    client: GitHubClient,
    repo: Repo,
    environments: list[Environment],
    pr: dict,
    *,
    policies: Path | None = None,
) -> PullRequest:
    """The pull request as policies see it (`pr`: the pull request object of an event, or one
    read from the API), its reviews read from GitHub now."""
    number, base_sha, head_sha = pr["number"], pr["base"]["sha"], pr["head"]["sha"]
    files = changed_files(repo.repo_root, base_sha, head_sha)
    owners = owners_of(codeowners_at(repo.repo_root, base_sha), files)
    found, users, requested_teams = client.review(number)
    reviews = tuple(Review(*r) for r in found)
    wanted = sorted({o[1:] for found in owners.values() for o in found if o.startswith("@") and "/" in o})
    wanted = sorted({*wanted, *requested_teams})
    members = {team: client.team_members(team) for team in wanted}
    return PullRequest(
        number,
        (pr.get("user") or {}).get("login", ""),
        tuple(label["name"] for label in pr.get("labels", [])),
        base_sha,
        head_sha,
        tuple(files),
        {env.name: tuple(files_touching(repo, env, files, policies)) for env in environments},
        reviews,
        tuple(users),
        tuple(requested_teams),
        owners,
        {team: tuple(m) for team, m in members.items() if m is not None},
        tuple(team for team, m in members.items() if m is None),
    )
