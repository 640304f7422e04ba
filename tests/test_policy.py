"""The policy gate end to end: default policies on the examples, a blocked prod change as a
reviewer sees it, advisory warnings, exceptions, failing closed, base-branch policies."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import EXAMPLES, git, run, validate_json, write
from opa_standin import OpaStandIn

POLICIES = EXAMPLES.parent / "policies"
KEYED_PROD = (
    "apiVersion: stackward.dev/v1alpha1\nkind: ServiceConnector\nmetadata:\n  name: prod-gcp\nspec:\n"
    "  authMethod: service-account\n  secrets:\n    service_account_json: {fromEnv: GCP_KEY_PROD, fromInfra: null}\n"
)


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(POLICIES, target)
    return target


def test_examples_pass_the_default_policies():
    result = validate_json(EXAMPLES)
    assert result.exit_code == 0, result.output
    assert result.json["policy"] == {"source": "policies (working tree)", "engine": "embedded"}
    # Nothing fails; the rules that need a plan say they were not evaluated (no plan exists here).
    (notice,) = result.json["diagnostics"]
    assert (notice["severity"], notice["code"]) == ("notice", "policy.needs_plan")


def test_long_lived_key_in_prod_is_blocked_at_the_spec_line(examples: Path, policies: Path):
    write(examples, {"prod/connector.yaml": KEYED_PROD})
    result = run("validate", str(examples), "--policies", str(policies))
    assert result.exit_code == 1
    assert (
        "prod/connector.yaml:4:3: error: ServiceConnector/prod-gcp uses service-account auth in prod: "
        "production connectors must not use long-lived keys [policy.SW001] (prod)" in result.output
    )
    assert (
        "hint: use a keyless auth method: implicit (workload identity), external-account, or iam-role"
        in result.output
    )
    github = run("validate", str(examples), "--policies", str(policies), "--format", "github")
    annotation = next(line for line in github.output.splitlines() if "SW001" in line)
    assert annotation.startswith("::error file=") and "prod/connector.yaml,line=4,col=3" in annotation
    assert "use a keyless auth method" in annotation


def test_every_default_rule_fires_on_a_bad_environment(examples: Path, policies: Path):
    write(
        examples,
        {
            "staging/bad.yaml": (
                "apiVersion: stackward.dev/v1alpha1\nkind: StackComponent\nmetadata:\n  name: scratch\n"
                "  labels: {environment: prod}\nspec:\n  type: artifact_store\n  flavor: local\n"
                "  configuration: {path: /mnt/prod/artifacts}\n---\n"
                "apiVersion: stackward.dev/v1alpha1\nkind: Infrastructure\nmetadata: {name: extra}\nspec:\n"
                "  source: ../_modules/local-base\n  variables: {environment: staging}\n"
            ),
        },
    )
    infra = (examples / "_base/infrastructure.yaml").read_text()
    write(
        examples,
        {
            "_base/infrastructure.yaml": infra.replace(
                "bucket_versioning: true", "bucket_versioning: false"
            ).replace("public_access_prevention: enforced", "public_access_prevention: inherited")
        },
    )
    result = validate_json(examples, "--env", "staging", "--policies", str(policies))
    codes = {d["code"] for d in result.findings() if d["severity"] == "error"}
    assert codes == {
        "policy.SW002",
        "policy.SW003",
        "policy.SW004",
        "policy.SW005",
        "policy.SW006",
        "policy.SW007",
    }
    messages = [d["message"] for d in result.findings()]
    assert "StackComponent/scratch is labelled environment=prod but belongs to staging" in messages


def test_advisory_warning_does_not_block(examples: Path, policies: Path):
    env = (examples / "prod/environment.yaml").read_text().replace("drift: report", "drift: heal")
    write(examples, {"prod/environment.yaml": env})
    result = validate_json(examples, "--env", "prod", "--policies", str(policies))
    assert result.exit_code == 0
    (warning,) = result.findings("policy.SW010")
    assert warning["severity"] == "warning"
    assert warning["file"].endswith("prod/environment.yaml")


def test_an_exception_waives_a_rule_and_says_so(examples: Path, policies: Path):
    write(examples, {"prod/connector.yaml": KEYED_PROD})
    write(
        policies,
        {
            "exceptions.rego": (
                "package stackward.prod_keyless\n\nimport rego.v1\n\n"
                "# Break-glass: the migration to workload identity is tracked in INFRA-123.\n"
                'exception contains ["long_lived_key"] if { input.environment.name == "prod" }\n'
            )
        },
    )
    result = validate_json(examples, "--env", "prod", "--policies", str(policies))
    assert result.exit_code == 0
    (notice,) = result.findings("policy.SW001")
    assert notice["severity"] == "notice"
    assert notice["hint"] == "waived by an exception in stackward.prod_keyless"


def test_broken_policy_fails_closed_with_its_location(examples: Path, policies: Path):
    write(
        policies,
        {"broken.rego": "package stackward.broken\n\nimport rego.v1\n\ndeny contains m if { m := nope }\n"},
    )
    result = run("validate", str(examples), "--env", "dev", "--policies", str(policies))
    assert result.exit_code == 1
    assert "broken.rego:5:27: error: policy error: var nope is unsafe [policy.error] (dev)" in result.output
    assert "Stack backtrace" not in result.output


def test_syntax_error_in_a_policy_fails_closed(examples: Path, policies: Path):
    write(policies, {"broken.rego": "package stackward.broken\n\ndeny contains m if {\n"})
    result = validate_json(examples, "--policies", str(policies))
    assert result.exit_code == 1
    (finding,) = result.findings("policy.load")
    assert finding["file"].endswith("broken.rego")
    assert finding["environments"] == ["aws", "dev", "local", "prod", "staging"]


def test_invalid_environment_is_not_evaluated_and_still_fails(examples: Path, policies: Path):
    write(examples, {"prod/connector.yaml": KEYED_PROD + "  bogus: 1\n"})
    result = validate_json(examples, "--env", "prod", "--policies", str(policies))
    assert result.exit_code == 1
    assert result.findings("schema") and not result.findings("policy.SW001")


def test_no_policy_flag_skips_the_gate(examples: Path, policies: Path):
    write(examples, {"prod/connector.yaml": KEYED_PROD})
    result = validate_json(examples, "--env", "prod", "--policies", str(policies), "--no-policy")
    assert result.exit_code == 0
    assert result.json["policy"] is None


def test_policy_check_requires_a_policies_folder(examples: Path, tmp_path: Path):
    result = run("policy", "check", str(examples), "--policies", str(tmp_path / "none"))
    assert result.exit_code == 2
    assert "no such policies folder" in result.output


def test_policy_check_reports_like_validate(examples: Path, policies: Path):
    write(examples, {"prod/connector.yaml": KEYED_PROD})
    result = run("policy", "check", str(examples), "--policies", str(policies), "--format", "json")
    assert result.exit_code == 1
    assert [d["code"] for d in result.findings() if d["severity"] == "error"] == ["policy.SW001"]
    assert [d["code"] for d in result.findings() if d["severity"] != "error"] == ["policy.needs_plan"]


def test_policies_come_from_the_base_branch_when_a_pr_edits_them(tmp_path: Path):
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES, repo / "environments")
    shutil.copytree(POLICIES, repo / "policies")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "add", "-A")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "base")
    # The PR weakens the policy and, in the same change, adds a long-lived key to prod.
    lib = repo / "policies/lib/stackward.rego"
    lib.write_text(lib.read_text().replace('"service-account", # gcp', '# "service-account", # gcp'))
    write(repo / "environments", {"prod/connector.yaml": KEYED_PROD})
    working_tree = validate_json(repo / "environments", "--env", "prod")
    assert working_tree.exit_code == 0  # judged by its own edit, the PR would pass
    result = validate_json(repo / "environments", "--env", "prod", "--policies-ref", "main")
    assert result.exit_code == 1
    assert result.json["policy"]["source"].endswith("policies at main")
    assert result.findings("policy.SW001")
    (changed,) = result.findings("policy.changed")
    assert "policies/lib/stackward.rego" in changed["message"]
    assert "owners' review" in changed["hint"]


def test_unknown_base_ref_is_a_usage_error(tmp_path: Path):
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES, repo / "environments")
    shutil.copytree(POLICIES, repo / "policies")
    git(repo, "init", "-q")
    result = run("validate", str(repo / "environments"), "--policies-ref", "nope")
    assert result.exit_code == 2
    assert "git ls-tree" in result.output or "git rev-parse" in result.output


def test_opa_server_engine_gives_the_same_findings(examples: Path, policies: Path, monkeypatch):
    """Against a local stand-in for OPA's REST API (no OPA binary can be installed here)."""
    write(examples, {"prod/connector.yaml": KEYED_PROD})
    with OpaStandIn(token="s3cret-token") as opa:
        monkeypatch.setenv("STACKWARD_OPA_TOKEN", "s3cret-token")
        result = validate_json(examples, "--env", "prod", "--policies", str(policies), "--opa-url", opa.url)
        assert result.exit_code == 1
        assert result.json["policy"]["engine"] == "opa-server"
        (finding,) = result.findings("policy.SW001")
        assert finding["file"].endswith("prod/connector.yaml") and finding["line"] == 4
        uploads = [path for method, path in opa.requests if method == "PUT"]
        assert "/v1/policies/stackward/" in uploads[0]
        assert not any("_test.rego" in path for path in uploads)
        # Policies already on the server (a bundle): query only.
        opa.requests.clear()
        result = validate_json(examples, "--env", "prod", "--opa-url", opa.url, "--opa-preloaded")
        assert result.exit_code == 1
        assert {method for method, _ in opa.requests} == {"POST"}
        monkeypatch.setenv("STACKWARD_OPA_TOKEN", "wrong")
        refused = run("validate", str(examples), "--env", "prod", "--opa-url", opa.url, "--opa-preloaded")
        assert refused.exit_code == 3
        assert "refused the token" in refused.output
        assert "s3cret" not in refused.output and "wrong" not in refused.output


def test_unreachable_opa_server_fails_closed(examples: Path):
    result = run(
        "validate", str(examples), "--env", "dev", "--opa-url", "http://127.0.0.1:9", "--opa-preloaded"
    )
    assert result.exit_code == 3
    assert "cannot reach OPA at http://127.0.0.1:9" in result.output


def test_policy_test_command_reports_each_test(policies: Path):
    result = run("policy", "test", "--policies", str(policies))
    assert result.exit_code == 0
    assert "PASS" in result.output and "FAIL" not in result.output
    assert result.output.strip().splitlines()[-1].endswith(" passed, 0 failed")
    write(
        policies,
        {"extra_test.rego": "package stackward.extra_test\n\nimport rego.v1\n\ntest_wrong if { 1 == 2 }\n"},
    )
    result = run("policy", "test", "--policies", str(policies))
    assert result.exit_code == 1
    assert "FAIL" in result.output and "stackward.extra_test.test_wrong" in result.output


def test_policy_input_document(examples: Path):
    from stackward.policy.input import PullRequest, build_input
    from stackward.spec.discover import discover
    from stackward.spec.resolve import Resolver

    repo, _ = discover(examples)
    env = Resolver(repo).resolve("prod")
    pr = PullRequest(7, "octocat", ("infra",), "a" * 40, "b" * 40, ("environments/prod/connector.yaml",))
    document = build_input(env, repo, pull_request=pr)
    assert document["environment"] == {
        "name": "prod",
        "labels": {"environment": "prod", "team": "ml-platform"},
        "promotion": {"after": "staging"},
        "drift": "report",
        "zenml": {"mode": "server"},
    }
    assert document["environments"] == ["aws", "dev", "local", "prod", "staging"]
    connector = next(r for r in document["resources"] if r["kind"] == "ServiceConnector")
    assert connector["source"]["file"].endswith("prod/connector.yaml") and connector["source"]["line"] == 7
    assert document["pull_request"]["labels"] == ["infra"]
    assert document["changes"] == [] and document["terraform_plan"] is None
    assert document["base"] is None  # no base ref given: nothing to compare with
