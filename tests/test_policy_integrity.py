"""What a change cannot do to the policy gate (issue #11): rewrite the input that judges it
(the base branch's version rides along as `input.base`), get through with no policy loaded
(the gate fails closed unless turned off explicitly), or run code through a Terraform module
(provisioners, `external` data sources, local remote state are denied at plan)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import EXAMPLES, git, local_repo, run, validate_json, write
from opa_standin import OpaStandIn

from stackward.errors import EnvironmentFailed
from stackward.pipeline import Pipeline
from stackward.plan.changes import EnvironmentPlan
from stackward.plan.run import Planned
from stackward.settings import Settings

POLICIES = EXAMPLES.parent / "policies"
CONNECTOR = (
    "apiVersion: stackward.dev/v1alpha1\nkind: ServiceConnector\nmetadata:\n  name: staging-gcp\nspec:\n"
)
KEYLESS = CONNECTOR + "  authMethod: implicit\n  secrets: null\n"
KEYED = CONNECTOR + "  authMethod: service-account\n"
KEYED_PROD = (
    KEYED.replace("staging-gcp", "prod-gcp")
    + "  secrets:\n    service_account_json: {fromEnv: GCP_KEY, fromInfra: null}\n"
)
HOOK = (
    'resource "terraform_data" "hook" {\n'
    '  provisioner "local-exec" {\n    command = "touch {marker}"\n  }\n}\n'
)


def git_repo(root: Path) -> Path:
    """The examples and the default policies, committed on branch main."""
    repo = root / "repo"
    shutil.copytree(EXAMPLES, repo / "environments")
    shutil.copytree(POLICIES, repo / "policies")
    git(root, "init", "-q", "-b", "main", str(repo))
    return repo


def commit(repo: Path, files: dict[str, str], message: str) -> None:
    write(repo, files)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def test_a_pr_that_removes_the_production_label_is_still_judged_as_production(tmp_path: Path):
    repo = git_repo(tmp_path)
    staging = (repo / "environments/staging/environment.yaml").read_text()
    labelled = staging.replace(
        "    environment: staging\n", "    environment: staging\n    tier: production\n"
    )
    commit(
        repo,
        {"environments/staging/environment.yaml": labelled, "environments/staging/connector.yaml": KEYLESS},
        "staging is production",
    )
    git(repo, "checkout", "-qb", "pr")
    # The PR drops the label and, in the same change, gives the connector a long-lived key.
    commit(
        repo,
        {"environments/staging/environment.yaml": staging, "environments/staging/connector.yaml": KEYED},
        "pr",
    )
    environments = repo / "environments"
    assert validate_json(environments, "--env", "staging").exit_code == 0  # judged by its own labels

    result = validate_json(environments, "--env", "staging", "--policies-ref", "main")
    assert result.exit_code == 1
    (finding,) = result.findings("policy.SW001")
    assert finding["message"].startswith("ServiceConnector/staging-gcp uses service-account auth in staging")
    assert finding["file"].endswith("staging/connector.yaml")

    # The pipeline every front-end calls, as the Action calls it for a pull request.
    pipeline = Pipeline(Settings.load(path=environments))
    report = pipeline.checked("staging")
    outcome = pipeline.plan(report, report.environments, compute=False, policies_ref="main")
    assert not outcome.ok
    assert [d.code for d in outcome.findings if d.is_error] == ["policy.SW001"]


def test_the_input_carries_each_environment_as_the_base_branch_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from stackward.policy.base import environments_at
    from stackward.spec.discover import discover

    repo = git_repo(tmp_path)
    commit(repo, {}, "base")
    git(repo, "checkout", "-qb", "pr")
    prod = repo / "environments/prod/environment.yaml"
    prod.write_text(prod.read_text().replace("team: ml-platform", "team: someone-else"))
    shutil.copytree(repo / "environments/dev", repo / "environments/new")
    commit(repo, {}, "pr")
    discovered, _ = discover(repo / "environments")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()

    bases = environments_at(discovered, "main", ["prod", "new"])

    assert set(bases) == {"prod"}  # `new` has no base version: input.base is null
    base = bases["prod"]
    assert base["environment"]["labels"] == {"environment": "prod", "team": "ml-platform"}
    assert base["environments"] == ["aws", "dev", "local", "prod", "staging"]
    connector = next(r for r in base["resources"] if r["kind"] == "ServiceConnector")
    assert connector["spec"]["authMethod"] == "implicit"
    assert (
        Path(connector["source"]["file"]).resolve() == (repo / "environments/prod/connector.yaml").resolve()
    )
    assert list((tmp_path / "tmp").iterdir()) == []  # the copy of the base branch is removed


@pytest.mark.parametrize("layout", ["missing", "empty", "tests only", "outside the namespace"])
def test_no_policy_loaded_fails_closed(examples: Path, tmp_path: Path, layout: str):
    policies = tmp_path / "policies"
    if layout != "missing":
        policies.mkdir()
    if layout == "tests only":
        write(policies, {"a_test.rego": "package stackward.a_test\n\nimport rego.v1\n\ntest_x if { true }\n"})
    if layout == "outside the namespace":
        write(policies, {"a.rego": 'package other\n\nimport rego.v1\n\ndeny contains "x" if { false }\n'})
    result = validate_json(examples, "--policies", str(policies))
    assert result.exit_code == 1
    (finding,) = result.findings("policy.none")
    assert finding["severity"] == "error"
    assert finding["environments"] == ["aws", "dev", "local", "prod", "staging"]
    assert finding["message"].startswith(f"no policies loaded from {policies}")
    assert (
        "turn the gate off explicitly" in finding["hint"] and "STACKWARD_POLICY_GATE=false" in finding["hint"]
    )


def test_no_policy_at_the_base_ref_fails_closed(tmp_path: Path):
    repo = git_repo(tmp_path)
    shutil.rmtree(repo / "policies")
    commit(repo, {}, "no policies yet")
    git(repo, "checkout", "-qb", "pr")
    shutil.copytree(POLICIES, repo / "policies")  # a PR adding policies is not judged by them
    commit(repo, {}, "pr")
    result = validate_json(repo / "environments", "--env", "dev", "--policies-ref", "main")
    assert result.exit_code == 1
    (finding,) = result.findings("policy.none")
    assert "policies at main" in finding["message"]


def test_nothing_under_the_namespace_on_a_preloaded_opa_server_fails_closed(examples: Path):
    with OpaStandIn() as opa:
        result = validate_json(examples, "--env", "dev", "--opa-url", opa.url, "--opa-preloaded")
    assert result.exit_code == 1
    (finding,) = result.findings("policy.none")
    assert finding["message"].startswith(f"no policies loaded from OPA at {opa.url}: no deny, violation")


def test_plan_and_apply_fail_closed_without_policies(examples: Path):
    pipeline = Pipeline(Settings.load(path=examples))
    report = pipeline.checked("dev")
    outcome = pipeline.plan(report, report.environments, compute=False)
    assert not outcome.ok
    assert [d.code for d in outcome.findings] == ["policy.none"]
    gate = pipeline.gate(report, report.environments[0])
    with pytest.raises(EnvironmentFailed, match="denied by policy, nothing was applied") as refused:
        gate(Planned(EnvironmentPlan("dev")))
    assert "no policies loaded from" in str(refused.value)


def test_the_policy_gate_setting_turns_the_gate_off_explicitly(
    examples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    write(examples, {"prod/connector.yaml": KEYED_PROD})
    shutil.copytree(POLICIES, tmp_path / "policies")
    assert validate_json(examples, "--env", "prod", "--policies", str(tmp_path / "policies")).exit_code == 1
    monkeypatch.setenv("STACKWARD_POLICY_GATE", "false")
    result = validate_json(examples, "--env", "prod", "--policies", str(tmp_path / "policies"))
    assert result.exit_code == 0, result.output
    assert result.json["policy"] == {"source": "turned off explicitly (policy_gate: false)", "engine": "no"}
    assert validate_json(examples, "--env", "dev").exit_code == 0  # and no policies folder at all


def test_a_module_with_a_local_exec_provisioner_is_denied_at_plan(tmp_path: Path, store_template: Path):
    marker = tmp_path / "provisioner-ran"
    hook = HOOK.replace("{marker}", str(marker))
    repo, state = local_repo(
        tmp_path, store_template, files={"environments/_modules/local-base/hook.tf": hook}
    )
    environments = str(repo / "environments")

    plan = run("plan", environments, "--state-dir", str(state))
    assert plan.exit_code == 1
    assert (
        "environments/local/infrastructure.yaml:5:3: error: Infrastructure/base (module ../_modules/local-base) "
        "has a local-exec provisioner on module.base.terraform_data.hook: it would run commands from this "
        "change on the machine that applies [policy.SW011] (local)"
    ) in plan.output
    assert "hint: remove the provisioner" in plan.output

    apply = run("apply", environments, "--state-dir", str(state))
    assert apply.exit_code == 1
    assert "local: denied by policy, nothing was applied" in apply.output
    assert not marker.exists()
