"""A throwaway ZenML server for tests: the installed zenml's own server app
(`zenml.zen_server.zen_server_api:app`) under uvicorn, on a loopback port, with its SQLite
database in a temp folder, and a service account API key to reach it with.

The server is configured the way ZenML reads it: `ZENML_STORE_URL` is the server's own SQL
store, `ZENML_SERVER_*` its settings (`zenml.config.server_config.ServerConfiguration`), and
`ZENML_SERVER_AUTO_ACTIVATE` with `ZENML_DEFAULT_USER_*` creates its admin user at the first
start. The key is made over the REST API: the admin logs in (`POST /api/v1/login`), creates a
service account (`POST /api/v1/service_accounts`) and an API key for it
(`POST /api/v1/service_accounts/{id}/api_keys`). `clear_registrations` empties the server
between tests that share it.

`serve_zenml(without=...)` runs the server without some Python packages (a folder first on its
PYTHONPATH makes them fail to import), as a server installed without an integration's
libraries: ZenML then lacks the connector types that need them."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

STARTUP_TIMEOUT = 120.0  # seconds; importing zenml and creating its database take 10-20 s here
STOP_TIMEOUT = 15.0
_ADMIN = "admin"


class ZenmlServerError(RuntimeError):
    """The ZenML server did not start or did not answer; the message ends with its log's tail."""


def _log_tail(log: Path, lines: int = 30) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"


def _without(folder: Path, packages: tuple[str, ...]) -> Path:
    """A folder that, first on PYTHONPATH, makes each of `packages` fail to import."""
    for package in packages:
        (folder / package).mkdir(parents=True)
        (folder / package / "__init__.py").write_text(
            f"raise ImportError('{package} is not installed on this ZenML server')\n"
        )
    return folder


def _server_environment(folder: Path, password: str, without: tuple[str, ...]) -> dict[str, str]:
    """This process's environment without any ZenML setting, plus the server's own."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    python_path = [base["PYTHONPATH"]] if base.get("PYTHONPATH") else []
    if without:
        python_path.insert(0, str(_without(folder / "without", without)))
    return {
        **base,
        "PYTHONPATH": os.pathsep.join(python_path),
        "ZENML_CONFIG_PATH": str(folder / "config"),
        "ZENML_LOCAL_STORES_PATH": str(folder / "local_stores"),
        "ZENML_STORE_URL": f"sqlite:///{folder / 'zenml.db'}",
        "ZENML_SERVER_AUTO_ACTIVATE": "true",
        "ZENML_DEFAULT_USER_NAME": _ADMIN,
        "ZENML_DEFAULT_USER_PASSWORD": password,
        "ZENML_SERVER_JWT_SECRET_KEY": secrets.token_hex(32),
        "ZENML_ANALYTICS_OPT_IN": "false",
        "ZENML_ENABLE_RICH_TRACEBACK": "false",
        "PYTHONWARNINGS": "ignore",
    }


def _wait_until_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise ZenmlServerError(
                f"the ZenML server exited with code {process.returncode} while starting:\n{_log_tail(log)}"
            )
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise ZenmlServerError(
                f"the ZenML server did not answer {url}/health within {timeout:.0f} s:\n{_log_tail(log)}"
            )
        time.sleep(0.2)


def _create_api_key(url: str, password: str) -> str:
    """An API key of a new service account, made with the admin's login."""
    with httpx.Client(base_url=f"{url}/api/v1", timeout=30) as client:
        login = client.post("/login", data={"username": _ADMIN, "password": password})
        login.raise_for_status()
        client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        account = client.post("/service_accounts", json={"name": "stackward-tests", "active": True})
        account.raise_for_status()
        key = client.post(f"/service_accounts/{account.json()['id']}/api_keys", json={"name": "tests"})
        key.raise_for_status()
        return key.json()["body"]["key"]


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM (uvicorn shuts down gracefully), then SIGKILL if it does not end in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def serve_zenml(without: tuple[str, ...] = (), timeout: float = STARTUP_TIMEOUT) -> Iterator[tuple[str, str]]:
    """Start a ZenML server; yields (its URL, a service account API key). Stopped on exit.
    `without`: Python packages the server runs without."""
    folder = Path(tempfile.mkdtemp(prefix="stackward-zenml-server-"))
    log = folder / "server.log"
    password = secrets.token_urlsafe(16)
    # The socket is bound here and handed to uvicorn (--fd): no other process can take the port
    # between choosing it and listening on it.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    process = None
    try:
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "zenml.zen_server.zen_server_api:app",
                    "--fd",
                    str(listener.fileno()),
                    "--workers",
                    "1",
                    "--log-level",
                    "warning",
                    "--no-server-header",
                ],
                pass_fds=(listener.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_server_environment(folder, password, without),
                cwd=folder,
            )
        listener.close()  # the server holds its own copy
        _wait_until_healthy(url, process, log, timeout)
        try:
            api_key = _create_api_key(url, password)
        except httpx.HTTPError as exc:
            detail = exc.response.text if isinstance(exc, httpx.HTTPStatusError) else ""
            raise ZenmlServerError(
                f"could not create an API key on the ZenML server: {exc} {detail}\n{_log_tail(log)}"
            ) from exc
        yield url, api_key
    finally:
        listener.close()
        if process is not None:
            _stop(process)
        shutil.rmtree(folder, ignore_errors=True)


def clear_registrations(url: str, api_key: str) -> None:
    """Delete every stack, stack component, service connector and secret but ZenML's own `default`s."""
    with httpx.Client(base_url=f"{url}/api/v1", timeout=30) as client:
        login = client.post("/login", data={"password": api_key})  # a password alone: the API key grant
        login.raise_for_status()
        client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        for route in ("/stacks", "/components", "/service_connectors", "/secrets"):
            page = client.get(route, params={"size": 1000})
            page.raise_for_status()
            for item in page.json()["items"]:
                if item["name"] != "default":
                    client.delete(f"{route}/{item['id']}").raise_for_status()
