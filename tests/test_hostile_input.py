"""Hostile and odd input found by review and fuzzing: each stays a finding, never a crash,
a hang, or a printed secret."""

from __future__ import annotations

import copy
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLES, run, validate_json, write

from stackward.checks.validate import validate

HEAD = "apiVersion: stackward.dev/v1alpha1\n"
SECRET = "-----BEGIN PRIVATE KEY-----MIIEvQIBADANsecretbits"


def test_deep_flow_nesting_is_refused_before_the_parser_can_crash(examples: Path):
    write(examples, {"local/deep.yaml": "a: " + "[" * 50000 + "]" * 50000 + "\n"})
    proc = subprocess.run(
        [sys.executable, "-m", "stackward.cli", "validate", str(examples), "--env", "local", "--no-policy"],
        capture_output=True,
        text=True,
        env={**os.environ},
    )
    assert proc.returncode == 1, proc.stderr  # a crash would be negative (a signal)
    assert "yaml.too-deep" in proc.stdout


@pytest.mark.parametrize(
    "content",
    [
        "description: '" + "${" * 40000 + "'\n",
        "a:\n" + "".join(f"  k{i}: '{{{{a.{'a.' * 20}'\n" for i in range(2000)),
    ],
    ids=["unclosed-placeholders", "secret-reference-lookalikes"],
)
def test_pathological_strings_stay_fast_enough_to_finish(examples: Path, content: str):
    write(examples, {"local/slow.yaml": content})
    assert validate_json(examples, "--env", "local", "--no-policy").exit_code == 1


def test_huge_terraform_module_file_and_many_outputs(examples: Path):
    write(examples, {"_modules/local-base/big.tf": "\n" * 40000 + 'output "x" { value = 1 }\n'})
    outputs = "".join(f"    - o{i}\n" for i in range(5000))
    refs = "".join(f"    k{i}: ${{infra.base.missing{i}}}\n" for i in range(500))
    write(
        examples,
        {
            "local/infrastructure.yaml": HEAD + "kind: Infrastructure\nmetadata: {name: base}\nspec:\n"
            "  source: ../_modules/local-base\n  outputs:\n    - artifact_path\n" + outputs,
            "local/refs.yaml": HEAD + "kind: StackComponent\nmetadata: {name: local-ib}\nspec:\n"
            "  type: image_builder\n  flavor: local\n  configuration:\n" + refs,
        },
    )
    result = validate_json(examples, "--env", "local", "--no-policy")
    assert len(result.findings("reference.infra")) == 500


@pytest.mark.parametrize(
    ("value", "kind"), [("!!int abc", "int"), ("!!bool maybe", "bool"), ("9" * 5000, "int")]
)
def test_values_that_cannot_be_read_are_findings_without_the_value(examples: Path, value: str, kind: str):
    write(examples, {"local/bad.yaml": f"a: {value}\n"})
    result = run("validate", str(examples), "--env", "local", "--format", "json")
    (finding,) = result.findings("yaml.value")
    assert finding["message"] == f"value cannot be read as {kind}"
    assert "abc" not in result.output and "99999" not in result.output


def test_secret_pasted_where_a_variable_name_belongs_is_never_printed(examples: Path):
    connector = (
        (examples / "_base/connector.yaml")
        .read_text()
        .replace("fromInfra: {module: base, output: service_account_key}", f"fromEnv: '{SECRET}'")
    )
    write(examples, {"_base/connector.yaml": connector})
    for fmt in ("human", "json", "github"):
        result = run("validate", str(examples), "--env", "dev", "--format", fmt)
        assert result.exit_code == 1
        assert "secretbits" not in result.output and "BEGIN PRIVATE" not in result.output
        assert "fromEnv" in result.output


def test_optional_secret_fields_of_connectors_are_recognised(examples: Path):
    write(
        examples,
        {
            "dev/k8s.yaml": HEAD + "kind: ServiceConnector\nmetadata: {name: dev-k8s}\nspec:\n"
            "  type: kubernetes\n  authMethod: token\n  configuration:\n    server: https://k8s.example\n"
            f"    cluster_name: c1\n    token: '{SECRET}'\n    client_key: '{SECRET}'\n"
        },
    )
    result = run("validate", str(examples), "--env", "dev", "--format", "json", "--no-policy")
    assert sorted(d["path"] for d in result.findings("secret.inline")) == [
        "$.spec.configuration.client_key",
        "$.spec.configuration.token",
    ]
    assert "secretbits" not in result.output


def test_a_merged_key_does_not_move_an_explicit_keys_line(tmp_path: Path):
    from stackward.spec.loader import load_file

    path = tmp_path / "merge.yaml"
    path.write_text("base: &v\n  tier: gold\nlabels:\n  tier: 5\n  <<: *v\n")
    (doc,) = load_file(path).documents
    assert doc.data["labels"] == {"tier": 5}
    assert doc.positions[("labels", "tier")].line == 4  # the explicit key, not the anchor's


@pytest.mark.parametrize("key", ["on", "0x1F", "null", "[a, b]"])
def test_keys_yaml_would_read_as_something_else_must_be_quoted(examples: Path, key: str):
    write(examples, {"local/keys.yaml": f"{key}: x\n"})
    (finding,) = validate_json(examples, "--env", "local", "--no-policy").findings("yaml.key")
    assert "quote the key" in finding["hint"]


def test_variables_inside_text_read_like_yaml(examples: Path):
    from stackward.spec.discover import discover
    from stackward.spec.resolve import Resolver

    env = (
        (examples / "local/environment.yaml")
        .read_text()
        .replace(
            "  variables:\n",
            "  variables:\n    versioned: true\n    owner: null\n",
        )
    )
    write(
        examples,
        {
            "local/environment.yaml": env,
            "local/extra.yaml": HEAD + "kind: Stack\nmetadata:\n"
            "  name: local-s\n  description: ${env.name}-${var.versioned}-${var.owner}\nspec:\n"
            "  components: {orchestrator: local-orchestrator, artifact_store: local-artifact-store}\n",
        },
    )
    repo, _ = discover(examples)
    stack = Resolver(repo).resolve("local").of_kind("Stack")["local-s"]
    assert stack.data["metadata"]["description"] == "local-true-null"


def test_outputs_written_as_text_is_one_schema_finding(examples: Path):
    infra = (
        (examples / "local/infrastructure.yaml")
        .read_text()
        .replace("  outputs:\n    - artifact_path", "  outputs: artifact_path")
    )
    write(examples, {"local/infrastructure.yaml": infra})
    result = validate_json(examples, "--env", "local", "--no-policy")
    assert [d["code"] for d in result.findings() if d["severity"] == "error"].count("infra.output") == 0
    assert any(d["path"] == "$.spec.outputs" for d in result.findings("schema"))


def test_a_base_listed_twice_is_read_once(examples: Path):
    env = (examples / "dev/environment.yaml").read_text().replace("bases: [_base]", "bases: [_base, _base]")
    write(examples, {"dev/environment.yaml": env})
    result = validate_json(examples, "--env", "dev", "--no-policy")
    assert not result.findings("spec.duplicate")
    assert result.findings("schema")[0]["hint"] == "remove the repeated entries"


def test_environment_folder_detection(examples: Path):
    env = (
        (examples / "local/environment.yaml")
        .read_text()
        .replace("kind: Environment", "kind: Environment  # the env")
    )
    write(examples, {"local/environment.yaml": env, "template.yaml": "kind: Environment\n"})
    assert [e["name"] for e in validate_json(examples / "local", "--no-policy").json["environments"]] == [
        "local"
    ]
    assert len(validate_json(examples, "--no-policy").json["environments"]) == 5


def test_empty_env_option_is_a_usage_error():
    assert run("validate", str(EXAMPLES), "--env", "").exit_code == 2


def test_link_to_a_file_outside_the_repository_is_not_read(examples: Path, tmp_path: Path):
    outside = tmp_path / "outside.yaml"
    outside.write_text("secret: value\n")
    (examples / "local/shadow.yaml").symlink_to(outside)
    (finding,) = validate_json(examples, "--env", "local", "--no-policy").findings("file.symlink")
    assert finding["file"].endswith("local/shadow.yaml")


def test_null_labels_are_reported_not_replaced(examples: Path):
    stack = (
        (examples / "local/stack.yaml")
        .read_text()
        .replace("  name: local-stack\n", "  name: local-stack\n  labels: null\n")
    )
    write(examples, {"local/stack.yaml": stack})
    result = validate_json(examples, "--env", "local", "--no-policy")
    assert any(d["path"] == "$.metadata.labels" for d in result.findings("schema"))


ODD_VALUES = [
    None,
    True,
    0,
    -1.5,
    "",
    "x" * 300,
    [],
    [1, [2]],
    {},
    {"a": {"b": None}},
    "${",
    "${var.nope}",
    "{{a.b}}",
    "${infra.base.nope}",
    "gs://",
    ["dev-gcp"],
    {"fromEnv": 5},
]


def _paths(node, path=()):
    """Every key and list item below `node`, as paths."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        yield (*path, key)
        yield from _paths(child, (*path, key))


def _mutate(docs: list, rng: random.Random) -> None:
    """Replace (or delete) one value, chosen uniformly among every path of every document."""
    paths = [(i, p) for i, doc in enumerate(docs) for p in _paths(doc)]
    index, path = rng.choice(paths)
    parent = docs[index]
    for part in path[:-1]:
        parent = parent[part]
    if isinstance(parent, dict) and rng.random() < 0.2:
        del parent[path[-1]]
    else:
        parent[path[-1]] = copy.deepcopy(rng.choice(ODD_VALUES))


def _check(report) -> None:
    for diag in report.diagnostics:
        assert diag.location is not None and diag.location.file, diag
        assert diag.hint, diag
        assert diag.message, diag


@pytest.fixture
def fuzz_root(tmp_path: Path) -> Path:
    root = tmp_path / "environments"
    shutil.copytree(EXAMPLES, root)
    return root


def _environment_of(path: Path, root: Path) -> str | None:
    folder = path.relative_to(root).parts[0]
    return None if folder.startswith("_") else folder


def test_every_field_of_every_example_survives_a_wrong_type(fuzz_root: Path, catalog):
    """Exhaustive: each key and item of each example document, replaced by a list, a
    mapping, a number and null in turn, gives findings with a place and a hint."""
    for path in sorted(fuzz_root.rglob("*.yaml")):
        original = path.read_text()
        docs = list(yaml.safe_load_all(original))
        only = _environment_of(path, fuzz_root) or "dev"
        for index, doc in enumerate(docs):
            for keys in list(_paths(doc)):
                for odd in (["x", ["y"]], {"k": {"v": 1}}, 7, None):
                    mutated = copy.deepcopy(docs)
                    parent = mutated[index]
                    for part in keys[:-1]:
                        parent = parent[part]
                    parent[keys[-1]] = copy.deepcopy(odd)
                    path.write_text(yaml.safe_dump_all(mutated))
                    _check(validate(fuzz_root, only, catalog=catalog))
        path.write_text(original)


def test_random_multi_mutations_give_findings_never_exceptions(fuzz_root: Path, catalog):
    """Seeded: the same 100 rounds of one to three mutations every run."""
    rng = random.Random(20261122)
    files = sorted(fuzz_root.rglob("*.yaml"))
    for _ in range(100):
        victim = rng.choice(files)
        original = victim.read_text()
        docs = list(yaml.safe_load_all(original))
        for _ in range(rng.randint(1, 3)):
            _mutate(docs, rng)
        victim.write_text(yaml.safe_dump_all(docs))
        _check(validate(fuzz_root, _environment_of(victim, fuzz_root) or "dev", catalog=catalog))
        victim.write_text(original)


def test_specs_cannot_hand_the_runners_tokens_to_zenml_or_terraform(examples: Path):
    environment = examples / "dev" / "environment.yaml"
    text = environment.read_text()
    environment.write_text(text.replace("GCP_PLAN_KEY_DEV", "GITHUB_TOKEN"))
    write(
        examples,
        {
            "dev/steal.yaml": "apiVersion: stackward.dev/v1alpha1\nkind: Secret\nmetadata: {name: dev-steal}\n"
            "spec:\n  values:\n    token: {fromEnv: ACTIONS_ID_TOKEN_REQUEST_TOKEN}\n"
        },
    )
    result = validate_json(examples, "--env", "dev")
    assert result.exit_code == 1
    found = {(Path(d["file"]).name, d["line"], d["path"]) for d in result.findings("secret.runner-variable")}
    plan_line = next(i for i, line in enumerate(text.splitlines(), 1) if "GCP_PLAN_KEY_DEV" in line)
    assert found == {
        ("environment.yaml", plan_line, "$.spec.credentials.plan.GOOGLE_CREDENTIALS"),
        ("steal.yaml", 6, "$.spec.values.token.fromEnv"),
    }
