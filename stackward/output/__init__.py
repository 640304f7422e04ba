"""Output formats; each renders the same validation report."""

from __future__ import annotations

from collections.abc import Callable

from stackward.checks.validate import Report
from stackward.output import github, human, json_report

FORMATS: dict[str, Callable[[Report], str]] = {
    "human": human.render,
    "json": json_report.render,
    "github": github.render,
}
