"""The GitHub Action's test world: a real git repository with base and head commits, the real
webhook payloads from ../shared/fixtures/github-webhooks/ (adapted only in SHAs, file lists and
fork owner, as each test shows), and the local GitHub API stand-in (tests/github_standin.py)."""

from __future__ import annotations

import copy
import json
import shutil
import urllib.request
from pathlib import Path

import pytest
from conftest import EXAMPLES, git, run, write
from fixtures_path import shared_fixtures
from github_standin import GitHubStandIn
from zenml_tools import copy_store

WEBHOOKS = shared_fixtures() / "github-webhooks"
REPOSITORY = "Codertocat/Hello-World"  # as in the recorded payloads
ACTIONS_TOKEN = "ghs_test_token"  # the stand-in takes a token it does not know for the Actions token
HEAD = "apiVersion: stackward.dev/v1alpha1\n"
BUILDER = (
    HEAD
    + "kind: StackComponent\nmetadata: {name: local-builder}\nspec: {type: image_builder, flavor: local}\n"
)


def payload(name: str, **changes) -> dict:
    """A recorded webhook payload, with the values at the dotted paths in `changes` replaced."""
    data = copy.deepcopy(json.loads((WEBHOOKS / name).read_text()))
    for dotted, value in changes.items():
        target = data
        *parents, last = dotted.split(".")
        for part in parents:
            target = target[part]
        target[last] = value
    return data


class World:
    """A repository, its state folder, the API stand-in and the event being delivered."""

    def __init__(self, root: Path, github: GitHubStandIn, monkeypatch: pytest.MonkeyPatch):
        self.repo = root / "repo"
        self.state = root / "state"
        self.github = github
        self.monkeypatch = monkeypatch
        self.events = root / "events"
        self.events.mkdir()
        self.summary = root / "summary.md"
        self.outputs = root / "outputs.txt"

    def commit(self, files: dict[str, str], message: str) -> str:
        write(self.repo, files)
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-qm", message)
        return git(self.repo, "rev-parse", "HEAD")

    def deliver(self, event_name: str, event: dict, sha: str, token: str = ACTIONS_TOKEN):
        """Run the action for the event at `sha` with the job's `token`, as GitHub would."""
        path = self.events / f"{len(list(self.events.iterdir()))}.json"
        path.write_text(json.dumps(event))
        for key, value in {
            "GITHUB_EVENT_NAME": event_name,
            "GITHUB_EVENT_PATH": str(path),
            "GITHUB_REPOSITORY": REPOSITORY,
            "GITHUB_SHA": sha,
            "GITHUB_API_URL": self.github.url,
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_RUN_ID": "42",
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "GITHUB_OUTPUT": str(self.outputs),
            "GITHUB_TOKEN": token,
            "STACKWARD_API_BACKOFF": "0.05",
        }.items():
            self.monkeypatch.setenv(key, value)
        self.monkeypatch.chdir(self.repo)
        self.github.requests.clear()
        return run("action", "--state-dir", str(self.state))

    def merge(self, head: str, *how: str) -> tuple[str, dict]:
        """Merge the feature branch into master as pull request #2 with `head` as its head (a
        merge commit, or `how` as `git merge` options): the new master and the push event for it."""
        git(self.repo, "checkout", "-q", "master")
        before = git(self.repo, "rev-parse", "HEAD")
        git(self.repo, "merge", "-q", *(how or ("--no-ff",)), "feature", "-m", "Merge pull request #2")
        merge = git(self.repo, "rev-parse", "HEAD")
        self.github.merged(merge, 2, head)
        push = payload(
            "push.json", ref="refs/heads/master", before=before, after=merge, deleted=False, created=False
        )
        return merge, push

    def pull_request(self, action: str, base: str, head: str, token: str = ACTIONS_TOKEN, **changes):
        event = payload(
            "pull_request.opened.json",
            action=action,
            **{"pull_request.head.sha": head, "pull_request.base.sha": base, **changes},
        )
        return self.deliver("pull_request", event, head, token)

    def comment_as(self, token: str, number: int, body: str) -> None:
        """Comment on pull request `number` through the API, as whoever holds `token`."""
        request = urllib.request.Request(
            f"{self.github.url}/repos/{REPOSITORY}/issues/{number}/comments",
            data=json.dumps({"body": body}).encode(),
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:
            assert response.status == 201


@pytest.fixture(name="world")
def world_fixture(tmp_path: Path, store_template: Path, monkeypatch: pytest.MonkeyPatch):
    """The example `local` environment and the default policies committed on master, a fresh
    ZenML store, the API stand-in, and the feature branch checked out."""
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "local", repo / "environments" / "local")
    shutil.copytree(EXAMPLES / "_modules", repo / "environments" / "_modules")
    shutil.copytree(EXAMPLES.parent / "policies", repo / "policies")
    (repo / ".gitignore").write_text(".stackward/\n")
    git(repo.parent, "init", "-q", "-b", "master", str(repo))
    copy_store(store_template, tmp_path / "state", "local")
    with GitHubStandIn(REPOSITORY) as github:
        w = World(tmp_path, github, monkeypatch)
        w.base = w.commit({}, "environments")
        git(repo, "checkout", "-qb", "feature")
        yield w
