"""The example environments validate clean and resolve the way the docs say."""

from pathlib import Path

from conftest import EXAMPLES, run, validate_json

from stackward.spec.discover import discover
from stackward.spec.resolve import Resolver


def resolved(name: str):
    repo, _ = discover(EXAMPLES)
    return Resolver(repo).resolve(name)


def test_examples_validate_clean():
    result = validate_json(EXAMPLES)
    assert result.exit_code == 0, result.output
    summary = {e["name"]: (e["resources"], e["errors"]) for e in result.json["environments"]}
    assert summary == {"dev": (6, 0), "local": (4, 0), "prod": (6, 0), "staging": (6, 0)}
    assert result.json["diagnostics"] == []


def test_human_output_summarises_each_environment():
    result = run("validate", str(EXAMPLES))
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["dev", "local", "prod", "staging"]
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
    dev = resolved("dev").of_kind("ServiceConnector")["dev-gcp"]
    assert dev.spec["secrets"] == {"service_account_json": {"fromEnv": "GCP_SA_KEY_DEV"}}


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
