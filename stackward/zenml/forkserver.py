"""Starting ZenML worker processes without paying for importing zenml each time.

Importing zenml takes about 1.5 s of CPU, and each environment's worker (stackward.zenml.worker)
is a new process: a run over many environments, or a service reconciling hundreds, would spend
most of its time importing. One *fork server* per process imports zenml once, then forks a
worker per request:

- It is started (on first use) with the allow-listed environment of
  stackward.zenml.executor's workers, so no credential is in its environment or its children's
  initial one. Each request carries the worker's environment (its store and the credentials of
  its phase); the child puts it in place of the fork server's before zenml reads any of it.
  zenml creates its global configuration and client on first use, never on import, so a child
  starts from none.
- Requests come over a socket pair that only this process holds (no socket file). With each
  request come the worker's standard streams (pipe ends), and back comes a pidfd for the new
  child: it tells when the child ended and signals it without any risk of a reused pid.
- It runs in a session of its own, as Terraform does: a terminal's Ctrl-C reaches only this
  process, which ends its workers itself (a worker ends when its input closes). When this
  process ends, however it ends, the socket closes, the fork server exits, and the kernel kills
  the workers it leaves (PR_SET_PDEATHSIG): none outlives the process that asked for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from collections import deque
from collections.abc import Iterable
from pathlib import Path

MAX_REQUEST = 1 << 20  # bytes: a worker's arguments and environment
PR_SET_PDEATHSIG = 1  # prctl(2)


def keep_tail(lines: Iterable[str], tail: deque[str], name: str) -> threading.Thread:
    """A started daemon thread reading `lines` (a process's stderr) to their end, keeping the
    last ones in `tail` for error messages (and never letting the pipe fill up)."""

    def drain() -> None:
        for line in lines:
            tail.append(line.rstrip())

    thread = threading.Thread(target=drain, name=name, daemon=True)
    thread.start()
    return thread


class ForkedProcess:
    """A worker started by the fork server, with the part of subprocess.Popen's interface the
    executor uses: its three pipes as text files, pid, kill() and wait()."""

    def __init__(self, pid: int, pidfd: int, stdin: int, stdout: int, stderr: int):
        self.pid = pid
        self._pidfd: int | None = pidfd  # closed once the process is known to have ended
        self._waiting = threading.Lock()  # one thread waits on it at a time (and closes it)
        self.stdin: io.TextIOWrapper | None = open(stdin, "w", encoding="utf-8")  # noqa: SIM115
        self.stdout: io.TextIOWrapper | None = open(stdout, encoding="utf-8")  # noqa: SIM115
        self.stderr: io.TextIOWrapper | None = open(stderr, encoding="utf-8", errors="replace")  # noqa: SIM115

    def kill(self) -> None:
        pidfd = self._pidfd
        if pidfd is not None:  # (an ended process: nothing to kill)
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> None:
        """Until the process ended; subprocess.TimeoutExpired after `timeout` seconds."""
        if not self._waiting.acquire(timeout=-1 if timeout is None else timeout):
            raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
        try:
            if self._pidfd is None:
                return
            if not select.select([self._pidfd], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            os.close(self._pidfd)
            self._pidfd = None
        finally:
            self._waiting.release()


class ForkServer:
    """The client side: starts the server on first use (and again if it died)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._server: subprocess.Popen | None = None
        self._stderr_tail: deque[str] = deque(maxlen=5)
        self._home: tempfile.TemporaryDirectory | None = None

    def _start_server(self) -> socket.socket:
        from stackward.zenml.executor import base_environment  # (it imports this module)

        if self._home is None:  # a configuration folder of its own: it never uses one itself
            self._home = tempfile.TemporaryDirectory(prefix="stackward-zenml-forkserver-")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with theirs:
            self._server = subprocess.Popen(
                [sys.executable, "-m", "stackward.zenml.forkserver", str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                pass_fds=[theirs.fileno()],
                env=base_environment(Path(self._home.name)),
                start_new_session=True,  # a terminal's Ctrl-C is for this process to handle
            )
        assert self._server.stderr is not None
        keep_tail(self._server.stderr, self._stderr_tail, "forkserver stderr")
        self._socket = ours
        return ours

    def start(self, args: list[str], environment: dict[str, str]) -> ForkedProcess:
        """A new worker (`python -m stackward.zenml.worker ARGS`, as it would run in
        `environment`). OSError when the fork server cannot start one."""
        pipes = [os.pipe() for _ in range(3)]  # stdin, stdout, stderr: (read end, write end)
        theirs = [pipes[0][0], pipes[1][1], pipes[2][1]]
        ours = [pipes[0][1], pipes[1][0], pipes[2][0]]
        request = json.dumps({"args": args, "environment": environment}).encode()
        try:
            with self._lock:
                try:
                    pid, pidfd = self._ask(self._socket or self._start_server(), request, theirs)
                except OSError:  # the server died (or was never started): one new one
                    self.close()
                    pid, pidfd = self._ask(self._start_server(), request, theirs)
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        return ForkedProcess(pid, pidfd, *ours)

    def _ask(self, sock: socket.socket, request: bytes, fds: list[int]) -> tuple[int, int]:
        socket.send_fds(sock, [len(request).to_bytes(4, "big") + request], fds)
        reply, received = _receive_exactly(sock, 4, 1)
        if len(reply) < 4 or not received:
            tail = "\n".join(self._stderr_tail)
            raise OSError(
                f"the ZenML fork server stopped: {tail}" if tail else "the ZenML fork server stopped"
            )
        return int.from_bytes(reply, "big"), received[0]

    def close(self) -> None:
        """Stop the fork server (the next start() starts another); the kernel ends the workers
        it leaves (see _die_with_the_server)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._server is not None:
            self._server.kill()
            self._server.wait()
            self._server = None


_server = ForkServer()


def start(args: list[str], environment: dict[str, str]) -> ForkedProcess:
    """A new ZenML worker from this process's fork server."""
    return _server.start(args, environment)


# -- the server side -----------------------------------------------------------------------------


def _receive_exactly(sock: socket.socket, size: int, max_fds: int) -> tuple[bytes, list[int]]:
    """`size` bytes (fewer only if the peer closed), and the descriptors sent with them."""
    data, fds, _, _ = socket.recv_fds(sock, size, max_fds)
    while data and len(data) < size:
        chunk = sock.recv(min(size - len(data), MAX_REQUEST))
        if not chunk:
            break
        data += chunk
    return data, fds


def _receive(sock: socket.socket) -> tuple[dict, list[int]] | None:
    """One request and its three pipe ends; None when the client is gone."""
    head, fds = _receive_exactly(sock, 4, 3)
    if len(head) < 4:
        return None
    body, _ = _receive_exactly(sock, int.from_bytes(head, "big"), 0)
    return json.loads(body), fds


def _die_with_the_server(server: int) -> None:
    """SIGKILL to this child when the fork server ends (which it does when the process that
    asked for it ends, however it ends): no worker outlives its client."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != server:  # it ended before that took effect
        os._exit(1)


def _child(request: dict, fds: list[int], server: int) -> None:
    """In the new process: the request's streams and environment, then the worker."""
    _die_with_the_server(server)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    os.environ.clear()
    os.environ.update(request["environment"])
    sys.argv = ["stackward.zenml.worker", *request["args"]]
    from stackward.zenml.worker import main

    code = 0
    try:
        main()
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)  # all replies are flushed; skip zenml's slow interpreter teardown


def _reap(*_: object) -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def serve(sock: socket.socket) -> None:
    """Fork a worker for each request until the client closes the socket."""
    signal.signal(signal.SIGCHLD, _reap)
    server = os.getpid()
    # What was imported stays shared with the children: the garbage collector never visits it
    # (a visit writes to each object, which would copy its memory page into every child).
    gc.collect()
    gc.freeze()
    while received := _receive(sock):
        request, fds = received
        # no reaping between the fork and the pidfd: the pid must still be the child's
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        pid = os.fork()
        if pid == 0:
            sock.close()
            _child(request, fds, server)
        pidfd = os.pidfd_open(pid)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        for fd in fds:
            os.close(fd)
        socket.send_fds(sock, [pid.to_bytes(4, "big")], [pidfd])
        os.close(pidfd)


def main() -> None:
    # What every worker needs, imported once here (see the module's docstring).
    import zenml.client
    import zenml.zen_stores.rest_zen_store
    import zenml.zen_stores.sql_zen_store  # noqa: F401

    import stackward.zenml.store_reader
    import stackward.zenml.worker  # noqa: F401

    serve(socket.socket(fileno=int(sys.argv[1])))


if __name__ == "__main__":
    main()
