"""The GitHub calls stackward makes, through PyGithub, with the retries GitHub asks for.

- Every call, read or write, is retried when GitHub says it may be: 5xx and 429, and 403 for
  primary and secondary rate limits, waiting for `Retry-After` / `X-RateLimit-Reset`, capped
  (PyGithub's GithubRetry, with PATCH and 429 added). A create (POST) that fails with a 5xx may
  have been done: it is not repeated blindly; a comment is looked for before it is made again.
  Transient 404s right after a write are retried too.
- Objects are lazy: nothing is fetched that the payload already told us.
- The API base URL comes from GITHUB_API_URL (GitHub Enterprise Server), never hard-coded.
- Only comments written by the identity the token acts as are stackward's: anyone who can
  comment can copy the hidden marker.
- A write refused for want of permission (a fork's read-only token: 403 "Resource not
  accessible by integration") goes to `on_refused` when one is given, else it is raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

from github import (
    Auth,
    Github,
    GithubException,
    GithubRetry,
    RateLimitExceededException,
    UnknownObjectException,
)

from stackward.errors import CannotRun
from stackward.github.comment import CommentState, parse

T = TypeVar("T")
REVIEW_QUERY = """
query($owner: String!, $name: String!, $number: Int!) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      reviews(first: 100) { nodes { author { login } state commit { oid } submittedAt } }
      reviewRequests(first: 100) {
        nodes { requestedReviewer { ... on User { login } ... on Team { slug organization { login } } } }
      }
    }
  }
}
"""


@dataclass
class FoundComment:
    id: int
    body: str
    state: CommentState


@dataclass
class CommentSearch:
    """What a pull request's comments hold: stackward's own comment, if any, and the authors of
    other comments that carry its marker (never trusted)."""

    found: FoundComment | None
    login: str = ""  # whom the token acts as; empty when no comment carries the marker
    others: list[str] = field(default_factory=list)


class GitHubError(CannotRun):
    """A GitHub call failed after its retries."""


class PermissionRefused(GitHubError):
    """GitHub refused a call for want of permission (403 "Resource not accessible by …"): a
    read-only token, or one missing the permission the call needs. Not a rate limit: those are
    waited out and retried."""


def _refused(exc: GithubException) -> bool:
    message = exc.data.get("message") if isinstance(exc.data, dict) else None
    return (
        exc.status == 403
        and not isinstance(exc, RateLimitExceededException)
        and str(message).startswith("Resource not accessible by")
    )


class _Retry(GithubRetry):
    """GithubRetry for every method GitHub's calls use, but a POST answered with a 5xx: it may
    have been done, so the caller decides (stackward.github.client.GitHubClient._create)."""

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if method == "POST" and status_code >= 500:
            return False
        return super().is_retry(method, status_code, has_retry_after)


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
        on_refused: Callable[[str], None] | None = None,
        scrub: Callable[[str], str] = str,
    ):
        retry = _Retry(
            allowed_methods=frozenset({"GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"}),
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
        self.on_refused = on_refused
        self.scrub = scrub  # every text written to GitHub goes through it (secret values hidden)
        self._login: str | None = None

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
                if _refused(exc):
                    needs = (exc.headers or {}).get("x-accepted-github-permissions")
                    hint = f" (the token needs {needs})" if needs else ""
                    raise PermissionRefused(f"GitHub: {what}: HTTP 403: {message}{hint}") from None
                raise GitHubError(f"GitHub: {what}: HTTP {exc.status}: {message}") from None
        raise AssertionError("unreachable")

    def _create(
        self, what: str, call: Callable[[], T], done: Callable[[], T | None] | None = None
    ) -> T | None:
        """A create (POST): when GitHub answers a 5xx the write may have happened. `done` looks
        for it (then it is not made again); without `done` the create is repeated, for those
        where a second one is harmless (a commit status: the latest per context counts)."""
        for attempt in range(3):
            try:
                return self._write(what, call)
            except GitHubError as exc:
                if not _server_error(exc) or attempt == 2:
                    raise
            time.sleep(self.backoff * (attempt + 1))
            if done is not None and (found := done()) is not None:
                return found
        raise AssertionError("unreachable")

    def _write(self, what: str, call: Callable[[], T]) -> T | None:
        """A write; when GitHub refuses it for want of permission and `on_refused` is set, that
        hears of it and the write is skipped (None)."""
        try:
            return self._call(what, call)
        except PermissionRefused as exc:
            if self.on_refused is None:
                raise
            self.on_refused(str(exc))
            return None

    def login(self) -> str:
        """Whom the token acts as: known from a write's response, else asked once. GraphQL's
        `viewer` answers for every kind of token (`github-actions[bot]` for the Actions token,
        `<app-slug>[bot]` for an App's installation token, the user for a PAT); REST's `GET /user`
        refuses installation tokens."""
        if self._login is None:
            _, data = self._call(
                "finding whom the token acts as",
                lambda: self._github.requester.graphql_query("query { viewer { login } }", {}),
            )
            self._login = str(data["data"]["viewer"]["login"])
        return self._login

    def find_comment(self, number: int) -> CommentSearch:
        """stackward's comment on a pull request: the first that carries the hidden marker and
        was written by the identity the token acts as (asked only when some comment carries it)."""

        def marked() -> list[tuple[Any, CommentState]]:
            found = []
            for comment in self.repo.get_issue(number).get_comments():
                state = parse(comment.body or "")
                if state is not None:
                    found.append((comment, state))
            return found

        comments = self._call(f"reading the comments of #{number}", marked)
        if not comments:
            return CommentSearch(None)
        me = self.login()
        ours = [FoundComment(c.id, c.body, state) for c, state in comments if _author(c) == me]
        others = [_author(c) for c, _ in comments if _author(c) != me]
        return CommentSearch(ours[0] if ours else None, me, others)

    def upsert_comment(self, number: int, bodies: Iterator[str], existing: FoundComment | None) -> None:
        """Edit our comment (or create it); `bodies` yields shorter versions for GitHub to accept."""
        issue = self.repo.get_issue(number)
        last: GitHubError | None = None
        for body in bodies:
            try:
                if existing is not None:
                    comment = issue.get_comment(existing.id)
                    self._write("editing the plan comment", lambda c=comment, b=body: c.edit(self.scrub(b)))
                    return
                self._create(  # there was none of ours: one found after a 5xx is this one
                    "commenting on the pull request",
                    lambda b=body: issue.create_comment(self.scrub(b)),
                    lambda: self.find_comment(number).found,
                )
                return
            except GitHubError as exc:
                if "HTTP 422" not in str(exc):
                    raise
                last = exc  # too long or otherwise refused: try the shorter version
        raise last or GitHubError("GitHub refused every version of the comment")

    def commit_comment(self, sha: str, body: str) -> None:
        """Comment on commit `sha` (a merge queue's merge commit: where its plan is recorded)."""
        self._create(
            f"commenting on {sha[:7]}",
            lambda: self.repo.get_commit(sha).create_comment(self.scrub(body)),
            lambda: self.commit_plan(sha),
        )

    def commit_plan(self, sha: str) -> CommentState | None:
        """The plan recorded on commit `sha` by the identity the token acts as (the latest), if any."""

        def marked() -> list[tuple[Any, CommentState]]:
            found = []
            for comment in self.repo.get_commit(sha).get_comments():
                state = parse(comment.body or "")
                if state is not None and state.head_sha == sha:
                    found.append((comment, state))
            return found

        comments = self._call(f"reading the comments on {sha[:7]}", marked)
        if not comments:
            return None
        me = self.login()
        ours = [state for comment, state in comments if _author(comment) == me]
        return ours[-1] if ours else None

    def comment(self, number: int, body: str) -> None:
        self._write(
            "commenting on the pull request",
            lambda: self.repo.get_issue(number).create_comment(self.scrub(body)),
        )

    def status(self, sha: str, context: str, state: str, description: str, target_url: str = "") -> None:
        commit = self.repo.get_commit(sha)
        kwargs: dict[str, Any] = {
            "state": state,
            "description": self.scrub(description)[:140],
            "context": context,
        }
        if target_url:
            kwargs["target_url"] = target_url
        created = self._create(f"setting status {context}", lambda: commit.create_status(**kwargs))
        if created is not None and created.creator is not None and self._login is None:
            self._login = created.creator.login  # whom the token acts as, for free

    def merged_pull_request(self, sha: str) -> Any:
        """The merged pull request whose merge produced commit `sha`, if any."""

        def find() -> Any:
            for pull in self.repo.get_commit(sha).get_pulls():
                if pull.merged_at is not None or getattr(pull, "merge_commit_sha", None) == sha:
                    return pull
            return None

        return self._call(f"finding the pull request of {sha[:7]}", find)

    def review(self, number: int) -> tuple[list[tuple[str, str, str, str]], list[str], list[str]]:
        """Pull request `number`'s reviews ((reviewer, state, commit, when), oldest first), and
        the users and teams (`org/slug`) whose review is requested: one GraphQL call."""
        owner, name = self.repo.full_name.split("/", 1)

        def read() -> tuple[list[tuple[str, str, str, str]], list[str], list[str]]:
            _, data = self._github.requester.graphql_query(
                REVIEW_QUERY, {"owner": owner, "name": name, "number": number}
            )
            pull = data["data"]["repository"]["pullRequest"] or {}
            reviews = [
                (
                    r["author"]["login"],
                    r["state"],
                    (r.get("commit") or {}).get("oid", ""),
                    r.get("submittedAt") or "",
                )
                for r in pull.get("reviews", {}).get("nodes", [])
                if r.get("author")
            ]
            requested = [
                n["requestedReviewer"] or {} for n in pull.get("reviewRequests", {}).get("nodes", [])
            ]
            users = [r["login"] for r in requested if "login" in r]
            teams = [f"{r['organization']['login']}/{r['slug']}" for r in requested if "slug" in r]
            return reviews, users, teams

        return self._call(f"reading the reviews of #{number}", read)

    def team_members(self, team: str) -> list[str] | None:
        """The logins of team `org/slug`, or None when the token may not read it (the Actions
        token cannot read organization teams: give a token with members: read)."""
        org, slug = team.split("/", 1)

        def read() -> list[str]:
            return [m.login for m in self._github.get_organization(org).get_team_by_slug(slug).get_members()]

        try:
            return self._call(f"reading the members of team {team}", read)
        except GitHubError:
            return None

    def deployment(self, sha: str, environment: str, description: str) -> Any:
        """A deployment of `sha` to `environment`, or None when GitHub refused it (see `_write`)."""
        return self._write(
            f"creating a deployment to {environment}",
            lambda: self.repo.create_deployment(
                ref=sha,
                environment=environment,
                description=self.scrub(description)[:140],
                required_contexts=[],
                auto_merge=False,
                transient_environment=False,
            ),
        )

    def deployment_status(
        self, deployment: Any | None, state: str, description: str, log_url: str = ""
    ) -> None:
        """Set the status of `deployment`; nothing when there is none (its creation was refused)."""
        if deployment is None:
            return
        kwargs: dict[str, Any] = {"state": state, "description": self.scrub(description)[:140]}
        if log_url:
            kwargs["target_url"] = log_url  # PyGithub's name for the status's log link
        self._write("setting a deployment status", lambda: deployment.create_status(**kwargs))

    def upsert_issue(self, title: str, body: str, label: str) -> None:
        """Open an issue with `label`, or update the one already open: one per subject."""

        def find() -> Any:
            return next(iter(self.repo.get_issues(state="open", labels=[label])), None)

        existing = self._call("looking for the open issue", find)
        if existing is not None:
            self._write(
                "updating the issue", lambda: existing.edit(title=self.scrub(title), body=self.scrub(body))
            )
            return
        self._write(
            "opening an issue",
            lambda: self.repo.create_issue(title=self.scrub(title), body=self.scrub(body), labels=[label]),
        )

    def permission(self, user: str) -> str:
        """`user`'s permission on the repository, as GitHub's `permission` field names it (`admin`,
        `write` (also for maintain and custom roles based on write), `read`, `none`): one call;
        "none" when GitHub knows no such user. Needs metadata: read (every Actions token has it)."""

        def read() -> str:
            _, data = self._github.requester.requestJsonAndCheck(
                "GET", f"{self.repo.url}/collaborators/{quote(user, safe='')}/permission"
            )
            return str(data.get("permission") or "none")

        try:
            return self._call(f"reading the permission of {user}", read)
        except GitHubError as exc:
            if str(exc).endswith(": not found"):
                return "none"
            raise

    def react(self, comment_id: int, content: str) -> None:
        """React with `content` (`+1`, `-1`, `eyes`, `confused`, …) to issue comment `comment_id`;
        reacting twice is harmless (GitHub answers the existing reaction)."""
        url = f"{self.repo.url}/issues/comments/{int(comment_id)}/reactions"
        self._create(
            f"reacting to comment {comment_id}",
            lambda: self._github.requester.requestJsonAndCheck("POST", url, input={"content": content}),
        )

    def pull(self, number: int) -> dict:
        """Pull request `number` as the REST API gives it (head and base SHAs, state, draft…)."""
        return self._call(
            f"reading pull request #{number}", lambda: dict(self.repo.get_pull(number).raw_data)
        )


def _server_error(exc: GitHubError) -> bool:
    return any(f"HTTP {code}" in str(exc) for code in range(500, 600))


def _author(comment: Any) -> str:
    """The login of a comment's author ("" when GitHub gives none, as for some deleted accounts)."""
    return comment.user.login if comment.user is not None else ""
