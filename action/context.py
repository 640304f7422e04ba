"""What every event handler of the action shares: GitHub's context, the action's settings,
the pipeline, the API client, and where to report (log, job summary, step outputs)."""

from __future__ import annotations

import json
import os
import sys
import uuid
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Literal

import click
from pydantic import Field, field_validator

from stackward.checks.validate import Report
from stackward.diagnostics import Diagnostic, merge_diagnostics
from stackward.errors import UsageError
from stackward.github.client import FoundComment, GitHubClient
from stackward.output.github import escape_data
from stackward.output.sarif import render as render_sarif
from stackward.pipeline import Pipeline
from stackward.plan.changes import Plan
from stackward.secrets import Scrubber, secret_values, unscrubbed
from stackward.settings import Settings


class ActionSettings(Settings):
    """The engine's settings plus the action's own inputs (STACKWARD_MODE, …)."""

    mode: Literal["auto", "validate", "plan", "apply"] = "auto"
    environments: list[str] = Field(
        default_factory=list
    )  # only these (the `environments` input, comma-separated)
    api_backoff: float = 1.0  # seconds between GitHub API retries, growing per attempt
    sarif_file: Path | None = None  # write the run's validation and policy findings here as SARIF
    # commit statuses: one `stackward` context for the run (a bounded number of API calls), or
    # one `stackward/<env>` context per environment (for branch protection that names them)
    statuses: Literal["aggregate", "per-environment"] = "aggregate"

    @field_validator("environments", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value


@dataclass
class GitHubContext:
    """Everything GitHub Actions tells a step, read from its standard variables."""

    event_name: str
    event: dict
    repository: str
    sha: str
    api_url: str
    server_url: str
    run_url: str
    step_summary: Path | None
    temp: Path | None

    @classmethod
    def from_environment(cls) -> GitHubContext:
        env = os.environ
        event_path = env.get("GITHUB_EVENT_PATH")
        if not event_path or not Path(event_path).exists():
            raise UsageError(
                "GITHUB_EVENT_PATH is not set or missing: run inside GitHub Actions, or set the GITHUB_* variables"
            )
        server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        repository = env.get("GITHUB_REPOSITORY", "")
        run_id = env.get("GITHUB_RUN_ID", "")
        return cls(
            event_name=env.get("GITHUB_EVENT_NAME", ""),
            event=json.loads(Path(event_path).read_text()),
            repository=repository,
            sha=env.get("GITHUB_SHA", ""),
            api_url=env.get("GITHUB_API_URL", "https://api.github.com"),
            server_url=server,
            run_url=f"{server}/{repository}/actions/runs/{run_id}" if run_id else "",
            step_summary=Path(env["GITHUB_STEP_SUMMARY"]) if env.get("GITHUB_STEP_SUMMARY") else None,
            temp=Path(env["RUNNER_TEMP"]) if env.get("RUNNER_TEMP") else None,
        )


def default_outputs() -> dict[str, str]:
    """The step outputs as they stand when a run ends before deciding them (fail closed)."""
    return {
        "environments": "",
        "has-changes": "false",
        "policy-passed": "false",
        "plan-file": "",
        "sarif-file": "",
    }


def write_outputs(path: Path | None, outputs: dict[str, str]) -> None:
    """Append the outputs to $GITHUB_OUTPUT; a value with a line break uses a delimiter."""
    if path is None:
        return
    with path.open("a") as handle:
        for key, value in outputs.items():
            if "\n" in value or "\r" in value:
                delimiter = f"stackward_{uuid.uuid4().hex}"
                handle.write(f"{key}<<{delimiter}\n{value}\n{delimiter}\n")
            else:
                handle.write(f"{key}={value}\n")


@dataclass
class Run:
    """One run of the action for one event."""

    settings: ActionSettings
    ctx: GitHubContext
    client: GitHubClient
    outputs: dict[str, str] = field(default_factory=default_outputs)
    refused: dict[str, None] = field(default_factory=dict)  # writes GitHub refused, in order
    scrub: Scrubber = field(default_factory=Scrubber)  # what the run writes anywhere goes through it
    report: Report | None = None  # the validation of this run, once made
    findings: list[Diagnostic] = field(default_factory=list)  # the policies' findings on this run

    @cached_property
    def pipeline(self) -> Pipeline:
        """The one pipeline of this run (its scrubber is the run's)."""
        actor = f"stackward (GitHub Action{', ' + self.ctx.run_url if self.ctx.run_url else ''})"
        return Pipeline(self.settings, scrub=self.scrub, actor=actor)

    def say(self, text: str) -> None:
        click.echo(text)

    def output(self, **values: str) -> None:
        self.outputs.update(values)

    def summary(self, text: str) -> None:
        if self.ctx.step_summary is not None:
            with self.ctx.step_summary.open("a") as handle:
                handle.write(self.scrub(text))

    def warn(self, text: str) -> None:
        """A warning annotation on the run (and its line in the log)."""
        click.echo(f"::warning title=stackward::{escape_data(text)}")

    def write_refused(self, message: str) -> None:
        """A write GitHub refused for want of permission (a fork's read-only token): warned
        once, listed in the job summary at the end, and the run goes on."""
        if message not in self.refused:
            self.refused[message] = None
            self.warn(f"{message}. The run goes on; its results are in the job summary.")

    def summarize_refused(self) -> None:
        """The writes GitHub refused, as a warning in the job summary."""
        if self.refused:
            items = "".join(f"\n> - {message}" for message in self.refused)
            self.summary(f"\n{REFUSED}{items}\n")

    def plan_comment(self, number: int) -> FoundComment | None:
        """stackward's own plan comment on pull request `number`. A comment by anyone else that
        carries the marker is ignored, its author named in a warning (its body is never shown)."""
        search = self.client.find_comment(number)
        for login in search.others:
            self.warn(
                f"ignored a comment on #{number} by {shown(login)}: it carries stackward's hidden "
                f"marker, but only comments by {shown(search.login)} (this token) are stackward's"
            )
        return search.found

    def validated(self) -> Report:
        """Every environment validated (no policies: they judge plans), its secrets masked."""
        report = self.pipeline.validate()
        mask_secrets(report)
        self.report = report
        return report

    def found(self, findings: list[Diagnostic]) -> None:
        """Findings of this run besides validation's (the policies'), for the SARIF file."""
        self.findings += findings

    def selected(self, names: list[str]) -> list[str]:
        """`names` narrowed to the `environments` setting, when it is set."""
        wanted = self.settings.environments
        return [n for n in names if not wanted or n in wanted]

    def write_plan(self, plan: Plan, report: Report) -> None:
        """The plan file (the `plan-file` output): in RUNNER_TEMP, else in the state folder."""
        folder = self.ctx.temp or self.settings.state_root(report.repo.repo_root)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"stackward-plan-{(self.ctx.sha or 'local')[:12]}.json"
        path.write_text(self.scrub(plan.to_json()))
        self.output(**{"plan-file": str(path)})

    def write_sarif(self) -> None:
        """The run's validation and policy findings as SARIF, at the `sarif_file` setting (the
        `sarif-file` input, the `sarif-file` output), for code scanning; nothing when it is not
        set or nothing was validated. Findings are scrubbed like everything the run writes."""
        path = self.settings.sarif_file
        if path is None or self.report is None:
            return
        report = replace(
            self.report, diagnostics=merge_diagnostics([*self.report.diagnostics, *self.findings])
        )
        write_without_links(path, self.scrub(render_sarif(report)) + "\n", self.report.repo.repo_root)
        self.output(**{"sarif-file": str(path)})


REFUSED = (
    "> [!WARNING]\n> GitHub refused some of stackward's writes, so they are missing on GitHub: the "
    "token may not write there (a pull request from a fork gets a read-only token; otherwise "
    "check the workflow's `permissions:`). Everything else ran: see this summary and the log."
)


def write_without_links(path: Path, text: str, repo_root: Path) -> None:
    """Write `text` to `path`, never through a symbolic link inside the repository: the
    checkout holds a pull request's files, and a link it adds must not point the write at
    another file (a path in RUNNER_TEMP is outside its reach). UsageError when it cannot."""
    absolute = Path(os.path.abspath(path))
    root = Path(os.path.abspath(repo_root))
    if absolute.is_relative_to(root):
        for part in (absolute, *absolute.parents):
            if part == root:
                break
            if part.is_symlink():
                raise UsageError(
                    f"{path}: {part} is a symbolic link in the repository; not writing through it"
                )
    try:
        absolute.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(absolute, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def shown(login: str) -> str:
    """A login as the log may show it: anything but ASCII letters, digits and `-_.[]` escaped,
    so that no name can pass for a workflow command or break a line."""
    safe = (c if c.isascii() and (c.isalnum() or c in "-_.[]") else f"\\u{ord(c):04x}" for c in login)
    return "".join(safe) or '""'


def mask_secrets(report: Report) -> None:
    """Register every secret value the specs reference with Actions, so the runner masks it
    also in what child processes print. It masks one line per command: a multi-line value (a
    key file) is registered line by line. Written past the scrubber, which would hide it."""
    for value in secret_values(report.environments):
        for line in value.splitlines():
            if line.strip():
                unscrubbed(sys.stdout).write(f"::add-mask::{line}\n")
