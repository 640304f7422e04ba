"""Output formats; each renders the same validation report (`Report` -> text): `human` for
terminals, `json` for tools, `github` for workflow annotations, `sarif` for code scanning,
`junit` for CI test reports.

A format's module is imported when it is used, so that naming the formats (the CLI's
`--format` choices) imports none of them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stackward.checks.validate import Report

_MODULES = {"human": "human", "json": "json_report", "github": "github", "sarif": "sarif", "junit": "junit"}

USES = {
    "human": "terminals",
    "json": "tools",
    "github": "workflow annotations",
    "sarif": "code scanning (SARIF 2.1.0)",
    "junit": "CI test reports (JUnit XML)",
}
"""What each format is for, as `--format`'s help says it."""


class _Formats(Mapping[str, Callable[["Report"], str]]):
    """Format name -> its module's `render`, imported on first use."""

    def __getitem__(self, name: str) -> Callable[[Report], str]:
        return import_module(f"stackward.output.{_MODULES[name]}").render

    def __iter__(self) -> Iterator[str]:
        return iter(_MODULES)

    def __len__(self) -> int:
        return len(_MODULES)


FORMATS: Mapping[str, Callable[[Report], str]] = _Formats()
