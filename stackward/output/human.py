"""Terminal output: one finding per block, then a summary line per environment."""

from __future__ import annotations

import click

from stackward.checks.validate import Report
from stackward.diagnostics import Diagnostic, Severity, format_json_path


def _where(diag: Diagnostic) -> str:
    loc = diag.location
    if loc is None:
        return ""
    if loc.line:
        return f"{loc.file}:{loc.line}:{loc.column}: "
    return f"{loc.file}: "


def render_diagnostic(diag: Diagnostic) -> str:
    colour = {"error": "red", "warning": "yellow"}.get(diag.severity.value, "cyan")
    head = click.style(diag.severity.value, fg=colour, bold=True)
    envs = f" ({', '.join(diag.environments)})" if diag.environments else ""
    lines = [f"{_where(diag)}{head}: {diag.message} [{diag.code}]{envs}"]
    if diag.path:
        lines.append(f"    at {format_json_path(diag.path)}")
    if diag.hint:
        lines.append(f"    hint: {diag.hint}")
    return "\n".join(lines)


def render(report: Report) -> str:
    blocks = [render_diagnostic(d) for d in report.diagnostics]
    width = max((len(e.name) for e in report.environments), default=0)
    for env in report.environments:
        found = report.for_environment(env.name)
        errors = sum(d.is_error for d in found)
        warnings = sum(d.severity is Severity.WARNING for d in found)
        count = f"{len(env.resources)} resources"
        if errors:
            status = click.style(f"✗ {errors} error(s), {warnings} warning(s)", fg="red")
        elif warnings:
            status = click.style(f"✓ valid, {warnings} warning(s)", fg="yellow")
        else:
            status = click.style("✓ valid", fg="green")
        blocks.append(f"{env.name.ljust(width)}  {status} · {count}")
    if report.policy is not None:
        blocks.append(f"policies: {report.policy.source}, {report.policy.engine} engine")
    errors = len(report.errors)
    if errors:
        blocks.append(click.style(f"{errors} error(s); nothing was applied.", fg="red", bold=True))
    return "\n".join(blocks)
