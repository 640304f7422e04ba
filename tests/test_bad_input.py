"""Every class of bad input gets a finding naming the file (and line), a hint, exit 1,
and never a traceback or a hang. Each case adds one bad file to a valid environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run, validate_json, write

from stackward.spec.loader import MAX_FILE_BYTES

SPEC_HEAD = "apiVersion: stackward.dev/v1alpha1\n"

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)

CASES = {
    # name: (file content, expected code, expected line or None, words expected in the hint)
    "malformed-yaml": ("kind: Stack\nspec: [unclosed\n", "yaml.syntax", 3, "syntax"),
    "tabs": ("kind: Stack\n\tmetadata: {}\n", "yaml.syntax", 2, "spaces"),
    "duplicate-keys": (
        SPEC_HEAD + "kind: Stack\nkind: Stack\nmetadata: {name: s}\n",
        "yaml.duplicate-key",
        3,
        "only the last",
    ),
    "alias-bomb": (BILLION_LAUGHS, "yaml.too-large", None, "aliases"),
    "recursive-alias": ("a: &x\n  b: *x\n", "yaml.too-deep", None, "recursive alias"),
    "binary": (b"\x7fELF\x02\x01\x01\x00\x00\x00", "file.binary", None, "remove it"),
    "not-utf8": (b"kind: Stack\n" + b"name: caf\xe9\n", "file.encoding", 2, "UTF-8"),
    "empty": ("", "file.empty", 1, "delete the file"),
    "only-comments": ("# nothing here\n", "file.empty", 1, "delete the file"),
    "list-document": ("- kind: Stack\n- kind: Stack\n", "schema.document", 1, "top level"),
    "scalar-document": ("just some text\n", "schema.document", 1, "top level"),
    "unknown-kind": (
        SPEC_HEAD + "kind: StackComponnent\nmetadata: {name: x}\nspec: {}\n",
        "schema.kind",
        2,
        "StackComponent",
    ),
    "missing-kind": (SPEC_HEAD + "metadata: {name: x}\n", "schema.kind", 1, "add kind"),
    "custom-tag": (SPEC_HEAD + "kind: Stack\nmetadata: !Ref x\n", "yaml.tag", 3, "plain YAML"),
    "wrong-type": (
        SPEC_HEAD + "kind: Stack\nmetadata:\n  name: local-s2\nspec:\n  components: [a, b]\n",
        "schema",
        6,
        "mapping",
    ),
    "unknown-key": (
        SPEC_HEAD + "kind: Stack\nmetadata:\n  name: local-s2\n  lables: {a: b}\n"
        "spec:\n  components: {orchestrator: local-orchestrator, artifact_store: local-artifact-store}\n",
        "schema",
        5,
        "did you mean 'labels'",
    ),
    "wrong-api-version": (
        "apiVersion: stackward.dev/v2\nkind: Stack\nmetadata: {name: local-s3}\n"
        "spec: {components: {orchestrator: local-orchestrator, artifact_store: local-artifact-store}}\n",
        "schema",
        1,
        "stackward.dev/v1alpha1",
    ),
    "label-not-string": (
        SPEC_HEAD + "kind: Stack\nmetadata:\n  name: local-s4\n  labels:\n    tier: 1\n"
        "spec: {components: {orchestrator: local-orchestrator, artifact_store: local-artifact-store}}\n",
        "schema",
        6,
        "quote numbers",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_file_is_reported_with_file_line_and_hint(examples: Path, case: str):
    content, code, line, hint_words = CASES[case]
    write(examples, {"local/bad.yaml": content})
    result = validate_json(examples, "--env", "local")
    assert result.exit_code == 1
    found = [d for d in result.findings(code) if d["file"].endswith("local/bad.yaml")]
    assert found, result.output
    first = found[0]
    if line is not None:
        assert first["line"] == line
    assert hint_words.lower() in first["hint"].lower()
    assert first["environments"] == ["local"]


def test_huge_file_is_refused_without_reading_it(examples: Path):
    path = examples / "local" / "huge.yaml"
    with path.open("wb") as handle:
        handle.truncate(50 * 1024 * 1024)  # 50 MB
    result = validate_json(examples, "--env", "local")
    assert result.exit_code == 1
    (finding,) = result.findings("file.too-large")
    assert finding["file"].endswith("local/huge.yaml")
    assert "50.0 MiB" in finding["message"]
    assert f"{MAX_FILE_BYTES // 1024 // 1024} MiB" in finding["message"]


def test_syntax_error_in_one_file_does_not_hide_errors_in_others(examples: Path):
    write(examples, {"local/a.yaml": "kind: [\n", "local/b.yaml": "- a list\n"})
    result = validate_json(examples, "--env", "local")
    codes = {d["code"] for d in result.findings()}
    assert {"yaml.syntax", "schema.document"} <= codes


def test_missing_folder_is_a_usage_error(tmp_path: Path):
    result = run("validate", str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert "no such folder" in result.output


def test_unknown_environment_is_a_usage_error_with_a_suggestion(examples: Path):
    result = run("validate", str(examples), "--env", "prd")
    assert result.exit_code == 2
    assert "did you mean 'prod'" in result.output


def test_folder_without_environments_is_a_usage_error(tmp_path: Path):
    (tmp_path / "_base").mkdir()
    result = run("validate", str(tmp_path))
    assert result.exit_code == 2
    assert "no environment folders" in result.output


def test_environment_folder_without_environment_document(examples: Path):
    write(examples, {"qa/stack.yaml": "kind: Stack\n"})
    result = validate_json(examples, "--env", "qa")
    assert result.exit_code == 1
    (finding,) = [d for d in result.findings("spec.environment")]
    assert "no Environment document" in finding["message"]
    assert "environment.yaml" in finding["hint"]


def test_environment_name_must_match_its_folder(examples: Path):
    env = (examples / "local" / "environment.yaml").read_text().replace("name: local", "name: lokal")
    write(examples, {"local/environment.yaml": env})
    result = validate_json(examples, "--env", "local")
    (finding,) = result.findings("spec.environment")
    assert finding["line"] == 7
    assert "set metadata.name: local" in finding["hint"]


def test_an_empty_secret_reference_says_what_it_needs(examples: Path):
    connector = examples / "_base" / "connector.yaml"
    reference = "service_account_json:\n      fromInfra: {module: base, output: service_account_key}"
    connector.write_text(connector.read_text().replace(reference, "service_account_json: {}"))
    result = validate_json(examples, "--env", "dev")
    assert result.exit_code == 1
    (finding,) = [d for d in result.findings("schema") if "service_account_json" in (d["path"] or "")]
    assert (
        finding["message"]
        == "spec.secrets.service_account_json needs exactly one of fromEnv, fromInfra, fromZenmlSecret"
    )
    assert "fromEnv: VAR_NAME" in finding["hint"] and finding["line"]
