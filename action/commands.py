"""issue_comment: the comment commands on a pull request.

- `/stackward plan`: plan the pull request again now, exactly as its `synchronize` event does
  (action/pull_request.py): the one plan comment and the statuses are updated.
- `/stackward unlock ENV`: release ENV's lock, as `stackward unlock ENV` does (the state
  store's `release`, never forced: a lock whose holder still runs stays).

Only users with write access to the repository (admin, maintain, write; asked through the API)
may run them. Comments by bots, comments on issues and comments that do not start with
`/stackward` are ignored without a call. The answer is a reaction on the comment: `eyes` (a
plan started; its result is the plan comment) or `+1` (unlocked) when accepted, `-1` when
refused and `confused` when the command is unknown; a refusal also says why in a short reply
and in the log. The comment is hostile text: it is parsed strictly, never shown anywhere (the
reply and the log show only fixed words, environment names that exist and GitHub logins).

The workflow checks out the code: for `/stackward plan` it must check out the pull request's
head (`refs/pull/N/head`); a checkout at any other commit is refused, nothing planned.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, replace

from action import pull_request
from action.context import Run, shown
from stackward.errors import StackwardError
from stackward.output.github import escape_data
from stackward.output.markdown import code
from stackward.plan.state import LockError

PREFIX = "/stackward"
WRITERS = ("admin", "maintain", "write")
USAGE = "commands: `/stackward plan` (plan this pull request again), `/stackward unlock ENV`"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # a plausible environment name; known ones are checked after


@dataclass(frozen=True)
class Command:
    verb: str  # "plan" or "unlock"; "" when the comment is no command stackward knows
    env: str = ""


def parse(body: str) -> Command | None:
    """The command in a comment: None when it is not addressed to stackward (it does not start
    with `/stackward` as a word). Strict: one line, `plan` or `unlock NAME`, spaces between."""
    text = body.strip()
    if not (text == PREFIX or text.startswith((PREFIX + " ", PREFIX + "\t"))):
        return None
    if not text.isascii() or not text.isprintable():  # a second line, control or bidi characters
        return Command("")
    words = text.split()[1:]
    if words == ["plan"]:
        return Command("plan")
    if len(words) == 2 and words[0] == "unlock" and _NAME.fullmatch(words[1]):
        return Command("unlock", words[1])
    return Command("")


def handle(run: Run) -> int:
    event = run.ctx.event
    issue, comment = event.get("issue") or {}, event.get("comment") or {}
    if event.get("action") != "created":
        run.say(f"stackward: comment {shown(str(event.get('action')))}: only new comments are commands")
        return 0
    if not issue.get("pull_request"):
        run.say("stackward: a comment on an issue, not a pull request: nothing to do")
        return 0
    author = comment.get("user") or {}
    login = str(author.get("login") or "")
    if author.get("type") == "Bot" or login.endswith("[bot]") or not login:
        run.say("stackward: a comment by a bot: ignored")
        return 0
    command = parse(str(comment.get("body") or ""))
    if command is None:
        run.say("stackward: the comment is no /stackward command: nothing to do")
        return 0
    number, comment_id = int(issue["number"]), int(comment["id"])
    permission = run.client.permission(login)
    if permission not in WRITERS:
        return refuse(
            run,
            number,
            comment_id,
            f"{shown(login)} has {shown(permission)} access to this repository; stackward's comment "
            "commands need write access",
            "stackward's comment commands need write access to this repository; nothing was done.",
            exit_code=0,  # nothing is wrong with the workflow: the run does not fail
        )
    if not command.verb:
        run.client.react(comment_id, "confused")
        run.client.comment(number, f"stackward does not know that command; {USAGE}.")
        run.say(f"stackward: the comment by {shown(login)} is no command stackward knows; {USAGE}")
        return 0
    if command.verb == "unlock":
        return unlock(run, number, comment_id, command.env, login)
    return plan(run, number, comment_id, login)


def refuse(run: Run, number: int, comment_id: int, log: str, reply: str, exit_code: int = 1) -> int:
    """A refused command: -1 on the comment, `reply` (fixed words and known names) under it,
    `log` in the log as a warning; `exit_code` is the run's exit code."""
    run.client.react(comment_id, "-1")
    run.client.comment(number, reply)
    run.warn(f"command refused: {log}")
    return exit_code


def plan(run: Run, number: int, comment_id: int, login: str) -> int:
    """Plan pull request `number` as its synchronize event would, at the head GitHub names,
    which must be the commit the workflow checked out."""
    pr = run.client.pull(number)
    if pr.get("state") != "open":
        return refuse(
            run,
            number,
            comment_id,
            f"#{number} is {shown(str(pr.get('state')))}: only open pull requests are planned",
            "This pull request is not open: nothing was planned.",
        )
    head_sha = str(pr["head"]["sha"])
    checked_out = _head(run)
    if checked_out != head_sha:
        return refuse(
            run,
            number,
            comment_id,
            f"the workflow checked out {shown(checked_out or 'nothing')}, not the head of #{number} "
            f"({shown(head_sha)}): check out refs/pull/{number}/head in the issue_comment workflow "
            "(see the README); nothing was planned",
            f"The workflow checked out {code(checked_out[:7] or 'no commit')}, not this pull request's head "
            f"{code(head_sha[:7])}: it must check out `refs/pull/{number}/head` for comment commands. "
            "Nothing was planned.",
        )
    run.client.react(comment_id, "eyes")
    run.say(f"stackward: /stackward plan by {shown(login)}: planning #{number} at {head_sha[:12]}")
    event = {
        "action": "synchronize",
        "number": number,
        "pull_request": pr,
        "repository": run.ctx.event.get("repository") or {},
        "sender": run.ctx.event.get("sender") or {},
    }
    run.ctx = replace(run.ctx, event_name="pull_request", event=event, sha=head_sha)
    return pull_request.handle(run)


def unlock(run: Run, number: int, comment_id: int, env: str, login: str) -> int:
    """Release `env`'s lock through its state store, as `stackward unlock` does (never forced)."""
    report = run.validated()
    known = {e.name: e for e in report.environments}
    if env not in known:
        names = ", ".join(sorted(known)) or "none"
        return refuse(
            run,
            number,
            comment_id,
            f"no environment by that name (known: {names}); nothing was unlocked",
            f"There is no environment by that name (known: {code(names)}); nothing was unlocked.",
        )
    try:
        done = run.pipeline.store(report, known[env]).release(env, False)
    except LockError as exc:
        return refuse(
            run,
            number,
            comment_id,
            str(exc),
            f"The lock of {code(env)} is held by a run that is still going; nothing was unlocked "
            "(`stackward unlock --force` where you are sure it is gone).",
        )
    except StackwardError as exc:
        run.client.react(comment_id, "-1")
        raise exc
    run.client.react(comment_id, "+1")
    run.say(f"stackward: /stackward unlock by {shown(login)}: {escape_data(done)}")
    return 0


def _head(run: Run) -> str:
    """The commit checked out where the environments are ("" when there is none)."""
    folder = run.settings.path if run.settings.path.is_dir() else run.settings.path.parent
    proc = subprocess.run(
        ["git", "-C", str(folder), "rev-parse", "--verify", "--quiet", "HEAD^{commit}"],
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""
