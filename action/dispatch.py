"""workflow_dispatch and schedule: plan (drift) or apply the named environments on demand,
through the same validation, secret masking and policy gate as every other event."""

from __future__ import annotations

import click

from action import deploy
from action.context import Run
from stackward.errors import SpecsInvalid, UsageError
from stackward.github.comment_body import plan_summary
from stackward.output.github import annotation, stop_commands
from stackward.output.plan_text import render as render_plans


def handle(run: Run) -> int:
    inputs = run.ctx.event.get("inputs") or {}
    names = [n.strip() for n in (inputs.get("environment") or "").split(",") if n.strip()]
    names = names or run.settings.environments
    mode = inputs.get("mode") or run.settings.mode  # auto and validate plan: dispatch is for drift
    report = run.validated()
    if not names:
        known = ", ".join(e.name for e in report.environments)
        raise UsageError(f"{run.ctx.event_name} needs the input `environment` (known: {known})")
    environments = run.pipeline.select(report, names)
    run.output(environments=",".join(e.name for e in environments))
    invalid = [d for d in report.errors if set(d.environments) & set(names)]
    if invalid:
        for diag in invalid:
            click.echo(annotation(diag))
        raise SpecsInvalid(
            f"nothing planned or applied: the specs of {', '.join(names)} do not validate", invalid
        )
    if mode == "apply":
        return deploy.apply(run, report, run.ctx.sha, None, dict.fromkeys(e.name for e in environments))
    outcome = run.pipeline.plan(report, environments)
    run.found(outcome.findings)
    plan = outcome.plan
    run.write_plan(plan, report)
    plans = plan.environments
    text = render_plans(plans)
    run.say(stop_commands(text))
    for diag in outcome.findings:
        click.echo(annotation(diag))
    run.summary(plan_summary(text, run.outputs["plan-file"]))
    run.output(
        **{
            "has-changes": str(any(p.has_changes for p in plans)).lower(),
            "policy-passed": str(not any(d.is_error for d in outcome.findings)).lower(),
        }
    )
    return 0 if outcome.ok else 1
