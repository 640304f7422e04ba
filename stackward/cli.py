"""The `stackward` command line: each command binds its options to the settings and calls the
pipeline (stackward.pipeline); what it prints is rendered by stackward.output. Exit codes:
0 clean, 1 findings, 2 usage, 3 could not run (stackward.errors).

Over 300 lines because it holds every command's option declarations, which are long and
read best side by side; no command does more than bind, call and print.
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from stackward.errors import EXIT_FINDINGS, SpecsInvalid, StackwardError, UsageError
from stackward.secrets import TOKEN_VARIABLES, Scrubber, scrubbed_output
from stackward.settings import Settings
from stackward.spec.schema import KINDS, bundle, kind_schema

if TYPE_CHECKING:
    from stackward.pipeline import Pipeline
    from stackward.plan.changes import Plan


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


def _fail(exc: StackwardError) -> NoReturn:
    """A user's error, printed at the edge: the findings it carries, then its message."""
    if isinstance(exc, SpecsInvalid):
        from stackward.output.human import render_diagnostic

        for diag in exc.findings:
            click.echo(render_diagnostic(diag))
        click.echo(click.style(f"stackward: {exc}", fg="red", bold=True), err=True)
    else:
        click.echo(click.style(f"stackward: {exc}", fg="red"), err=True)
    sys.exit(exc.exit_code)


_SCRUB = "stackward.scrub"  # the command's scrubber, in the click context


class _Guarded(click.Command):
    """A command whose StackwardErrors end it with their exit code and message, no traceback,
    and whose every printed line goes through the scrubber (secret values hidden)."""

    def invoke(self, ctx: click.Context) -> Any:
        scrub = ctx.meta.setdefault(_SCRUB, Scrubber(os.environ.get(name) for name in TOKEN_VARIABLES))
        with scrubbed_output(scrub):
            try:
                return super().invoke(ctx)
            except StackwardError as exc:
                _fail(exc)
            except (click.ClickException, click.exceptions.Exit, click.Abort):
                raise
            except Exception:  # a bug: its traceback, but through the scrubber too
                traceback.print_exc()
                sys.exit(EXIT_FINDINGS)


def _command(group: click.Group, name: str | None = None) -> Callable[[Callable], click.Command]:
    return group.command(name, cls=_Guarded)


def _path_argument(command: Callable) -> Callable:
    return click.argument("path", type=click.Path(path_type=Path), required=False)(command)


def _check_options(command: Callable) -> Callable:
    """PATH, --env and --format, shared by the commands that check specs. Their report renders
    in every format of stackward.output (its modules load only when used); `plan` prints plans,
    in human text or JSON (`github` prints the human text)."""
    from stackward.output import FORMATS, USES

    formats = ["human", "json", "github"] if command.__name__ == "plan" else list(FORMATS)
    command = click.option(
        "--format",
        "fmt",
        type=click.Choice(formats),
        default="human",
        show_default=True,
        help=", ".join(f"{name} for {USES[name]}" for name in formats) + ".",
    )(command)
    command = click.option("--env", "env", metavar="NAME", help="Only this environment.")(command)
    return _path_argument(command)


def _policy_options(command: Callable) -> Callable:
    """Where policies come from and which engine evaluates them."""
    options = [
        click.option(
            "--policies",
            type=click.Path(path_type=Path),
            help="Policies folder [STACKWARD_POLICIES]. Default: policies/ at the repository root.",
        ),
        click.option(
            "--policies-ref",
            metavar="REF",
            help="Read the policies as they are at this git ref (a PR's base branch).",
        ),
        click.option(
            "--namespace",
            "policy_namespace",
            multiple=True,
            callback=lambda _ctx, _param, value: list(value) or None,
            help="Rego package prefix whose deny/warn rules are evaluated; repeatable "
            "[STACKWARD_POLICY_NAMESPACE, comma-separated]. Default: stackward and main.",
        ),
        click.option(
            "--all-namespaces",
            "policy_all_namespaces",
            is_flag=True,
            default=None,
            help="Evaluate the deny/warn rules of every package, as conftest's --all-namespaces "
            "[STACKWARD_POLICY_ALL_NAMESPACES].",
        ),
        click.option(
            "--opa-url",
            help="Evaluate on this OPA server (token from STACKWARD_OPA_TOKEN) [STACKWARD_OPA_URL]. "
            "Default: the embedded engine.",
        ),
        click.option(
            "--opa-preloaded",
            is_flag=True,
            default=None,
            help="The OPA server already has the policies (a bundle): query only, upload nothing.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _state_options(command: Callable) -> Callable:
    command = click.option(
        "--verify-connectors",
        is_flag=True,
        default=None,
        help="Verify every service connector with ZenML at plan time (needs cloud access); a failure "
        "blocks the apply [STACKWARD_VERIFY_CONNECTORS]. Per connector: spec.verify: true.",
    )(command)
    command = click.option(
        "--allow-ephemeral-state",
        is_flag=True,
        default=None,
        help="Apply on a CI runner although state would be files the job loses (demos) "
        "[STACKWARD_ALLOW_EPHEMERAL_STATE].",
    )(command)
    command = click.option(
        "--skip-promotion-gate",
        is_flag=True,
        default=None,
        help="Apply although the environment promoted from has not applied this revision; "
        "recorded in the ledger with who did it [STACKWARD_SKIP_PROMOTION_GATE].",
    )(command)
    command = click.option(
        "--state-url",
        help="Keep locks, the ledger and applied revisions in this PostgreSQL database "
        "[STACKWARD_STATE_URL]. Default: files in the state folder.",
    )(command)
    command = click.option(
        "--lock-timeout",
        type=float,
        help="Seconds to wait for an environment held by another run [STACKWARD_LOCK_TIMEOUT]. Default: 300.",
    )(command)
    return click.option(
        "--state-dir",
        type=click.Path(path_type=Path, file_okay=False),
        help="Where per-environment state lives [STACKWARD_STATE_DIR]. "
        "Default: .stackward/ at the repository root.",
    )(command)


def _pipeline(path: Path | None, **given: Any) -> Pipeline:
    """The pipeline with the settings: defaults, STACKWARD_* variables, then these options."""
    from stackward.pipeline import Pipeline

    given.pop("policies_ref", None)
    scrub = click.get_current_context().meta[_SCRUB]
    return Pipeline(
        Settings.load(path=path, **given), progress=_progress, scrub=scrub, actor="stackward (CLI)"
    )


def _progress(message: str) -> None:
    click.echo(click.style(f"… {message}", dim=True), err=True)


def _report(path: Path | None, env: str | None, fmt: str, required: bool | None, **given: Any) -> None:
    """Validate, then (unless `required` is None) the policy gate; print in `fmt`, exit."""
    from stackward.output import FORMATS

    pipeline = _pipeline(path, **given)
    policy = None
    if required is not None:
        policy = pipeline.policy_options(required=required, base_ref=given.get("policies_ref"))
    report = pipeline.validate(env, policy)
    click.echo(FORMATS[fmt](report))
    sys.exit(0 if report.ok else EXIT_FINDINGS)


@_command(main)
@_check_options
@click.option("--no-policy", is_flag=True, help="Skip the policy gate.")
@_policy_options
def validate(path: Path | None, env: str | None, fmt: str, no_policy: bool, **policy: Any) -> None:
    """Check the specs under PATH (default: environments/) and report every problem,
    then evaluate the policies on the environments that are valid."""
    _report(path, env, fmt, None if no_policy else False, **policy)


@main.group()
def policy() -> None:
    """The policy gate: OPA/Rego policies on specs and plans."""


@_command(policy, "check")
@_check_options
@_policy_options
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Evaluate the rules on Terraform plans too: FILE is `terraform show -json` output for --env.",
)
def policy_check(path: Path | None, env: str | None, fmt: str, plan_file: Path | None, **policy: Any) -> None:
    """Validate PATH, then evaluate the policies (a missing policies folder is an error). Rules
    that read the plan are evaluated with --plan, else reported as not evaluated."""
    if plan_file is None:
        _report(path, env, fmt, True, **policy)
        return
    from stackward.output import FORMATS
    from stackward.policy.check import read_plan_file

    if not env:
        raise UsageError("--plan needs --env: a Terraform plan is one environment's")
    raw, changes = read_plan_file(plan_file)
    pipeline = _pipeline(path, **policy)
    options = pipeline.policy_options(
        required=True,
        base_ref=policy.get("policies_ref"),
        terraform_plans={env: raw},
        changes={env: changes},
        plan_file=str(plan_file),
    )
    report = pipeline.validate(env, options)
    click.echo(FORMATS[fmt](report))
    sys.exit(0 if report.ok else EXIT_FINDINGS)


@_command(policy, "test")
@click.option(
    "--policies",
    type=click.Path(path_type=Path, file_okay=False),
    default="policies",
    show_default=True,
    help="Policies folder with *_test.rego files (and data documents: .json, .yaml).",
)
def policy_test(policies: Path) -> None:
    """Run the Rego unit tests (rules named test_*) and print pass/fail per test. Rego v0 and
    v1 files, and the folder's data documents (test data and mocks too) as `data`."""
    from stackward.output.human import render_diagnostic
    from stackward.policy.embedded import EmbeddedEngine
    from stackward.policy.sources import from_folder

    files = from_folder(policies)
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


@_command(main)
@_check_options
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Write the plan as JSON here.")
@_state_options
@_policy_options
def plan(path: Path | None, env: str | None, fmt: str, out: Path | None, **given: Any) -> None:
    """Show what applying would change in each environment (ZenML and Terraform)."""
    from stackward.output.human import render_diagnostic
    from stackward.output.plan_text import render

    pipeline = _pipeline(path, **given)
    report = pipeline.checked(env)
    outcome = pipeline.plan(report, report.environments, policies_ref=given.get("policies_ref"))
    result = outcome.plan
    if out is not None:
        out.write_text(pipeline.scrub(result.to_json()))
    if fmt == "json":
        click.echo(result.to_json())
    else:
        click.echo(render(result.environments, result.digest))
        for diag in outcome.findings:
            click.echo(render_diagnostic(diag))
        if out is not None:
            click.echo(f"plan written to {out}; apply exactly this plan with: stackward apply --plan {out}")
    sys.exit(0 if outcome.ok else EXIT_FINDINGS)


@_command(main)
@_path_argument
@click.option("--env", "env", metavar="NAME", help="Apply only this environment.")
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Apply only if planning again gives exactly this reviewed plan.",
)
@_state_options
@_policy_options
def apply(path: Path | None, env: str | None, plan_file: Path | None, **given: Any) -> None:
    """Apply the environments in promotion order (dev -> staging -> prod), stopping at the first failure."""
    from stackward.output.plan_text import render_environment

    reviewed = _reviewed_plan(plan_file) if plan_file is not None else None
    pipeline = _pipeline(path, **given)
    report = pipeline.checked(env)
    environments = report.environments
    if reviewed is not None:
        environments = [e for e in environments if reviewed.environment(e.name) is not None]
        if not environments:
            covered = ", ".join(e.environment for e in reviewed.environments) or "no environment"
            asked = ", ".join(e.name for e in report.environments)
            raise UsageError(
                f"{plan_file} is a plan of {covered}, not of {asked}; nothing was applied\n"
                "  hint: plan the environment to apply: stackward plan --env NAME --out FILE"
            )
    held_to = {e.name: reviewed.environment(e.name) if reviewed else None for e in environments}
    shown = lambda planned: click.echo(render_environment(planned.plan))  # noqa: E731
    applying = pipeline.apply(
        report, environments, held_to, on_plan=shown, policies_ref=given.get("policies_ref")
    )
    for applied in applying:
        if applied.error is not None:
            raise applied.error
        result = applied.result
        if result is not None and result.changed:
            click.echo(
                f"{applied.environment}: applied {len(result.applied)} change(s) (ledger entry {result.apply_id})"
            )
        elif result is not None:
            click.echo(f"{applied.environment}: no changes")


def _reviewed_plan(plan_file: Path) -> Plan:
    from stackward.plan.changes import Plan

    try:
        return Plan.from_json(plan_file.read_text())
    except ValueError as exc:  # not JSON, not UTF-8, or not a plan's shape
        raise UsageError(
            f"{plan_file}: not a stackward plan: {exc}\n  hint: write one with: stackward plan --out FILE"
        ) from None


@_command(main)
@click.argument("env_a")
@click.argument("env_b")
@_path_argument
@click.option(
    "--live",
    is_flag=True,
    help="Compare what the two ZenML stores hold, not the specs (drift the specs hide).",
)
@click.option("--state-dir", type=click.Path(path_type=Path, file_okay=False), help="[STACKWARD_STATE_DIR]")
def diff(env_a: str, env_b: str, path: Path | None, live: bool, state_dir: Path | None) -> None:
    """How two environments' specs differ (e.g. staging and prod), names compared without their
    prefix; with --live, how what their ZenML stores hold differs."""
    from stackward.spec.diff import diff_environments, diff_registered

    pipeline = _pipeline(path, state_dir=state_dir)
    report = pipeline.checked()
    a, b = pipeline.select(report, [env_a, env_b])
    if not live:
        lines = diff_environments(a, b)
        click.echo(
            "\n".join(lines) if lines else f"{env_a} and {env_b} declare the same resources and settings"
        )
        return
    registered = pipeline.registered(report, [a, b])
    lines = diff_registered(env_a, registered[env_a], env_b, registered[env_b])
    click.echo("\n".join(lines) if lines else f"{env_a} and {env_b} have the same ZenML registrations")


@_command(main)
@click.argument("env")
@_path_argument
@click.option("--state-dir", type=click.Path(path_type=Path, file_okay=False), help="[STACKWARD_STATE_DIR]")
@click.option("--state-url", help="The PostgreSQL state store [STACKWARD_STATE_URL].")
@click.option(
    "--force",
    is_flag=True,
    help="Take a held lock away: the run holding it stops before its next change (recorded as interrupted).",
)
def unlock(env: str, path: Path | None, state_dir: Path | None, state_url: str | None, force: bool) -> None:
    """Clear what a killed run left of ENV's lock (the lock itself frees itself when its
    holder dies); with --force, take a held lock away."""
    from stackward.spec.discover import discover, is_environment_name
    from stackward.spec.resolve import Resolver
    from stackward.state import open_store
    from stackward.state import state_url as url_of

    rule = bundle()["$defs"]["envName"]
    if not is_environment_name(env) or not re.fullmatch(rule["pattern"], env):
        raise UsageError(f"{env!r} is not an environment name ({rule['x-hint']}); nothing was unlocked")
    settings = Settings.load(path=path, state_dir=state_dir, state_url=state_url)
    repo, _ = discover(settings.path)
    url = (
        url_of(Resolver(repo).resolve(env), settings.state_url)
        if env in repo.environments
        else settings.state_url
    )
    store = open_store(url, settings.state_root(repo.repo_root))
    click.echo(store.release(env, force))


@_command(main)
@click.argument("env")
@_path_argument
@click.option("--state-dir", type=click.Path(path_type=Path, file_okay=False), help="[STACKWARD_STATE_DIR]")
@click.option("--state-url", help="The PostgreSQL state store [STACKWARD_STATE_URL].")
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human", show_default=True)
def history(env: str, path: Path | None, state_dir: Path | None, state_url: str | None, fmt: str) -> None:
    """Who applied which revision and plan hash of ENV, when, with what result (the ledger)."""
    from stackward.state.ledger import Ledger

    pipeline = _pipeline(path, state_dir=state_dir, state_url=state_url)
    report = pipeline.validate(env)
    (environment,) = report.environments
    applies = Ledger(pipeline.store(report, environment), env).applies()
    if fmt == "json":
        click.echo(json.dumps(applies, indent=2))
        return
    if not applies:
        click.echo(f"{env}: nothing applied yet ({pipeline.store(report, environment).description})")
    for a in applies:
        click.echo(
            f"{a.get('started', '?')}  {(a.get('revision') or '-')[:12]:12}  {(a.get('plan_hash') or '')[:12]:12}  "
            f"{a['result']:11}  {len(a.get('done', []))}/{len(a.get('planned', []))} done  {a.get('by', '')}"
            + (f"  {a['error']}" if a.get("error") else "")
        )


@_command(main, "import")
@click.argument("env")
@_path_argument
@click.option(
    "--stack", "stacks", multiple=True, metavar="NAME", help="Only this stack and what it uses; repeatable."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write the files into this folder. Default: the environment's own folder.",
)
@click.option(
    "--include-owned",
    is_flag=True,
    help="Also import what stackward already owns in ENV (when its specs were lost).",
)
@click.option(
    "--adopt",
    is_flag=True,
    help="Write `adopt: true` in each document: the plan then shows the adoption of what was registered by hand.",
)
@click.option("--state-dir", type=click.Path(path_type=Path, file_okay=False), help="[STACKWARD_STATE_DIR]")
def import_(
    env: str,
    path: Path | None,
    stacks: tuple[str, ...],
    out: Path | None,
    include_owned: bool,
    adopt: bool,
    state_dir: Path | None,
) -> None:
    """Write specs for the connectors, components, stacks and secrets that ENV's ZenML store
    already holds (registered by hand or in the dashboard), one file per kind, never over an
    existing file. It only reads the store. Secret values stay in ZenML: the specs reference
    them (fromEnv), and the README.md written beside them lists the variables to set."""
    from datetime import UTC, datetime

    from stackward.diagnostics import display_path
    from stackward.output.human import render_diagnostic
    from stackward.plan.state import EnvironmentState
    from stackward.spec import importing
    from stackward.zenml.executor import ZenmlExecutor

    pipeline = _pipeline(path, state_dir=state_dir)
    report = pipeline.validate(env)
    if not report.ok:
        raise SpecsInvalid(
            f"{len(report.errors)} validation error(s) in {env}; nothing was imported", report.diagnostics
        )
    (environment,) = report.environments
    state = EnvironmentState(pipeline.settings.state_root(report.repo.repo_root), env)
    if environment.settings.embedded and not state.zenml_database.exists():
        raise UsageError(
            f"{env}: there is no ZenML store at {display_path(state.zenml_config)}; nothing was imported\n"
            "  hint: give --state-dir the state folder whose <env>/zenml holds the store"
        )
    folder = out or environment.folder
    inside = folder.resolve().is_relative_to(environment.folder.resolve())  # read as part of ENV
    with ZenmlExecutor(environment, state, "plan") as zenml:
        registrations = zenml.read()
        held = zenml.compare_secrets(importing.secret_probes(registrations, pipeline.catalog))
    imported = importing.import_specs(
        registrations,
        pipeline.catalog,
        env=env,
        env_labels=environment.settings.labels,
        declared={(r.kind, r.name) for r in environment.resources} if inside else (),
        stacks=stacks,
        include_owned=include_owned,
        connector_secrets=importing.held_secret_keys(held),
        adopt=adopt,
    )
    if environment.settings.embedded:
        origin = f"the embedded ZenML store of environment {env} ({display_path(state.zenml_config)})"
    else:
        origin = f"the ZenML server {environment.settings.zenml_url} (environment {env})"
    options = [*(f"--stack {s}" for s in stacks), *(["--adopt"] if adopt else [])]
    command = " ".join(["stackward import", env, *options])
    when = datetime.now(UTC).isoformat(timespec="seconds")
    files = importing.render(imported, origin=origin, when=when, command=command)
    taken = [display_path(folder / name) for name in files if (folder / name).exists()]
    if taken:
        raise UsageError(
            f"{', '.join(taken)} already exist{'s' if len(taken) == 1 else ''}; nothing was written\n"
            "  hint: move it away, or write into another folder with --out FOLDER"
        )
    for skipped in imported.skipped:
        click.echo(f"not imported: {skipped.kind} {skipped.name}: {skipped.reason}")
    if not files:
        click.echo(f"{env}: nothing to import; nothing was written")
        return
    folder.mkdir(parents=True, exist_ok=True)
    kinds = {name: kind for kind, name in importing.FILES.items()}
    for name, text in files.items():
        with (folder / name).open("x") as file:  # never over a file made meanwhile
            file.write(pipeline.scrub(text))
        documents = imported.documents.get(kinds.get(name, ""), [])
        names = ", ".join(d["metadata"]["name"] for d in documents)
        click.echo(f"wrote {display_path(folder / name)}" + (f": {names}" if names else ""))
    for variable in imported.variables:
        click.echo(f"set {variable.name}: {variable.kind} {variable.resource}, secret {variable.key}")
    if inside:
        check = pipeline.validate(env)
        for diag in check.diagnostics:
            click.echo(render_diagnostic(diag))
        if not check.ok:
            click.echo(f"{env}: the imported specs do not validate yet: fix what is listed above")
            sys.exit(EXIT_FINDINGS)
        click.echo(f"{env}: the specs validate")
    click.echo(f"next: {importing.next_step(env, adopt)}")


@_command(main)
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
