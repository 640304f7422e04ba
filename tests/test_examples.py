"""The example environments validate clean and resolve the way the docs say."""

import shutil
from pathlib import Path

from conftest import EXAMPLES, run, validate_json
from zenml_tools import copy_store, zenml_state

from stackward.spec.discover import discover
from stackward.spec.resolve import Resolver


def resolved(name: str):
    repo, _ = discover(EXAMPLES)
    return Resolver(repo).resolve(name)


def test_examples_validate_clean():
    result = validate_json(EXAMPLES)
    assert result.exit_code == 0, result.output
    summary = {e["name"]: (e["resources"], e["errors"]) for e in result.json["environments"]}
    assert summary == {"aws": (11, 0), "dev": (6, 0), "local": (4, 0), "prod": (6, 0), "staging": (6, 0)}
    # Only the notice that the rules reading a Terraform plan wait for one (no plan in validate).
    assert [(d["severity"], d["code"]) for d in result.json["diagnostics"]] == [
        ("notice", "policy.needs_plan")
    ]


def test_human_output_summarises_each_environment():
    result = run("validate", str(EXAMPLES))
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("policies: notice: 9 rule(s) read the plan") and lines[1].startswith(
        "    hint:"
    )
    lines = lines[2:]
    assert [line.split()[0] for line in lines[:-1]] == ["aws", "dev", "local", "prod", "staging"]
    assert all("✓ valid" in line for line in lines[:-1])
    assert lines[-1] == "policies: policies (working tree), embedded engine"


def test_base_documents_are_named_per_environment():
    names = sorted((r.kind, r.name) for r in resolved("staging").resources)
    assert ("Stack", "staging-stack") in names
    assert ("StackComponent", "staging-orchestrator") in names
    assert ("ServiceConnector", "staging-gcp") in names


def test_prod_override_uses_keyless_auth_and_drops_the_key_reference():
    connector = resolved("prod").of_kind("ServiceConnector")["prod-gcp"]
    assert connector.spec["authMethod"] == "implicit"
    assert "secrets" not in connector.spec
    assert connector.spec["configuration"] == {"project_id": "acme-ml-prod"}
    infra = resolved("prod").of_kind("Infrastructure")["base"]
    assert infra.spec["variables"]["create_service_account_key"] is False  # no unused key in prod
    assert infra.spec["variables"]["project_id"] == "acme-ml-prod"  # the rest inherited


def test_gcp_connector_key_comes_from_the_base_modules_sensitive_output():
    env = resolved("dev")
    connector = env.of_kind("ServiceConnector")["dev-gcp"]
    assert connector.spec["secrets"] == {
        "service_account_json": {"fromInfra": {"module": "base", "output": "service_account_key"}}
    }
    assert "service_account_key" in env.of_kind("Infrastructure")["base"].spec["outputs"]
    outputs = (EXAMPLES / "_modules/gcp-base/outputs.tf").read_text()
    block = outputs[outputs.index('output "service_account_key"') :]
    assert "sensitive = true" in block[: block.index("}\n")]
    assert "gcp_sa_key_env" not in env.settings.variables


def test_environment_labels_are_stamped_on_every_resource():
    for resource in resolved("dev").resources:
        assert resource.labels["environment"] == "dev"
        assert resource.labels["team"] == "ml-platform"
    stack = resolved("dev").of_kind("Stack")["dev-stack"]
    assert stack.labels["type"] == "base"  # its own label is kept


def test_infra_outputs_stay_as_references_until_apply():
    store = resolved("dev").of_kind("StackComponent")["dev-artifact-store"]
    assert store.spec["configuration"]["path"] == "gs://${infra.base.artifact_bucket}/artifacts"
    refs = store.infra_refs[("spec", "configuration", "path")]
    assert [(r.name, r.output) for r in refs] == [("base", "artifact_bucket")]


def test_single_environment_folder_validates_only_that_environment(examples: Path):
    result = validate_json(examples / "local", "--no-policy")
    assert result.exit_code == 0
    assert [e["name"] for e in result.json["environments"]] == ["local"]


def test_env_option_selects_one_environment():
    result = validate_json(EXAMPLES, "--env", "prod")
    assert [e["name"] for e in result.json["environments"]] == ["prod"]


def test_aws_example_has_a_multi_type_connector_with_credentials_from_infrastructure():
    env = resolved("aws")
    assert env.bases == []
    assert env.settings.embedded and env.settings.terraform_backend == "local"
    connector = env.of_kind("ServiceConnector")["aws-connector"]
    assert connector.spec["authMethod"] == "iam-role"
    assert connector.spec["resourceTypes"] == [
        "s3-bucket",
        "docker-registry",
        "aws-generic",
        "kubernetes-cluster",
    ]
    assert connector.spec["expirationSeconds"] == 3600
    assert connector.data["metadata"]["description"]
    assert connector.spec["secrets"] == {
        "aws_access_key_id": {"fromInfra": {"module": "base", "output": "iam_access_key_id"}},
        "aws_secret_access_key": {"fromInfra": {"module": "base", "output": "iam_secret_access_key"}},
    }
    components = env.of_kind("StackComponent")
    assert {(c.spec["type"], c.spec["flavor"]) for c in components.values()} == {
        ("artifact_store", "s3"),
        ("container_registry", "aws"),
        ("orchestrator", "sagemaker"),
        ("orchestrator", "kubernetes"),
        ("experiment_tracker", "mlflow"),
    }
    needed = {c.spec.get("connector") for c in components.values()} - {None}
    assert needed == {"aws-connector"}
    assert (
        components["aws-kubernetes-orchestrator"].spec["connectorResourceId"]
        == "${infra.base.eks_cluster_name}"
    )


def test_aws_example_secrets_and_stacks():
    env = resolved("aws")
    tracker = env.of_kind("StackComponent")["aws-mlflow"].spec["configuration"]
    assert tracker["tracking_username"] == "{{mlflow-tracking.username}}"
    assert tracker["tracking_password"] == "{{mlflow-tracking.password}}"
    secret = env.of_kind("Secret")["mlflow-tracking"]
    assert secret.spec["values"]["password"] == {"fromInfra": {"module": "base", "output": "mlflow_password"}}
    stacks = env.of_kind("Stack")
    assert sorted(stacks) == ["aws-kubernetes-stack", "aws-sagemaker-stack"]
    assert all(stack.data["metadata"]["description"] for stack in stacks.values())
    kubernetes = stacks["aws-kubernetes-stack"].spec
    assert kubernetes["secrets"] == ["mlflow-client"] and "mlflow-client" in env.of_kind("Secret")
    assert kubernetes["environment"]["AWS_DEFAULT_REGION"] == "eu-west-1"


def test_aws_module_is_offline_and_marks_credentials_sensitive():
    from stackward.terraform.modules import read_interface

    module = EXAMPLES / "_modules/aws-base"
    text = "".join(f.read_text() for f in sorted(module.glob("*.tf")))
    assert "required_providers" not in text
    assert not [line for line in text.splitlines() if line.startswith(("provider ", "data ", "module "))]
    resources = [line.split('"')[1] for line in text.splitlines() if line.startswith("resource ")]
    assert resources and set(resources) == {"terraform_data"}
    declared = resolved("aws").of_kind("Infrastructure")["base"].spec["outputs"]
    assert set(declared) == set(read_interface(module).outputs)
    outputs = (module / "outputs.tf").read_text()
    for name in ("mlflow_password", "iam_access_key_id", "iam_secret_access_key"):
        block = outputs[outputs.index(f'output "{name}"') :]
        assert "sensitive = true" in block[: block.index("}\n")], name


def test_aws_example_validates_plans_and_applies_against_an_offline_store(
    tmp_path: Path, store_template: Path, monkeypatch
):
    """ZenML's AWS stack guide as specs: an embedded store, Terraform's built-in resources only."""
    root = tmp_path / "environments"
    shutil.copytree(EXAMPLES / "aws", root / "aws")
    shutil.copytree(EXAMPLES / "_modules", root / "_modules")
    monkeypatch.setenv("STACKWARD_POLICIES", str(EXAMPLES.parent / "policies"))
    state = tmp_path / "state"
    copy_store(store_template, state, "aws")
    common = ("--env", "aws", "--state-dir", str(state))
    assert run("validate", str(root), "--env", "aws").exit_code == 0
    planned = run("plan", str(root), *common)
    assert planned.exit_code == 0, planned.output
    for address in (
        "zenml.ServiceConnector.aws-connector",
        "zenml.Secret.mlflow-tracking",
        "zenml.StackComponent.aws-sagemaker-orchestrator",
        "zenml.StackComponent.aws-kubernetes-orchestrator",
        "zenml.Stack.aws-sagemaker-stack",
        "zenml.Stack.aws-kubernetes-stack",
    ):
        assert f"+ {address}" in planned.output
    applied = run("apply", str(root), *common)
    assert applied.exit_code == 0, applied.output
    again = run("plan", str(root), *common)
    assert "aws: +0 ~0 -0 ±0" in again.output and "no changes" in again.output, again.output
    stacks = zenml_state(state, "aws")["stacks"]
    assert set(stacks["aws-sagemaker-stack"]["components"]) == {
        "orchestrator",
        "artifact_store",
        "container_registry",
        "experiment_tracker",
    }
