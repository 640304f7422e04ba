"""The pull-request comment and the job summary, rendered from the action's outcome.

User-controlled text (names, messages, errors, notes, plan values) is escaped for where it lands
by `stackward.output.markdown`; lists are cut to fit, so the shortest comment fits GitHub's limit
and the job summary stays under 1 MiB whatever the input.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import click

from stackward.diagnostics import Diagnostic, Severity
from stackward.github import templates as t
from stackward.github.comment import CommentState
from stackward.output import markdown as md
from stackward.output.plan_text import diff_lines
from stackward.plan.changes import EnvironmentPlan

LIMIT = 60_000  # GitHub refuses bodies over 65,536 characters; keep a margin
SUMMARY_LIMIT = 1_000_000  # bytes: GitHub refuses a step's summary over 1 MiB (1,048,576)
DESTROYS_SHOWN = 50  # resources to be destroyed or replaced that the comment lists by name
NAME_LIMIT = 100  # characters kept of a name (environment, policy code)
TEXT_LIMIT = 1000  # characters kept of a message, an error, a note, an address


_STATUS = {
    "could not plan": "❌ could not plan",
    "invalid": "❌ invalid specs",
    "denied": "❌ denied by policy",
    "in conflict": "❌ name conflicts",
    "checked": "✅ checked (not planned)",
}


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
    def verdict(self) -> str:
        """One word for how the environment ended: could not plan, invalid, denied, in
        conflict, checked (not planned), ready."""
        if self.error:
            return "could not plan"
        if self.validation_errors:
            return "invalid"
        if self.deny:
            return "denied"
        if self.plan is not None and self.plan.conflicts:
            return "in conflict"
        return "checked" if self.plan is None else "ready"

    @property
    def status(self) -> str:
        if self.verdict == "ready":
            return "✅ ready to apply" if self.plan.has_changes else "✅ no changes"
        return _STATUS[self.verdict]

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
    label = md.code(md.shorten(f"{path}:{loc.line}" if loc.line else path, TEXT_LIMIT))
    if outcome.blob_url and not path.startswith(".."):
        anchor = f"#L{loc.line}" if loc.line else ""
        return f"[{label}]({outcome.blob_url}/{md.url_path(path)}{anchor})"
    return label


def _finding(diag: Diagnostic, outcome: PullRequestOutcome) -> str:
    icon = {Severity.ERROR: "❌", Severity.WARNING: "⚠️"}.get(diag.severity, "ℹ️")
    hint = f" — {md.inline(md.shorten(diag.hint, TEXT_LIMIT))}" if diag.hint else ""
    return t.FINDING.substitute(
        icon=icon,
        where=_where(diag, outcome),
        code=md.text(md.shorten(diag.code, NAME_LIMIT)),
        message=md.inline(md.shorten(diag.message, TEXT_LIMIT)),
        hint=hint,
    )


def _name(name: str) -> str:
    return md.text(md.shorten(name, NAME_LIMIT))


def _details(env: EnvironmentOutcome, plan: EnvironmentPlan, where: str) -> md.Shortenable:
    lines = [md.verbatim(line) for line in diff_lines(plan, TEXT_LIMIT)]
    fence, name = md.fence(lines), md.html(md.shorten(env.name, NAME_LIMIT))

    def render(kept: Sequence[str], count: int) -> str:
        more = "\n\n" + t.DIFF_MORE.substitute(count=count, where=where) if count else ""
        changes = "\n".join(kept)
        return t.DETAILS.substitute(env=name, summary=env.summary, fence=fence, changes=changes, more=more)

    return md.Shortenable(lines, render)


def _unchanged(kept: Sequence[str], count: int) -> str:
    names = ", ".join(kept)
    return t.NO_CHANGES.substitute(envs=t.NAMES_MORE.substitute(names=names, count=count) if count else names)


@dataclass(frozen=True)
class _Level:
    """How much one rendering lists (None: all), and where what it leaves out can be read."""

    findings: int | None
    destroys: int | None
    details: bool
    where: str  # for the plans' parts
    findings_where: str


def _sections(outcome: PullRequestOutcome, level: _Level, title: str, closed: bool) -> list[md.Block]:
    out: list[md.Block] = [t.HEADER.substitute(title=title, short_sha=md.code(outcome.head_sha[:7]))]
    if closed:
        out.append(t.CLOSED)
    notes = [t.NOTE.substitute(text=md.inline(md.shorten(note, TEXT_LIMIT))) for note in outcome.notes]
    out.append(md.listed(notes, t.NOTES_MORE, sep="\n\n"))
    rows = [
        t.TABLE_ROW.substitute(
            env=_name(e.name),
            validation="❌" if e.validation_errors else "✅",
            deny=e.deny,
            warn=e.warn,
            summary=e.summary,
            status=e.status,
        )
        for e in outcome.environments
    ]
    out.append(md.listed(rows, t.ROWS_MORE, level.where, t.TABLE_HEAD) if rows else t.NO_ENVIRONMENTS)
    errors = [
        t.PLAN_ERROR.substitute(
            env=_name(e.name), error=md.inline(md.shorten(" ".join(e.error.split()), TEXT_LIMIT))
        )
        for e in outcome.environments
        if e.error
    ]
    out.append(md.listed(errors, t.LIST_MORE, level.where))
    warnings = [
        t.PLAN_WARNING.substitute(
            env=_name(e.name), warning=md.inline(md.shorten(" ".join(w.split()), TEXT_LIMIT))
        )
        for e in outcome.environments
        if e.plan is not None
        for w in e.plan.warnings
    ]
    out.append(md.listed(warnings, t.LIST_MORE, level.where))
    destroyed = [(e.name, c) for e in outcome.environments if e.plan for c in e.plan.destructive]
    if destroyed:
        items = [
            t.DESTROY_ITEM.substitute(
                env=md.code(md.shorten(env, NAME_LIMIT)),
                action=c.action.value,
                address=md.code(md.shorten(c.address, TEXT_LIMIT)),
                reason=f" ({md.text(md.shorten(c.reason, TEXT_LIMIT))})" if c.reason else "",
            )
            for env, c in destroyed[: level.destroys]
        ]
        head = t.DESTROY_WARNING.substitute(count=len(destroyed))
        out.append(md.listed(items, t.DESTROY_MORE, level.where, head, len(destroyed) - len(items)))
    if outcome.findings and level.findings != 0:
        items = [_finding(d, outcome) for d in outcome.findings[: level.findings]]
        left_out = len(outcome.findings) - len(items)
        out.append(md.listed(items, t.LIST_MORE, level.findings_where, t.FINDINGS_HEAD, left_out))
    changed = [(e, e.plan) for e in outcome.environments if e.plan is not None and e.plan.has_changes]
    if level.details:
        out += [_details(e, plan, level.where) for e, plan in changed]
    elif changed:
        out.append(t.DETAILS_OMITTED.substitute(where=level.where))
    unchanged = [
        e for e in outcome.environments if e.plan is not None and not e.plan.has_changes and not e.error
    ]
    if unchanged:
        out.append(md.Shortenable([_name(e.name) for e in unchanged], _unchanged, ", "))
    out.append(t.FOOTER.substitute(sha=md.text(outcome.head_sha), run_url=outcome.run_url or "#"))
    return out


def comment_bodies(outcome: PullRequestOutcome, state: CommentState, title: str = "plan") -> Iterator[str]:
    """The comment, fullest first: in full (every finding, the diffs) and medium (20 findings)
    when they fit GitHub's limit, then short (no findings), which always fits: its lists share
    the room left."""
    summary = t.WHERE_JOB_SUMMARY.substitute(url=outcome.run_url or "#")
    full = _Level(None, DESTROYS_SHOWN, True, summary, summary)
    for level in (full, _Level(20, DESTROYS_SHOWN, False, summary, summary)):
        body = replace(state, truncated=level is not full).render(
            md.join(_sections(outcome, level, title, state.closed))
        )
        if len(body) <= LIMIT:
            yield body
    state = replace(state, truncated=True)
    short = _sections(outcome, _Level(0, 10, False, summary, summary), title, state.closed)
    body = state.render(md.fit(short, LIMIT - len(state.render("")))[0])
    if len(body) <= LIMIT:
        yield body
    else:  # the marker alone is too long: record no plan, so that merging applies nothing
        too_many = t.TOO_MANY.substitute(count=len(state.plans), run_url=outcome.run_url or "#")
        yield replace(state, plans={}).render(too_many)


def _utf8(text: str) -> int:
    return len(text.encode())


def _plan_file(path: str) -> str:
    return t.WHERE_PLAN_FILE + (f" {md.code(path)}" if path else "")


def job_summary(outcome: PullRequestOutcome, title: str = "plan", plan_file: str = "") -> str:
    """The full report for the workflow run's summary page, shortened to stay under GitHub's
    1 MiB limit; what it leaves out is said to be in the plan file (`plan_file`: its path)."""
    where = _plan_file(plan_file)
    text = _summary(outcome, _Level(None, None, True, where, t.WHERE_LOG), title, plan_file)
    if _utf8(text) > SUMMARY_LIMIT - 1:  # the diffs' heads alone are too long: thousands of environments
        text = _summary(outcome, _Level(None, None, False, where, t.WHERE_LOG), title, plan_file)
    return text + "\n"


def _summary(outcome: PullRequestOutcome, level: _Level, title: str, plan_file: str) -> str:
    """The summary's sections fitted to its limit, with a notice first when it left items out."""
    sections = _sections(outcome, level, title, False)
    text, cut = md.fit(sections, SUMMARY_LIMIT - 1, _utf8)
    if not cut:
        return text
    planned = any(e.plan is not None for e in outcome.environments)
    path = f" {md.code(plan_file)}" if plan_file else ""
    notice = t.SHORTENED.substitute(plan=t.PLAN_FILE.substitute(path=path) if planned else "")
    return md.fit([sections[0], notice, *sections[1:]], SUMMARY_LIMIT - 1, _utf8)[0]


def plan_summary(plan_text: str, plan_file: str = "") -> str:
    """A dispatch's plan text (as `plan_text.render` writes it) for the job summary: in a code
    block none of its lines can close, shortened by lines to stay under GitHub's 1 MiB limit."""
    lines = [md.verbatim(line) for line in click.unstyle(plan_text).splitlines()]
    fence = md.fence(lines)

    def render(kept: Sequence[str], count: int) -> str:
        more = "\n\n" + t.DIFF_MORE.substitute(count=count, where=_plan_file(plan_file)) if count else ""
        return "\n".join([fence, *kept, fence]) + more

    return md.fit([md.Shortenable(lines, render)], SUMMARY_LIMIT - 1, _utf8)[0] + "\n"


@dataclass(frozen=True)
class ApplyRow:
    """One environment's line in the apply report."""

    environment: str
    result: str
    summary: str
    detail: str


def apply_comment(sha: str, rows: list[ApplyRow], run_url: str) -> str:
    """The apply report posted on the merged pull request (and in the job summary); its rows
    cut to fit a comment."""
    items = [
        t.APPLY_ROW.substitute(
            env=_name(r.environment),
            result=md.text(r.result),
            summary=md.text(r.summary),
            detail=md.inline(md.shorten(r.detail, TEXT_LIMIT)),
        )
        for r in rows
    ]
    table = md.listed(items, t.ROWS_MORE, t.WHERE_STATUSES, t.APPLY_TABLE_HEAD)
    blocks = [
        t.APPLY_HEAD.substitute(short_sha=sha[:7]),
        table,
        t.APPLY_FOOTER.substitute(run_url=run_url or "#"),
    ]
    return md.fit(blocks, LIMIT)[0]
