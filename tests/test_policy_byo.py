"""Bring your own policies (#14): policies in the shapes published conftest and OPA policies take
(tests/policies_byo/: Rego v0 and v1, `package main`, `import input.terraform_plan as tfplan`,
rules over `resource_changes`, helper functions, data documents, tests on mock JSON) pass and
fail as they do under OPA on the same input, in both engines, next to the default policies.

The expected messages are OPA 1.20.2's on the same input (v0 files through their v1 twins);
test_v1_policies_agree_with_opa re-checks the v1 ones against OPA when its library is importable.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import EXAMPLES, run, validate_json, write
from opa_standin import OpaStandIn

BYO = Path(__file__).resolve().parent / "policies_byo"
DEFAULTS = EXAMPLES.parent / "policies"
ALL_BYO = ("scalr_s3", "conftest_main", "blast_radius", "team_labels", "approved_flavors")
NAMESPACES = ("--namespace", "stackward", "--namespace", "main", "--namespace", "terraform")


def policies_with(tmp_path: Path, *folders: str, defaults: bool = True) -> Path:
    target = tmp_path / "policies"
    if defaults:
        shutil.copytree(DEFAULTS, target)
    else:
        target.mkdir()
    for folder in folders:
        shutil.copytree(BYO / folder, target / folder)
    return target


def _change(address: str, type_: str, actions: list[str], after: dict | None) -> dict:
    return {
        "address": address,
        "mode": "managed",
        "type": type_,
        "name": address.rsplit(".", 1)[-1],
        "provider_name": "registry.terraform.io/hashicorp/aws",
        "change": {"actions": actions, "before": None if actions == ["create"] else {}, "after": after},
    }


def aws_plan(bad: bool) -> dict:
    """`terraform show -json` for the aws example: module.base makes a bucket and a role; the bad
    plan's bucket is public and untagged, and it deletes another bucket."""
    bucket = {
        "acl": "public" if bad else "private",
        "bucket": "acme-artifacts",
        "tags": {"team": "ml"} if bad else {"owner": "ml", "cost-center": "ml-1001"},
    }
    changes = [
        _change("module.base.aws_s3_bucket.artifacts", "aws_s3_bucket", ["create"], bucket),
        _change("module.base.aws_iam_role.stack", "aws_iam_role", ["create"], {"name": "stack"}),
    ]
    if bad:
        changes.append(_change("module.base.aws_s3_bucket.old", "aws_s3_bucket", ["delete"], None))
    return {"format_version": "1.2", "terraform_version": "1.9.5", "resource_changes": changes}


def plan_file(tmp_path: Path, plan: dict, name: str = "plan.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(plan))
    return path


@pytest.fixture(params=["embedded", "opa-server"])
def engine_args(request: pytest.FixtureRequest) -> Iterator[tuple[str, ...]]:
    """The command-line options for each engine; the OPA server runs with --v0-compatible,
    as OPA 1.x must to load v0 policies."""
    if request.param == "embedded":
        yield ()
    else:
        with OpaStandIn(v0_compatible=True) as opa:
            yield ("--opa-url", opa.url)


def where(finding: dict) -> tuple[str, int]:
    return ("/".join(Path(finding["file"]).parts[-2:]), finding["line"])


def test_plan_policies_fail_a_bad_plan_and_pass_a_good_one(examples: Path, tmp_path: Path, engine_args):
    policies = policies_with(tmp_path, *ALL_BYO)
    check = ("policy", "check", str(examples), "--env", "aws", "--policies", str(policies), *NAMESPACES)
    bad = run(*check, "--plan", str(plan_file(tmp_path, aws_plan(True))), "--format", "json", *engine_args)
    assert bad.exit_code == 1, bad.output
    found = {
        (d["severity"], d["code"], d["message"], where(d))
        for d in bad.findings()
        if d["severity"] != "notice"
    }
    module_base = ("aws/infrastructure.yaml", 7)  # the Infrastructure document declaring module.base
    assert found == {
        (
            "error",
            "policy.terraform.deny",
            "module.base.aws_s3_bucket.artifacts      :: S3 buckets must not be PUBLIC",
            module_base,
        ),
        (
            "error",
            "policy.main.deny",
            "module.base.aws_s3_bucket.artifacts is missing required tags: cost-center, owner",
            module_base,
        ),
        (
            "error",
            "policy.main.deny",
            "the plan's blast radius is 115, above the limit of 30",
            ("aws/environment.yaml", 9),
        ),
        ("warning", "policy.main.warn", "module.base.aws_s3_bucket.old will be deleted", module_base),
    }

    good = run(*check, "--plan", str(plan_file(tmp_path, aws_plan(False))), "--format", "json", *engine_args)
    assert good.exit_code == 0, good.output
    assert [d for d in good.findings() if d["severity"] != "notice"] == []


def test_spec_policies_read_their_data_documents(examples: Path, tmp_path: Path, engine_args):
    policies = policies_with(tmp_path, "team_labels", "approved_flavors")
    assert validate_json(examples, "--env", "aws", "--policies", str(policies), *engine_args).exit_code == 0

    write(policies, {"team_labels/teams.json": '{"teams": ["data-science"]}'})
    write(
        policies,
        {
            "approved_flavors/flavors.yaml": "flavors:\n  approved: [s3, aws, sagemaker]\n  development: [local]\n"
        },
    )
    result = validate_json(examples, "--env", "aws", "--policies", str(policies), *engine_args)
    assert result.exit_code == 1
    violations = result.findings("policy.main.violation")
    assert len(violations) == 11  # every resource of aws is ml-platform's
    mlflow = next(d for d in violations if "aws-mlflow" in d["message"])
    assert mlflow["message"] == (
        'StackComponent/aws-mlflow belongs to team "ml-platform", which is not one of data-science'
    )
    assert where(mlflow) == ("aws/components.yaml", 54)  # at the resource the result names
    assert sorted(d["message"] for d in result.findings("policy.main.deny")) == [
        'StackComponent/aws-kubernetes-orchestrator uses flavor "kubernetes", which is not approved in aws',
        'StackComponent/aws-mlflow uses flavor "mlflow", which is not approved in aws',
    ]


def test_policy_test_loads_the_mock_data_beside_the_tests(tmp_path: Path):
    policies = policies_with(tmp_path, "scalr_s3", defaults=False) / "scalr_s3"
    result = run("policy", "test", "--policies", str(policies))
    assert result.exit_code == 0, result.output
    assert "terraform.test_invalid" in result.output and "terraform.test_valid" in result.output
    assert result.output.strip().splitlines()[-1] == "2 passed, 0 failed"
    (policies / "s3_private_mock.json").unlink()
    without = run("policy", "test", "--policies", str(policies))
    assert without.exit_code == 1
    assert without.output.strip().splitlines()[-1] == "0 passed, 2 failed"


def test_mock_data_is_not_data_for_the_check(examples: Path, tmp_path: Path):
    """Test data (`*_mock.json`, `*_test.json`, testdata/) is for `policy test` only: a mock that
    would conflict with real data does not reach `policy check`."""
    policies = policies_with(tmp_path, "blast_radius")
    write(policies, {"blast_radius/testdata/limits.yaml": "blast_radius:\n  limit: 1\n"})
    result = run("policy", "check", str(examples), "--env", "aws", "--policies", str(policies))
    assert result.exit_code == 0, result.output


def test_main_is_evaluated_by_default_and_other_packages_on_request(
    examples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    policies = policies_with(tmp_path, "scalr_s3", "conftest_main")
    bad = str(plan_file(tmp_path, aws_plan(True)))
    check = ("policy", "check", str(examples), "--env", "aws", "--policies", str(policies), "--plan", bad)

    default = run(*check, "--format", "json")
    assert default.exit_code == 1  # package main's deny
    assert {d["code"] for d in default.findings() if d["severity"] == "error"} == {"policy.main.deny"}
    (skipped,) = default.findings("policy.namespace")
    assert skipped["severity"] == "warning" and where(skipped) == ("scalr_s3/s3_private.rego", 1)
    assert skipped["message"] == (
        "package terraform has deny/violation/warn rules, but it is outside the namespaces evaluated "
        "(data.stackward or data.main): its rules were not evaluated"
    )
    assert "--namespace terraform" in skipped["hint"] and "--all-namespaces" in skipped["hint"]

    for args in [NAMESPACES, ("--all-namespaces",)]:
        result = run(*check, *args, "--format", "json")
        assert result.findings("policy.terraform.deny") and not result.findings("policy.namespace"), args

    only = run(*check, "--namespace", "terraform", "--format", "json")
    assert {d["code"] for d in only.findings() if d["severity"] == "error"} == {"policy.terraform.deny"}

    monkeypatch.setenv("STACKWARD_POLICY_NAMESPACE", "stackward, main,terraform")
    from_variable = run(*check, "--format", "json")
    assert {d["code"] for d in from_variable.findings() if d["severity"] == "error"} == {
        "policy.main.deny",
        "policy.terraform.deny",
    }


def test_a_plan_policy_not_yet_adapted_is_flagged_where_it_reads_the_plan(examples: Path, tmp_path: Path):
    """Scalr's policy as published reads input.tfplan: under stackward it would never fire, so
    the check says so at the line, without failing."""
    policies = policies_with(tmp_path, "scalr_s3")
    rego = policies / "scalr_s3/s3_private.rego"
    rego.write_text(rego.read_text().replace("input.terraform_plan as tfplan", "input.tfplan as tfplan"))
    bad = str(plan_file(tmp_path, aws_plan(True)))
    result = validate_json(examples, "--env", "aws", "--policies", str(policies), "--all-namespaces")
    assert result.exit_code == 0
    (unknown,) = result.findings("policy.input")
    assert unknown["severity"] == "warning" and where(unknown) == ("scalr_s3/s3_private.rego", 7)
    assert unknown["message"] == (
        "reads input.tfplan, which stackward's input does not have: what depends on it never matches"
    )
    assert "input.terraform_plan" in unknown["hint"]
    check = run(
        "policy",
        "check",
        str(examples),
        "--env",
        "aws",
        "--policies",
        str(policies),
        "--all-namespaces",
        "--plan",
        bad,
    )
    assert check.exit_code == 0 and "reads input.tfplan" in check.output


def test_rules_that_need_a_plan_are_reported_and_evaluated_with_one(examples: Path, tmp_path: Path):
    policies = policies_with(tmp_path)
    result = validate_json(examples, "--env", "staging", "--policies", str(policies))
    assert result.exit_code == 0
    (notice,) = result.findings("policy.needs_plan")
    assert notice["severity"] == "notice"
    assert notice["message"] == (
        "9 rule(s) read the plan (input.terraform_plan, input.changes) and were not evaluated: there is no "
        "plan here (policies/code_hazards.rego: 3, policies/impact.rego: 1, policies/infrastructure.rego: 3, "
        "policies/prod_destroy.rego: 2)"
    ).replace("policies/", f"{policies}/")
    assert "--plan FILE" in notice["hint"]

    bucket = {
        "address": "module.base.google_storage_bucket.artifacts",
        "mode": "managed",
        "type": "google_storage_bucket",
        "name": "artifacts",
        "change": {
            "actions": ["create"],
            "after": {"versioning": [{"enabled": True}], "public_access_prevention": "inherited"},
        },
    }
    plan = plan_file(tmp_path, {"format_version": "1.2", "resource_changes": [bucket]})
    check = run(
        "policy", "check", str(examples), "--env", "staging", "--policies", str(policies), "--plan", str(plan)
    )
    assert check.exit_code == 1
    assert (
        "_base/infrastructure.yaml:8:3: error: Terraform would leave bucket "
        "module.base.google_storage_bucket.artifacts open to public access [policy.SW007] (staging)"
    ) in check.output
    assert "read the plan (input.terraform_plan, input.changes) and were not evaluated" not in check.output
    assert "3 rule(s) read input.changes, which holds only the Terraform changes of" in check.output


def test_plan_option_needs_an_environment_and_a_json_plan(examples: Path, tmp_path: Path):
    policies = str(policies_with(tmp_path))
    plan = plan_file(tmp_path, aws_plan(False))
    no_env = run("policy", "check", str(examples), "--policies", policies, "--plan", str(plan))
    assert no_env.exit_code == 2 and "--plan needs --env" in no_env.output
    saved = tmp_path / "plan.out"
    saved.write_bytes(b"PK\x03\x04binary")
    binary = run(
        "policy", "check", str(examples), "--env", "aws", "--policies", policies, "--plan", str(saved)
    )
    assert binary.exit_code == 2 and "terraform show -json plan.out > plan.json" in binary.output
    other = plan_file(tmp_path, {"resources": []}, "other.json")
    not_plan = run(
        "policy", "check", str(examples), "--env", "aws", "--policies", policies, "--plan", str(other)
    )
    assert not_plan.exit_code == 2 and "not a Terraform plan in JSON" in not_plan.output


def test_a_v1_opa_server_refuses_v0_policies_and_says_how_to_load_them(examples: Path, tmp_path: Path):
    policies = policies_with(tmp_path, "approved_flavors")
    with OpaStandIn() as opa:
        result = validate_json(examples, "--env", "aws", "--policies", str(policies), "--opa-url", opa.url)
    assert result.exit_code == 1
    (refused,) = result.findings("policy.load")
    assert where(refused) == ("approved_flavors/flavors.rego", 7)
    assert refused["message"] == "policy error: `if` keyword is required before rule body"
    assert "--v0-compatible" in refused["hint"]


def test_v1_policies_agree_with_opa(examples: Path, tmp_path: Path):
    """The v1 policies on OPA 1.20.2 itself (its Go library, the opa-golib-python-bindings wheel;
    it declares Python >= 3.14, so install it with --ignore-requires-python), against the embedded
    engine on the same input. (That library reads Rego v1 only: the v0 files' expectations above
    were taken from their v1 twins.)"""
    opa_bindings = pytest.importorskip("opa_bindings")
    import yaml

    from stackward.policy.embedded import EmbeddedEngine
    from stackward.policy.input import build_input
    from stackward.policy.results import collect_all
    from stackward.policy.sources import from_folder
    from stackward.spec.discover import discover
    from stackward.spec.resolve import Resolver

    repo, _ = discover(examples)
    env = Resolver(repo).resolve("aws")
    files = [f for folder in ("blast_radius", "team_labels") for f in from_folder(BYO / folder)]
    embedded = EmbeddedEngine("main")
    assert embedded.load(files) == []
    opa = opa_bindings.OpaEngine()
    for f in files:
        if f.is_data:
            opa.add_data(yaml.safe_load(f.text))
        else:
            opa.add_policy(f.name, f.text)
    for bad in (True, False):
        document = json.loads(json.dumps(build_input(env, repo, terraform_plan=aws_plan(bad))))
        ours = sorted(r.msg for r in collect_all(embedded.evaluate(document)))
        theirs = sorted(
            [
                *opa.eval_document("main.deny", document),
                *(v["msg"] for v in opa.eval_document("main.violation", document)),
            ]
        )
        assert ours == theirs
