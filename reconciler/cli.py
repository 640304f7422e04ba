"""`stackward serve`: run the reconciler service."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from stackward.errors import StackwardError
from stackward.secrets import scrubbed_output


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
    import uvicorn

    from reconciler.app import create_app
    from reconciler.config import ServiceSettings

    try:
        settings = ServiceSettings.load(config_file, path=path, host=host, port=port)
    except StackwardError as exc:
        click.echo(f"stackward: {exc}", err=True)
        sys.exit(exc.exit_code)
    app = create_app(settings)
    with scrubbed_output(app.state.reconciler.store.scrub):  # its log hides secrets like its API
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
