"""The pull-request comment and the job summary, rendered from the action's outcome."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from stackward.diagnostics import Diagnostic, Severity
from stackward.github import templates as t
from stackward.github.comment import CommentState
from stackward.output.plan_text import format_value
from stackward.plan.changes import Action, EnvironmentPlan

LIMIT = 60_000  # GitHub refuses bodies over 65,536 characters; keep a margin


@dataclass
class EnvironmentOutcome:
    """One environment's result in a pull request."""

    name: str
    validation_errors: int = 0
    deny: int = 0
    warn: int = 0
    plan: EnvironmentPlan | None = None
    error: str = ""

    @property
    def passed(self) -> bool:
        return not (self.validation_errors or self.deny or self.error or (self.plan and self.plan.conflicts))

    @property
    def status(self) -> str:
        if self.error:
            return "❌ could not plan"
        if self.validation_errors:
            return "❌ invalid specs"
        if self.deny:
            return "❌ denied by policy"
        if self.plan is not None and self.plan.conflicts:
            return "❌ name conflicts"
        if self.plan is None:
            return "✅ checked (not planned)"
        return "✅ ready to apply" if self.plan.has_changes else "✅ no changes"

    @property
    def summary(self) -> str:
        return self.plan.summary() if self.plan is not None else "—"

    def description(self) -> str:
        """One line for the commit status."""
        if self.error:
            return "could not plan: " + self.error.splitlines()[0][:100]
        if self.validation_errors:
            return f"{self.validation_errors} validation error(s)"
        if self.deny:
            return f"{self.deny} policy violation(s)"
        if self.plan is not None and self.plan.conflicts:
            return f"{len(self.plan.conflicts)} name conflict(s) with unowned resources"
        if self.plan is None:
            return "specs and policies pass (not planned)"
        return f"{self.plan.summary()}, policies pass"


@dataclass
class PullRequestOutcome:
    head_sha: str
    environments: list[EnvironmentOutcome]
    findings: list[Diagnostic] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    blob_url: str = ""  # {server}/{repo}/blob/{sha}
    run_url: str = ""
    repo_root: str = ""

    @property
    def passed(self) -> bool:
        return all(e.passed for e in self.environments)

    def state(self, planned: bool = True) -> CommentState:
        return CommentState(
            self.head_sha,
            {e.name: e.plan.digest() for e in self.environments if e.plan is not None},
            planned=planned,
        )


def _where(diag: Diagnostic, outcome: PullRequestOutcome) -> str:
    loc = diag.location
    if loc is None:
        return ""
    path = os.path.relpath(os.path.abspath(loc.file), outcome.repo_root) if outcome.repo_root else loc.file
    label = f"{path}:{loc.line}" if loc.line else path
    if outcome.blob_url and not path.startswith(".."):
        anchor = f"#L{loc.line}" if loc.line else ""
        return f"[`{label}`]({outcome.blob_url}/{path}{anchor})"
    return f"`{label}`"


def _finding(diag: Diagnostic, outcome: PullRequestOutcome) -> str:
    icon = {Severity.ERROR: "❌", Severity.WARNING: "⚠️"}.get(diag.severity, "ℹ️")
    hint = f" — {diag.hint}" if diag.hint else ""
    return t.FINDING.substitute(
        icon=icon, where=_where(diag, outcome), code=diag.code, message=diag.message, hint=hint
    )


_DIFF_SIGNS = {Action.CREATE: "+", Action.DELETE: "-", Action.UPDATE: "!", Action.REPLACE: "!"}


def _changes(plan: EnvironmentPlan) -> str:
    """The changes as a `diff` block: the first column colours the line (+ green, - red,
    ! orange), the action is said once, values are JSON."""
    lines = []
    for change in plan.changes:
        if change.action is Action.NO_OP:
            continue
        why = f": {change.reason}" if change.reason else ""
        lines.append(f"{_DIFF_SIGNS.get(change.action, '#')} {change.address}  # {change.action.value}{why}")
        for f in change.fields:
            lines.append(
                f"    {f.path}: {format_value(f.before)} -> {format_value(f.after)}"
                if change.action is not Action.CREATE
                else f"    {f.path}: {format_value(f.after)}"
            )
    return "\n".join(lines)


def _sections(outcome: PullRequestOutcome, detail: str, title: str, closed: bool) -> list[str]:
    out = [t.HEADER.substitute(title=title, short_sha=outcome.head_sha[:7])]
    if closed:
        out.append(t.CLOSED)
    out += [t.NOTE.substitute(text=note) for note in outcome.notes]
    rows = [
        t.TABLE_ROW.substitute(
            env=e.name,
            validation="❌" if e.validation_errors else "✅",
            deny=e.deny,
            warn=e.warn,
            summary=e.summary,
            status=e.status,
        )
        for e in outcome.environments
    ]
    out.append("\n".join([t.TABLE_HEAD, *rows]) if rows else t.NO_ENVIRONMENTS)
    errors = [
        t.PLAN_ERROR.substitute(env=e.name, error=" ".join(e.error.split())[:1000])
        for e in outcome.environments
        if e.error
    ]
    if errors:
        out.append("\n".join(errors))
    destroyed = [(e.name, c) for e in outcome.environments if e.plan for c in e.plan.destructive]
    if destroyed:
        items = "\n".join(
            t.DESTROY_ITEM.substitute(
                env=env, action=c.action.value, address=c.address, reason=f" ({c.reason})" if c.reason else ""
            )
            for env, c in destroyed
        )
        out.append(t.DESTROY_WARNING.substitute(count=len(destroyed), items=items))
    summary_url = outcome.run_url or "#"
    if outcome.findings and detail != "short":
        shown = outcome.findings if detail == "full" else outcome.findings[:20]
        lines = [t.FINDINGS_HEAD, *(_finding(d, outcome) for d in shown)]
        if len(shown) < len(outcome.findings):
            lines.append(
                t.FINDINGS_MORE.substitute(count=len(outcome.findings) - len(shown), summary_url=summary_url)
            )
        out.append("\n".join(lines))
    changed = [e for e in outcome.environments if e.plan is not None and e.plan.has_changes]
    if detail == "full":
        out += [
            t.DETAILS.substitute(env=e.name, summary=e.summary, changes=_changes(e.plan)) for e in changed
        ]
    elif changed:
        out.append(t.DETAILS_OMITTED.substitute(summary_url=summary_url))
    unchanged = [
        e.name for e in outcome.environments if e.plan is not None and not e.plan.has_changes and not e.error
    ]
    if unchanged:
        out.append(t.NO_CHANGES.substitute(envs=", ".join(unchanged)))
    out.append(t.FOOTER.substitute(sha=outcome.head_sha, run_url=outcome.run_url or "#"))
    return out


def comment_bodies(outcome: PullRequestOutcome, state: CommentState, title: str = "plan") -> Iterator[str]:
    """The comment, from fullest to shortest; each fits GitHub's limit or is skipped."""
    for detail in ("full", "medium", "short"):
        truncated = detail != "full"
        body = replace(state, truncated=truncated).render(
            "\n\n".join(_sections(outcome, detail, title, state.closed))
        )
        if len(body) <= LIMIT:
            yield body


def job_summary(outcome: PullRequestOutcome, title: str = "plan") -> str:
    """The full report for the workflow run's summary page (no size limit to respect there)."""
    return "\n\n".join(_sections(outcome, "full", title, False)) + "\n"


@dataclass(frozen=True)
class ApplyRow:
    """One environment's line in the apply report."""

    environment: str
    result: str
    summary: str
    detail: str


def apply_comment(sha: str, rows: list[ApplyRow], run_url: str) -> str:
    """The apply report posted on the merged pull request (and in the job summary)."""
    table = "\n".join(
        [
            t.APPLY_TABLE_HEAD,
            *(
                t.APPLY_ROW.substitute(env=r.environment, result=r.result, summary=r.summary, detail=r.detail)
                for r in rows
            ),
        ]
    )
    return "\n\n".join(
        [t.APPLY_HEAD.substitute(short_sha=sha[:7]), table, f"<sub>[run]({run_url or '#'})</sub>"]
    )
