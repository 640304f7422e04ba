"""Benchmark: one reconcile pass over environments with nothing to do (time and peak memory),
and webhook throughput with signature checks, against the real service on loopback.

Target (issue 6): 100 environments x 20 resources in under 10 s and 300 MB. Each environment's
registrations are read by a ZenML worker process of its own (ZenML's configuration is
process-wide), which costs seconds per environment: run with --environments 100 to see it.

    .venv/bin/python bench/reconciler_bench.py [--environments 10] [--resources 20] [--webhooks 2000]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import resource
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import git  # noqa: E402
from zenml_tools import copy_store, make_store  # noqa: E402

from reconciler.app import create_app  # noqa: E402
from reconciler.config import Settings  # noqa: E402
from reconciler.metrics import Metrics  # noqa: E402
from reconciler.service import Reconciler  # noqa: E402
from reconciler.store import Store  # noqa: E402

HEAD = "apiVersion: stackward.dev/v1alpha1\n"


def make_repo(root: Path, environments: int, resources: int) -> None:
    for e in range(environments):
        env = root / f"env{e:03d}"
        env.mkdir(parents=True)
        (env / "environment.yaml").write_text(
            HEAD + f"kind: Environment\nmetadata: {{name: env{e:03d}}}\n"
            f"spec: {{bases: [], labels: {{environment: env{e:03d}, team: ml}}}}\n"
        )
        docs = [
            HEAD
            + f"kind: StackComponent\nmetadata: {{name: env{e:03d}-builder-{i}}}\nspec: {{type: image_builder, flavor: local}}\n"
            for i in range(resources)
        ]
        (env / "specs.yaml").write_text("---\n".join(docs))
    git(root.parent, "init", "-q", "-b", "main", str(root.parent))
    git(root.parent, "add", "-A")
    git(root.parent, "commit", "-qm", "bench")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--environments", type=int, default=10)
    parser.add_argument("--resources", type=int, default=20)
    parser.add_argument("--webhooks", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / "repo" / "environments"
        make_repo(root, args.environments, args.resources)
        template = make_store(tmp / "template")
        state = tmp / "state"
        for e in range(args.environments):
            copy_store(template, state, f"env{e:03d}")
        settings = Settings(
            path=root, branch="main", state_dir=state, interval=3600, webhook_secret="bench", api_token="t"
        )
        reconciler = Reconciler(settings, Store(f"sqlite:///{tmp / 'db.sqlite'}"), Metrics())
        names = reconciler.environments()
        for name in names:  # first pass applies; the measured one has nothing to do
            reconciler.reconcile(name)
        start = time.perf_counter()
        for name in names:
            status = reconciler.reconcile(name)
            assert status.ready, status.to_dict()
        elapsed = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(
            f"reconcile pass, nothing to do: {len(names)} environments x {args.resources} resources in {elapsed:.1f} s "
            f"({elapsed / len(names):.2f} s each; target for 100: < 10 s); peak memory: service {peak:.0f} MiB, "
            f"largest worker {children:.0f} MiB (target < 300 MB)"
        )

        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}")
        while True:
            try:
                client.get("/healthz")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
        signature = "sha256=" + hmac.new(b"bench", body, hashlib.sha256).hexdigest()
        headers = {
            "X-GitHub-Event": "ping",
            "X-Hub-Signature-256": signature,
            "Content-Type": "application/json",
        }
        start = time.perf_counter()
        for _ in range(args.webhooks):
            assert client.post("/webhooks/github", content=body, headers=headers).status_code == 200
        elapsed = time.perf_counter() - start
        print(
            f"webhooks with signature checks: {args.webhooks / elapsed:,.0f} per second "
            f"({args.webhooks} sequential requests on loopback)"
        )
        server.should_exit = True
        thread.join(30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
