"""JUnit XML, for CI systems' test reports: a test suite per environment and a test case per
check (a finding's code: `zenml.config`, `policy.SW001`…). A check with an error fails, with
every finding of that check in the failure's text; one with only warnings or notices passes
and lists them as its output. An environment with no finding has one passing test case,
`valid`, so that the report shows it was checked.

Text comes from specs and policies a pull request's author controls: the XML library escapes
it, and the characters XML 1.0 cannot hold at all (control characters, lone surrogates) are
made spaces first.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable

from junitparser import Failure, JUnitXml, TestCase, TestSuite

from stackward.checks.validate import Report
from stackward.diagnostics import Diagnostic, Severity, format_json_path
from stackward.output.markdown import one_line

CLEAN = "valid"  # the test case of an environment with no finding
NO_ENVIRONMENT = "(no environment)"  # the suite of findings that name no environment

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(value: str) -> str:
    """`value` with what XML 1.0 cannot hold made spaces; line breaks and tabs are kept."""
    return _NOT_XML.sub(" ", value)


def _name(value: str) -> str:
    """A name or message for an attribute: one line, all of it XML."""
    return xml_text(one_line(value))


def _line(diag: Diagnostic) -> str:
    """One finding as the terminal shows it, on one line plus its JSON path and hint."""
    loc = diag.location
    where = ""
    if loc is not None:
        where = f"{loc.file}:{loc.line}:{loc.column}: " if loc.line else f"{loc.file}: "
    lines = [f"{where}{diag.severity.value}: {diag.message}"]
    if diag.path:
        lines.append(f"    at {format_json_path(diag.path)}")
    if diag.hint:
        lines.append(f"    hint: {diag.hint}")
    return "\n".join(one_line(line) for line in lines)


def _case(suite: str, code: str, found: list[Diagnostic]) -> TestCase:
    case = TestCase(_name(code), _name(f"stackward.{suite}"), 0.0)
    errors = [d for d in found if d.severity is Severity.ERROR]
    text = xml_text("\n".join(_line(d) for d in found))
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        failure = Failure(_name(errors[0].message + more), _name(code))
        failure.text = text
        case.result = [failure]
    else:
        case.system_out = text
    return case


def _suite(name: str, found: Iterable[Diagnostic], report: Report) -> TestSuite:
    suite = TestSuite(_name(name))
    by_code: dict[str, list[Diagnostic]] = {}
    for diag in found:
        by_code.setdefault(diag.code, []).append(diag)
    if report.policy is not None:  # properties come first in a suite
        suite.add_property("policies", _name(report.policy.source))
        suite.add_property("policy-engine", report.policy.engine)
    cases = [_case(name, code, items) for code, items in by_code.items()]
    suite.add_testcases(cases or [TestCase(CLEAN, _name(f"stackward.{name}"), 0.0)])
    return suite


def render(report: Report) -> str:
    xml = JUnitXml("stackward")
    named = [d for diag in report.diagnostics for d in diag.environments]
    for env in dict.fromkeys([*(e.name for e in report.environments), *named]):
        xml.add_testsuite(_suite(env, report.for_environment(env), report))
    unplaced = [d for d in report.diagnostics if not d.environments]
    if unplaced:
        xml.add_testsuite(_suite(NO_ENVIRONMENT, unplaced, report))
    xml.update_statistics()
    out = io.BytesIO()
    xml.write(out, pretty=True)
    return out.getvalue().decode("utf-8").rstrip("\n")
