"""The embedded Rego engine: regorus, in-process.

Chosen over regopy (measured: broken `with`, unsafe variables silently passing, ~400 ms per
evaluation) for correctness and speed (~1 ms); tests/test_rego_conformance.py guards the
behaviour stackward relies on. RUST_BACKTRACE is dropped so that errors are messages, not
stack dumps.

Each file is read as Rego v1, or as v0 when v1 refuses it for lacking `if`/`contains` (a v0
file without those keywords parses the same either way), so published v0 policies load next
to v1 ones. `sprintf` is OPA's (stackward.policy.gofmt), not regorus's own, which drops
arguments on widths and flags (`%-40s`). Data documents are added as `data`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from stackward.diagnostics import Diagnostic, Location
from stackward.policy import data as data_documents
from stackward.policy.analysis import RULE_NAME, Analysis, analyse
from stackward.policy.engine import (
    ALL_NAMESPACES,
    DEFAULT_NAMESPACES,
    PolicyEvaluationError,
    namespaces_of,
    top_packages,
)
from stackward.policy.gofmt import sprintf as opa_sprintf
from stackward.policy.sources import PolicyFile

for _name in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE"):
    os.environ.pop(_name, None)

import regorus  # noqa: E402  (after the environment is cleaned)

_WHERE = re.compile(r"-->\s*(?P<file>.+?):(?P<line>\d+):(?P<col>\d+)")
_ERROR = re.compile(r"^error:\s*(?P<msg>.+)$", re.MULTILINE)
_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z0-9_.]+)", re.MULTILINE)
_IMPORT = re.compile(
    r"^\s*import\s+((?:data|input)(?:\.[A-Za-z0-9_]+)*)(?:[ \t]+as[ \t]+([A-Za-z_][A-Za-z0-9_]*))?",
    re.MULTILINE,
)
_TEST_RULE = re.compile(r"^\s*(test_[A-Za-z0-9_]+)\b", re.MULTILINE)
# What Rego v1 says of a v0 rule; a file refused for these alone is read as v0.
V0_SIGNALS = ("`if` keyword is required", "`contains` keyword is required")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def rego_error(text: str, fallback_file: str, code: str = "policy.load", hint: str = "") -> Diagnostic:
    """A regorus error message as a finding at the policy file, line and column."""
    text = text.split("Stack backtrace:")[0]
    where = _WHERE.search(text)
    error = _ERROR.search(text)
    message = error.group("msg").strip() if error else text.strip().splitlines()[-1]
    message = re.sub(r"\s*\(path \[.*$", "", message)
    if message == "not an i64":  # regorus converting a number for an extension (sprintf)
        message = (
            "a number beyond 64-bit integers cannot be passed to sprintf in the embedded engine "
            "(regorus 0.13); use the OPA server engine, or format the number another way"
        )
    location = (
        Location(where.group("file"), int(where.group("line")), int(where.group("col")))
        if where
        else Location(fallback_file)
    )
    return Diagnostic(
        code,
        f"policy error: {message}",
        hint or "fix the policy; until it loads, the policy check fails",
        location,
    )


def _sprintf(fmt: Any, values: Any) -> str:
    if not isinstance(fmt, str):
        raise TypeError(f"sprintf: operand 1 must be string but got {type(fmt).__name__}")
    if not isinstance(values, list):
        raise TypeError(f"sprintf: operand 2 must be array but got {type(values).__name__}")
    return opa_sprintf(fmt, values)


def new_regorus() -> regorus.Engine:
    """A regorus engine with OPA's sprintf."""
    engine = regorus.Engine()
    engine.add_extension("sprintf", 2, _sprintf)
    return engine


_CODE = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`|#[^\n]*')
_V1_KEYWORD = re.compile(r"(?<![\w.])(?:if(?!\w)|contains(?![\w(])(?!\s*\())")  # not contains(a, b)
_FUTURE_IMPORT = re.compile(r"^\s*import\s+(?:future\.keywords|rego\.v1)\b", re.MULTILINE)


def _v1_keywords(text: str) -> bool:
    """Whether a file without future.keywords imports writes `if` or `contains` as keywords:
    a v1 file, never to be read as v0 (where they would be names, the rules something else)."""
    if _FUTURE_IMPORT.search(text):
        return False
    return _V1_KEYWORD.search(_CODE.sub(" ", text)) is not None


def _error_at(text: str) -> tuple[int, int]:
    where = _WHERE.search(text)
    return (int(where.group("line")), int(where.group("col"))) if where else (0, 0)


def add_policy(engine: regorus.Engine, policy: PolicyFile) -> tuple[int, str | None]:
    """Add `policy` as Rego v1, else as v0 when v1 refuses it only for v0 rule syntax.
    Returns the Rego version it was read as, and the error text when neither loads (that of
    the version whose parse got further into the file: a v1 file missing one `if`, a v0 file
    with a typo further down)."""
    try:
        engine.add_policy(policy.name, policy.text)
        return 1, None
    except RuntimeError as exc:
        v1_error = str(exc)
    if not any(signal in v1_error for signal in V0_SIGNALS) or _v1_keywords(policy.text):
        return 1, v1_error
    engine.set_rego_v0(True)
    try:
        engine.add_policy(policy.name, policy.text)
        return 0, None
    except RuntimeError as exc:
        v0_error = str(exc)
    finally:
        engine.set_rego_v0(False)
    v1_at, v0_at = _error_at(v1_error), _error_at(v0_error)
    if v1_at > v0_at or (v1_at == v0_at and _ERROR.findall(v1_error) == _ERROR.findall(v0_error)):
        return 1, v1_error
    return 0, v0_error


def _imports(policy: PolicyFile) -> frozenset[tuple[str, str]]:
    """The file's `import data…`/`import input…` lines as (path, alias)."""
    return frozenset((path, alias or path.rsplit(".", 1)[-1]) for path, alias in _IMPORT.findall(policy.text))


def _packages(files: list[PolicyFile]) -> dict[str, list[PolicyFile]]:
    by_package: dict[str, list[PolicyFile]] = {}
    for policy in files:
        match = _PACKAGE.search(policy.text)
        by_package.setdefault(match.group(1) if match else "", []).append(policy)
    return by_package


def _split_package_imports(files: list[PolicyFile]) -> list[Diagnostic]:
    """Fail closed where a split package binds one alias to two paths: regorus 0.13 then
    resolves the alias to one of them for every file of the package, silently."""
    found = []
    for package, members in _packages(files).items():
        bound: dict[str, tuple[str, str]] = {}  # alias -> (path, file)
        for policy in members:
            for path, alias in sorted(_imports(policy)):
                other = bound.setdefault(alias, (path, policy.name))
                if other[0] != path:
                    found.append(
                        Diagnostic(
                            "policy.load",
                            f"package {package} is split over several files that import {alias} differently "
                            f"({other[0]} in {other[1]}, {path} here); the embedded engine would resolve "
                            "one of them for every file",
                            f"give every file of package {package} the same import lines (one alias per "
                            "path), or use the OPA server engine",
                            Location(policy.name, 1, 1),
                        )
                    )
    return found


def _in_load_order(files: list[PolicyFile]) -> list[PolicyFile]:
    """Each package's files together, the one with the most imports first."""
    ordered: list[PolicyFile] = []
    for members in _packages(files).values():
        ordered.extend(sorted(members, key=lambda p: -len(_imports(p))))
    return ordered


class EmbeddedEngine:
    """Rego evaluated in this process by regorus.

    Each deny/violation/warn rule and each `exception` is queried on its own
    (`data.<package>.<rule>`), as conftest does: regorus 0.13 evaluates a whole package
    document wrongly when the package is split over files that use import aliases (rules of
    the later files come back empty), while rule queries are right.
    """

    name = "embedded"

    def __init__(
        self,
        namespaces: str | list[str] | tuple[str, ...] | None = DEFAULT_NAMESPACES,
        *,
        rego_version: int | None = None,
    ):
        self.namespaces = namespaces_of(namespaces)
        self.rego_version = rego_version  # None: per file (v1, else v0); 1 or 0: every file so
        self._engine = new_regorus()
        self._files: list[PolicyFile] = []
        self.versions: dict[str, int] = {}  # policy file -> the Rego version it was read as
        self.data: dict = {}
        self._rules: dict[str, list[str]] = {}  # package -> its deny/violation/warn/exception rules
        self.analysis: Analysis | None = None  # what the loaded policies read (after load)

    def _add(self, policy: PolicyFile) -> tuple[int, str | None]:
        if self.rego_version is None:
            return add_policy(self._engine, policy)
        self._engine.set_rego_v0(self.rego_version == 0)
        try:
            self._engine.add_policy(policy.name, policy.text)
            return self.rego_version, None
        except RuntimeError as exc:
            return self.rego_version, str(exc)
        finally:
            self._engine.set_rego_v0(False)

    def load(self, files: list[PolicyFile]) -> list[Diagnostic]:
        policies = [f for f in files if not f.is_data]
        merged, found = data_documents.load([f for f in files if f.is_data])
        found += _split_package_imports(policies)
        if found:
            return found
        for policy in _in_load_order(policies):
            version, error = self._add(policy)
            if error is None:
                self._files.append(policy)
                self.versions[policy.name] = version
            else:
                v0 = version == 0 and self.rego_version is None
                hint = (
                    "this file is read as Rego v0 (rules without `if`); fix the policy, until it loads the check fails"
                    if v0
                    else ""
                )
                found.append(rego_error(error, policy.name, hint=hint))
        if found:
            return found
        if merged:
            self._engine.add_data(merged)
            self.data = merged
        self.analysis = analyse(self.modules())
        for rule in self.analysis.rules:
            if RULE_NAME.match(rule.name) or rule.name == "exception":
                names = self._rules.setdefault(rule.package, [])
                if rule.name not in names:
                    names.append(rule.name)
        return found

    @property
    def packages(self) -> list[str]:
        """The packages of the loaded files (without `data.`)."""
        return sorted({str(p).removeprefix("data.") for p in self._engine.get_packages()})

    def modules(self) -> list[dict]:
        """The loaded modules' syntax trees (regorus's JSON), for stackward.policy.analysis."""
        return json.loads(self._engine.get_ast_as_json())

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

    def queried(self) -> tuple[str, ...]:
        """The namespaces evaluated: the configured ones, or each top-level package for `*`."""
        if self.namespaces == (ALL_NAMESPACES,):
            return top_packages(self.packages)
        return self.namespaces

    def evaluate(self, document: dict) -> dict[str, Any]:
        """`data.<namespace>` as far as the rules go: {namespace: {subpackage…: {rule: value}}}."""
        self._engine.set_input_json(json.dumps(document))
        out: dict[str, Any] = {}
        for namespace in self.queried():
            for package, names in sorted(self._rules.items()):
                if package != namespace and not package.startswith(namespace + "."):
                    continue
                node = out.setdefault(namespace, {})
                for part in package.split(".")[len(namespace.split(".")) :]:
                    node = node.setdefault(part, {})
                for name in names:
                    node[name] = self._query(f"{data_ref(package)}.{name}")
        return out

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


def data_ref(namespace: str) -> str:
    """`data.a.b` for a namespace, quoting segments that are not identifiers."""
    return "data" + "".join(
        f".{p}" if _IDENT.match(p) else f"[{json.dumps(p)}]" for p in namespace.split(".")
    )


@dataclass(frozen=True)
class TestResult:
    """One Rego unit test: a `test_` rule that must be true."""

    __test__ = False  # not a pytest test class

    file: str
    package: str
    name: str
    passed: bool
    error: str = ""
