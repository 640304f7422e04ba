"""GitHub Actions workflow commands: one annotation per finding, at its file and line, and
text holding user content fenced off so that the runner obeys no command inside it."""

from __future__ import annotations

import secrets

from stackward.checks.validate import Report
from stackward.diagnostics import Diagnostic


def escape_data(text: str) -> str:
    """A command's message: `%`, CR and LF escaped, so it stays on the command's one line."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A command's property value: also `:` and `,`, which would end the property or the list."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(diag: Diagnostic) -> str:
    """One `::error`/`::warning`/`::notice` line for a finding. Everything from the finding is
    escaped, so its text can neither break the line nor start a command of its own."""
    props = []
    loc = diag.location
    if loc is not None:
        props.append(f"file={escape_property(loc.file)}")
        if loc.line:
            props.append(f"line={loc.line}")
            props.append(f"col={loc.column}")
    props.append(f"title={escape_property('stackward ' + diag.code)}")
    message = diag.message + (f"\n{diag.hint}" if diag.hint else "")
    return f"::{diag.severity.value} {','.join(props)}::{escape_data(message)}"


def stop_commands(text: str) -> str:
    """`text` for the log between `::stop-commands::<token>` and `::<token>::`: the runner obeys
    no workflow command in between (`::set-output`, `##[add-mask]`…), and the token is random, so
    `text` cannot end the pause itself. Print annotations and masks outside it."""
    token = secrets.token_hex(16)
    body = text.removesuffix("\n")
    return f"::stop-commands::{token}\n{body}\n::{token}::"


def render(report: Report) -> str:
    lines = [annotation(d) for d in report.diagnostics]
    lines.append(f"stackward: {len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    return "\n".join(lines)
