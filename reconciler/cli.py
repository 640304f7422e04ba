"""`stackward serve`: run the reconciler service.

SIGTERM (docker stop, Kubernetes) or Ctrl-C: uvicorn stops taking requests and waits up to
HTTP_DRAIN seconds for those under way, while the reconciler, told at the signal, takes no new
pass and asks Terraform to stop; the app's shutdown then waits for the passes up to
`shutdown_grace` from the signal (see docs/reconciler.md).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click
import uvicorn

from stackward.errors import StackwardError
from stackward.secrets import scrubbed_output

if TYPE_CHECKING:
    from reconciler.service import Reconciler

HTTP_DRAIN = 5.0  # seconds for requests under way at shutdown (the API answers in milliseconds)


class Server(uvicorn.Server):
    """uvicorn's server, which starts the reconciler's shutdown as soon as the signal arrives
    (not after the HTTP connections closed)."""

    def __init__(self, config: uvicorn.Config, reconciler: Reconciler):
        super().__init__(config)
        self.reconciler = reconciler

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The first signal starts the reconciler's shutdown; a second (uvicorn then exits at
        once on Ctrl-C) kills the Terraform commands still running, as Terraform does."""
        stop = self.reconciler.terraform.kill if self.should_exit else self.reconciler.begin_shutdown
        # a signal handler must not wait on locks the interrupted code may hold: a thread does it
        threading.Thread(target=stop, name="stackward-shutdown").start()
        super().handle_exit(sig, frame)


@click.command("serve")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="YAML settings file (see the README's 'Run the reconciler').",
)
@click.option("--path", type=click.Path(path_type=Path), help="The environments folder.")
@click.option("--host", help="Bind address (default 127.0.0.1: loopback only).")
@click.option("--port", type=int, help="Port (default 8080).")
def command(config_file: Path | None, path: Path | None, host: str | None, port: int | None) -> None:
    """Keep every environment converged with the branch head; status over HTTP."""
    from reconciler.app import create_app
    from reconciler.config import ServiceSettings

    try:
        settings = ServiceSettings.load(config_file, path=path, host=host, port=port)
    except StackwardError as exc:
        click.echo(f"stackward: {exc}", err=True)
        sys.exit(exc.exit_code)
    app = create_app(settings)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=HTTP_DRAIN
    )
    with scrubbed_output(app.state.reconciler.store.scrub):  # its log hides secrets like its API
        Server(config, app.state.reconciler).run()
