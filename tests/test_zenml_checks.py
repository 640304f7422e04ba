"""Checks against the installed zenml's own flavor and connector definitions."""

from __future__ import annotations

from pathlib import Path

from conftest import run, validate_json, write

HEAD = "apiVersion: stackward.dev/v1alpha1\n"
SECRET = "-----BEGIN PRIVATE KEY-----super-secret-value"


def component(name: str, body: str) -> str:
    return HEAD + f"kind: StackComponent\nmetadata:\n  name: {name}\nspec:\n{body}"


def test_flavor_config_is_checked_with_the_flavors_own_rules(examples: Path):
    write(
        examples,
        {
            "dev/store.yaml": component(
                "dev-store2",
                "  type: artifact_store\n  flavor: gcp\n  configuration:\n    path: s3://bucket/x\n    pth: y\n",
            )
        },
    )
    result = validate_json(examples, "--env", "dev")
    by_key = {d["path"]: d for d in result.findings("zenml.config")}
    assert by_key["$.spec.configuration.path"]["line"] == 9
    assert by_key["$.spec.configuration.path"]["hint"] == "the path must start with gs://"
    assert by_key["$.spec.configuration.pth"]["hint"] == "did you mean 'path'?"


def test_unknown_flavor_and_component_type(examples: Path):
    write(
        examples,
        {
            "dev/x.yaml": component("dev-x", "  type: orchestrator\n  flavor: vertx\n")
            + "---\n"
            + component("dev-y", "  type: orchestrater\n  flavor: vertex\n")
        },
    )
    result = validate_json(examples, "--env", "dev")
    assert result.findings("zenml.flavor")[0]["hint"] == "did you mean 'vertex'?"
    assert result.findings("zenml.component-type")[0]["hint"] == "did you mean 'orchestrator'?"


def test_required_flavor_config_is_reported(examples: Path):
    write(examples, {"dev/reg.yaml": component("dev-reg2", "  type: container_registry\n  flavor: gcp\n")})
    result = validate_json(examples, "--env", "dev")
    (finding,) = result.findings("zenml.config")
    assert finding["message"] == "missing required key 'uri' in spec.configuration"


def test_connector_auth_method_and_resource_type(examples: Path):
    connector = (examples / "_base/connector.yaml").read_text()
    write(examples, {"_base/connector.yaml": connector.replace("service-account", "service-acount")})
    result = validate_json(examples, "--env", "dev")
    assert result.findings("zenml.auth-method")[0]["hint"] == "did you mean 'service-account'?"
    write(
        examples,
        {
            "_base/connector.yaml": connector.replace(
                "authMethod: service-account", "authMethod: service-account\n  resourceType: s3-bucket"
            )
        },
    )
    result = validate_json(examples, "--env", "dev")
    assert "not a resource type of gcp" in result.findings("zenml.resource-type")[0]["message"]


def test_inline_connector_secret_is_an_error_and_never_printed(examples: Path):
    write(
        examples,
        {
            "dev/leak.yaml": HEAD + "kind: ServiceConnector\nmetadata: {name: dev-leak}\n"
            "spec:\n  type: gcp\n  authMethod: service-account\n  configuration:\n"
            f"    project_id: p\n    service_account_json: '{SECRET}'\n"
        },
    )
    for fmt in ("human", "json", "github"):
        result = run("validate", str(examples), "--env", "dev", "--format", fmt)
        assert result.exit_code == 1
        assert "service_account_json" in result.output
        assert "super-secret" not in result.output
    finding = validate_json(examples, "--env", "dev").findings("secret.inline")[0]
    assert finding["line"] == 9
    assert "fromEnv" in finding["hint"]


def test_secret_written_as_a_plain_value_under_secrets(examples: Path):
    write(
        examples,
        {
            "dev/leak.yaml": HEAD + "kind: ServiceConnector\nmetadata: {name: dev-leak}\n"
            "spec:\n  type: gcp\n  authMethod: service-account\n  secrets:\n"
            f"    service_account_json: '{SECRET}'\n"
        },
    )
    result = run("validate", str(examples), "--env", "dev")
    assert result.exit_code == 1
    assert "super-secret" not in result.output
    assert "fromEnv" in result.output


def test_component_secret_field_needs_a_zenml_secret_reference(examples: Path):
    body = (
        "  type: experiment_tracker\n  flavor: mlflow\n  configuration:\n"
        "    tracking_uri: https://mlflow.example\n    tracking_username: '{{mlflow.username}}'\n"
        f"    tracking_password: '{SECRET}'\n"
    )
    write(examples, {"dev/tracker.yaml": component("dev-tracker", body)})
    result = run("validate", str(examples), "--env", "dev", "--format", "json")
    assert "super-secret" not in result.output
    findings = result.findings("secret.inline")
    assert [d["path"] for d in findings] == ["$.spec.configuration.tracking_password"]
    assert "{{my_secret.tracking_password}}" in findings[0]["hint"]


def test_missing_required_secret(examples: Path):
    connector = (examples / "_base/connector.yaml").read_text()
    start = connector.index("  secrets:")
    write(examples, {"_base/connector.yaml": connector[:start]})
    result = validate_json(examples, "--env", "dev")
    (finding,) = result.findings("zenml.auth-config")
    assert finding["message"] == "the gcp service-account auth method needs the secret service_account_json"


def test_connector_must_fit_the_flavor(examples: Path):
    write(
        examples,
        {
            "dev/aws.yaml": HEAD + "kind: ServiceConnector\nmetadata: {name: dev-aws}\n"
            "spec:\n  type: aws\n  authMethod: implicit\n  configuration: {region: eu-west-1}\n"
        },
    )
    components = (examples / "_base/components.yaml").read_text()
    write(
        examples,
        {
            "_base/components.yaml": components.replace(
                "connectorResourceId: ${infra.base.artifact_bucket}", "connectorResourceId: x"
            ).replace(
                "  connector: ${env.name}-gcp\n  connectorResourceId: x",
                "  connector: ${env.name}-aws\n  connectorResourceId: x",
            )
        },
    )
    result = validate_json(examples, "--env", "dev")
    (finding,) = result.findings("zenml.connector")
    assert "cannot give access to gcs-bucket" in finding["message"]
    write(
        examples,
        {
            "local/stack.yaml": (examples / "local/stack.yaml")
            .read_text()
            .replace("  flavor: local\n---", "  flavor: local\n  connector: nobody\n---", 1)
        },
    )
    result = validate_json(examples, "--env", "local")
    assert result.findings("reference.connector")


def test_stack_needs_an_orchestrator_and_an_artifact_store(examples: Path):
    stack = (
        (examples / "local/stack.yaml")
        .read_text()
        .replace("    orchestrator: local-orchestrator\n", "    orchestrators: local-orchestrator\n")
    )
    write(examples, {"local/stack.yaml": stack})
    result = validate_json(examples, "--env", "local")
    messages = [d["message"] for d in result.findings("zenml.slot")]
    assert "Stack 'local-stack' has no orchestrator; every ZenML stack needs one" in messages
    assert "'orchestrators' is not a ZenML stack component type" in messages


def test_values_known_only_after_apply_are_not_judged_early(examples: Path):
    # ${infra.base.registry_uri} cannot be checked before Terraform runs; no finding.
    result = validate_json(examples, "--env", "dev", "--no-policy")
    assert result.exit_code == 0


def test_connector_resource_types_are_checked(examples: Path):
    connector = (examples / "aws/connector.yaml").read_text()
    write(examples, {"aws/connector.yaml": connector.replace("    - aws-generic ", "    - aws-generic-x ")})
    result = validate_json(examples, "--env", "aws", "--no-policy")
    (finding,) = result.findings("zenml.resource-type")
    assert finding["message"] == "'aws-generic-x' is not a resource type of aws connectors"
    assert finding["hint"] == "did you mean 'aws-generic'?"
    assert finding["path"] == "$.spec.resourceTypes[2]" and finding["line"] == 16
    # and the SageMaker orchestrator, which needs aws-generic, no longer fits the connector
    (fit,) = result.findings("zenml.connector")
    assert fit["message"] == (
        "connector 'aws-connector' lists resourceTypes s3-bucket, docker-registry, aws-generic-x, "
        "kubernetes-cluster; the sagemaker orchestrator needs aws-generic"
    )
    assert fit["hint"] == "add aws-generic to resourceTypes of aws-connector, or use another connector"
    assert fit["file"].endswith("aws/components.yaml") and fit["line"] == 35


def test_resource_types_need_the_auth_methods_support(examples: Path, catalog):
    from dataclasses import replace

    from stackward.checks.validate import validate

    # In zenml 0.98 every aws auth method reaches every aws resource type; a catalog where
    # iam-role cannot reach EKS stands in for a connector type where they differ.
    aws = catalog.connectors["aws"]
    methods = {**aws.resource_auth_methods, "kubernetes-cluster": ("implicit", "secret-key")}
    narrow = replace(
        catalog, connectors={**catalog.connectors, "aws": replace(aws, resource_auth_methods=methods)}
    )
    report = validate(examples, only="aws", catalog=narrow)
    (finding,) = [d for d in report.diagnostics if d.code == "zenml.resource-type"]
    assert finding.message == "the aws iam-role auth method cannot give access to kubernetes-cluster"
    assert finding.hint == "use an auth method that can: implicit, secret-key"
    assert finding.location.line == 17

    # a connector of all the type's resource types: the component that needs one is told
    connector = (examples / "aws/connector.yaml").read_text()
    start, end = connector.index("  resourceTypes:"), connector.index("  expirationSeconds")
    write(examples, {"aws/connector.yaml": connector[:start] + connector[end:]})
    report = validate(examples, only="aws", catalog=narrow)
    (fit,) = [d for d in report.diagnostics if d.code.startswith("zenml.")]
    assert fit.code == "zenml.connector"
    assert fit.message == (
        "the aws iam-role auth method of connector 'aws-connector' cannot give access to "
        "kubernetes-cluster, which the kubernetes orchestrator needs"
    )
    assert fit.location.file.endswith("aws/components.yaml") and fit.location.line == 46

    # resourceType (one) is held to the same rule
    one = connector[:start] + "  resourceType: kubernetes-cluster\n" + connector[end:]
    write(examples, {"aws/connector.yaml": one})
    report = validate(examples, only="aws", catalog=narrow)
    messages = [d.message for d in report.diagnostics if d.code == "zenml.resource-type"]
    assert messages == ["the aws iam-role auth method cannot give access to kubernetes-cluster"]


def test_expiration_only_for_auth_methods_with_temporary_credentials(examples: Path):
    connector = (examples / "_base/connector.yaml").read_text()
    write(
        examples,
        {
            "_base/connector.yaml": connector.replace(
                "  configuration:", "  expirationSeconds: 3600\n  configuration:"
            )
        },
    )
    result = validate_json(examples, "--env", "dev", "--no-policy")
    (finding,) = result.findings("zenml.expiration")
    assert finding["message"] == (
        "the gcp service-account auth method issues no temporary credentials, so expirationSeconds "
        "does not apply"
    )
    assert (
        finding["hint"] == "remove expirationSeconds, or use an auth method that issues them: impersonation"
    )
    assert finding["path"] == "$.spec.expirationSeconds" and finding["line"] == 14


def test_expiration_must_be_in_the_auth_methods_range(examples: Path):
    connector = (examples / "aws/connector.yaml").read_text()
    write(
        examples,
        {"aws/connector.yaml": connector.replace("expirationSeconds: 3600", "expirationSeconds: 600")},
    )
    result = validate_json(examples, "--env", "aws", "--no-policy")
    (finding,) = result.findings("zenml.expiration")
    assert finding["message"] == (
        "expirationSeconds 600 is outside what the aws iam-role auth method allows: at least 900 seconds"
    )
    assert finding["hint"] == (
        "set expirationSeconds to at least 900 seconds, or remove it for the default of 3600 seconds"
    )
    assert finding["line"] == 18
    session = connector.replace("authMethod: iam-role", "authMethod: session-token").replace(
        "expirationSeconds: 3600", "expirationSeconds: 200000"
    )
    session = session.replace("    role_arn: ${infra.base.connector_role_arn}\n", "")
    write(examples, {"aws/connector.yaml": session})
    result = validate_json(examples, "--env", "aws", "--no-policy")
    (finding,) = result.findings("zenml.expiration")
    assert finding["message"].endswith("allows: 900 to 129600 seconds")
    assert result.findings("zenml.auth-config") == []
