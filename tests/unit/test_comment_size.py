"""The plan comment always fits GitHub's 65,536 characters and the job summary stays under its
1 MiB per step, whatever the plan: large lists become counts, the rest is elsewhere. Pure."""

from __future__ import annotations

import re

from stackward.diagnostics import Diagnostic
from stackward.github.comment import parse
from stackward.github.comment_body import (
    LIMIT,
    SUMMARY_LIMIT,
    ApplyRow,
    EnvironmentOutcome,
    PullRequestOutcome,
    apply_comment,
    comment_bodies,
    job_summary,
    plan_summary,
)
from stackward.plan.changes import Action, Change, EnvironmentPlan, FieldChange

GITHUB_COMMENT = 65_536
MIB = 1_048_576
RUN = "https://github.com/o/r/actions/runs/1"


def change(i: int, action: Action = Action.DELETE, fields: int = 0) -> Change:
    values = tuple(FieldChange(f"configuration.key{k}", "before" * 10, "after" * 20) for k in range(fields))
    return Change(
        "terraform", "google_storage_bucket", f"b{i}", f"google_storage_bucket.b{i}", action, values
    )


def outcome(environments: list[EnvironmentOutcome], **given) -> PullRequestOutcome:
    return PullRequestOutcome("abc1234" + "0" * 33, environments, run_url=RUN, **given)


def test_1500_destroys_get_a_comment_that_fits_and_the_full_list_in_the_job_summary():
    plan = EnvironmentPlan("prod", [change(i) for i in range(1500)])
    o = outcome([EnvironmentOutcome("prod", plan=plan)])
    bodies = list(comment_bodies(o, o.state()))
    assert bodies and all(len(b) <= LIMIT for b in bodies)
    first = bodies[0]  # the diff of 1,500 deletes does not fit: the medium version comes first
    assert "**1500 resource(s) will be destroyed or replaced**" in first
    assert first.count(">  - `prod`: delete") == 50
    assert f">  - … and 1450 more in the [job summary]({RUN})" in first
    assert parse(bodies[-1]).plans == {"prod": plan.digest()} and parse(bodies[-1]).truncated
    assert bodies[-1].count(">  - `prod`: delete") == 10
    summary = job_summary(o)
    assert summary.count(">  - `prod`: delete") == 1500 and "Shortened" not in summary


def test_the_shortest_comment_fits_whatever_the_input():
    huge = "<&@`|" * 40_000
    planned = [
        EnvironmentOutcome(f"env{i}", plan=EnvironmentPlan(f"env{i}", [change(j) for j in range(1500)]))
        for i in range(5)
    ]
    broken = [EnvironmentOutcome(huge + str(i), error=huge, validation_errors=1) for i in range(300)]
    o = outcome(
        planned + broken,
        findings=[Diagnostic("policy.X", huge, huge)] * 500,
        notes=[huge] * 50,
    )
    bodies = list(comment_bodies(o, o.state()))
    assert len(bodies) == 1 and len(bodies[0]) <= LIMIT
    state = parse(bodies[0])
    assert state.plans == {e.name: e.plan.digest() for e in planned} and state.truncated
    assert "| **env0** |" in bodies[0] and "more environments in the [job summary]" in bodies[0]


def test_a_marker_too_long_for_any_comment_records_no_plan():
    environments = [
        EnvironmentOutcome(f"{i:03d}" + "e" * 60, plan=EnvironmentPlan(f"e{i}", [change(0, Action.CREATE)]))
        for i in range(600)
    ]
    o = outcome(environments)
    (body,) = comment_bodies(o, o.state())
    assert len(body) <= LIMIT < GITHUB_COMMENT
    assert parse(body).plans == {}  # so merging applies nothing unreviewed
    assert "plans 600 environments: too many" in body


def test_the_job_summary_of_60_environments_with_many_changes_stays_under_1_mib():
    environments = [
        EnvironmentOutcome(
            f"env{i}", plan=EnvironmentPlan(f"env{i}", [change(j, Action.UPDATE, 3) for j in range(300)])
        )
        for i in range(60)
    ]
    o = outcome(environments)
    summary = job_summary(o, plan_file="/runner/_temp/stackward-plan-abc.json")
    assert len(summary.encode()) <= SUMMARY_LIMIT < MIB
    assert "Shortened to stay under GitHub's 1 MiB limit" in summary
    assert "The full plan is in the plan file `/runner/_temp/stackward-plan-abc.json`" in summary
    assert all(f"| **env{i}** |" in summary for i in range(60))
    assert summary.count("<details><summary>") == 60  # each environment gets its share
    assert len(re.findall(r"… and \d+ more lines in the plan file", summary)) == 60
    assert all(len(b) <= LIMIT for b in comment_bodies(o, o.state()))


def test_the_job_summary_of_thousands_of_environments_drops_their_diffs_to_stay_under_1_mib():
    names = ["&" * 100 + str(i) for i in range(2500)]  # `&amp;` in the <summary> of each diff
    o = outcome([EnvironmentOutcome(n, plan=EnvironmentPlan(n, [change(0, Action.CREATE)])) for n in names])
    summary = job_summary(o)
    assert len(summary.encode()) <= SUMMARY_LIMIT
    assert "<details>" not in summary and "Details per environment are in the plan file." in summary
    assert re.search(r"… and \d+ more environments in the plan file\.", summary)


def test_a_dispatch_plan_summary_is_fenced_and_capped():
    text = "\n".join(["```", "~~~"] + [f"  - google_storage_bucket.b{i}  (destroy)" for i in range(40_000)])
    summary = plan_summary(text, "/tmp/plan.json")
    assert len(summary.encode()) <= SUMMARY_LIMIT
    lines = summary.splitlines()
    assert lines[0] == "````" and lines[1:3] == ["```", "~~~"]
    assert re.search(r"\n````\n\n… and \d+ more lines in the plan file `/tmp/plan.json`\.\n$", summary)
    assert plan_summary("dev: +1 ~0 -0 ±0\n  + a") == "```\ndev: +1 ~0 -0 ±0\n  + a\n```\n"


def test_the_apply_report_fits_a_comment():
    rows = [ApplyRow(f"env{i}", "❌ failed", "—", "Error: " + "x" * 290) for i in range(2000)]
    report = apply_comment("abc1234", rows, RUN)
    assert len(report) <= LIMIT
    assert re.search(r"… and \d+ more environments in this commit's statuses\.", report)
    assert report.endswith(f"<sub>[run]({RUN})</sub>")
