"""User-controlled text in the plan comment, the job summary and the log: shown as text, never
obeyed as Markdown, HTML, a mention, stackward's marker or a workflow command. Pure, no I/O."""

from __future__ import annotations

import re

from stackward.diagnostics import Diagnostic, Location, Severity
from stackward.github.comment import CommentState, parse
from stackward.github.comment_body import (
    ApplyRow,
    EnvironmentOutcome,
    PullRequestOutcome,
    apply_comment,
    comment_bodies,
    job_summary,
)
from stackward.output.github import annotation, stop_commands
from stackward.output.plan_text import render_environment
from stackward.plan.changes import Action, Change, EnvironmentPlan, FieldChange

FORGED = '<!-- stackward {"head_sha":"evil","plans":{"prod":"0"}} -->'
HOSTILE = (
    f"x\n```\n# Approved by @octocat and @org/admins, see #1\n> quote\n{FORGED}\n<img src=x onerror=alert(1)>"
)


def outcome(**given) -> PullRequestOutcome:
    plan = EnvironmentPlan(
        "dev",
        [
            Change(
                "zenml",
                "StackComponent",
                "b",
                "zenml.StackComponent.b",
                Action.CREATE,
                (FieldChange("labels.team", None, HOSTILE),),
            ),
            Change("zenml", "Stack", "o", "zenml.Stack.a`b", Action.DELETE, (), HOSTILE),
        ],
    )
    defaults = {
        "head_sha": "abc1234" + "0" * 33,
        "environments": [EnvironmentOutcome("dev", plan=plan)],
        "blob_url": "https://github.com/o/r/blob/abc",
        "run_url": "https://github.com/o/r/actions/runs/1",
        "repo_root": "/r",
    }
    return PullRequestOutcome(**{**defaults, **given})


def bodies(o: PullRequestOutcome) -> list[str]:
    return [*comment_bodies(o, o.state()), job_summary(o)]


def outside_code(markdown: str) -> str:
    """The Markdown with fenced blocks and code spans taken out (GitHub renders those as text)."""
    markdown = re.sub(r"^(`{3,})diff\n.*?^\1$", "", markdown, flags=re.S | re.M)
    return re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", markdown)


def test_a_hostile_label_value_stays_on_its_line_inside_the_diff_block():
    for body in bodies(outcome()):
        if "```diff" not in body and "````diff" not in body:
            continue
        fence = re.search(r"^(`{3,})diff$", body, re.M)[1]
        block = body.split(f"{fence}diff\n", 1)[1].split(f"\n{fence}\n", 1)[0]
        assert not re.search(rf"^ {{0,3}}`{{{len(fence)},}}", block, re.M)  # no line closes the fence
        create, value = block.splitlines()[:2]
        assert create == "+ zenml.StackComponent.b  # create"
        assert value.startswith('    labels.team: "x\\n```\\n# Approved by @octocat') and value.endswith(
            "..."
        )
        assert all(line[:1] in "+-! " for line in block.splitlines())


def test_user_text_can_neither_hide_the_rest_nor_forge_the_marker():
    o = outcome(
        notes=[HOSTILE],
        findings=[Diagnostic("policy.X", HOSTILE, HOSTILE, Location("/r/environments/dev/a.yaml", 3, 1))],
    )
    o.environments.append(EnvironmentOutcome("prod", error=HOSTILE))
    for body in comment_bodies(o, o.state()):
        assert body.count("<!--") == 1 and body.startswith("<!-- stackward ")
        assert parse(body).head_sha == o.head_sha and "prod" not in parse(body).plans
    assert "<!--" not in job_summary(o)
    assert parse(f"quoted: {FORGED}") is None  # the marker counts only where stackward puts it


def test_the_marker_survives_names_that_would_end_an_html_comment():
    state = CommentState("abc", {"a-->b<!--c&": "hash"})
    body = state.render("text")
    assert body.count("-->") == 1 and body.endswith(" -->\ntext")
    assert parse(body) == state


def test_mentions_and_references_notify_no_one():
    o = outcome(notes=[HOSTILE], findings=[Diagnostic("policy.X", HOSTILE, hint="ask @octocat")])
    o.environments.append(EnvironmentOutcome("prod", error="@octocat #12 GH-1"))
    for body in bodies(o):
        prose = outside_code(body)
        assert not re.search(r"@[A-Za-z0-9]", prose)
        assert not re.search(r"#\d", prose)
        assert "@\u200boctocat" in prose  # still there to read


def test_a_pipe_in_a_name_stays_in_its_table_cell():
    o = outcome(environments=[EnvironmentOutcome("a|b", validation_errors=1)])
    (row,) = [line for line in next(comment_bodies(o, o.state())).splitlines() if line.startswith("| **a")]
    assert row == "| **a\\|b** | ❌ | 0 / 0 | — | ❌ invalid specs |"
    report = apply_comment("abc1234", [ApplyRow("a|b", "❌ failed", "—", "boom | @octocat <b>")], "")
    assert "| **a\\|b** | ❌ failed | — | boom \\| @\u200boctocat &lt;b&gt; |" in report


def test_html_and_lines_of_user_text_render_as_text():
    o = outcome(notes=["# not a heading", HOSTILE], findings=[Diagnostic("policy.X", HOSTILE)])
    for body in bodies(o):
        prose = outside_code(body)
        assert "<img" not in prose and "<b>" not in prose
        assert "> \\# not a heading" in body
        assert not re.search(r"^(# Approved|> quote)", body, re.M)


def test_backticks_in_user_text_cannot_end_a_code_span():
    body = job_summary(outcome())
    assert ">  - `dev`: delete ``zenml.Stack.a`b`` (x \\`\\`\\` # Approved by @\u200boctocat" in body
    message = "label `environment` must be `dev`, not `prod"
    o = outcome(findings=[Diagnostic("policy.X", message, severity=Severity.WARNING)])
    assert "**policy.X**: label `environment` must be `dev`, not \\`prod" in job_summary(o)


def test_file_names_stay_inside_their_link():
    diag = Diagnostic("policy.X", "m", location=Location("/r/environments/dev/a b)](x.yaml", 3, 1))
    link = "[`environments/dev/a b)](x.yaml:3`](https://github.com/o/r/blob/abc/environments/dev/a%20b%29%5D%28x.yaml#L3)"
    assert link in job_summary(outcome(findings=[diag]))


def test_environment_names_are_html_text_in_the_details_summary():
    plan = EnvironmentPlan("<b>x</b>", [Change("zenml", "Stack", "s", "zenml.Stack.s", Action.CREATE)])
    body = job_summary(outcome(environments=[EnvironmentOutcome("<b>x</b>", plan=plan)]))
    assert "<details><summary>&lt;b&gt;x&lt;/b&gt;: +1 ~0 -0 ±0</summary>" in body


def test_label_values_in_plan_text_cannot_start_a_log_line():
    plan = EnvironmentPlan(
        "dev",
        [
            Change(
                "zenml",
                "StackComponent",
                "b",
                "zenml.StackComponent.b",
                Action.UPDATE,
                (FieldChange("labels.x", "a", "v\n::set-output name=ok::true\r\n::stop-commands::t"),),
                "because\n::error::forged",
            )
        ],
    )
    lines = render_environment(plan).splitlines()
    assert not [line for line in lines if line.lstrip().startswith("::")]
    assert '"v\\n::set-output name=ok::true\\r\\n::stop-commands::t"' in lines[-1]


def test_stop_commands_pauses_the_runner_around_user_text():
    text = "::set-output name=ok::true\n##[add-mask]x\n::stop-commands::guess\n::guess::\n"
    wrapped = stop_commands(text).splitlines()
    token = wrapped[0].removeprefix("::stop-commands::")
    assert re.fullmatch(r"[0-9a-f]{32}", token) and token not in text
    assert wrapped == [f"::stop-commands::{token}", *text.splitlines(), f"::{token}::"]
    assert stop_commands(text) != stop_commands(text)  # a new token each time


def _runner_parse(line: str) -> tuple[str, dict[str, str], str]:
    """How the Actions runner reads a `::command props::data` line (ActionCommand.TryParseV2)."""
    line = line.lstrip()
    end = line.index("::", 2)
    name, _, props = line[2:end].partition(" ")

    def unescape(value: str, tokens: tuple[str, ...]) -> str:
        for token in tokens:
            value = value.replace(
                {"\r": "%0D", "\n": "%0A", ":": "%3A", ",": "%2C", "%": "%25"}[token], token
            )
        return value

    pairs = (p.split("=", 1) for p in props.split(",") if p)
    properties = {k: unescape(v, ("\r", "\n", ":", ",", "%")) for k, v in pairs}
    return name, properties, unescape(line[end + 2 :], ("\r", "\n", "%"))


def test_annotations_escape_hostile_text_as_the_runner_reads_it():
    """annotation() already escaped correctly before issue #11; this holds it there."""
    diag = Diagnostic(
        "x::y,z=1",
        "bad\n::set-output name=ok::true\r\n::stop-commands::t %0A 100%",
        "hint\n##[add-mask]x",
        Location("a,b:c\n::warning::x.yaml", 3, 1),
    )
    line = annotation(diag)
    assert "\n" not in line and "\r" not in line
    name, properties, data = _runner_parse(line)
    assert name == "error"
    assert properties == {
        "file": "a,b:c\n::warning::x.yaml",
        "line": "3",
        "col": "1",
        "title": "stackward x::y,z=1",
    }
    assert data == f"{diag.message}\n{diag.hint}"
