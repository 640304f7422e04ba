"""Conformance of the Rego engines with what stackward relies on.

Every case runs on the embedded engine (regorus) and on the OPA server client against a
local stand-in (tests/opa_standin.py: no OPA binary can be installed here). A regression in
the pinned engine (`with`, unsafe variables, `every`, sprintf, object results, exceptions,
error locations, Rego v0, data documents) fails here, not silently in a policy.

Expected values marked "OPA" were computed by OPA 1.20.2 itself (its Go library, through the
opa-golib-python-bindings wheel) on the same policy and input; test_sprintf_matches_opa re-runs
them against OPA whenever that wheel is importable.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator

import pytest
from opa_standin import OpaStandIn

from stackward.diagnostics import Diagnostic
from stackward.policy.embedded import EmbeddedEngine
from stackward.policy.engine import PolicyEngine, PolicyEvaluationError
from stackward.policy.gofmt import sprintf
from stackward.policy.opa_server import OpaServerEngine
from stackward.policy.results import PolicyResult, collect_all
from stackward.policy.sources import PolicyFile

HEAD = "package stackward.t\n\nimport rego.v1\n\n"


@pytest.fixture(params=["embedded", "opa-server"])
def engine(request: pytest.FixtureRequest) -> Iterator[PolicyEngine]:
    if request.param == "embedded":
        yield EmbeddedEngine()
    else:
        with OpaStandIn() as server:
            yield OpaServerEngine(server.url)


@pytest.fixture(params=["embedded", "opa-server --v0-compatible"])
def v0_engine(request: pytest.FixtureRequest) -> Iterator[PolicyEngine]:
    """The engines that read Rego v0: embedded, and an OPA 1.x started with --v0-compatible."""
    if request.param == "embedded":
        yield EmbeddedEngine()
    else:
        with OpaStandIn(v0_compatible=True) as server:
            yield OpaServerEngine(server.url)


def run(engine: PolicyEngine, rego: str, document: dict) -> list[PolicyResult]:
    errors = engine.load([PolicyFile("t.rego", HEAD + rego)])
    assert errors == []
    return collect_all(engine.evaluate(document))


def failures(engine: PolicyEngine, rego: str) -> list[Diagnostic]:
    """Load or evaluation errors, whichever stage the engine reports them in."""
    found = engine.load([PolicyFile("t.rego", rego)])
    if found:
        return found
    with pytest.raises(PolicyEvaluationError) as raised:
        engine.evaluate({})
    traceback.clear_frames(raised.tb)  # let the engine go now, on this thread
    return raised.value.diagnostics


def test_string_results_block(engine):
    results = run(engine, 'deny contains msg if { input.x > 1; msg := "too big" }', {"x": 2})
    assert [(r.rule, r.msg, r.blocking) for r in results] == [("deny", "too big", True)]


def test_object_results_carry_resource_fix_and_policy_id(engine):
    rego = 'warn_size contains {"msg": "m", "resource": "Stack/s", "fix": "f", "policy_id": "P1"} if { true }'
    (result,) = run(engine, rego, {})
    assert (result.msg, result.resource, result.fix, result.policy_id) == ("m", "Stack/s", "f", "P1")
    assert not result.blocking
    assert result.code == "policy.P1"


def test_violation_is_blocking(engine):
    (result,) = run(engine, 'violation contains "v" if { true }', {})
    assert result.blocking


def test_sprintf(engine):
    rego = 'deny contains sprintf("%s has %d items: %v", [input.name, count(input.items), input.items]) if { true }'
    (result,) = run(engine, rego, {"name": "a", "items": [1, 2]})
    assert result.msg == "a has 2 items: [1, 2]"


def test_every(engine):
    rego = 'deny contains "not all positive" if { not all_positive }\nall_positive if { every v in input.vals { v > 0 } }'
    assert run(engine, rego, {"vals": [1, 2, 3]}) == []
    assert [r.msg for r in run(engine, rego, {"vals": [1, -2]})] == ["not all positive"]


def test_with_replaces_input(engine):
    rego = 'inner contains "seen" if { input.flag }\ndeny contains m if { some m in inner with input as {"flag": true} }'
    assert [r.msg for r in run(engine, rego, {"flag": False})] == ["seen"]


def test_exception_waives_a_named_rule(engine):
    rego = (
        'deny_keys contains "keys" if { true }\n'
        'deny_names contains "names" if { true }\n'
        'exception contains ["keys"] if { input.allow }\n'
    )
    results = {r.msg: r.waived for r in run(engine, rego, {"allow": True})}
    assert results == {"keys": True, "names": False}
    assert not any(r.waived for r in run(engine, rego, {"allow": False}))


def test_nested_packages_are_collected(engine):
    engine.load(
        [PolicyFile("a.rego", "package stackward.a.b\n\nimport rego.v1\n\ndeny contains 1 if { true }\n")]
    )
    results = collect_all(engine.evaluate({}))
    assert [(r.package, r.msg) for r in results] == [("stackward.a.b", "1")]


def test_undefined_namespace_has_no_results(engine):
    engine.load(
        [PolicyFile("other.rego", "package elsewhere\n\nimport rego.v1\n\ndeny contains 1 if { true }\n")]
    )
    assert collect_all(engine.evaluate({})) == []


def test_unsafe_variable_is_an_error_with_its_location(engine):
    (found,) = failures(engine, HEAD + "deny contains m if { m := y }\n")
    assert "unsafe" in found.message
    assert (found.location.file, found.location.line, found.location.column) == ("t.rego", 5, 27)


def test_syntax_error_is_an_error_with_its_location(engine):
    (found,) = failures(engine, HEAD + "deny contains m if {\n")
    assert found.location.file == "t.rego"
    assert found.location.line == 6  # the end of input, where the body was still open
    assert found.code == "policy.load"


V0 = """package stackward.t

default allow = false

allow {
	input.role == "admin"
}

deny[msg] {
	not allow
	msg := sprintf("%s is not allowed", [input.user])
}

deny[msg] {
	some i
	input.items[i] > 10
	msg := sprintf("item %d is %v", [i, input.items[i]])
}

names[n] { n := input.items[_] }

warn[msg] {
	count(names) > 2
	msg := "many"
}

limits = {"max": 3}

double(x) = y { y := x * 2 }

violation[{"msg": m, "resource": "Stack/s"}] {
	double(input.n) > limits.max
	m := sprintf("%-8s|%5.1f|%03d", ["n", input.n * 1.5, input.n])
}
"""


def test_v0_constructs_evaluate_as_opa_does(v0_engine):
    """`default`, `not`, partial sets, `some i`, functions and v0 constants, in a v0 file."""
    assert v0_engine.load([PolicyFile("t.rego", V0)]) == []
    denied = collect_all(v0_engine.evaluate({"role": "user", "user": "bob", "items": [5, 20, 20], "n": 2}))
    # OPA: {"deny": ["bob is not allowed", "item 1 is 20", "item 2 is 20"], "violation": [{"msg":
    # "n       |%!f(int64=    3)|002", ...}], "warn": []} (2 * 1.5 is the integer 3 for sprintf)
    assert sorted((r.rule, r.msg) for r in denied) == [
        ("deny", "bob is not allowed"),
        ("deny", "item 1 is 20"),
        ("deny", "item 2 is 20"),
        ("violation", "n       |%!f(int64=    3)|002"),
    ]
    allowed = collect_all(v0_engine.evaluate({"role": "admin", "user": "amy", "items": [1, 2, 3], "n": 1}))
    assert [(r.rule, r.msg, r.blocking) for r in allowed] == [("warn", "many", False)]


def test_v0_and_v1_files_load_side_by_side(v0_engine):
    v1 = PolicyFile("b.rego", HEAD + 'deny_b contains "from v1" if input.role == "user"\n')
    assert v0_engine.load([PolicyFile("a.rego", V0), v1]) == []
    results = collect_all(v0_engine.evaluate({"role": "user", "user": "x", "items": [], "n": 0}))
    assert sorted(r.msg for r in results) == ["from v1", "x is not allowed"]


def test_a_v1_opa_server_refuses_v0_files_and_says_how_to_load_them():
    """OPA 1.x parses uploads as Rego v1 unless started with --v0-compatible (no per-request switch)."""
    with OpaStandIn() as server:
        found = OpaServerEngine(server.url).load([PolicyFile("t.rego", V0)])
    assert found and found[0].location.file == "t.rego" and found[0].location.line == 5
    assert "`if` keyword is required before rule body" in found[0].message
    assert "--v0-compatible" in found[0].hint and "opa fmt --v0-v1" in found[0].hint


def test_v1_files_are_marked_for_a_v0_compatible_opa_server():
    """Without `import rego.v1`, a v0-compatible OPA would read `contains`/`if` as v0: stackward
    adds the import on the package line, so line numbers stay."""
    with OpaStandIn(v0_compatible=True) as server:
        engine = OpaServerEngine(server.url)
        plain = "package stackward.t\n\ndeny contains m if {\n\tm := input.x\n}\n"
        assert engine.load([PolicyFile("t.rego", plain)]) == []
        assert server.policies["stackward/t.rego"].splitlines()[0] == "package stackward.t import rego.v1"
        assert [r.msg for r in collect_all(engine.evaluate({"x": "hi"}))] == ["hi"]


def test_a_broken_v0_file_fails_at_its_rule_and_says_it_was_read_as_v0(engine):
    (found,) = failures(engine, "package stackward.t\n\ndeny[m] {\n  m := \n}\n")
    assert (found.code, found.location.file, found.location.line) == ("policy.load", "t.rego", 3)
    assert "Rego v0" in found.hint


def test_a_v1_file_missing_one_if_is_not_read_as_v0(engine):
    """v0 would take `deny contains m if` as names and load the file with other rules: a file
    that writes v1 keywords is v1, and its error is v1's, at the rule without `if`."""
    (found,) = failures(
        engine, "package stackward.t\n\ndeny contains 1 if { helper }\n\nhelper {\n\ttrue\n}\n"
    )
    assert (found.location.file, found.location.line) == ("t.rego", 5)
    assert "`if` keyword is required" in found.message and "v0" not in found.hint


def test_a_number_sprintf_cannot_take_is_refused_at_its_line():
    """Embedded only: regorus hands numbers to Python as 64-bit integers; a larger one (1e21)
    cannot reach OPA's sprintf, so the evaluation fails at the call, never with a wrong text."""
    engine = EmbeddedEngine()
    assert (
        engine.load([PolicyFile("t.rego", HEAD + 'deny contains sprintf("%v", [input.n]) if { true }\n')])
        == []
    )
    with pytest.raises(PolicyEvaluationError) as raised:
        engine.evaluate({"n": 1e21})
    (found,) = raised.value.diagnostics
    traceback.clear_frames(raised.tb)
    assert (found.location.file, found.location.line) == ("t.rego", 5)
    assert "beyond 64-bit integers" in found.message


def test_data_documents_are_data(engine):
    files = [
        PolicyFile(
            "t.rego", HEAD + "deny contains t if { some t in input.types; not t in data.allowed.types }\n"
        ),
        PolicyFile("allowed.yaml", "allowed:\n  types: [aws_s3_bucket]\n"),
        PolicyFile("more.json", '{"allowed": {"regions": ["eu-west-1"]}}'),
    ]
    assert engine.load(files) == []
    results = collect_all(engine.evaluate({"types": ["aws_s3_bucket", "aws_instance"]}))
    assert [r.msg for r in results] == ["aws_instance"]


def test_conflicting_data_documents_fail_naming_both(engine):
    files = [
        PolicyFile("t.rego", HEAD + "deny contains 1 if { data.limit > 1 }\n"),
        PolicyFile("a.json", '{"limit": 1}'),
        PolicyFile("b.yaml", "limit: 2\n"),
    ]
    (found,) = engine.load(files)
    assert found.message == "conflicting data: data.limit is set by a.json and by b.yaml"
    assert found.location.file == "b.yaml"


# sprintf: OPA formats with Go's fmt; regorus 0.13's own sprintf drops the argument of `%-40s`.
# Every expected value below is OPA 1.20.2's output for the same format and arguments.
SPRINTF_CASES = [
    (
        "%-40s :: S3 buckets must not be PUBLIC",
        ["aws_s3_bucket.b"],
        "aws_s3_bucket.b                          :: S3 buckets must not be PUBLIC",
    ),
    ("%10s|%-6s|", ["ab", "cd"], "        ab|cd    |"),
    ("%5d|%-5d|%05d|%+d", [7, 7, 7, 7], "    7|7    |00007|+7"),
    ("%8.3f|%.2f|%6.2f", [3.14159, 2.675, -1.5], "   3.142|2.67| -1.50"),
    ("%o %O %x %X %b %#x", [8, 8, 255, 255, 5, 255], "10 0o10 ff FF 101 0xff"),
    ("%e %g %G %v", [1234.5, 0.000012, 2.5e-7, 0.1], "1.234500e+03 1.2e-05 2.5E-07 0.1"),
    ("%v|%G", [1e-07, 1e-07], "1e-07|%!G(string=1e-07)"),  # OPA passes `1e-07` (no point) as text
    ("%t %d", [True, 3.5], "%!t(string=true) %!d(float64=3.5)"),
    ("%s %s", ["a"], "a %!s(MISSING)"),
    ("%s", ["a", "b"], "a%!(EXTRA string=b)"),
    ("%v %s", [{"b": 1, "a": [2, "x"]}, None], '{"a": [2, "x"], "b": 1} null'),
    ("%q %.3s %T %T", ['a"b', "abcdef", 1, "x"], '"a\\"b" abc int64 string'),
    ("%[2]s-%[1]s", ["a", "b"], "b-a"),
    ("%*d|%-*d|", [4, 7, 3, 1], "   7|1  |"),
    ("%c %U %x", [65, 65, "hi"], "A U+0041 6869"),
    ("%d%%", [100], "100%"),
]


@pytest.mark.parametrize(("fmt", "args", "expected"), SPRINTF_CASES, ids=[c[0] for c in SPRINTF_CASES])
def test_sprintf_formats_as_opa_does(engine, fmt, args, expected):
    rego = "deny contains sprintf(input.fmt, input.args) if { true }"
    (result,) = run(engine, rego, {"fmt": fmt, "args": args})
    assert result.msg == expected


def test_sprintf_padding_in_a_policy_literal(engine):
    rego = 'deny contains sprintf("%-12s|%6.2f|", [input.address, input.cost]) if { true }'
    (result,) = run(engine, rego, {"address": "aws_eip.a", "cost": 12.5})
    assert result.msg == "aws_eip.a   | 12.50|"


def test_sprintf_matches_opa():
    """Against OPA itself (its Go library, 1.20.2), when the opa-golib-python-bindings wheel is
    importable (it declares Python >= 3.14; install it with --ignore-requires-python)."""
    opa_bindings = pytest.importorskip("opa_bindings")
    import random

    opa = opa_bindings.OpaEngine()
    opa.add_policy("t.rego", "package t\nr := sprintf(input.f, input.a)\n")
    cases = [(f, a) for f, a, _ in SPRINTF_CASES]
    rng = random.Random(14)
    values = [
        0,
        7,
        -7,
        255,
        3.0,
        0.1,
        -1.5,
        3.14159,
        1234567.0,
        1e-7,
        1.2e-05,
        "ab",
        "",
        "héllo",
        True,
        None,
        [1, "x"],
        {"b": 1},
        2**63,
    ]
    for _ in range(2000):
        verb = "".join(
            "%"
            + rng.choice(["", "-", "+", "#", " ", "0", "-0"])
            + rng.choice(["", "1", "7", "*", "[1]"])
            + rng.choice(["", ".", ".0", ".3", ".*"])
            + rng.choice("vsdqxXobcUeEfFgGtT%")
            for _ in range(rng.randint(1, 2))
        )
        cases.append((verb, [rng.choice(values) for _ in range(rng.randint(0, 3))]))
    differ = [(f, a) for f, a in cases if sprintf(f, a) != opa.eval_document("t.r", {"f": f, "a": a})]
    assert differ == []


LIB = 'package lib.t\n\nimport rego.v1\n\nprod if input.env == "prod"\n'
WITH_ALIAS = (
    HEAD.replace("import rego.v1", "import data.lib.t as lib\nimport rego.v1")
    + "deny_k contains 1 if { lib.prod }\n"
)
PLAIN = HEAD + 'exception contains ["other"] if { true }\n'


def test_imports_of_every_file_of_a_split_package_apply(engine):
    """An exceptions file without the helper import, loaded first, must not blank the deny rule."""
    errors = engine.load(
        [PolicyFile("a_plain.rego", PLAIN), PolicyFile("lib.rego", LIB), PolicyFile("b.rego", WITH_ALIAS)]
    )
    assert errors == []
    results = collect_all(engine.evaluate({"env": "prod"}))
    assert [(r.rule, r.msg) for r in results] == [("deny_k", "1")]


def test_split_package_with_different_aliases_evaluates_every_file(engine):
    """Files of one package with their own aliases (a `package main` of conftest policies): every
    rule counts. regorus 0.13 evaluates such a package document wrongly; rule queries are right."""
    other = (
        HEAD.replace("import rego.v1", "import data.lib.t as other\nimport rego.v1")
        + "deny_o contains 2 if { other.prod }\n"
    )
    plan = (
        HEAD.replace("import rego.v1", "import input.terraform_plan as tfplan\nimport rego.v1")
        + "deny_p contains 3 if { tfplan.x }\n"
    )
    files = [PolicyFile("a.rego", PLAIN), PolicyFile("lib.rego", LIB), PolicyFile("b.rego", WITH_ALIAS)]
    assert engine.load([*files, PolicyFile("c.rego", other), PolicyFile("d.rego", plan)]) == []
    results = collect_all(engine.evaluate({"env": "prod", "terraform_plan": {"x": True}}))
    assert sorted((r.rule, r.msg) for r in results) == [("deny_k", "1"), ("deny_o", "2"), ("deny_p", "3")]


def test_one_alias_for_two_paths_in_a_split_package_fails_closed():
    """Embedded only: regorus would resolve the alias to one of the paths for every file."""
    lib_u = LIB.replace("package lib.t", "package lib.u")
    other = (
        HEAD.replace("import rego.v1", "import data.lib.u as lib\nimport rego.v1")
        + "deny_o contains 2 if { lib.prod }\n"
    )
    found = EmbeddedEngine().load(
        [
            PolicyFile("lib.rego", LIB),
            PolicyFile("lib_u.rego", lib_u),
            PolicyFile("a.rego", WITH_ALIAS),
            PolicyFile("b.rego", other),
        ]
    )
    assert len(found) == 1
    assert "import lib differently (data.lib.t in a.rego, data.lib.u here)" in found[0].message
    assert "one alias per path" in found[0].hint


def test_default_code_hazard_rules_walk_nested_modules(engine):
    """The default policies find a provisioner in a module of a module (`walk`, `every` over
    `array.slice`), the same on both engines."""
    from conftest import EXAMPLES

    policies = EXAMPLES.parent / "policies"
    files = [PolicyFile(p.name, p.read_text()) for p in sorted(policies.rglob("*.rego"))]
    assert engine.load([f for f in files if not f.is_test]) == []
    hook = {"address": "terraform_data.h", "mode": "managed", "provisioners": [{"type": "local-exec"}]}
    inner = {"module_calls": {"inner": {"module": {"resources": [hook]}}}}
    plan = {"configuration": {"root_module": {"module_calls": {"base": {"module": inner}}}}}
    document = {"environment": {"name": "dev"}, "resources": [], "terraform_plan": plan}
    results = [r for r in collect_all(engine.evaluate(document)) if r.policy_id == "SW011"]
    assert [r.msg.split(":")[0] for r in results] == [
        "module.base has a local-exec provisioner on module.base.module.inner.terraform_data.h"
    ]
