"""Benchmark: one reconcile pass over environments with nothing to do (time and peak memory),
and webhook throughput with signature checks, against the real service on loopback.

Target (issue 6): 100 environments x 20 resources in under 10 s and 300 MB. The service reads
every environment's registrations through one shared ZenML reader process, which reads a
store again only when its database changed: the first pass after the applies reads them all,
later passes find them unchanged; both are timed. The memory figure is the service's peak plus
the reader's peak over those passes (both processes run for all of them).

    .venv/bin/python bench/reconciler_bench.py [--environments 100] [--resources 20] [--webhooks 2000]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from zenml_tools import copy_store, make_store  # noqa: E402 (standard library only: no pytest here)

from reconciler.app import create_app  # noqa: E402
from reconciler.config import ServiceSettings  # noqa: E402
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
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(
            ["git", "-C", str(root.parent), "-c", "user.email=b@example.com", "-c", "user.name=b", *args],
            check=True,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_mb(pid: int | str | None) -> float:
    """A running process's peak resident memory (VmHWM), in MB."""
    if pid is None:
        return 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    return 0.0


def reset_peak(pid: int | str | None) -> None:
    """Start a new peak-memory measurement for a process (Linux: VmHWM restarts from VmRSS)."""
    if pid is not None:
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--environments", type=int, default=100)
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
        settings = ServiceSettings(
            path=root, branch="main", state_dir=state, interval=3600, webhook_secret="bench", api_token="t"
        )
        reconciler = Reconciler(settings, Store(f"sqlite:///{tmp / 'db.sqlite'}"), Metrics())
        names = reconciler.environments()
        with ThreadPoolExecutor(4) as pool:  # the first pass applies; the measured ones have nothing to do
            list(pool.map(reconciler.reconcile, names))
        for pid in ("self", reconciler.reader.pid):  # measure the passes with nothing to do only
            reset_peak(pid)
        timings = []
        for _ in range(2):  # the first reads every store the applies changed; the second finds them unchanged
            start = time.perf_counter()
            for name in names:
                status = reconciler.reconcile(name)
                assert status.ready and not status.drifted, status.to_dict()
            timings.append(time.perf_counter() - start)
        service, reader = peak_mb("self"), peak_mb(reconciler.reader.pid)
        print(
            f"reconcile pass, nothing to do, {len(names)} environments x {args.resources} resources "
            f"(target for 100: < 10 s and < 300 MB):\n"
            f"  right after the applies (every store read again): {timings[0]:.1f} s "
            f"({timings[0] / len(names):.3f} s each)\n"
            f"  stores unchanged since the last pass:             {timings[1]:.1f} s "
            f"({timings[1] / len(names):.3f} s each)\n"
            f"  peak memory: {service + reader:.0f} MB (service {service:.0f} MB + ZenML reader {reader:.0f} MB)"
        )
        reconciler.reader.close()

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
