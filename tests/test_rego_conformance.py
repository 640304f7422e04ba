"""Conformance of the Rego engines with what stackward relies on.

Every case runs on the embedded engine (regorus) and on the OPA server client against a
local stand-in (tests/opa_standin.py: no OPA binary can be installed here). A regression in
the pinned engine (`with`, unsafe variables, `every`, sprintf, object results, exceptions,
error locations) fails here, not silently in a policy.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator

import pytest
from opa_standin import OpaStandIn

from stackward.diagnostics import Diagnostic
from stackward.policy.embedded import EmbeddedEngine
from stackward.policy.engine import PolicyEngine, PolicyEvaluationError
from stackward.policy.opa_server import OpaServerEngine
from stackward.policy.results import PolicyResult, collect
from stackward.policy.sources import PolicyFile

HEAD = "package stackward.t\n\nimport rego.v1\n\n"


@pytest.fixture(params=["embedded", "opa-server"])
def engine(request: pytest.FixtureRequest) -> Iterator[PolicyEngine]:
    if request.param == "embedded":
        yield EmbeddedEngine()
    else:
        with OpaStandIn() as server:
            yield OpaServerEngine(server.url)


def run(engine: PolicyEngine, rego: str, document: dict) -> list[PolicyResult]:
    errors = engine.load([PolicyFile("t.rego", HEAD + rego)])
    assert errors == []
    return collect(engine.namespace, engine.evaluate(document))


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
    results = collect(engine.namespace, engine.evaluate({}))
    assert [(r.package, r.msg) for r in results] == [("stackward.a.b", "1")]


def test_undefined_namespace_has_no_results(engine):
    engine.load(
        [PolicyFile("other.rego", "package elsewhere\n\nimport rego.v1\n\ndeny contains 1 if { true }\n")]
    )
    assert collect(engine.namespace, engine.evaluate({})) == []


def test_unsafe_variable_is_an_error_with_its_location(engine):
    (found,) = failures(engine, HEAD + "deny contains m if { m := y }\n")
    assert "unsafe" in found.message
    assert (found.location.file, found.location.line, found.location.column) == ("t.rego", 5, 27)


def test_syntax_error_is_an_error_with_its_location(engine):
    (found,) = failures(engine, HEAD + "deny contains m if {\n")
    assert found.location.file == "t.rego"
    assert found.location.line == 6  # the end of input, where the body was still open
    assert found.code == "policy.load"


def test_v0_syntax_is_rejected(engine):
    (found,) = failures(engine, "package stackward.t\n\ndeny[m] { m := 1 }\n")
    assert found.location.line == 3


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
    results = collect(engine.namespace, engine.evaluate({"env": "prod"}))
    assert [(r.rule, r.msg) for r in results] == [("deny_k", "1")]


def test_split_package_with_disjoint_imports_fails_closed():
    """Embedded only: regorus would silently drop one file's alias, so the load is refused."""
    other = (
        HEAD.replace("import rego.v1", "import data.lib.t as other\nimport rego.v1")
        + "deny_o contains 2 if { other.prod }\n"
    )
    found = EmbeddedEngine().load(
        [PolicyFile("lib.rego", LIB), PolicyFile("a.rego", WITH_ALIAS), PolicyFile("b.rego", other)]
    )
    assert len(found) == 1
    assert "same import lines" in found[0].hint


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
    results = [r for r in collect(engine.namespace, engine.evaluate(document)) if r.policy_id == "SW011"]
    assert [r.msg.split(":")[0] for r in results] == [
        "module.base has a local-exec provisioner on module.base.module.inner.terraform_data.h"
    ]
