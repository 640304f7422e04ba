"""The reconciler's HTTP surface, run for real on loopback ports: webhook payloads GitHub may send
(and ones it never would), deliveries shared by two replicas on one PostgreSQL, the security
headers and the absent API docs, /readyz as the database and the source make it, and the
dashboard's failures, drift and history (with an apply made by the CLI on the same state)."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from conftest import git, local_repo, run
from sqlalchemy import create_engine, func, select
from test_reconciler import PUSH, SECRET, TOKEN, Service, free_port, ready, running_service

from reconciler.app import create_app
from reconciler.config import ServiceSettings
from reconciler.store import deliveries_table

MASTER_PUSH = {**PUSH, "ref": "refs/heads/master", "deleted": False}
FORM = "application/x-www-form-urlencoded"


def signed(
    svc: Service, body: bytes, delivery: str, content_type: str = "application/json"
) -> httpx.Response:
    """POST `body` to the webhook as GitHub would: signed as sent, with its delivery id."""
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": signature,
        "Content-Type": content_type,
    }
    return svc.http.post("/webhooks/github", content=body, headers=headers)


@contextmanager
def serving(settings: ServiceSettings, repo: Path, wait_ready: bool = True) -> Iterator[Service]:
    """The real service for `settings` on its loopback port, until the block ends."""
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert settings.state_dir is not None
    svc = Service(f"http://127.0.0.1:{settings.port}", repo, settings.state_dir)
    svc.wait(lambda: _answers(svc, "/readyz" if wait_ready else "/healthz"), timeout=30)
    try:
        yield svc
    finally:
        server.should_exit = True
        thread.join(120)


def _answers(svc: Service, path: str) -> bool:
    try:
        return svc.http.get(path).status_code == 200
    except httpx.HTTPError:
        return False


def light_settings(tmp_path: Path, **extra: object) -> ServiceSettings:
    """A service watching a folder with no environment yet: nothing to reconcile, fast to start."""
    (tmp_path / "environments").mkdir(exist_ok=True)
    return ServiceSettings(
        **{
            "path": tmp_path / "environments",
            "branch": "master",
            "state_dir": tmp_path / "state",
            "port": free_port(),
            "interval": 3600,
            "coalesce_seconds": 0.5,
            "api_token": TOKEN,
            "webhook_secret": SECRET,
            **extra,
        }
    )


# -- webhooks -------------------------------------------------------------------------------------


def test_webhook_bodies_github_never_sends_are_refused_and_not_recorded_as_handled(tmp_path: Path):
    with serving(light_settings(tmp_path), tmp_path) as svc:
        delivery = str(uuid.uuid4())
        for body in (
            b"[]",
            b"null",
            b'"push"',
            b"[" * 30_000 + b"]" * 30_000,  # deeper than Python's parser goes
            b'{"ref": "refs/heads/master", "a":' * 100 + b"1" + b"}" * 100,  # parses, but no webhook nests so
        ):
            answer = signed(svc, body, delivery)
            assert answer.status_code == 400, (body[:40], answer.text)
            assert "payload is" in answer.json()["error"]
        # GitHub redelivers the same delivery, now intact: it is handled, not ignored as a repeat
        answer = signed(svc, json.dumps(MASTER_PUSH).encode(), delivery)
        assert (answer.status_code, answer.json()) == (202, {"queued": []})
        assert signed(svc, json.dumps(MASTER_PUSH).encode(), delivery).json() == {
            "ignored": "delivery already received"
        }


def test_a_form_encoded_webhook_is_accepted_as_github_signs_it(tmp_path: Path):
    """GitHub's other content type: `payload=<url-encoded JSON>`, signed as sent."""
    with serving(light_settings(tmp_path), tmp_path) as svc:
        body = urlencode({"payload": json.dumps(MASTER_PUSH)}).encode()
        answer = signed(svc, body, str(uuid.uuid4()), f"{FORM}; charset=utf-8")
        assert (answer.status_code, answer.json()) == (202, {"queued": []})
        other = urlencode({"payload": json.dumps({**MASTER_PUSH, "ref": "refs/heads/feature"})}).encode()
        assert signed(svc, other, str(uuid.uuid4()), FORM).json() == {
            "ignored": "refs/heads/feature is not the watched branch master"
        }
        answer = signed(svc, b"ref=refs%2Fheads%2Fmaster", str(uuid.uuid4()), FORM)
        assert answer.status_code == 400
        assert answer.json() == {"error": "form-encoded body has no single payload field"}


def test_old_deliveries_are_pruned_when_new_ones_arrive(tmp_path: Path):
    settings = light_settings(tmp_path)
    with serving(settings, tmp_path) as svc:
        database = create_engine(settings.database)
        old = datetime.now(UTC) - timedelta(days=30)
        with database.begin() as conn:
            conn.execute(deliveries_table.insert(), [{"delivery": f"old-{i}", "at": old} for i in range(50)])
        assert signed(svc, json.dumps(MASTER_PUSH).encode(), "new-delivery").status_code == 202
        with database.connect() as conn:
            assert conn.execute(select(func.count()).select_from(deliveries_table)).scalar() == 1
        database.dispose()


def _passes(replicas: list[Service]) -> int:
    return sum(r.passes() for r in replicas)


def passes_of(svc: Service, environment: str) -> int:
    """Passes over `environment` so far, from the service's metrics."""
    prefix = f'stackward_reconcile_duration_seconds_count{{environment="{environment}"}}'
    for line in svc.http.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            return int(float(line.split()[-1]))
    return 0


def test_two_replicas_on_one_postgres_share_deliveries_and_readyz_follows_the_database(
    tmp_path: Path, store_template: Path
):
    """Two services on one database (and one state store): a delivery id longer than 128
    characters, and one delivery both receive at the same moment, each cause exactly one pass;
    with PostgreSQL stopped, /readyz says the database is not ready."""
    from postgres import _as_postgres, postgres_server

    repo, state = local_repo(tmp_path, store_template)
    with postgres_server() as url:
        database = url.replace("postgres://", "postgresql+psycopg://").split("?")[0]

        def replica() -> ServiceSettings:
            return ServiceSettings(
                path=repo / "environments",
                branch="master",
                state_dir=state,
                database_url=database,
                port=free_port(),
                interval=3600,
                coalesce_seconds=0.5,
                api_token=TOKEN,
                webhook_secret=SECRET,
            )

        with serving(replica(), repo) as first, serving(replica(), repo) as second:
            replicas = [first, second]
            first.wait(ready(first, "Applied"))  # one replica applied; the other skipped or followed
            first.wait(lambda: first.condition("Reconciling").get("status") == "False")
            passes = _passes(replicas)
            body = json.dumps(MASTER_PUSH).encode()

            long_id = "x" * 300
            answer = signed(first, body, long_id)
            assert (answer.status_code, answer.json()) == (202, {"queued": ["local"]})
            assert signed(second, body, long_id).json() == {"ignored": "delivery already received"}
            first.wait(lambda: _passes(replicas) == passes + 1)

            delivery = str(uuid.uuid4())
            barrier = threading.Barrier(4)
            answers: list[httpx.Response] = []

            def send(svc: Service) -> None:
                sender = Service(svc.url, repo, state)  # its own connection
                barrier.wait()
                answers.append(signed(sender, body, delivery))

            senders = [threading.Thread(target=send, args=(r,)) for r in (first, second, first, second)]
            for sender in senders:
                sender.start()
            for sender in senders:
                sender.join(60)
            assert [a.status_code for a in answers] == [202] * 4, [a.text for a in answers]
            assert sorted(json.dumps(a.json()) for a in answers) == sorted(
                [json.dumps({"queued": ["local"]})]
                + [json.dumps({"ignored": "delivery already received"})] * 3
            )
            first.wait(lambda: _passes(replicas) == passes + 2)
            time.sleep(1.5)  # past the coalescing window: no other pass follows
            assert _passes(replicas) == passes + 2

            assert first.http.get("/readyz").json() == {
                "ready": True,
                "checks": {"loop": "ok", "database": "ok", "source": "ok"},
            }
            with create_engine(database).connect() as conn:
                data = conn.exec_driver_sql("SHOW data_directory").scalar()
            subprocess.run(
                _as_postgres(["pg_ctl", "-D", data, "-m", "fast", "stop"]), check=True, capture_output=True
            )
            for svc in replicas:
                answer = svc.http.get("/readyz")
                assert answer.status_code == 503
                assert answer.json()["checks"]["database"] == "the database does not answer"
                assert database not in answer.text


# -- hardening ------------------------------------------------------------------------------------


def test_api_docs_are_not_served_and_every_response_carries_the_security_headers(tmp_path: Path):
    with serving(light_settings(tmp_path, read_requires_token=True), tmp_path) as svc:
        assert svc.http.get("/docs").status_code == 404
        assert svc.http.get("/redoc").status_code == 404
        assert svc.http.get("/docs/oauth2-redirect").status_code == 404
        assert svc.http.get("/openapi.json").status_code == 401  # reads require the token
        auth = {"Authorization": f"Bearer {TOKEN}"}
        described = svc.http.get("/openapi.json", headers=auth).json()
        assert "/api/environments/{name}" in described["paths"]

        for path, headers, status in (
            ("/", auth, 200),
            ("/", {}, 401),
            ("/environments/nowhere", auth, 404),
            ("/api/environments", auth, 200),
            ("/healthz", {}, 200),
        ):
            answer = svc.http.get(path, headers=headers)
            assert answer.status_code == status, path
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["x-frame-options"] == "DENY"
            assert answer.headers["referrer-policy"] == "no-referrer"
            policy = answer.headers["content-security-policy"]
            assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
            assert "http" not in policy and "*" not in policy and "unsafe" not in policy
        page = svc.http.get("/", headers=auth).text
        assert "<script" not in page and "http" not in page.replace('http-equiv="refresh"', "")


def test_replicas_starting_at_once_on_an_empty_database_create_its_tables_once():
    """Replicas of a new deployment start together: each creates the tables it needs, and
    none fails because another was creating them at the same moment."""
    from postgres import postgres_server

    from reconciler.store import Store

    with postgres_server() as url:
        database = url.replace("postgres://", "postgresql+psycopg://").split("?")[0]
        barrier = threading.Barrier(4)
        failures: list[BaseException] = []
        stores: list[Store] = []

        def start() -> None:
            barrier.wait()
            try:
                stores.append(Store(database))
            except BaseException as exc:  # (what a replica's start would die of)
                failures.append(exc)

        replicas = [threading.Thread(target=start) for _ in range(4)]
        for replica in replicas:
            replica.start()
        for replica in replicas:
            replica.join(60)
        assert failures == [] and len(stores) == 4
        for store in stores:
            store.ping()
            store.engine.dispose()


def test_readyz_says_when_the_source_is_not_checked_out_or_its_last_fetch_failed(tmp_path: Path):
    """A remote with one environment whose specs are invalid: each pass fetches, then stops. A
    remote that does not answer when the service starts is cloned once it does."""
    origin = tmp_path / "origin"
    (origin / "environments/broken").mkdir(parents=True)
    (origin / "environments/broken/environment.yaml").write_text("kind: Environment\nspec: 3\n")
    git(tmp_path, "init", "-q", "-b", "master", str(origin))
    git(origin, "add", "-A")
    git(origin, "commit", "-qm", "environments")
    away = tmp_path / "origin-away"
    settings = light_settings(tmp_path, path=Path("environments"), remote=str(origin))
    auth = {"Authorization": f"Bearer {TOKEN}"}

    origin.rename(away)  # the remote does not answer when the service starts
    with serving(settings.model_copy(update={"backoff": 1.0}), tmp_path, wait_ready=False) as svc:
        answer = svc.http.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["checks"] == {
            "loop": "ok",
            "database": "ok",
            "source": "the environments repository is not cloned yet",
        }
        assert str(origin) not in answer.text
        away.rename(origin)  # it answers again: the clone is tried again, without a restart
        svc.wait(lambda: passes_of(svc, "broken") >= 1)

    with serving(settings, tmp_path) as svc:
        passes = lambda: passes_of(svc, "broken")  # noqa: E731
        svc.wait(lambda: passes() >= 1)
        origin.rename(away)
        before = passes()
        assert svc.http.post("/api/environments/broken/reconcile", headers=auth).status_code == 202
        svc.wait(lambda: passes() > before)
        answer = svc.http.get("/readyz")
        assert (answer.status_code, answer.json()["checks"]["source"]) == (
            503,
            "the last fetch of branch master failed",
        )
        away.rename(origin)
        before = passes()
        svc.http.post("/api/environments/broken/reconcile", headers=auth)
        svc.wait(lambda: passes() > before)
        assert svc.http.get("/readyz").status_code == 200


def test_a_remote_that_stops_answering_fails_the_fetch_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A git server that accepts the connection and never answers (a hung remote): git is
    stopped after GIT_TIMEOUT, the pass gets a SourceError, and the half-made clone is not
    taken for a clone."""
    from reconciler import source

    monkeypatch.setattr(source, "GIT_TIMEOUT", 1.0)
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen()
        remote = f"git://127.0.0.1:{hung.getsockname()[1]}/environments.git"
        watched = source.Source(light_settings(tmp_path, path=Path("environments"), remote=remote))
        with pytest.raises(source.SourceError) as failed:
            watched.sync()
    assert str(failed.value) == "git clone did not finish within 1 s: check that the remote answers"
    # the clone stopped half way is not taken for a clone by the next pass
    assert watched.fetch_failed and watched.problem() == "the environments repository is not cloned yet"
    assert not watched.clone.exists()


# -- the dashboard --------------------------------------------------------------------------------

HOSTILE = "<img src=x onerror=alert(1)> & 'environments' are refused"


def test_the_dashboard_shows_the_failure_unknown_drift_and_every_apply_in_the_ledger(
    tmp_path: Path, store_template: Path
):
    from stackward.state.ledger import Ledger
    from stackward.state.local import LocalStore

    with running_service(tmp_path, store_template) as svc:
        svc.wait(ready(svc, "Applied"))
        page = svc.http.get("/").text
        assert "<span class=ok>none</span>" in page  # planned and applied: no drift
        assert '<meta http-equiv="refresh" content="30">' in page

        # an apply by the CLI on the same state folder
        builder = (
            "apiVersion: stackward.dev/v1alpha1\nkind: StackComponent\nmetadata: {name: local-builder}\n"
            "spec: {type: image_builder, flavor: local}\n"
        )
        (svc.repo / "environments/local/builder.yaml").write_text(builder)
        git(svc.repo, "add", "-A")
        git(svc.repo, "commit", "-qm", "a builder")
        applied = run("apply", str(svc.repo / "environments"), "--state-dir", str(svc.state))
        assert applied.exit_code == 0, applied.output
        # an Action run that died in the middle of its apply: started, never finished
        Ledger(LocalStore(svc.state), "local").record(
            "started",
            "0123456789ab",
            revision=git(svc.repo, "rev-parse", "HEAD"),
            changes=["create zenml.StackComponent.local-trainer"],
            by="stackward (GitHub Action, https://github.com/acme/environments/actions/runs/7)",
        )

        # a module whose plan fails, with a message a PR author wrote
        module = svc.repo / "environments/_modules/local-base/main.tf"
        module.write_text(
            module.read_text().replace(
                'variable "environment" {\n  type = string\n}',
                'variable "environment" {\n  type = string\n  validation {\n'
                '    condition     = var.environment != "local"\n'
                f"    error_message = {json.dumps(HOSTILE)}\n  }}\n}}",
            )
        )
        git(svc.repo, "commit", "-qam", "refuse local")
        svc.reconcile()
        assert svc.condition("Ready")["reason"] == "PlanFailed", svc.condition("Ready")

        overview = svc.http.get("/").text
        assert "unknown" in overview and ">none<" not in overview and ">drifted<" not in overview
        assert "&lt;img src=x onerror=alert(1)&gt; &amp; &#x27;environments&#x27; are refused" in overview
        assert "<img" not in overview

        detail = svc.http.get("/environments/local").text
        assert "unknown" in detail and "<img" not in detail
        assert "&lt;img src=x onerror=alert(1)&gt;" in detail
        assert detail.count("stackward (reconciler)") == 1
        assert detail.count("stackward (CLI)") == 1
        assert "stackward (GitHub Action, https://github.com/acme/environments/actions/runs/7)" in detail
        assert "interrupted" in detail and "stopped before it finished" in detail
        assert "create zenml.StackComponent.local-builder" in detail
        assert '<meta http-equiv="refresh" content="30">' in detail
