"""The embedded Rego engine: regorus, in-process.

Chosen over regopy (measured: broken `with`, unsafe variables silently passing, ~400 ms per
evaluation) for correctness and speed (~1 ms); tests/test_rego_conformance.py guards the
behaviour stackward relies on. RUST_BACKTRACE is dropped so that errors are messages, not
stack dumps.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from stackward.diagnostics import Diagnostic, Location
from stackward.policy.engine import DEFAULT_NAMESPACE, PolicyEvaluationError
from stackward.policy.sources import PolicyFile

for _name in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE"):
    os.environ.pop(_name, None)

import regorus  # noqa: E402  (after the environment is cleaned)

_WHERE = re.compile(r"-->\s*(?P<file>.+?):(?P<line>\d+):(?P<col>\d+)")
_ERROR = re.compile(r"^error:\s*(?P<msg>.+)$", re.MULTILINE)
_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z0-9_.]+)", re.MULTILINE)
_IMPORT = re.compile(
    r"^\s*import\s+(data\.[A-Za-z0-9_.]+)(?:\s+as\s+([A-Za-z_][A-Za-z0-9_]*))?", re.MULTILINE
)
_TEST_RULE = re.compile(r"^\s*(test_[A-Za-z0-9_]+)\b", re.MULTILINE)


def rego_error(text: str, fallback_file: str, code: str = "policy.load") -> Diagnostic:
    """A regorus error message as a finding at the policy file, line and column."""
    text = text.split("Stack backtrace:")[0]
    where = _WHERE.search(text)
    error = _ERROR.search(text)
    message = error.group("msg").strip() if error else text.strip().splitlines()[-1]
    message = re.sub(r"\s*\(path \[.*$", "", message)
    location = (
        Location(where.group("file"), int(where.group("line")), int(where.group("col")))
        if where
        else Location(fallback_file)
    )
    return Diagnostic(
        code,
        f"policy error: {message}",
        "fix the policy; until it loads, the policy check fails",
        location,
    )


def _imports(policy: PolicyFile) -> frozenset[tuple[str, str]]:
    return frozenset((path, alias or path.rsplit(".", 1)[-1]) for path, alias in _IMPORT.findall(policy.text))


def _packages(files: list[PolicyFile]) -> dict[str, list[PolicyFile]]:
    by_package: dict[str, list[PolicyFile]] = {}
    for policy in files:
        match = _PACKAGE.search(policy.text)
        by_package.setdefault(match.group(1) if match else "", []).append(policy)
    return by_package


def _in_load_order(files: list[PolicyFile]) -> list[PolicyFile]:
    """Each package's file with the most imports first.

    regorus 0.13 resolves the imports of a package split over several files with the imports
    of the first file added; an alias only a later file declares silently evaluates to
    undefined. Loading the widest file first makes the common case (an exceptions file
    without the helper import) correct; `_split_package_imports` refuses the rest.
    """
    ordered: list[PolicyFile] = []
    for members in _packages(files).values():
        ordered.extend(sorted(members, key=lambda p: -len(_imports(p))))
    return ordered


def _split_package_imports(files: list[PolicyFile]) -> list[Diagnostic]:
    """Fail closed where no file of a split package declares every import the others use."""
    found = []
    for package, members in _packages(files).items():
        if len(members) < 2:
            continue
        widest = max(members, key=lambda p: len(_imports(p)))
        for policy in members:
            missing = _imports(policy) - _imports(widest)
            if missing:
                names = ", ".join(f"{path} as {alias}" for path, alias in sorted(missing))
                found.append(
                    Diagnostic(
                        "policy.load",
                        f"package {package} is split over several files with different imports ({names} is "
                        f"only in this file); the embedded engine would not resolve them",
                        f"give every file of package {package} the same import lines, or use the OPA server engine",
                        Location(policy.name, 1, 1),
                    )
                )
    return found


class EmbeddedEngine:
    """Rego evaluated in this process by regorus."""

    name = "embedded"

    def __init__(self, namespace: str = DEFAULT_NAMESPACE):
        self.namespace = namespace
        self._engine = regorus.Engine()
        self._files: list[PolicyFile] = []

    def load(self, files: list[PolicyFile]) -> list[Diagnostic]:
        found = _split_package_imports(files)
        if found:
            return found
        for policy in _in_load_order(files):
            try:
                self._engine.add_policy(policy.name, policy.text)
                self._files.append(policy)
            except RuntimeError as exc:
                found.append(rego_error(str(exc), policy.name))
        return found

    def _query(self, query: str) -> Any:
        failure = None
        try:
            raw = json.loads(self._engine.eval_query_as_json(query))
        except RuntimeError as exc:
            failure = rego_error(str(exc), self._files[0].name if self._files else "policies", "policy.error")
        if failure is not None:
            # Raised outside the except block: no exception-frame cycle keeps the engine alive,
            # so it is freed on the thread that made it (regorus engines must be).
            raise PolicyEvaluationError([failure])
        results = raw.get("result") or []
        return results[0]["expressions"][0]["value"] if results else None

    def evaluate(self, document: dict) -> Any:
        self._engine.set_input_json(json.dumps(document))
        return self._query(f"data.{self.namespace}")

    def run_tests(self) -> list[TestResult]:
        """Evaluate every `test_` rule of the loaded files."""
        self._engine.set_input_json("{}")
        out = []
        for policy in self._files:
            package = _PACKAGE.search(policy.text)
            if package is None:
                continue
            for name in dict.fromkeys(_TEST_RULE.findall(policy.text)):
                try:
                    value = self._query(f"data.{package.group(1)}.{name}")
                    out.append(TestResult(policy.name, package.group(1), name, value is True))
                except PolicyEvaluationError as exc:
                    out.append(
                        TestResult(policy.name, package.group(1), name, False, exc.diagnostics[0].message)
                    )
        return out


@dataclass(frozen=True)
class TestResult:
    """One Rego unit test: a `test_` rule that must be true."""

    __test__ = False  # not a pytest test class

    file: str
    package: str
    name: str
    passed: bool
    error: str = ""
