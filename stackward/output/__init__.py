"""Output formats; each renders the same validation report."""

from __future__ import annotations

from collections.abc import Callable

from stackward.output import github, human, json_report
from stackward.validation import Report

FORMATS: dict[str, Callable[[Report], str]] = {
    "human": human.render,
    "json": json_report.render,
    "github": github.render,
}
