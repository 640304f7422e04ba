"""`${...}` references in spec values: what resolves, what stays for Terraform, what is an error."""

from __future__ import annotations

import time
from typing import Any

import pytest

from stackward.diagnostics import Location
from stackward.spec.interpolation import Context, InfraRef, Interpolated, has_placeholder, interpolate
from stackward.spec.loader import SourceMap

WHERE = Location("dev/stack.yaml", 12, 5)
CTX = Context(
    "dev",
    {"team": "ml"},
    {"region": "eu", "replicas": 3, "forged": "${infra.base.bucket}", "config": {"path": "${infra.x.y}"}},
)


def resolve(value: Any) -> Interpolated:
    return interpolate({"spec": {"value": value}}, CTX, SourceMap({("spec", "value"): WHERE}))


def error(value: Any) -> str:
    result = resolve(value)
    (found,) = result.diagnostics
    assert (found.code, found.location, found.path) == ("reference.variable", WHERE, ("spec", "value"))
    assert result.value["spec"]["value"] == value  # kept as written
    assert not result.infra_refs
    return found.message


def test_env_and_var_references_resolve_and_a_lone_one_keeps_its_type():
    assert resolve("${env.name}-${var.region}/${env.labels.team}").value["spec"]["value"] == "dev-eu/ml"
    assert resolve("${var.replicas}").value["spec"]["value"] == 3


def test_infra_references_stay_in_one_spelling_and_are_recorded():
    result = resolve("gs://${ infra.base.bucket }/${infra.base.prefix}")
    assert result.value["spec"]["value"] == "gs://${infra.base.bucket}/${infra.base.prefix}"
    assert result.infra_refs == {("spec", "value"): [InfraRef("base", "bucket"), InfraRef("base", "prefix")]}
    assert not result.diagnostics


@pytest.mark.parametrize(
    ("text", "literal"),
    [("$${HOME}", "${HOME}"), ("a $${var.region} b", "a ${var.region} b"), ("$$${env.name}", "$${env.name}")],
)
def test_a_doubled_dollar_writes_a_literal(text: str, literal: str):
    result = resolve(text)
    assert result.value["spec"]["value"] == literal
    assert not result.diagnostics and not result.infra_refs


@pytest.mark.parametrize(
    "text", ["${infra.x.${env.name}}", "${infra.${var.region}.y}", "pre ${var.${var.region}} post"]
)
def test_a_nested_reference_is_an_error(text: str):
    assert error(text).startswith("references cannot be nested")


@pytest.mark.parametrize("text", ["${var.region", "${", "ok ${env.name} then ${var.region", "${env.name${"])
def test_an_unterminated_reference_is_an_error(text: str):
    assert error(text).startswith("'${' is never closed")


def test_an_unterminated_reference_names_where_it_starts():
    assert error("ok ${env.name} then ${var.region") == "'${' is never closed: ${var.region"


@pytest.mark.parametrize(
    "text",
    [
        "$${infra.base.bucket}",
        "${var.forged}",
        "x-${var.forged}",
        "$${infra.a.b} ${infra.a.b}",
        "${var.config}",
    ],
)
def test_text_that_later_steps_would_read_as_an_infra_reference_is_an_error(text: str):
    assert "would read it as an Infrastructure output" in error(text)


def test_unknown_references_are_errors_and_stay_as_written():
    assert error("${var.regoin}") == "unknown reference ${var.regoin}"


def test_hostile_text_is_one_finding_quickly():
    started = time.monotonic()
    assert error("${" * 40000).startswith("'${' is never closed")
    assert error("a$b" * 40000 + "${x").startswith("'${' is never closed")
    assert error("${a${" * 40000 + "}").startswith("references cannot be nested")
    assert time.monotonic() - started < 1


def test_only_infra_references_are_placeholders():
    assert has_placeholder("gs://${infra.base.bucket}/x")
    assert not has_placeholder("${HOME}") and not has_placeholder(3)
