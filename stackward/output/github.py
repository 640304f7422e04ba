"""GitHub Actions workflow commands: one annotation per finding, at its file and line."""

from __future__ import annotations

from stackward.checks.validate import Report
from stackward.diagnostics import Diagnostic


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(diag: Diagnostic) -> str:
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


def render(report: Report) -> str:
    lines = [annotation(d) for d in report.diagnostics]
    lines.append(f"stackward: {len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    return "\n".join(lines)
