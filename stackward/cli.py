"""The `stackward` command line. Exit codes: 0 clean, 1 findings, 2 usage, 3 could not run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

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


@main.command()
@click.argument("path", type=click.Path(path_type=Path), default="environments", required=False)
@click.option("--env", "env", metavar="NAME", help="Validate only this environment.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["human", "json", "github"]),
    default="human",
    show_default=True,
    help="human for terminals, json for tools, github for workflow annotations.",
)
def validate(path: Path, env: str | None, fmt: str) -> None:
    """Check the specs under PATH (default: environments/) and report every problem."""
    from stackward.output import FORMATS
    from stackward.validation import validate as run_validation

    try:
        report = run_validation(path, env)
    except UsageError as exc:
        click.echo(f"stackward: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except CatalogError as exc:
        click.echo(f"stackward: {exc}", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    click.echo(FORMATS[fmt](report))
    sys.exit(0 if report.ok else EXIT_FINDINGS)


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
