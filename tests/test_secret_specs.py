"""Validation of the Secret kind and the fields that go with it: secret references,
connectors' resourceTypes/expirationSeconds/verify, and components' and stacks' environment
and attached secrets. Validation only: what the plan and apply do with them is tested elsewhere."""

from __future__ import annotations

from pathlib import Path

from conftest import run, validate_json, write

HEAD = "apiVersion: stackward.dev/v1alpha1\n"
SECRET = "-----BEGIN PRIVATE KEY-----pasted-secretbits"


def secret(name: str, spec: str) -> str:
    return HEAD + f"kind: Secret\nmetadata:\n  name: {name}\nspec:\n{spec}"


def findings(examples: Path, code: str = "schema") -> list[dict]:
    return validate_json(examples, "--env", "aws", "--no-policy").findings(code)


def test_a_secret_with_values_from_variables_and_outputs_is_valid(examples: Path):
    write(
        examples,
        {
            "aws/extra.yaml": secret(
                "hf-token",
                "  private: true\n  values:\n    HF_TOKEN: {fromEnv: HF_TOKEN}\n"
                "    mlflow_uri: {fromInfra: {module: base, output: mlflow_tracking_uri}}\n",
            )
        },
    )
    result = validate_json(examples, "--env", "aws", "--no-policy")
    assert result.exit_code == 0, result.output
    assert result.json["environments"][0]["resources"] == 12


def test_secret_names_cannot_hold_a_dot(examples: Path):
    write(examples, {"aws/extra.yaml": secret("mlflow.tracking", "  values:\n    a: {fromEnv: A}\n")})
    (finding,) = findings(examples)
    assert finding["path"] == "$.metadata.name" and finding["line"] == 4
    assert "no '.'" in finding["hint"] and "{{name.key}}" in finding["hint"]


def test_a_secret_value_written_in_the_spec_is_an_error_and_never_printed(examples: Path):
    write(examples, {"aws/extra.yaml": secret("leak", f"  values:\n    token: '{SECRET}'\n")})
    for fmt in ("human", "json", "github"):
        result = run("validate", str(examples), "--env", "aws", "--no-policy", "--format", fmt)
        assert result.exit_code == 1
        assert "secretbits" not in result.output and "BEGIN PRIVATE" not in result.output
    (finding,) = findings(examples)
    assert finding["path"] == "$.spec.values.token" and finding["line"] == 7
    assert "fromEnv: VAR_NAME" in finding["hint"] and "fromInfra" in finding["hint"]


def test_secret_values_come_from_variables_or_outputs_only(examples: Path):
    write(
        examples,
        {"aws/extra.yaml": secret("other", "  values:\n    token: {fromZenmlSecret: {name: a, key: b}}\n")},
    )
    (finding,) = findings(examples)
    assert finding["message"] == "unknown key 'fromZenmlSecret' in spec.values.token"
    assert "fromInfra" in finding["hint"]


def test_secret_shape(examples: Path):
    write(
        examples,
        {
            "aws/extra.yaml": secret("a", "  private: 'yes'\n  values:\n    'bad key': {fromEnv: X}\n")
            + "---\n"
            + secret("b", "  values: {}\n")
            + "---\n"
            + secret("c", "  values:\n    k: {fromInfra: {module: base}}\n")
        },
    )
    by_path = {(f["path"], f["line"]): f for f in findings(examples)}
    assert "must be a boolean" in by_path[("$.spec.private", 6)]["message"]
    assert by_path[("$.spec.values", 7)]["hint"] == "secret keys use letters, digits, '_' and '-'"
    assert "at least 1" in by_path[("$.spec.values", 15)]["message"]
    assert "output" in by_path[("$.spec.values.k.fromInfra", 23)]["message"]


def test_connector_secrets_take_from_infra_references(examples: Path):
    connector = (examples / "aws/connector.yaml").read_text()
    write(
        examples,
        {
            "aws/connector.yaml": connector.replace(
                "{module: base, output: iam_access_key_id}", "{module: base}"
            )
        },
    )
    (finding,) = findings(examples)
    assert finding["path"] == "$.spec.secrets.aws_access_key_id.fromInfra"
    assert finding["message"] == "missing required key 'output' in spec.secrets.aws_access_key_id.fromInfra"


def test_environment_and_attached_secrets_of_components_and_stacks(examples: Path):
    stacks = (examples / "aws/stacks.yaml").read_text()
    stacks = stacks.replace(
        "    AWS_DEFAULT_REGION: ${var.region}\n", "    AWS_DEFAULT_REGION: 1\n    bad-name: x\n"
    )
    stacks = stacks.replace(
        "    - mlflow-client\n", "    - mlflow-client\n    - mlflow.client\n    - mlflow-client\n"
    )
    write(examples, {"aws/stacks.yaml": stacks})
    by_path = {f["path"]: f for f in findings(examples)}
    assert by_path["$.spec.environment.AWS_DEFAULT_REGION"]["hint"] == (
        "environment values are strings: quote numbers and booleans"
    )
    assert "bad-name" in by_path["$.spec.environment"]["message"]
    assert "no '.'" in by_path["$.spec.secrets[1]"]["hint"]
    assert "more than once" in by_path["$.spec.secrets"]["message"]


def test_connector_resource_types_expiration_and_verify_shape(examples: Path):
    connector = (examples / "aws/connector.yaml").read_text()
    connector = connector.replace("expirationSeconds: 3600", "expirationSeconds: '3600'\n  verify: 'yes'")
    connector = connector.replace("    - kubernetes-cluster ", "    - s3-bucket ")
    write(examples, {"aws/connector.yaml": connector})
    by_path = {f["path"]: f for f in findings(examples)}
    assert "must be an integer" in by_path["$.spec.expirationSeconds"]["message"]
    assert "must be a boolean" in by_path["$.spec.verify"]["message"]
    assert "more than once" in by_path["$.spec.resourceTypes"]["message"]


def test_an_expiration_below_one_second_is_reported_once(examples: Path):
    connector = (examples / "aws/connector.yaml").read_text()
    write(
        examples, {"aws/connector.yaml": connector.replace("expirationSeconds: 3600", "expirationSeconds: 0")}
    )
    result = validate_json(examples, "--env", "aws", "--no-policy")
    assert [f["path"] for f in result.findings()] == ["$.spec.expirationSeconds"]


def test_verify_and_descriptions_are_accepted(examples: Path):
    connector = (examples / "aws/connector.yaml").read_text()
    write(
        examples,
        {
            "aws/connector.yaml": connector.replace(
                "expirationSeconds: 3600", "expirationSeconds: 3600\n  verify: true"
            )
        },
    )
    result = validate_json(examples, "--env", "aws", "--no-policy")
    assert result.exit_code == 0, result.output
