"""The GitHub Action front-end: `stackward action`, run by action.yml (or locally with the
same GITHUB_* variables set). It reads the settings, picks the handler for the event and
writes the step outputs however the run ends; each handler is a module of its own:

- pull_request (action/pull_request.py): plan the touched environments, one comment, statuses.
- push to the default branch (action/push.py): apply what the merged PR's comment showed.
- merge_group (action/merge_group.py): plan a merge queue's merge commit, record the plan on it.
- workflow_dispatch and schedule (action/dispatch.py): plan or apply named environments.
- issue_comment (action/commands.py): `/stackward plan` and `/stackward unlock ENV` on a pull request.

With the `sarif-file` setting, a run that validated writes its findings there as SARIF, however it ends.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import click

from action import commands, dispatch, merge_group, pull_request, push
from action.context import ActionSettings, GitHubContext, Run, default_outputs, write_outputs
from stackward.errors import EXIT_FINDINGS, StackwardError, UsageError
from stackward.github.client import GitHubClient
from stackward.output.github import stop_commands
from stackward.output.human import render_diagnostic
from stackward.secrets import TOKEN_VARIABLES, Scrubber, scrubbed_output

HANDLERS: dict[str, Callable[[Run], int]] = {
    "pull_request": pull_request.handle,
    "pull_request_target": pull_request.handle,
    "push": push.handle,
    "merge_group": merge_group.handle,
    "issue_comment": commands.handle,
    "workflow_dispatch": dispatch.handle,
    "schedule": dispatch.handle,
}


def _run(settings: ActionSettings, outputs: dict[str, str], scrub: Scrubber) -> int:
    ctx = GitHubContext.from_environment()
    handler = HANDLERS.get(ctx.event_name)
    if handler is None:
        click.echo(f"stackward: nothing to do for the {ctx.event_name or 'unknown'} event")
        return 0
    token = os.environ.get("GITHUB_TOKEN") or os.environ.get("INPUT_TOKEN")
    if not token:
        raise UsageError("GITHUB_TOKEN is not set: pass the token input")
    client = GitHubClient(token, ctx.repository, ctx.api_url, backoff=settings.api_backoff, scrub=scrub)
    run = Run(settings, ctx, client, outputs, scrub=scrub)
    client.on_refused = run.write_refused  # a read-only token (a fork's) warns, it does not stop the run
    try:
        return handler(run)
    finally:
        run.summarize_refused()
        run.write_sarif()


@click.command("action")
@click.option("--path", type=click.Path(path_type=Path), help="The environments folder [STACKWARD_PATH].")
@click.option("--policies", type=click.Path(path_type=Path), help="[STACKWARD_POLICIES]")
@click.option("--mode", type=click.Choice(["auto", "validate", "plan", "apply"]), help="[STACKWARD_MODE]")
@click.option("--environments", help="Comma-separated filter [STACKWARD_ENVIRONMENTS].")
@click.option("--state-dir", type=click.Path(path_type=Path, file_okay=False), help="[STACKWARD_STATE_DIR]")
@click.option("--opa-url", help="[STACKWARD_OPA_URL]")
@click.option("--lock-timeout", type=float, help="[STACKWARD_LOCK_TIMEOUT]")
@click.option(
    "--sarif-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the validation and policy findings here as SARIF [STACKWARD_SARIF_FILE].",
)
@click.option(
    "--api-backoff",
    type=float,
    help="Seconds of backoff between GitHub API retries, growing per attempt [STACKWARD_API_BACKOFF].",
)
def command(**given: object) -> None:
    """Run as the GitHub Action for the current event (GITHUB_* variables; token in GITHUB_TOKEN)."""
    outputs = default_outputs()
    scrub = Scrubber(os.environ.get(name) for name in TOKEN_VARIABLES)
    with scrubbed_output(scrub):  # the log: secrets the specs reference are added as they are read
        try:
            code = _run(ActionSettings.load(**given), outputs, scrub)
        except StackwardError as exc:
            findings = [render_diagnostic(diag) for diag in getattr(exc, "findings", [])]
            click.echo(stop_commands("\n".join([*findings, f"stackward: {exc}"])), err=True)
            code = exc.exit_code
        except Exception:  # a bug: its traceback, but through the scrubber too
            traceback.print_exc()
            code = EXIT_FINDINGS
        finally:
            write_outputs(
                Path(os.environ["GITHUB_OUTPUT"]) if os.environ.get("GITHUB_OUTPUT") else None, outputs
            )
    sys.exit(code)
