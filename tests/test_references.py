"""Cross-references, inheritance and Terraform module sources."""

from __future__ import annotations

from pathlib import Path

from conftest import validate_json, write

HEAD = "apiVersion: stackward.dev/v1alpha1\n"


def only(result, code):
    found = result.findings(code)
    assert len(found) == 1, result.output
    return found[0]


def test_stack_naming_an_undeclared_component(examples: Path):
    stack = (
        (examples / "local/stack.yaml")
        .read_text()
        .replace("orchestrator: local-orchestrator", "orchestrator: local-orchestrater")
    )
    write(examples, {"local/stack.yaml": stack})
    result = validate_json(examples, "--env", "local")
    finding = only(result, "reference.component")
    assert finding["line"] == 27
    assert finding["path"] == "$.spec.components.orchestrator"
    assert finding["hint"] == "did you mean 'local-orchestrator'?"


def test_component_in_the_wrong_slot(examples: Path):
    stack = (
        (examples / "local/stack.yaml")
        .read_text()
        .replace("orchestrator: local-orchestrator", "orchestrator: local-artifact-store")
    )
    write(examples, {"local/stack.yaml": stack})
    finding = only(validate_json(examples, "--env", "local"), "reference.slot")
    assert "whose type is artifact_store" in finding["message"]


def test_component_naming_an_undeclared_connector(examples: Path):
    write(
        examples,
        {
            "dev/extra.yaml": HEAD + "kind: StackComponent\nmetadata: {name: dev-extra}\n"
            "spec:\n  type: image_builder\n  flavor: local\n  connector: dev-gpc\n"
        },
    )
    finding = only(validate_json(examples, "--env", "dev"), "reference.connector")
    assert finding["line"] == 7
    assert finding["hint"] == "did you mean 'dev-gcp'?"


def test_infra_reference_to_undeclared_output_and_module(examples: Path):
    write(
        examples,
        {
            "local/extra.yaml": HEAD + "kind: StackComponent\nmetadata: {name: local-ib}\n"
            "spec:\n  type: image_builder\n  flavor: local\n  configuration:\n"
            "    use_subprocess_call: false\n---\n" + HEAD + "kind: StackComponent\n"
            "metadata: {name: local-store2}\nspec:\n  type: artifact_store\n  flavor: local\n"
            "  configuration:\n    path: ${infra.base.artifact_dir}\n---\n"
            + HEAD
            + "kind: StackComponent\nmetadata: {name: local-store3}\nspec:\n  type: artifact_store\n"
            "  flavor: local\n  configuration:\n    path: ${infra.nothere.path}\n"
        },
    )
    result = validate_json(examples, "--env", "local")
    messages = sorted(d["message"] for d in result.findings("reference.infra"))
    assert messages == [
        "${infra.base.artifact_dir}: Infrastructure 'base' declares no output 'artifact_dir'",
        "${infra.nothere.path} names Infrastructure 'nothere', which is not declared in environment local",
    ]


def test_unknown_variable_names_the_environment_and_suggests(examples: Path):
    infra = (
        (examples / "local/infrastructure.yaml")
        .read_text()
        .replace("${var.artifact_root}", "${var.artifact_rot}")
    )
    write(examples, {"local/infrastructure.yaml": infra})
    result = validate_json(examples, "--env", "local")
    finding = only(result, "reference.variable")
    assert finding["message"] == "unknown reference ${var.artifact_rot}"
    assert finding["hint"] == "did you mean 'var.artifact_root'?"
    assert finding["line"] == 10
    assert len(result.findings()) == 1  # no follow-on noise at the same value


def test_duplicate_names_within_an_environment(examples: Path):
    write(
        examples,
        {
            "local/dup.yaml": HEAD + "kind: StackComponent\nmetadata: {name: local-orchestrator}\n"
            "spec: {type: orchestrator, flavor: local}\n"
        },
    )
    finding = only(validate_json(examples, "--env", "local"), "spec.duplicate")
    # Files are read in name order: dup.yaml comes first, so stack.yaml holds the duplicate.
    assert finding["file"].endswith("local/stack.yaml")
    assert finding["line"] == 15
    assert "first defined at" in finding["message"] and "dup.yaml:3" in finding["message"]


def test_base_error_is_reported_once_for_every_environment_using_it(examples: Path):
    stack = (examples / "_base/stack.yaml").read_text().replace("components:", "componets:")
    write(examples, {"_base/stack.yaml": stack})
    result = validate_json(examples)
    unknown = [d for d in result.findings("schema") if "componets" in d["message"]]
    assert len(unknown) == 1
    assert unknown[0]["environments"] == ["dev", "prod", "staging"]
    assert unknown[0]["hint"] == "did you mean 'components'?"


def test_override_is_a_merge_patch_on_the_base_document(examples: Path):
    write(
        examples,
        {
            "dev/orchestrator.yaml": HEAD + "kind: StackComponent\nmetadata:\n"
            "  name: dev-orchestrator\nspec:\n  configuration:\n    location: us-central1\n"
        },
    )
    result = validate_json(examples, "--env", "dev", "--no-policy")
    assert result.exit_code == 0, result.output
    from stackward.spec.discover import discover
    from stackward.spec.resolve import Resolver

    repo, _ = discover(examples)
    orchestrator = Resolver(repo).resolve("dev").of_kind("StackComponent")["dev-orchestrator"]
    assert orchestrator.spec["flavor"] == "vertex"  # inherited
    assert orchestrator.spec["configuration"]["location"] == "us-central1"  # overridden
    assert orchestrator.location(("spec", "configuration", "location")).file.endswith("dev/orchestrator.yaml")


def test_unknown_base_folder(examples: Path):
    env = (examples / "dev/environment.yaml").read_text().replace("bases: [_base]", "bases: [_bsae]")
    write(examples, {"dev/environment.yaml": env})
    finding = only(validate_json(examples, "--env", "dev"), "reference.base")
    assert finding["hint"] == "did you mean '_base'?"


def test_promotion_to_unknown_environment_and_loops(examples: Path):
    staging = (examples / "staging/environment.yaml").read_text().replace("after: dev", "after: prod")
    write(examples, {"staging/environment.yaml": staging})
    loop = only(validate_json(examples), "reference.promotion")
    assert "loop" in loop["message"] and "prod" in loop["message"] and "staging" in loop["message"]
    prod = (examples / "prod/environment.yaml").read_text().replace("after: staging", "after: stagin")
    write(examples, {"prod/environment.yaml": prod})
    finding = only(validate_json(examples, "--env", "prod"), "reference.promotion")
    assert finding["hint"] == "did you mean 'staging'?"


def test_module_source_checks(examples: Path):
    cases = {
        "git::https://example.com/m.git": "add ?ref=",
        "terraform-google-modules/network/google": "set spec.version",
        "../../../outside": "outside the repository",
        "../_modules/nothere": "does not exist",
    }
    for source, words in cases.items():
        infra = (examples / "local/infrastructure.yaml").read_text().replace("../_modules/local-base", source)
        write(examples, {"local/infrastructure.yaml": infra})
        result = validate_json(examples, "--env", "local")
        text = " ".join(d["message"] + " " + d["hint"] for d in result.findings("infra.source"))
        assert words in text, (source, result.output)
        write(examples, {"local/infrastructure.yaml": infra.replace(source, "../_modules/local-base")})
    pinned = infra.replace(source, "git::https://example.com/m.git?ref=v1.2.0")
    write(examples, {"local/infrastructure.yaml": pinned})
    assert not validate_json(examples, "--env", "local").findings("infra.source")


def test_module_interface_is_checked_for_local_sources(examples: Path):
    infra = (examples / "local/infrastructure.yaml").read_text()
    infra = infra.replace("- artifact_path", "- artifact_pth").replace(
        "environment: ${env.name}", "enviroment: x"
    )
    infra = infra.replace("${infra.base.artifact_path}", "${infra.base.artifact_pth}")
    write(examples, {"local/infrastructure.yaml": infra})
    result = validate_json(examples, "--env", "local")
    assert only(result, "infra.output")["hint"] == "did you mean 'artifact_path'?"
    assert only(result, "infra.variable")["hint"] == "did you mean 'environment'?"


def test_from_infra_must_name_a_declared_module_and_output(examples: Path):
    connector = (examples / "_base/connector.yaml").read_text()
    write(
        examples,
        {
            "_base/connector.yaml": connector.replace(
                "output: service_account_key", "output: service_account_ky"
            )
        },
    )
    finding = only(validate_json(examples, "--no-policy"), "reference.infra")
    assert finding["message"] == (
        "fromInfra {module: base, output: service_account_ky}: Infrastructure 'base' declares no "
        "output 'service_account_ky'"
    )
    assert finding["hint"] == (
        "add service_account_ky to spec.outputs of Infrastructure base, or did you mean 'service_account_key'?"
    )
    assert finding["file"].endswith("_base/connector.yaml") and finding["line"] == 18
    assert finding["path"] == "$.spec.secrets.service_account_json.fromInfra.output"
    assert finding["environments"] == ["dev", "staging"]  # prod drops the key reference

    write(examples, {"_base/connector.yaml": connector.replace("module: base", "module: bsae")})
    finding = only(validate_json(examples, "--env", "dev", "--no-policy"), "reference.infra")
    assert finding["message"] == (
        "fromInfra {module: bsae, output: service_account_key} names Infrastructure 'bsae', which is "
        "not declared in environment dev"
    )
    assert finding["hint"] == "did you mean 'base'?"
    assert finding["path"] == "$.spec.secrets.service_account_json.fromInfra.module"


def test_from_infra_in_secret_values_is_checked(examples: Path):
    secrets = (examples / "aws/secrets.yaml").read_text()
    write(
        examples,
        {"aws/secrets.yaml": secrets.replace("output: mlflow_password}", "output: mlflow_pasword}", 1)},
    )
    finding = only(validate_json(examples, "--env", "aws", "--no-policy"), "reference.infra")
    assert finding["message"].endswith("Infrastructure 'base' declares no output 'mlflow_pasword'")
    assert finding["hint"].endswith("did you mean 'mlflow_password'?")
    assert finding["file"].endswith("aws/secrets.yaml") and finding["line"] == 13
    assert finding["path"] == "$.spec.values.password.fromInfra.output"


def test_secret_reference_keys_must_exist_in_a_declared_secret(examples: Path):
    components = (examples / "aws/components.yaml").read_text()
    write(
        examples,
        {
            "aws/components.yaml": components.replace(
                "{{mlflow-tracking.password}}", "{{mlflow-tracking.pasword}}"
            )
        },
    )
    finding = only(validate_json(examples, "--env", "aws", "--no-policy"), "reference.secret")
    assert finding["message"] == "{{mlflow-tracking.pasword}}: Secret 'mlflow-tracking' has no key 'pasword'"
    assert finding["hint"] == "did you mean 'password'?"
    assert finding["file"].endswith("aws/components.yaml") and finding["line"] == 61
    assert finding["path"] == "$.spec.configuration.tracking_password"

    write(
        examples,
        {
            "aws/components.yaml": components.replace(
                "{{mlflow-tracking.password}}", "{{mlflow-tracking.token}}"
            )
        },
    )
    finding = only(validate_json(examples, "--env", "aws", "--no-policy"), "reference.secret")
    assert (
        finding["hint"]
        == "add token to spec.values of Secret mlflow-tracking, or use one of its keys: password, username"
    )


def test_secret_names_not_declared_in_the_environment_are_left_to_the_plan(examples: Path):
    # A secret the specs do not declare may be in the ZenML store: the plan checks it.
    components = (
        (examples / "aws/components.yaml").read_text().replace("{{mlflow-tracking.", "{{team-mlflow.")
    )
    stacks = (examples / "aws/stacks.yaml").read_text().replace("- mlflow-client", "- team-secrets")
    write(examples, {"aws/components.yaml": components, "aws/stacks.yaml": stacks})
    result = validate_json(examples, "--env", "aws", "--no-policy")
    assert result.exit_code == 0, result.output
    assert result.findings() == []


def test_from_zenml_secret_key_of_a_declared_secret(examples: Path):
    connector = (examples / "aws/connector.yaml").read_text()
    connector = connector.replace(
        "fromInfra: {module: base, output: iam_secret_access_key}",
        "fromZenmlSecret: {name: aws-keys, key: secret_key}",
    )
    write(
        examples,
        {
            "aws/connector.yaml": connector,
            "aws/keys.yaml": HEAD + "kind: Secret\nmetadata: {name: aws-keys}\nspec:\n  values:\n"
            "    secret_access_key: {fromInfra: {module: base, output: iam_secret_access_key}}\n",
        },
    )
    finding = only(validate_json(examples, "--env", "aws", "--no-policy"), "reference.secret")
    assert finding["message"] == (
        "fromZenmlSecret {name: aws-keys, key: secret_key}: Secret 'aws-keys' has no key 'secret_key'"
    )
    assert finding["hint"] == "did you mean 'secret_access_key'?"
    assert finding["path"] == "$.spec.secrets.aws_secret_access_key.fromZenmlSecret.key"
    assert finding["line"] == 26
