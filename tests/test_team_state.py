"""Issue #12, per-environment state that outlives the machine: the team set-up, where an
environment's ZenML registrations are on a ZenML server, its Terraform state in PostgreSQL (the
`pg` backend) and its locks, ledger and applied revision in the PostgreSQL state store
(`--state-url`). Two "machines" are two state folders (`--state-dir`) applying from the same git
repository; nothing one of them needs may live only in its folder.

Machine A, when it must be busy in the middle of an apply, is a child process holding the
environment's lock in the state store, as `stackward apply` does, and then killed with SIGKILL.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from conftest import EXAMPLES, Result, git, run, write
from postgres import postgres_server
from zenml_server import clear_registrations

from stackward.state.ledger import Ledger
from stackward.state.postgres import PostgresStore

HEAD = "apiVersion: stackward.dev/v1alpha1\n"
EMBEDDED = "  zenml:\n    mode: embedded\n"
LOCAL_BACKEND = "  terraform:\n    backend:\n      type: local\n"
ARTIFACT_ROOT = "    artifact_root: ../artifacts"
# The default policies allow local flavors only in dev and local: stage and live register a
# container registry of ZenML's built-in `default` flavor instead of the local stack.
REGISTRY = HEAD + (
    "kind: StackComponent\nmetadata:\n  name: ${env.name}-registry\nspec:\n  type: container_registry\n"
    "  flavor: default\n  configuration:\n    uri: registry.example\n    default_repository: ${env.name}\n"
)
LOCAL_NAMES = {"stacks": {"local-stack"}, "components": {"local-artifact-store", "local-orchestrator"}}
HOLD = """
import sys, time
from stackward.state.postgres import PostgresStore
with PostgresStore.at(sys.argv[1]).hold(sys.argv[2], sys.argv[3], 60):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def fresh_database(server: str) -> str:
    """The URL of a new, empty database on `server`."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))


class Team:
    """A git repository of team-mode environments, and the machines that apply them."""

    def __init__(self, root: Path, zenml: tuple[str, str], state_url: str, terraform_url: str, monkeypatch):
        self.root = root
        self.envs = root / "repo" / "environments"
        self.zenml = zenml
        self.state_url = state_url
        self.terraform_url = terraform_url
        self.artifacts = root / "shared-artifacts"  # an absolute path: the same from every machine
        shutil.copytree(EXAMPLES / "_modules", self.envs / "_modules")
        shutil.copytree(EXAMPLES.parent / "policies", self.envs.parent / "policies")
        monkeypatch.setenv("STACKWARD_POLICIES", str(self.envs.parent / "policies"))
        monkeypatch.setenv("ZENML_TEST_API_KEY", zenml[1])
        monkeypatch.setenv("PG_CONN_STR", terraform_url)
        clear_registrations(*zenml)

    def environment(self, name: str, *, after: str | None = None) -> None:
        """`name`, made from the example `local` environment: on the ZenML server, its
        Terraform state in PostgreSQL (a schema of its own), promoted after `after`."""
        shutil.copytree(EXAMPLES / "local", self.envs / name)
        text = (self.envs / name / "environment.yaml").read_text()
        for old in (EMBEDDED, LOCAL_BACKEND, ARTIFACT_ROOT):
            assert old in text, old
        text = (
            text.replace(
                EMBEDDED,
                f"  zenml:\n    mode: server\n    url: {self.zenml[0]}\n    apiKeyEnv: ZENML_TEST_API_KEY\n",
            )
            .replace(
                LOCAL_BACKEND,
                # Terraform sees only the credentials the environment declares
                "  credentials:\n    plan: {PG_CONN_STR: PG_CONN_STR}\n"
                f"  terraform:\n    backend:\n      type: pg\n      config: {{schema_name: tf_{name}}}\n"
                + (f"  promotion:\n    after: {after}\n" if after else ""),
            )
            .replace(ARTIFACT_ROOT, f"    artifact_root: {self.artifacts}")
        )
        if name != "local":
            text = text.replace("  name: local\n", f"  name: {name}\n").replace(
                "    environment: local\n", f"    environment: {name}\n"
            )
            (self.envs / name / "stack.yaml").unlink()
            write(self.envs, {f"{name}/registry.yaml": REGISTRY})
        write(self.envs, {f"{name}/environment.yaml": text})

    def commit(self) -> str:
        """Make the repository a git repository with one commit; its revision."""
        repo = self.envs.parent
        git(self.root, "init", "-q", "-b", "master", str(repo))
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "team environments")
        return git(repo, "rev-parse", "HEAD")

    def machine(self, name: str) -> Path:
        return self.root / f"machine-{name}"

    def on(self, machine: str, *args: str, shared: bool = True) -> Result:
        """`stackward ARGS` on `machine` (its own state folder), with the shared state store."""
        url = ("--state-url", self.state_url) if shared else ()
        return run(*args, "--state-dir", str(self.machine(machine)), *url)

    def apply(self, machine: str, env: str, *args: str) -> Result:
        return self.on(machine, "apply", str(self.envs), "--env", env, *args)

    def history(self, machine: str, env: str, *args: str, shared: bool = True) -> Result:
        return self.on(machine, "history", env, str(self.envs), *args, shared=shared)

    def registered(self) -> dict[str, set[str]]:
        """The names of the stacks and components on the ZenML server, read over its REST API."""
        url, key = self.zenml
        with httpx.Client(base_url=f"{url}/api/v1", timeout=30) as client:
            login = client.post("/login", data={"password": key})
            login.raise_for_status()
            client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            names = {}
            for route in ("stacks", "components"):
                page = client.get(f"/{route}", params={"size": 1000})
                page.raise_for_status()
                names[route] = {item["name"] for item in page.json()["items"]} - {"default"}
            return names

    def ledger(self, env: str) -> list[dict]:
        return Ledger(PostgresStore.at(self.state_url), env).applies()

    def nothing_kept_on(self, machine: str, env: str) -> None:
        """The machine's folder holds no ledger, lock, applied revision or Terraform state."""
        folder = self.machine(machine) / env
        kept = ["lock", "ledger.jsonl", "applied.json", "terraform.tfstate", "terraform/terraform.tfstate"]
        assert [name for name in kept if (folder / name).exists()] == []


@pytest.fixture
def team(tmp_path: Path, zenml_server: tuple[str, str], pg_server: str, monkeypatch) -> Team:
    """One PostgreSQL database for the state store and the Terraform state alike."""
    url = fresh_database(pg_server)
    return Team(tmp_path, zenml_server, url, url, monkeypatch)


def _held_by_machine_a(url: str, env: str) -> subprocess.Popen:
    """Machine A in the middle of applying `env`: a process holding its lock in the state store."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, url, env, f"stackward apply {env} (machine A)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline() == "held\n"
    except BaseException:
        child.kill()
        child.wait()
        raise
    return child


def _ledger_entry(result: Result, env: str) -> str:
    found = re.search(rf"^{env}: applied \d+ change\(s\) \(ledger entry (\w+)\)$", result.output, re.M)
    assert found, result.output
    return found.group(1)


def test_two_machines_share_one_lock_ledger_and_state(team: Team):
    team.environment("local")
    revision = team.commit()
    a = _held_by_machine_a(team.state_url, "local")
    try:
        refused = team.apply("b", "local", "--lock-timeout", "1")
        assert refused.exit_code == 1, refused.output
        assert re.search(
            rf"environment local is locked by stackward apply local \(machine A\) \(pid {a.pid} on .*"
            r"gave up after 1 s",
            refused.output,
        ), refused.output
        assert "applied" not in refused.output
        assert team.registered() == {"stacks": set(), "components": set()}
        assert team.ledger("local") == []
    finally:
        a.kill()  # kill -9: machine A never releases anything
        a.wait()

    applied = team.apply("b", "local", "--lock-timeout", "10")  # no `stackward unlock` first
    assert applied.exit_code == 0, applied.output
    assert "local: +4 ~0 -0 ±0" in applied.output
    by_b = _ledger_entry(applied, "local")
    assert team.registered() == LOCAL_NAMES

    again = team.apply("a", "local", "--lock-timeout", "10")  # A's folder is empty
    assert again.exit_code == 0, again.output
    assert "local: no changes" in again.output
    assert team.registered() == LOCAL_NAMES

    history = team.history("a", "local", "--format", "json")
    assert history.exit_code == 0, history.output
    applies = json.loads(history.output)
    assert applies == team.ledger("local")
    assert [(x["apply"], x["result"], x["revision"]) for x in applies] == [(by_b, "success", revision)]
    assert len(applies[0]["done"]) == len(applies[0]["planned"]) == 4
    assert PostgresStore.at(team.state_url).applied("local").revision == revision
    team.nothing_kept_on("a", "local")
    team.nothing_kept_on("b", "local")


def test_history_on_any_machine(team: Team, tmp_path: Path):
    team.environment("local")
    revision = team.commit()
    plan = team.on("b", "plan", str(team.envs), "--env", "local", "--out", str(tmp_path / "plan.json"))
    assert plan.exit_code == 0, plan.output
    (planned,) = json.loads((tmp_path / "plan.json").read_text())["environments"]
    applied = team.apply("b", "local", "--plan", str(tmp_path / "plan.json"))
    assert applied.exit_code == 0, applied.output
    by_b = _ledger_entry(applied, "local")

    history = team.history("a", "local")
    assert history.exit_code == 0, history.output
    (line,) = history.output.strip().splitlines()
    assert re.search(
        rf"  {revision[:12]}  {planned['hash'][:12]}  success      4/4 done  stackward \(CLI\)$", line
    ), line
    (entry,) = json.loads(team.history("a", "local", "--format", "json").output)
    assert (entry["apply"], entry["revision"], entry["plan_hash"], entry["result"]) == (
        by_b,
        revision,
        planned["hash"],
        "success",
    )
    # What machine A's own folder knows: nothing.
    alone = team.history("a", "local", shared=False)
    assert alone.exit_code == 0, alone.output
    assert "local: nothing applied yet" in alone.output


def test_promotion_through_the_shared_ledger(
    tmp_path: Path, zenml_server: tuple[str, str], pg_server: str, monkeypatch
):
    """Two databases: one for the state store, one for the Terraform state."""
    team = Team(tmp_path, zenml_server, fresh_database(pg_server), fresh_database(pg_server), monkeypatch)
    team.environment("stage")
    team.environment("live", after="stage")
    revision = team.commit()

    refused = team.apply("b", "live")
    assert refused.exit_code == 1, refused.output
    assert (
        f"live: it is promoted after stage, which has not applied {revision[:12]} "
        "(stage has applied nothing yet, by PostgreSQL at" in refused.output
    ), refused.output
    assert team.registered()["components"] == set()
    assert team.ledger("live") == []

    staged = team.apply("a", "stage")
    assert staged.exit_code == 0, staged.output
    _ledger_entry(staged, "stage")
    assert PostgresStore.at(team.state_url).applied("stage").revision == revision

    promoted = team.apply("b", "live")
    assert promoted.exit_code == 0, promoted.output
    by_b = _ledger_entry(promoted, "live")
    assert team.registered()["components"] == {"stage-registry", "live-registry"}
    assert [(x["apply"], x["result"], x["revision"]) for x in team.ledger("live")] == [
        (by_b, "success", revision)
    ]
    for machine, env in (("a", "stage"), ("b", "live")):
        team.nothing_kept_on(machine, env)
