"""SARIF 2.1.0, for code scanning (GitHub's upload-sarif) and other SARIF readers: one result
per finding at its file, line and column, with the finding's code as its rule and every rule
listed in `tool.driver.rules`.

Paths are relative to the repository root, under the base id `%SRCROOT%`, as code scanning
resolves them against the checkout. A finding with no place (rare) is put at its environment's
Environment document, since code scanning needs a file and a line for every result.

Findings hold text from specs and policies a pull request's author controls. Messages are
plain text: control, line-break and bidi characters become spaces, and the square brackets
SARIF would read as an embedded link (`[text](url)`) are escaped, so no text of theirs turns
into a link.
"""

from __future__ import annotations

import json
import os
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import quote

from stackward.checks.validate import Report
from stackward.diagnostics import Diagnostic, Location, Severity, format_json_path
from stackward.output.markdown import one_line

SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SRCROOT = "%SRCROOT%"
LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTICE: "note"}
_RANK = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.NOTICE: 2}

FAMILIES = {
    "yaml": "YAML syntax and limits",
    "file": "spec file",
    "schema": "spec schema",
    "spec": "spec",
    "env": "environment",
    "reference": "cross-reference",
    "infra": "Terraform module",
    "zenml": "ZenML definition",
    "secret": "secret handling",
    "policy": "policy",
}
"""The first part of a finding's code, as the rules' short descriptions name it."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_BRACKET = re.compile(r"(\\*)([\[\]])")


def single_line(value: str) -> str:
    """A name or id on one line: no control, bidi or lone surrogate character."""
    return _SURROGATE.sub(" ", one_line(value))


def plain(value: str) -> str:
    """`value` as a plain-text SARIF message: `single_line(value)` with `[` and `]` (and the
    backslashes before them) escaped, as SARIF says, so that nothing reads as a link."""
    return _BRACKET.sub(lambda m: m[1] * 2 + "\\" + m[2], single_line(value))


def _stackward_version() -> str:
    try:
        return version("stackward")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0"


def artifact_uri(file: str, repo_root: Path, cwd: Path) -> tuple[str, str | None]:
    """The URI of a finding's file and its base id: relative to `repo_root` under `%SRCROOT%`,
    or an absolute file URI (no base id) for a file outside the repository. `file` is as
    findings hold it: relative to `cwd`, or absolute."""
    path = Path(os.path.abspath(cwd / file))
    try:
        relative = path.relative_to(Path(os.path.abspath(repo_root)))
    except ValueError:
        return path.as_uri(), None
    return quote(relative.as_posix(), safe="/"), SRCROOT


def _place(diag: Diagnostic, report: Report) -> Location:
    """Where a finding is: its own place, else its first environment's Environment document,
    else the environments folder."""
    if diag.location is not None:
        return diag.location
    for env in report.environments:
        if env.name in diag.environments and env.definition is not None:
            found = env.definition.location()
            if found is not None:
                return found
    return Location(str(report.repo.root))


def _rule(rule_id: str, level: str) -> dict[str, Any]:
    family = rule_id.split(".", 1)[0]
    what = f"{FAMILIES[family]} check" if family in FAMILIES else "check"
    return {
        "id": rule_id,
        "shortDescription": {"text": f"stackward {what}: {rule_id}"},
        "defaultConfiguration": {"level": level},
        "properties": {"tags": ["stackward", family]},
    }


def _result(diag: Diagnostic, rule_id: str, index: int, report: Report, cwd: Path) -> dict[str, Any]:
    text = plain(diag.message)
    if diag.hint:
        text += "\nhint: " + plain(diag.hint)
    result: dict[str, Any] = {
        "ruleId": rule_id,
        "ruleIndex": index,
        "level": LEVELS[diag.severity],
        "message": {"text": text},
    }
    place = _place(diag, report)
    uri, base = artifact_uri(place.file, report.repo.repo_root, cwd)
    artifact = {"uri": uri, **({"uriBaseId": base} if base else {})}
    region = {"startLine": max(place.line, 1)}  # code scanning needs a line: a whole file's is 1
    if place.line and place.column:
        region["startColumn"] = place.column
    result["locations"] = [{"physicalLocation": {"artifactLocation": artifact, "region": region}}]
    properties: dict[str, Any] = {"environments": [single_line(e) for e in diag.environments]}
    if diag.path:
        properties["jsonPath"] = single_line(format_json_path(diag.path))
    result["properties"] = properties
    return result


def sarif_log(report: Report, cwd: Path | None = None) -> dict[str, Any]:
    """The report as a SARIF log with one run; finding paths relative to `cwd` (default: the
    working directory) are made relative to the repository root."""
    cwd = cwd or Path.cwd()
    rules: dict[str, Severity] = {}  # rule id: the most severe of its findings, in order of first finding
    results: list[tuple[Diagnostic, str]] = []
    for diag in report.diagnostics:
        rule_id = single_line(diag.code)
        known = rules.setdefault(rule_id, diag.severity)
        if _RANK[diag.severity] < _RANK[known]:
            rules[rule_id] = diag.severity
        results.append((diag, rule_id))
    index = {rule_id: i for i, rule_id in enumerate(rules)}
    root = Path(os.path.abspath(report.repo.repo_root)).as_uri()
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "stackward",
                "version": _stackward_version(),
                "rules": [_rule(rule_id, LEVELS[severity]) for rule_id, severity in rules.items()],
            }
        },
        "originalUriBaseIds": {SRCROOT: {"uri": root.rstrip("/") + "/"}},
        "columnKind": "unicodeCodePoints",
        "results": [_result(diag, rule_id, index[rule_id], report, cwd) for diag, rule_id in results],
        "properties": {
            "environments": [single_line(env.name) for env in report.environments],
            **(
                {"policies": {"source": single_line(report.policy.source), "engine": report.policy.engine}}
                if report.policy
                else {}
            ),
        },
    }
    return {"$schema": SCHEMA, "version": "2.1.0", "runs": [run]}


def render(report: Report) -> str:
    return json.dumps(sarif_log(report), indent=2)
