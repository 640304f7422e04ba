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


class _Commands(click.Group):
    """Built-in commands plus those front-ends register under the `stackward.commands` entry
    point group (the engine never imports a front-end by name), loaded only when used."""

    def _plugins(self) -> dict[str, Any]:
        from importlib.metadata import entry_points

        return {ep.name: ep for ep in entry_points(group="stackward.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in self._plugins():
            command = self._plugins()[name].load()
        return command


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
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


def _state_options(command: Callable) -> Callable:
    command = click.option(
        "--lock-timeout",
        type=float,
        default=60.0,
        show_default=True,
        help="Seconds to wait for an environment held by another run.",
    )(command)
    return click.option(
        "--state-dir",
        type=click.Path(path_type=Path, file_okay=False),
        envvar="STACKWARD_STATE_DIR",
        help="Where per-environment state lives. Default: .stackward/ at the repository root.",
    )(command)


def _validated(path: Path, env: str | None) -> Any:
    """Validation (no policies yet: they run on the plan); exits with the findings if any."""
    from stackward.output.human import render as render_report
    from stackward.validation import validate as run_validation

    try:
        report = run_validation(path, env)
    except UsageError as exc:
        click.echo(f"stackward: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except CatalogError as exc:
        click.echo(f"stackward: {exc}", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    if not report.ok:
        click.echo(render_report(report))
        sys.exit(EXIT_FINDINGS)
    return report


def _progress(message: str) -> None:
    click.echo(click.style(f"… {message}", dim=True), err=True)


@main.command()
@_check_options
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Write the plan as JSON here.")
@_state_options
@_policy_options
def plan(
    path: Path,
    env: str | None,
    fmt: str,
    out: Path | None,
    state_dir: Path | None,
    lock_timeout: float,
    **policy: Any,
) -> None:
    """Show what applying would change in each environment (ZenML and Terraform)."""
    from stackward.changes import EnvironmentPlan, Plan
    from stackward.executors.terraform import TerraformError
    from stackward.executors.zenml import ZenmlError
    from stackward.output.human import render_diagnostic
    from stackward.output.plan_text import render
    from stackward.planning import Planned, plan_environment, plan_policy_findings, promotion_order, revision
    from stackward.state import LockError

    report = _validated(path, env)
    state_root = state_dir or report.repo.repo_root / ".stackward"
    planned: dict[str, Planned] = {}
    for environment in promotion_order(report.environments):
        try:
            planned[environment.name] = plan_environment(
                environment, report.repo, state_root, lock_timeout, _progress
            )
        except (TerraformError, ZenmlError, LockError) as exc:
            planned[environment.name] = Planned(EnvironmentPlan(environment.name, error=str(exc)))
    findings = plan_policy_findings(
        report.environments, report.repo, planned, _policy(**policy, required=False)
    )
    result = Plan(revision(report.repo), [p.plan for p in planned.values()])
    if out is not None:
        out.write_text(result.to_json())
    if fmt == "json":
        click.echo(result.to_json())
    else:
        click.echo(render(result.environments, result.digest))
        for diag in findings:
            click.echo(render_diagnostic(diag))
        if out is not None:
            click.echo(f"plan written to {out}; apply exactly this plan with: stackward apply --plan {out}")
    failed = any(p.error for p in result.environments) or any(d.is_error for d in findings)
    sys.exit(EXIT_FINDINGS if failed else 0)


@main.command()
@click.argument("path", type=click.Path(path_type=Path), default="environments", required=False)
@click.option("--env", "env", metavar="NAME", help="Apply only this environment.")
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Apply only if planning again gives exactly this reviewed plan.",
)
@_state_options
@_policy_options
def apply(
    path: Path,
    env: str | None,
    plan_file: Path | None,
    state_dir: Path | None,
    lock_timeout: float,
    **policy: Any,
) -> None:
    """Apply the environments in promotion order (dev -> staging -> prod), stopping at the first failure."""
    from stackward.changes import Plan
    from stackward.executors.terraform import TerraformError
    from stackward.executors.zenml import ZenmlError
    from stackward.output.human import render_diagnostic
    from stackward.output.plan_text import render_environment
    from stackward.planning import (
        ApplyRefused,
        Planned,
        apply_environment,
        plan_policy_findings,
        promotion_order,
    )
    from stackward.state import LockError

    reviewed = None
    if plan_file is not None:
        try:
            reviewed = Plan.from_json(plan_file.read_text())
        except (ValueError, KeyError) as exc:
            click.echo(f"stackward: {plan_file}: not a stackward plan: {exc}", err=True)
            sys.exit(EXIT_USAGE)
    report = _validated(path, env)
    state_root = state_dir or report.repo.repo_root / ".stackward"
    options = _policy(**policy, required=False)
    environments = promotion_order(report.environments)
    if reviewed is not None:
        environments = [e for e in environments if reviewed.environment(e.name) is not None]

    for environment in environments:

        def gate(planned: Planned, environment: Any = environment) -> None:
            click.echo(render_environment(planned.plan))
            found = plan_policy_findings([environment], report.repo, {environment.name: planned}, options)
            blocking = [d for d in found if d.is_error]
            if blocking:
                raise ApplyRefused(
                    f"{environment.name}: denied by policy, nothing was applied:\n"
                    + "\n".join(render_diagnostic(d) for d in blocking)
                )

        try:
            result = apply_environment(
                environment,
                report.repo,
                state_root,
                reviewed=reviewed.environment(environment.name) if reviewed else None,
                lock_timeout=lock_timeout,
                progress=_progress,
                check=gate,
            )
        except (ApplyRefused, LockError, TerraformError, ZenmlError) as exc:
            click.echo(click.style(str(exc), fg="red"), err=True)
            sys.exit(EXIT_FINDINGS)
        if result.changed:
            click.echo(
                f"{environment.name}: applied {len(result.applied)} change(s) (ledger entry {result.apply_id})"
            )
        else:
            click.echo(f"{environment.name}: no changes")


@main.command()
@click.argument("env_a")
@click.argument("env_b")
@click.argument("path", type=click.Path(path_type=Path), default="environments", required=False)
def diff(env_a: str, env_b: str, path: Path) -> None:
    """How two environments' specs differ (e.g. staging and prod), names compared without their prefix."""
    from stackward.environment_diff import diff_environments

    report = _validated(path, None)
    by_name = {e.name: e for e in report.environments}
    for name in (env_a, env_b):
        if name not in by_name:
            click.echo(f"stackward: no environment named {name!r}", err=True)
            sys.exit(EXIT_USAGE)
    lines = diff_environments(by_name[env_a], by_name[env_b])
    click.echo("\n".join(lines) if lines else f"{env_a} and {env_b} declare the same resources and settings")


@main.command()
@click.argument("env")
@click.argument("path", type=click.Path(path_type=Path), default="environments", required=False)
@click.option("--state-dir", type=click.Path(path_type=Path, file_okay=False), envvar="STACKWARD_STATE_DIR")
@click.option("--force", is_flag=True, help="Release it even if the holder may still be running.")
def unlock(env: str, path: Path, state_dir: Path | None, force: bool) -> None:
    """Release an environment's lock left behind by a run that was killed."""
    from stackward.resolve import discover
    from stackward.state import EnvironmentState, LockError
    from stackward.state import unlock as release

    try:
        repo, _ = discover(path)
    except UsageError as exc:
        click.echo(f"stackward: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    try:
        click.echo(release(EnvironmentState(state_dir or repo.repo_root / ".stackward", env), force=force))
    except LockError as exc:
        click.echo(f"stackward: {exc}", err=True)
        sys.exit(EXIT_FINDINGS)


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
