"""The GitHub calls stackward makes, through PyGithub, with the retries GitHub asks for.

- 5xx and transient 404s are retried with backoff; primary and secondary rate limits wait for
  `Retry-After` / `X-RateLimit-Reset`, capped (PyGithub's GithubRetry, plus 429).
- Objects are lazy: nothing is fetched that the payload already told us.
- The API base URL comes from GITHUB_API_URL (GitHub Enterprise Server), never hard-coded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from github import Auth, Github, GithubException, GithubRetry, UnknownObjectException

from stackward.errors import CannotRun
from stackward.github.comment import CommentState, parse

T = TypeVar("T")
MAX_COMMENT_CHARS = 65_536


@dataclass
class FoundComment:
    id: int
    body: str
    state: CommentState


class GitHubError(CannotRun):
    """A GitHub call failed after its retries."""


class GitHubClient:
    """One repository's pull requests, comments, statuses and deployments."""

    def __init__(
        self,
        token: str,
        repository: str,
        api_url: str = "https://api.github.com",
        *,
        max_rate_limit_wait: float = 300,
        backoff: float = 1.0,
    ):
        retry = GithubRetry(
            total=5,
            backoff_factor=backoff,
            status_forcelist=[*range(500, 600), 429],
            max_rate_limit_wait=max_rate_limit_wait,
            secondary_rate_wait=min(60, max_rate_limit_wait),
        )
        self._github = Github(
            auth=Auth.Token(token),
            base_url=api_url.rstrip("/"),
            retry=retry,
            per_page=100,
            lazy=True,
            seconds_between_requests=None,
            seconds_between_writes=0.1 if backoff else None,
        )
        self.repo = self._github.get_repo(repository)  # lazy: the client is
        self.backoff = backoff

    def _call(self, what: str, call: Callable[[], T]) -> T:
        """Run a call; a 404 right after a write may be GitHub catching up: retry it briefly."""
        for attempt in range(3):
            try:
                return call()
            except UnknownObjectException:
                if attempt == 2:
                    raise GitHubError(f"GitHub: {what}: not found") from None
                time.sleep(self.backoff * (attempt + 1))
            except GithubException as exc:
                message = exc.data.get("message") if isinstance(exc.data, dict) else exc.data
                raise GitHubError(f"GitHub: {what}: HTTP {exc.status}: {message}") from None
        raise AssertionError("unreachable")

    def find_comment(self, number: int) -> FoundComment | None:
        """stackward's comment on a pull request, found by its hidden marker."""

        def search() -> FoundComment | None:
            for comment in self.repo.get_issue(number).get_comments():
                state = parse(comment.body or "")
                if state is not None:
                    return FoundComment(comment.id, comment.body, state)
            return None

        return self._call(f"reading the comments of #{number}", search)

    def upsert_comment(self, number: int, bodies: Iterator[str], existing: FoundComment | None) -> int:
        """Edit our comment (or create it); `bodies` yields shorter versions for GitHub to accept."""
        issue = self.repo.get_issue(number)
        last: GitHubError | None = None
        for body in bodies:
            try:
                if existing is not None:
                    comment = issue.get_comment(existing.id)
                    self._call("editing the plan comment", lambda c=comment, b=body: c.edit(b))
                    return existing.id
                created = self._call("commenting on the pull request", lambda b=body: issue.create_comment(b))
                return created.id
            except GitHubError as exc:
                if "HTTP 422" not in str(exc):
                    raise
                last = exc  # too long or otherwise refused: try the shorter version
        raise last or GitHubError("GitHub refused every version of the comment")

    def comment(self, number: int, body: str) -> None:
        self._call("commenting on the pull request", lambda: self.repo.get_issue(number).create_comment(body))

    def status(self, sha: str, context: str, state: str, description: str, target_url: str = "") -> None:
        commit = self.repo.get_commit(sha)
        kwargs: dict[str, Any] = {"state": state, "description": description[:140], "context": context}
        if target_url:
            kwargs["target_url"] = target_url
        self._call(f"setting status {context}", lambda: commit.create_status(**kwargs))

    def merged_pull_request(self, sha: str) -> Any:
        """The merged pull request whose merge produced commit `sha`, if any."""

        def find() -> Any:
            for pull in self.repo.get_commit(sha).get_pulls():
                if pull.merged_at is not None or getattr(pull, "merge_commit_sha", None) == sha:
                    return pull
            return None

        return self._call(f"finding the pull request of {sha[:7]}", find)

    def deployment(self, sha: str, environment: str, description: str) -> Any:
        return self._call(
            f"creating a deployment to {environment}",
            lambda: self.repo.create_deployment(
                ref=sha,
                environment=environment,
                description=description[:140],
                required_contexts=[],
                auto_merge=False,
                transient_environment=False,
            ),
        )

    def deployment_status(self, deployment: Any, state: str, description: str, log_url: str = "") -> None:
        kwargs: dict[str, Any] = {"state": state, "description": description[:140]}
        if log_url:
            kwargs["target_url"] = log_url  # PyGithub's name for the status's log link
        self._call("setting a deployment status", lambda: deployment.create_status(**kwargs))

    def upsert_issue(self, title: str, body: str, label: str) -> int:
        """Open an issue with `label`, or update the one already open: one per subject."""

        def find() -> Any:
            return next(iter(self.repo.get_issues(state="open", labels=[label])), None)

        existing = self._call("looking for the open issue", find)
        if existing is not None:
            self._call("updating the issue", lambda: existing.edit(title=title, body=body))
            return existing.number
        created = self._call(
            "opening an issue", lambda: self.repo.create_issue(title=title, body=body, labels=[label])
        )
        return created.number
