"""The command line as a user meets it: formats, exit codes, schemas, the real entry point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import EXAMPLES, run, write
from jsonschema import Draft202012Validator

from stackward.output.github import escape_data, escape_property
from stackward.spec.schema import KINDS

STACKWARD = shutil.which("stackward", path=os.path.dirname(sys.executable)) or "stackward"


def test_github_format_prints_workflow_annotations(examples: Path):
    write(
        examples,
        {
            "local/bad.yaml": "apiVersion: stackward.dev/v1alpha1\nkind: Stack\n"
            "metadata: {name: local-s, labels: {a: 1}}\nspec: {components: {}}\n"
        },
    )
    result = run("validate", str(examples), "--env", "local", "--format", "github")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("::error ")]
    assert lines, result.output
    label = next(line for line in lines if "labels.a" in line)
    assert label.startswith("::error file=")
    assert "local/bad.yaml,line=3,col=" in label
    assert ",title=stackward schema::" in label
    assert "%0A" in label  # the hint follows the message on its own line
    assert result.output.strip().splitlines()[-1].startswith("stackward: ")


def test_annotation_escaping_follows_the_workflow_command_rules():
    assert escape_data("50% done\r\nnext") == "50%25 done%0D%0Anext"
    assert escape_property("a:b,c") == "a%3Ab%2Cc"


def test_json_format_is_machine_readable():
    result = run("validate", str(EXAMPLES), "--format", "json")
    data = json.loads(result.output)
    assert data["ok"] is True
    assert {e["name"] for e in data["environments"]} == {"aws", "dev", "staging", "prod", "local"}


def test_bad_option_is_a_usage_error():
    result = run("validate", str(EXAMPLES), "--format", "xml")
    assert result.exit_code == 2


def test_schema_command_prints_valid_draft_2020_12_schemas(tmp_path: Path):
    full = json.loads(run("schema").output)
    Draft202012Validator.check_schema(full)
    assert full["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(full["$defs"]) >= set(KINDS)
    stack = json.loads(run("schema", "Stack").output)
    Draft202012Validator.check_schema(stack)
    validator = Draft202012Validator(stack)
    assert not validator.is_valid(
        {
            "apiVersion": "stackward.dev/v1alpha1",
            "kind": "Stack",
            "metadata": {"name": "s"},
            "spec": {"components": {}},
            "x": 1,
        }
    )
    result = run("schema", "--out", str(tmp_path / "schemas"))
    assert result.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "schemas").iterdir()) == sorted(
        [f"{k}.schema.json" for k in KINDS] + ["stackward.schema.json"]
    )


def test_editor_schema_accepts_every_example_document():
    """What yaml-language-server checks with the modeline agrees with stackward."""
    import yaml

    validator = Draft202012Validator(json.loads(run("schema").output))
    with_modeline = [p for p in EXAMPLES.rglob("*.yaml") if "yaml-language-server" in p.read_text()]
    assert len(with_modeline) >= 10
    for path in with_modeline:
        for doc in yaml.safe_load_all(path.read_text()):
            assert not list(validator.iter_errors(doc)), path


def test_installed_entry_point_reports_without_a_traceback(examples: Path):
    write(examples, {"local/bad.yaml": "kind: [\n"})
    proc = subprocess.run([STACKWARD, "validate", str(examples)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "local/bad.yaml:2:1: error: invalid YAML" in proc.stdout


def test_validate_does_not_import_zenml_once_the_catalog_is_cached():
    code = (
        "import sys; from pathlib import Path; from stackward.checks.validate import validate;"
        f"r = validate(Path({str(EXAMPLES)!r})); print(r.ok, 'zenml' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["True", "False"]
