"""A local stand-in for the GitHub REST API (api.github.com cannot be reached from here).

Its answers follow the real recordings in ../shared/fixtures/github-api/: the same response
shapes (a recorded commit status is the template for ours), `X-RateLimit-*` headers,
`Link` pagination (`<…?per_page=N&page=K>; rel="next"`), and the recorded 422 error body.
Tests can queue faults (5xx, rate limits) to check the client's retries.

Each token acts as someone (`tokens`; any other token is the Actions token, which acts as
`github-actions[bot]`), as GitHub has it: comments and statuses carry their author, editing
someone else's comment is refused, an installation token is refused `GET /user` (GraphQL's
`viewer` answers for every token), and a read-only token (a fork's) is refused every write
with 403 "Resource not accessible by integration" and the permission it lacks in
`X-Accepted-GitHub-Permissions`.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from fixtures_path import shared_fixtures

FIXTURES = shared_fixtures() / "github-api"


def _recorded(name: str) -> list[dict]:
    return json.loads((FIXTURES / name).read_text())


STATUS_TEMPLATE = _recorded("create-status.json")[0]["response"]
ISSUE_TEMPLATE = _recorded("add-labels-to-issue.json")[0]["response"]
ERROR_422 = _recorded("errors.json")[0]
RATE_HEADERS = {k: v for k, v in ERROR_422["headers"].items() if k.lower().startswith("x-ratelimit")}
USER_TEMPLATE = STATUS_TEMPLATE["creator"]
COMMENTING = "issues=write; pull_requests=write"  # either permission lets a token comment on a PR
DEPLOYING = "deployments=write"
WRITES = [  # method, path, the permission GitHub names for it, its page in the REST docs
    ("POST", r"/statuses/\w+", "statuses=write", "commits/statuses#create-a-commit-status"),
    ("POST", r"/issues/\d+/comments", COMMENTING, "issues/comments#create-an-issue-comment"),
    ("POST", r"/commits/\w+/comments", "contents=write", "commits/comments#create-a-commit-comment"),
    ("PATCH", r"/issues/comments/\d+", COMMENTING, "issues/comments#update-an-issue-comment"),
    ("POST", r"/issues", "issues=write", "issues/issues#create-an-issue"),
    ("PATCH", r"/issues/\d+", "issues=write", "issues/issues#update-an-issue"),
    ("POST", r"/deployments", DEPLOYING, "deployments/deployments#create-a-deployment"),
    ("POST", r"/deployments/\d+/statuses", DEPLOYING, "deployments/statuses#create-a-deployment-status"),
    (
        "POST",
        r"/issues/comments/\d+/reactions",
        COMMENTING,
        "reactions/reactions#create-reaction-for-an-issue-comment",
    ),
]


@dataclass(frozen=True)
class Token:
    """Whom a token acts as and what GitHub lets it do."""

    login: str
    installation: bool = True  # the Actions token or an App's: GET /user is refused
    read_only: bool = False  # a fork's pull_request token: every write is refused
    reads_teams: bool = False  # organization members: read (the Actions token never has it)

    @property
    def user(self) -> dict:
        bot = self.login.endswith("[bot]")
        return {**copy.deepcopy(USER_TEMPLATE), "login": self.login, "type": "Bot" if bot else "User"}

    def refusal(self, doc: str) -> dict:
        """GitHub's 403 body for a call this token lacks the permission for."""
        actor = "integration" if self.installation else "personal access token"
        body = {"message": f"Resource not accessible by {actor}", "status": "403"}
        return {**body, "documentation_url": f"https://docs.github.com/rest/{doc}"}


ACTIONS_TOKEN = Token("github-actions[bot]")


@dataclass
class Fault:
    method: str
    path: str  # regular expression
    status: int
    headers: dict = field(default_factory=dict)
    body: dict = field(default_factory=lambda: {"message": "Server Error"})
    times: int = 1
    after: bool = False  # GitHub did the work, then failed to answer (a 502 after the write)


class GitHubStandIn:
    def __init__(self, repository: str, max_body: int = 65_536):
        self.repository = repository
        self.max_body = max_body
        self.tokens: dict[str, Token] = {}
        self.comments: dict[int, list[dict]] = {}
        self.statuses: dict[str, list[dict]] = {}
        self.deployments: list[dict] = []
        self.deployment_statuses: dict[int, list[dict]] = {}
        self.commit_pulls: dict[str, list[dict]] = {}
        self.commit_comments: dict[str, list[dict]] = {}
        self.issues: list[dict] = []
        self.reviews: dict[int, list[dict]] = {}  # pull request -> its reviews, oldest first
        self.review_requests: dict[int, tuple[list[str], list[str]]] = {}  # -> (users, team slugs)
        self.teams: dict[str, list[str]] = {}  # "org/slug" -> member logins
        self.permissions: dict[str, str] = {}  # login -> admin/maintain/write/triage/read (else none)
        self.reactions: dict[int, list[str]] = {}  # issue comment id -> reactions' content, in order
        self.pulls: dict[int, dict] = {}  # open pull requests, as GET /pulls/N answers
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self._ids = iter(range(1000, 10**9))
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> GitHubStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- what tests look at ------------------------------------------------------------------
    def our_comments(self, number: int, login: str = ACTIONS_TOKEN.login) -> list[dict]:
        """The comments `login` wrote with stackward's marker."""
        comments = self.comments.get(number, [])
        return [c for c in comments if "<!-- stackward " in c["body"] and c["user"]["login"] == login]

    def contexts(self, sha: str) -> list[tuple[str, str]]:
        return [(s["context"], s["state"]) for s in self.statuses.get(sha, [])]

    def review(self, number: int, user: str, state: str, commit_id: str) -> None:
        """Record a review of pull request `number` (state APPROVED, CHANGES_REQUESTED, ...)."""
        review = {
            "id": next(self._ids),
            "user": {**copy.deepcopy(USER_TEMPLATE), "login": user, "type": "User"},
            "body": "",
            "state": state,
            "commit_id": commit_id,
            "submitted_at": "2026-11-22T12:00:00Z",
            "html_url": f"{self.url}/{self.repository}/pull/{number}",
            "pull_request_url": f"{self.url}/repos/{self.repository}/pulls/{number}",
        }
        self.reviews.setdefault(number, []).append(review)

    def open_pull(self, number: int, head_sha: str, base_sha: str, state: str = "open") -> None:
        """Record pull request `number` (head `head_sha` on `feature`, base `base_sha` on master)."""
        pull = self._pull(number, head_sha, merged=False, merge_sha="")
        pull.update(state=state, draft=False, title="A change")
        pull["base"]["sha"] = base_sha
        self.pulls[number] = pull

    def merged(self, sha: str, number: int, head_sha: str, base_ref: str = "master") -> None:
        """Record that commit `sha` is the merge of pull request `number` (head `head_sha`) into `base_ref`."""
        pull = self._pull(number, head_sha, merged=True, merge_sha=sha)
        pull["base"]["ref"] = base_ref
        self.commit_pulls[sha] = [pull]

    def _pull(self, number: int, head_sha: str, merged: bool, merge_sha: str) -> dict:
        repo = {
            "full_name": self.repository,
            "name": self.repository.split("/")[1],
            "owner": {"login": self.repository.split("/")[0]},
        }
        return {
            "url": f"{self.url}/repos/{self.repository}/pulls/{number}",
            "number": number,
            "state": "closed",
            "head": {"sha": head_sha, "ref": "feature", "repo": repo},
            "base": {"sha": "0" * 40, "ref": "master", "repo": repo},
            "merged_at": "2026-11-22T12:00:00Z" if merged else None,
            "merge_commit_sha": merge_sha,
            "user": {"login": "octocat"},
            "labels": [],
        }

    # -- HTTP --------------------------------------------------------------------------------
    def _fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and fault.method == method and re.search(fault.path, path):
                fault.times -= 1
                return fault
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self
        prefix = f"/repos/{self.repository}"

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def reply(self, status: int, body: object = None, headers: dict | None = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                reset = str(int(time.time()) + 3600)
                merged = {
                    "Content-Type": "application/json; charset=utf-8",
                    "X-RateLimit-Limit": "5000",
                    "X-RateLimit-Remaining": "4999",
                    "X-RateLimit-Reset": reset,
                    "X-GitHub-Request-Id": f"STANDIN:{len(standin.requests)}",
                    **(headers or {}),
                }
                for key, value in merged.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def body(self) -> dict:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                return json.loads(raw) if raw else {}

            def handle_any(self) -> None:
                method, parsed = self.command, urlparse(self.path)
                path, query = parsed.path, parse_qs(parsed.query)
                standin.requests.append((method, path))
                if self.headers.get("Authorization", "") == "":
                    self.reply(401, {"message": "Requires authentication"})
                    return
                token = standin.tokens.get(self.headers["Authorization"].split()[-1], ACTIONS_TOKEN)
                fault = standin._fault(method, path)
                if fault is not None and not fault.after:
                    self.reply(fault.status, fault.body, fault.headers)
                    return
                if path in ("/user", "/graphql"):
                    self.reply(*standin._identity(method, path, token, self))
                    return
                if path.startswith(("/orgs/", "/organizations/")):
                    with standin._lock:
                        self.reply(*standin._team(method, path, token))
                    return
                if not path.startswith(prefix):
                    self.reply(404, {"message": "Not Found"})
                    return
                with standin._lock:
                    status, body, headers = standin._route(method, path[len(prefix) :], query, self, token)
                if fault is not None:  # done, but the answer is lost
                    status, body, headers = fault.status, fault.body, fault.headers
                self.reply(status, body, headers)

            do_GET = do_POST = do_PATCH = handle_any

        return Handler

    def _too_long(self, body: str) -> tuple[int, dict, dict] | None:
        if len(body) <= self.max_body:
            return None
        error = copy.deepcopy(ERROR_422["response"])
        error["errors"] = [
            {
                "resource": "IssueComment",
                "code": "custom",
                "field": "body",
                "message": f"body is too long (maximum is {self.max_body} characters)",
            }
        ]
        error["documentation_url"] = "https://docs.github.com/rest/issues/comments#create-an-issue-comment"
        return 422, error, {}

    def _identity(
        self, method: str, path: str, token: Token, request: BaseHTTPRequestHandler
    ) -> tuple[int, dict, dict]:
        """Whom the token acts as: `GET /user` (refused to installation tokens) or GraphQL's
        `query { viewer { login } }`; and GraphQL's query of a pull request's reviews and review
        requests (the two queries answered here)."""
        if path == "/user" and method == "GET":
            if token.installation:
                return 403, token.refusal("users/users#get-the-authenticated-user"), {}
            return 200, token.user, {}
        body = request.body() if path == "/graphql" and method == "POST" else {}
        if re.search(r"\bviewer\b", body.get("query", "")):
            return 200, {"data": {"viewer": {"login": token.login}}}, {}
        if "reviewRequests" in body.get("query", ""):
            number = body["variables"]["number"]
            users, teams = self.review_requests.get(number, ([], []))
            owner = self.repository.split("/")[0]
            pull = {
                "reviews": {
                    "nodes": [
                        {
                            "author": {"login": r["user"]["login"]},
                            "state": r["state"],
                            "commit": {"oid": r["commit_id"]},
                            "submittedAt": r["submitted_at"],
                        }
                        for r in self.reviews.get(number, [])
                    ]
                },
                "reviewRequests": {
                    "nodes": [{"requestedReviewer": {"login": u}} for u in users]
                    + [{"requestedReviewer": {"slug": t, "organization": {"login": owner}}} for t in teams]
                },
            }
            return 200, {"data": {"repository": {"pullRequest": pull}}}, {}
        return 404, {"message": "Not Found"}, {}

    def _team(self, method: str, path: str, token: Token) -> tuple[int, object, dict]:
        """An organization's team and its members, as GitHub answers a token with members: read;
        a token without it (the Actions token) is refused."""
        if method != "GET":
            return 404, {"message": "Not Found"}, {}
        if not token.reads_teams:
            return (
                403,
                token.refusal("teams/teams#get-a-team-by-name"),
                {"X-Accepted-GitHub-Permissions": "members=read"},
            )
        if m := re.fullmatch(r"/orgs/([^/]+)/teams/([^/]+)", path):
            team = f"{m.group(1)}/{m.group(2)}"
            if team not in self.teams:
                return 404, {"message": "Not Found"}, {}
            number = sorted(self.teams).index(team) + 1
            return (
                200,
                {
                    "id": number,
                    "slug": m.group(2),
                    "name": m.group(2),
                    "url": f"{self.url}/organizations/1/team/{number}",
                    "members_url": f"{self.url}/organizations/1/team/{number}/members{{/member}}",
                },
                {},
            )
        members = re.fullmatch(r"/orgs/([^/]+)/teams/([^/]+)/members", path)
        if members and f"{members.group(1)}/{members.group(2)}" not in self.teams:
            return 404, {"message": "Not Found"}, {}
        if members or (m := re.fullmatch(r"/organizations/1/team/(\d+)/members", path)):
            team = (
                f"{members.group(1)}/{members.group(2)}"
                if members
                else sorted(self.teams)[int(m.group(1)) - 1]
            )
            return (
                200,
                [{**copy.deepcopy(USER_TEMPLATE), "login": u, "type": "User"} for u in self.teams[team]],
                {},
            )
        if m := re.fullmatch(r"/orgs/([^/]+)", path):
            return 200, {"login": m.group(1), "url": f"{self.url}/orgs/{m.group(1)}"}, {}
        return 404, {"message": "Not Found"}, {}

    def _refused(self, method: str, path: str, token: Token) -> tuple[int, dict, dict] | None:
        """GitHub's 403 for a write the token may not make (read-only), else None."""
        for verb, pattern, permission, doc in WRITES:
            if token.read_only and verb == method and re.fullmatch(pattern, path):
                return 403, token.refusal(doc), {"X-Accepted-GitHub-Permissions": permission}
        return None

    def _comment(self, number: int, body: str, token: Token) -> dict:
        comment_id = next(self._ids)
        return {
            "id": comment_id,
            "body": body,
            "user": token.user,
            "url": f"{self.url}/repos/{self.repository}/issues/comments/{comment_id}",
            "html_url": f"https://github.com/{self.repository}/pull/{number}#issuecomment-{comment_id}",
            "created_at": "2026-11-22T12:00:00Z",
            "updated_at": "2026-11-22T12:00:00Z",
        }

    def _route(
        self, method: str, path: str, query: dict, request: BaseHTTPRequestHandler, token: Token
    ) -> tuple[int, object, dict]:
        if refused := self._refused(method, path, token):
            return refused
        if m := re.fullmatch(r"/issues/(\d+)/comments", path):
            number = int(m.group(1))
            if method == "GET":
                items = self.comments.get(number, [])
                per_page = int(query.get("per_page", ["30"])[0])
                page = int(query.get("page", ["1"])[0])
                chunk = items[(page - 1) * per_page : page * per_page]
                headers = {}
                if page * per_page < len(items):
                    last = (len(items) + per_page - 1) // per_page
                    base = f"{self.url}/repos/{self.repository}/issues/{number}/comments?per_page={per_page}"
                    headers["Link"] = (
                        f'<{base}&page={page + 1}>; rel="next", <{base}&page={last}>; rel="last"'
                    )
                return 200, chunk, headers
            body = request.body()["body"]
            if refused := self._too_long(body):
                return refused
            comment = self._comment(number, body, token)
            self.comments.setdefault(number, []).append(comment)
            return 201, comment, {}
        if m := re.fullmatch(r"/issues/comments/(\d+)", path):
            comment_id = int(m.group(1))
            found = next((c for cs in self.comments.values() for c in cs if c["id"] == comment_id), None)
            if found is None:
                return 404, {"message": "Not Found"}, {}
            if method == "PATCH":
                if found["user"]["login"] != token.login:  # only its author may edit it
                    return 403, token.refusal("issues/comments#update-an-issue-comment"), {}
                body = request.body()["body"]
                if refused := self._too_long(body):
                    return refused
                found["body"] = body
            return 200, found, {}
        if m := re.fullmatch(r"/collaborators/([^/]+)/permission", path):
            # GitHub's legacy `permission` field: maintain counts as write, triage as read
            role = self.permissions.get(m.group(1), "none")
            legacy = {"maintain": "write", "triage": "read"}.get(role, role)
            user = {**copy.deepcopy(USER_TEMPLATE), "login": m.group(1), "type": "User"}
            return 200, {"permission": legacy, "role_name": role, "user": user}, {}
        if (m := re.fullmatch(r"/issues/comments/(\d+)/reactions", path)) and method == "POST":
            comment_id = int(m.group(1))
            if not any(c["id"] == comment_id for cs in self.comments.values() for c in cs):
                return 404, {"message": "Not Found"}, {}
            content = request.body()["content"]
            if content not in ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"):
                return 422, copy.deepcopy(ERROR_422["response"]), {}
            self.reactions.setdefault(comment_id, []).append(content)
            return 201, {"id": next(self._ids), "content": content, "user": token.user}, {}
        if path == "/issues" and method == "GET":
            labels = set(query.get("labels", [""])[0].split(",")) - {""}
            state = query.get("state", ["open"])[0]
            found = [
                i for i in self.issues if i["state"] == state and labels <= {lb["name"] for lb in i["labels"]}
            ]
            return 200, found, {}
        if path == "/issues" and method == "POST":
            data = request.body()
            number = len(self.issues) + 1
            issue = {
                **copy.deepcopy(ISSUE_TEMPLATE),
                "number": number,
                "id": next(self._ids),
                "title": data["title"],
                "body": data.get("body"),
                "state": "open",
                "labels": [{"name": n} for n in data.get("labels", [])],
                "url": f"{self.url}/repos/{self.repository}/issues/{number}",
            }
            self.issues.append(issue)
            return 201, issue, {}
        if (m := re.fullmatch(r"/issues/(\d+)", path)) and method == "PATCH":
            issue = next((i for i in self.issues if i["number"] == int(m.group(1))), None)
            if issue is None:
                return 404, {"message": "Not Found"}, {}
            issue.update({k: v for k, v in request.body().items() if k in ("title", "body", "state")})
            return 200, issue, {}
        if m := re.fullmatch(r"/statuses/([0-9a-f]{40})", path):
            data = request.body()
            status = {
                **copy.deepcopy(STATUS_TEMPLATE),
                **{k: data.get(k) for k in ("state", "description", "context", "target_url")},
                "id": next(self._ids),
                "creator": token.user,
            }
            self.statuses.setdefault(m.group(1), []).append(status)
            return 201, status, {}
        if (m := re.fullmatch(r"/pulls/(\d+)", path)) and method == "GET":
            number = int(m.group(1))
            if number in self.pulls:
                return 200, self.pulls[number], {}
            known = [p for ps in self.commit_pulls.values() for p in ps if p["number"] == number]
            return 200, known[0] if known else self._pull(number, "0" * 40, merged=False, merge_sha=""), {}
        if (m := re.fullmatch(r"/pulls/(\d+)/reviews", path)) and method == "GET":
            return 200, self.reviews.get(int(m.group(1)), []), {}
        if (m := re.fullmatch(r"/pulls/(\d+)/requested_reviewers", path)) and method == "GET":
            users, teams = self.review_requests.get(int(m.group(1)), ([], []))
            return (
                200,
                {
                    "users": [{**copy.deepcopy(USER_TEMPLATE), "login": u, "type": "User"} for u in users],
                    "teams": [{"id": i + 1, "slug": t, "name": t} for i, t in enumerate(teams)],
                },
                {},
            )
        if m := re.fullmatch(r"/commits/([0-9a-f]{40})/comments", path):
            if method == "GET":
                return 200, self.commit_comments.get(m.group(1), []), {}
            comment = {**self._comment(0, request.body()["body"], token), "commit_id": m.group(1)}
            self.commit_comments.setdefault(m.group(1), []).append(comment)
            return 201, comment, {}
        if m := re.fullmatch(r"/commits/([0-9a-f]{40})/pulls", path):
            return 200, self.commit_pulls.get(m.group(1), []), {}
        if path == "/deployments" and method == "POST":
            data = request.body()
            deployment_id = next(self._ids)
            deployment = {
                "id": deployment_id,
                "url": f"{self.url}/repos/{self.repository}/deployments/{deployment_id}",
                "sha": data["ref"],
                "ref": data["ref"],
                "environment": data["environment"],
                "description": data.get("description"),
                "task": "deploy",
                "payload": {},
            }
            self.deployments.append(deployment)
            return 201, deployment, {}
        if (m := re.fullmatch(r"/deployments/(\d+)/statuses", path)) and method == "POST":
            data = request.body()
            status = {
                "id": next(self._ids),
                "state": data["state"],
                "description": data.get("description", ""),
            }
            self.deployment_statuses.setdefault(int(m.group(1)), []).append(status)
            return 201, status, {}
        return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}, {}
