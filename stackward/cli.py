"""The `stackward` command line. Exit codes: 0 clean, 1 findings, 2 usage, 3 could not run."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from stackward.policy.check import PolicyOptions
from stackward.policy.engine import DEFAULT_NAMESPACE
from stackward.resolve import UsageError
from stackward.schema import KINDS, bundle, kind_schema
from stackward.zenml_catalog import CatalogError

EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_CANNOT_RUN = 3


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stackward")
def main() -> None:
    """GitOps for ML platform infrastructure: ZenML stacks and Terraform, per environment."""


def _check_options(command: Callable) -> Callable:
    """PATH, --env and --format, shared by the commands that check specs."""
    command = click.option(
        "--format",
        "fmt",
        type=click.Choice(["human", "json", "github"]),
        default="human",
        show_default=True,
        help="human for terminals, json for tools, github for workflow annotations.",
    )(command)
    command = click.option("--env", "env", metavar="NAME", help="Check only this environment.")(command)
    return click.argument("path", type=click.Path(path_type=Path), default="environments", required=False)(
        command
    )


def _policy_options(command: Callable) -> Callable:
    """Where policies come from and which engine evaluates them."""
    options = [
        click.option(
            "--policies",
            "policies",
            type=click.Path(path_type=Path),
            help="Policies folder. Default: policies/ at the repository root.",
        ),
        click.option(
            "--policies-ref",
            metavar="REF",
            help="Read the policies as they are at this git ref (a PR's base branch).",
        ),
        click.option(
            "--namespace",
            default=DEFAULT_NAMESPACE,
            show_default=True,
            envvar="STACKWARD_POLICY_NAMESPACE",
            help="Rego package prefix whose deny/warn rules are evaluated.",
        ),
        click.option(
            "--opa-url",
            envvar="STACKWARD_OPA_URL",
            help="Evaluate on this OPA server (token from STACKWARD_OPA_TOKEN). Default: embedded engine.",
        ),
        click.option(
            "--opa-preloaded",
            is_flag=True,
            help="The OPA server already has the policies (a bundle): query only, upload nothing.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _run_checks(path: Path, env: str | None, fmt: str, policy: PolicyOptions | None) -> None:
    from stackward.output import FORMATS
    from stackward.policy.engine import PolicyEngineError
    from stackward.policy.sources import PolicySourceError
    from stackward.validation import validate as run_validation

    try:
        report = run_validation(path, env, policy=policy)
    except (UsageError, PolicySourceError) as exc:
        click.echo(f"stackward: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except (CatalogError, PolicyEngineError) as exc:
        click.echo(f"stackward: {exc}", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    click.echo(FORMATS[fmt](report))
    sys.exit(0 if report.ok else EXIT_FINDINGS)


def _policy(
    policies: Path | None,
    policies_ref: str | None,
    namespace: str,
    opa_url: str | None,
    opa_preloaded: bool,
    required: bool,
) -> PolicyOptions:
    return PolicyOptions(
        folder=policies,
        namespace=namespace,
        base_ref=policies_ref,
        opa_url=opa_url,
        opa_token=os.environ.get("STACKWARD_OPA_TOKEN"),
        opa_upload=not opa_preloaded,
        required=required,
    )


@main.command()
@_check_options
@click.option("--no-policy", is_flag=True, help="Skip the policy gate.")
@_policy_options
def validate(path: Path, env: str | None, fmt: str, no_policy: bool, **policy: Any) -> None:
    """Check the specs under PATH (default: environments/) and report every problem,
    then evaluate the policies on the environments that are valid."""
    _run_checks(path, env, fmt, None if no_policy else _policy(**policy, required=False))


@main.group()
def policy() -> None:
    """The policy gate: OPA/Rego policies on specs and plans."""


@policy.command("check")
@_check_options
@_policy_options
def policy_check(path: Path, env: str | None, fmt: str, **policy: Any) -> None:
    """Validate PATH, then evaluate the policies (a missing policies folder is an error)."""
    _run_checks(path, env, fmt, _policy(**policy, required=True))


@policy.command("test")
@click.option(
    "--policies",
    type=click.Path(path_type=Path, file_okay=False),
    default="policies",
    show_default=True,
    help="Policies folder with *_test.rego files.",
)
def policy_test(policies: Path) -> None:
    """Run the Rego unit tests (rules named test_*) and print pass/fail per test."""
    from stackward.output.human import render_diagnostic
    from stackward.policy.embedded import EmbeddedEngine
    from stackward.policy.sources import PolicySourceError, from_folder

    try:
        files = from_folder(policies)
    except PolicySourceError as exc:
        click.echo(f"stackward: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    engine = EmbeddedEngine()
    errors = engine.load(files)
    for diag in errors:
        click.echo(render_diagnostic(diag))
    results = engine.run_tests() if not errors else []
    for result in results:
        mark = click.style("PASS", fg="green") if result.passed else click.style("FAIL", fg="red")
        detail = f"  ({result.error})" if result.error else ""
        click.echo(f"{mark} {result.file}: {result.package}.{result.name}{detail}")
    failed = sum(not r.passed for r in results)
    click.echo(f"{len(results) - failed} passed, {failed} failed")
    sys.exit(EXIT_FINDINGS if failed or errors or not results else 0)


@main.command()
@click.argument("kind", required=False, type=click.Choice(KINDS))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write stackward.schema.json and one <Kind>.schema.json per kind into this folder.",
)
def schema(kind: str | None, out: Path | None) -> None:
    """Print the JSON Schema (Draft 2020-12) of all kinds, or of KIND."""
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "stackward.schema.json").write_text(json.dumps(bundle(), indent=2) + "\n")
        for name in KINDS:
            (out / f"{name}.schema.json").write_text(json.dumps(kind_schema(name), indent=2) + "\n")
        click.echo(f"wrote {len(KINDS) + 1} schemas to {out}")
        return
    click.echo(json.dumps(kind_schema(kind) if kind else bundle(), indent=2))


if __name__ == "__main__":
    main()
