"""Benchmark: the reconciler service on loopback (the real app under uvicorn, in this process),
over environments of 20 ZenML registrations each, with the default policies (but those the
bench's specs break on purpose):

- the first pass over 100 new environments (every one applies), one environment at a time
  (`concurrency: 1`) and at the default concurrency;
- the same over 40 environments that also have a Terraform apply waiting 3 s, as applies of
  cloud resources wait on the cloud's API;
- a pass with nothing to do at 100, 300 and 1,000 environments: its time, and the peak memory of
  the service and its ZenML processes during it (the sum of their proportional set sizes, so
  the pages the ZenML fork server shares with its children count once). The first such pass
  after the applies reads every store again (the applies changed them); later ones find them
  unchanged;
- the same pass while /metrics is scraped 4 times a second over HTTP, from another process
  (as Prometheus would; it is left out of the memory figure);
- webhook throughput with signature checks.

Targets (issue 16): a pass with nothing to do over 1,000 environments under 10 s and 400 MB;
the first pass over 100 environments at least 3x faster than one at a time. Figures are printed,
not asserted: the machine decides them. An apply of ZenML registrations alone is CPU in the
service and its ZenML worker (forked from the fork server: zenml is imported once), so
concurrency gains at most the number of cores there; applies that wait (Terraform on a cloud)
gain up to `concurrency` x.

    .venv/bin/python bench/reconciler_bench.py [--first 100] [--waiting 40] [--idle 100,300,1000]
                                               [--resources 20] [--webhooks 2000]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from zenml_tools import copy_store, make_store  # noqa: E402 (standard library only: no pytest here)

from reconciler.app import create_app  # noqa: E402
from reconciler.config import ServiceSettings  # noqa: E402
from reconciler.service import Reconciler  # noqa: E402
from reconciler.status import EnvironmentStatus, Type  # noqa: E402

HEAD = "apiVersion: stackward.dev/v1alpha1\n"
WAIT_MODULE = """resource "terraform_data" "wait" {
  provisioner "local-exec" {
    command = "sleep %g"
  }
}
"""


def make_repo(root: Path, environments: int, resources: int, waiting: float = 0) -> None:
    """`environments` environments of `resources` ZenML registrations each; with `waiting`, each
    also has a Terraform module whose apply waits that many seconds (as a cloud API would)."""
    ignored = ["local_flavors*"]  # the bench's components use the local flavor outside dev
    if waiting:
        (root / "environments" / "_modules" / "wait").mkdir(parents=True)
        (root / "environments" / "_modules" / "wait" / "main.tf").write_text(WAIT_MODULE % waiting)
        ignored.append("code_hazards*")  # the wait is a local-exec provisioner
    for e in range(environments):
        env = root / "environments" / f"env{e:04d}"
        env.mkdir(parents=True)
        (env / "environment.yaml").write_text(
            HEAD + f"kind: Environment\nmetadata: {{name: env{e:04d}}}\n"
            f"spec: {{bases: [], labels: {{environment: env{e:04d}, team: ml}}}}\n"
        )
        docs = [
            HEAD
            + f"kind: StackComponent\nmetadata: {{name: env{e:04d}-builder-{i}}}\nspec: {{type: image_builder, flavor: local}}\n"
            for i in range(resources)
        ]
        if waiting:
            docs.append(
                HEAD + "kind: Infrastructure\nmetadata: {name: wait}\nspec: {source: ../_modules/wait}\n"
            )
        (env / "specs.yaml").write_text("---\n".join(docs))
    # the default policies, but those the bench's specs break on purpose: the gate is on
    shutil.copytree(ROOT / "policies", root / "policies", ignore=shutil.ignore_patterns(*ignored))
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(
            ["git", "-C", str(root), "-c", "user.email=b@example.com", "-c", "user.name=b", *args],
            check=True,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """`pid` and every process started under it (the fork server, the ZenML reader, workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def pss_mb(pid: int) -> float:
    """A process's proportional set size in MB: its private memory plus its share of memory it
    shares (the fork server's pages its children share are counted once over all of them)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return 0.0


class MemorySampler:
    """The peak, over the time it runs, of the memory of this process and every process under
    it, sampled 5 times a second: (total MB, this process's MB at that moment)."""

    def __init__(self) -> None:
        self.peak = (0.0, 0.0)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self.done.wait(0.2):
            figures = {pid: pss_mb(pid) for pid in descendants(me) if pid not in NOT_THE_SERVICE}
            total = sum(figures.values())
            if total > self.peak[0]:
                self.peak = (total, figures[me])

    def __enter__(self) -> MemorySampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(30)


class Service:
    """`environments` new environments, and the service reconciling them on a loopback port."""

    def __init__(
        self,
        tmp: Path,
        template: Path,
        environments: int,
        resources: int,
        concurrency: int,
        waiting: float = 0,
    ):
        self.tmp = tmp
        make_repo(tmp / "repo", environments, resources, waiting)
        state = tmp / "state"
        for e in range(environments):
            copy_store(template, state, f"env{e:04d}")
        self.settings = ServiceSettings(
            path=tmp / "repo" / "environments",
            branch="main",
            state_dir=state,
            port=free_port(),
            interval=3600,
            coalesce_seconds=0.1,
            concurrency=concurrency,
            webhook_secret="bench",
            api_token="t",
        )
        self.names = [f"env{e:04d}" for e in range(environments)]
        self.app = create_app(self.settings)
        self.reconciler: Reconciler = self.app.state.reconciler
        # passes counted as they end (reading the metrics for it would load the service at scale)
        self.finished = dict.fromkeys(self.names, 0)
        self._run_pass = self.reconciler.run_pass
        self.reconciler.run_pass = self._counted  # type: ignore[method-assign]
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.settings.port, log_level="warning")
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.settings.port}", timeout=60)

    def first_pass(self) -> float:
        """Start the service (every environment is due at once); seconds until all applied."""
        start = time.perf_counter()
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.wait_passes(dict.fromkeys(self.names, 0))
        elapsed = time.perf_counter() - start
        for name in self.names:
            status = self.reconciler.status(name)
            assert status.ready, status.condition(Type.READY)
        return elapsed

    def _counted(self, name: str) -> EnvironmentStatus:
        try:
            return self._run_pass(name)
        finally:
            self.finished[name] += 1

    def passes(self) -> dict[str, int]:
        return dict(self.finished)

    def wait_passes(self, before: dict[str, int]) -> None:
        while any(self.finished[n] <= before[n] for n in self.names):
            time.sleep(0.05)

    def idle_pass(self) -> float:
        """Ask for a pass of every environment; seconds until each had one (nothing to do)."""
        before = self.passes()
        start = time.perf_counter()
        self.reconciler.request()
        self.wait_passes(before)
        elapsed = time.perf_counter() - start
        for name in self.names:
            status = self.reconciler.status(name)
            assert status.ready and not status.drifted, (
                status.condition(Type.READY),
                status.condition(Type.DRIFTED),
            )
        return elapsed

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(120)
        shutil.rmtree(self.tmp, ignore_errors=True)


# GET the URL every `every` seconds until stdin closes; prints the time each took (JSON).
SCRAPER = """
import json, select, sys, time, httpx
url, every = sys.argv[1], float(sys.argv[2])
took = []
with httpx.Client(timeout=60) as http:
    while True:
        start = time.perf_counter()
        assert http.get(url).status_code == 200
        took.append(time.perf_counter() - start)
        if select.select([sys.stdin], [], [], max(0.0, every - took[-1]))[0]:
            break
print(json.dumps(took))
"""
NOT_THE_SERVICE: set[int] = set()  # processes under this one that the memory figure leaves out


class Scraper:
    """GET /metrics `per_second` times a second while it runs, from a process of its own (as
    Prometheus does: its HTTP client must not share the service's CPU); the time each took."""

    def __init__(self, url: str, per_second: float):
        self.command = [sys.executable, "-c", SCRAPER, f"{url}/metrics", str(1 / per_second)]
        self.took: list[float] = []

    def __enter__(self) -> Scraper:
        self.process = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        NOT_THE_SERVICE.add(self.process.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        out, _ = self.process.communicate("", timeout=60)  # stdin closed: it stops
        NOT_THE_SERVICE.discard(self.process.pid)
        self.took = json.loads(out)


def first_passes(template: Path, environments: int, resources: int, waiting: float = 0) -> None:
    default = ServiceSettings.model_fields["concurrency"].default
    timings = {}
    for concurrency in (1, default):
        service = Service(Path(tempfile.mkdtemp()), template, environments, resources, concurrency, waiting)
        timings[concurrency] = service.first_pass()
        service.close()
    what = f" and a Terraform apply that waits {waiting:g} s" if waiting else ""
    print(
        f"first pass over {environments} new environments x {resources} resources{what} "
        f"(every one applies; target: >= 3x faster than one at a time):\n"
        f"  one at a time (concurrency 1): {timings[1]:.1f} s ({timings[1] / environments:.2f} s each)\n"
        f"  concurrency {default} (default):     {timings[default]:.1f} s "
        f"({timings[1] / timings[default]:.1f}x faster)",
        flush=True,
    )


def idle_passes(template: Path, environments: int, resources: int, webhooks: int) -> None:
    default = ServiceSettings.model_fields["concurrency"].default
    service = Service(Path(tempfile.mkdtemp()), template, environments, resources, default)
    first = service.first_pass()
    after_applies = service.idle_pass()
    quiet, scraped, took = [], [], []  # alternated, three of each: the machine's noise hits both
    with MemorySampler() as memory:
        for _ in range(3):
            quiet.append(service.idle_pass())
            with Scraper(str(service.http.base_url).rstrip("/"), 4) as scraper:
                scraped.append(service.idle_pass())
            took += scraper.took
    unchanged, with_scrapes, scrapes = statistics.median(quiet), statistics.median(scraped), sorted(took)
    print(
        f"{environments} environments x {resources} resources, concurrency {default} "
        f"(first pass, every one applying: {first:.1f} s):\n"
        f"  pass with nothing to do, right after the applies (every store read again): {after_applies:.1f} s\n"
        f"  pass with nothing to do, stores unchanged (target for 1,000: < 10 s):       {unchanged:.1f} s "
        f"({unchanged / environments * 1000:.1f} ms each; median of 3)\n"
        f"  the same pass while /metrics is scraped 4 times a second: {with_scrapes:.1f} s (median of 3; "
        f"{len(scrapes)} scrapes, median {scrapes[len(scrapes) // 2] * 1000:.0f} ms, "
        f"slowest {scrapes[-1] * 1000:.0f} ms)\n"
        f"  peak memory over those passes (target for 1,000: < 400 MB): {memory.peak[0]:.0f} MB "
        f"(the service {memory.peak[1]:.0f} MB, its ZenML fork server and reader the rest; "
        "proportional set sizes, shared pages counted once)",
        flush=True,
    )
    if webhooks:
        body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
        signature = "sha256=" + hmac.new(b"bench", body, hashlib.sha256).hexdigest()
        headers = {
            "X-GitHub-Event": "ping",
            "X-Hub-Signature-256": signature,
            "Content-Type": "application/json",
        }
        start = time.perf_counter()
        for _ in range(webhooks):
            assert service.http.post("/webhooks/github", content=body, headers=headers).status_code == 200
        elapsed = time.perf_counter() - start
        print(
            f"  webhooks with signature checks: {webhooks / elapsed:,.0f} per second "
            f"({webhooks} sequential requests on loopback)",
            flush=True,
        )
    service.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--first", type=int, default=100, help="environments of the first-pass figures (0: none)"
    )
    parser.add_argument(
        "--waiting",
        type=int,
        default=40,
        help="environments of the first pass with waiting applies (0: none)",
    )
    parser.add_argument("--idle", default="100,300,1000", help="environment counts of the idle-pass figures")
    parser.add_argument("--resources", type=int, default=20)
    parser.add_argument("--webhooks", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        template = make_store(Path(folder) / "template")
        if args.first:
            first_passes(template, args.first, args.resources)
        if args.waiting:
            first_passes(template, args.waiting, args.resources, waiting=3)
        for count in filter(None, (int(n) for n in args.idle.split(","))):
            idle_passes(template, count, args.resources, args.webhooks)
            args.webhooks = 0  # once is enough


if __name__ == "__main__":
    main()
