"""The dashboard: plain server-rendered HTML, no script, nothing loaded from outside. Every
string from the status or the ledger is escaped: messages can hold text a PR author wrote."""

from __future__ import annotations

import base64
import hashlib
from html import escape

from reconciler.status import EnvironmentStatus, Reason, Type

REFRESH_SECONDS = 30  # the pages reload themselves (a meta refresh, no script)
OVERVIEW_MESSAGE_CHARS = 300  # the environment's page shows the whole message

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1f2328}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #d0d7de;padding:.45rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.warn{color:#9a6700;font-weight:600}
code{background:#f6f8fa;padding:0 .25rem;border-radius:4px}h1{font-size:1.4rem}a{color:#0969da}
.message{white-space:pre-wrap;word-break:break-word;margin:.2rem 0 0}.failure{border-left:4px solid #cf222e;padding:.2rem .8rem}
"""
# Only this stylesheet may apply: no script, no other source, no framing, no forms.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; "
    f"style-src 'sha256-{base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()}'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

# The last pass stopped before its plan: nobody knows whether live state drifted.
NO_PLAN = {
    Reason.PLAN_FAILED,
    Reason.INVALID_SPECS,
    Reason.SOURCE_FAILED,
    Reason.RECONCILIATION_FAILED,
    Reason.NOT_RECONCILED,
}
RESULTS = {
    "applied": "<span class=ok>applied</span>",
    "healed": "<span class=ok>healed</span>",
    "failed": "<span class=bad>failed</span>",
    "interrupted": "<span class=warn>interrupted</span> <small>(stopped before it finished)</small>",
    "running": "<span class=warn>running</span>",
}


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}"
        f"<p><small>This page reloads every {REFRESH_SECONDS} s · <a href=''>reload now</a></small></p>"
        "</body></html>"
    )


def _condition(status: EnvironmentStatus) -> str:
    ready = status.condition(Type.READY)
    stalled = status.condition(Type.STALLED)
    if status.suspended:
        return "<span class=warn>Suspended</span>"
    if stalled and stalled.status:
        return f"<span class=bad>Stalled</span> <small>{escape(stalled.reason.value)}</small>"
    if ready and ready.status:
        return f"<span class=ok>Ready</span> <small>{escape(ready.reason.value)}</small>"
    reason = ready.reason.value if ready else "Unknown"
    return f"<span class=bad>Not ready</span> <small>{escape(reason)}</small>"


def _failure(status: EnvironmentStatus) -> str:
    """Why the environment is not ready (Stalled's message first), or ""."""
    stalled = status.condition(Type.STALLED)
    if stalled and stalled.status:
        return stalled.message
    ready = status.condition(Type.READY)
    return ready.message if ready and not ready.status else ""


def _drift(status: EnvironmentStatus) -> str:
    ready = status.condition(Type.READY)
    stalled = status.condition(Type.STALLED)
    drifted = status.condition(Type.DRIFTED)
    if (
        drifted is None
        or (ready is not None and ready.reason in NO_PLAN)
        or (stalled is not None and stalled.status and stalled.reason is Reason.TIMED_OUT)
    ):
        return "<span class=warn>unknown</span> <small>(no plan in the last pass)</small>"
    if drifted.status:
        return f"<span class=bad title='{escape(drifted.message)}'>drifted</span>"
    return "<span class=ok>none</span>"


def _revision(revision: str, commit_url: str) -> str:
    if not revision:
        return "—"
    short = escape(revision[:12])
    return (
        f'<a href="{escape(commit_url + revision)}"><code>{short}</code></a>'
        if commit_url
        else f"<code>{short}</code>"
    )


def _short(message: str) -> str:
    return message if len(message) <= OVERVIEW_MESSAGE_CHARS else message[:OVERVIEW_MESSAGE_CHARS] + "…"


def overview(statuses: list[EnvironmentStatus], commit_url: str) -> str:
    rows = "".join(
        f"<tr><td><a href='/environments/{escape(s.name)}'>{escape(s.name)}</a></td><td>{_condition(s)}"
        + (f"<p class=message>{escape(_short(failure))}</p>" if (failure := _failure(s)) else "")
        + f"</td><td>{_revision(s.applied_revision, commit_url)}</td><td>{_drift(s)}</td>"
        f"<td>{escape(s.last_reconcile_at or '—')}</td></tr>"
        for s in statuses
    )
    table = (
        "<table><tr><th>environment</th><th>condition</th><th>last applied revision</th><th>drift</th>"
        f"<th>last reconcile</th></tr>{rows}</table>"
    )
    return _page("stackward", f"<h1>stackward environments</h1>{table}")


def _history(history: list[dict], commit_url: str) -> str:
    """The ledger's applies, whoever made them (the Action, the CLI or the reconciler)."""
    rows = "".join(
        f"<tr><td>{escape(str(h.get('started') or '—'))}</td><td>{escape(str(h.get('finished') or '—'))}</td>"
        f"<td>{escape(str(h.get('by') or '—'))}</td><td>{_revision(str(h.get('revision') or ''), commit_url)}</td>"
        f"<td>{RESULTS.get(str(h.get('result')), escape(str(h.get('result'))))}</td>"
        f"<td>{escape(', '.join(h.get('changes') or []) or '—')}"
        + (f"<p class=message>{escape(str(h['error']))}</p>" if h.get("error") else "")
        + "</td></tr>"
        for h in history
    )
    return (
        "<table><tr><th>started</th><th>finished</th><th>by</th><th>revision</th><th>result</th>"
        f"<th>changes</th></tr>{rows or '<tr><td colspan=6>no applies yet</td></tr>'}</table>"
    )


def environment_page(status: EnvironmentStatus, history: list[dict], commit_url: str) -> str:
    failure = _failure(status)
    conditions = "".join(
        f"<tr><td>{escape(c.type.value)}</td><td>{'True' if c.status else 'False'}</td><td>{escape(c.reason.value)}</td>"
        f"<td><p class=message>{escape(c.message)}</p></td></tr>"
        for c in status.conditions.values()
    )
    plan = status.last_plan or {}
    changes = (
        "".join(
            f"<li><code>{escape(c['action'])}</code> {escape(c['address'])}"
            + "".join(
                f"<br><small>{escape(f['path'])}: {escape(repr(f['before']))} → {escape(repr(f['after']))}</small>"
                for f in c.get("fields", [])[:10]
            )
            + "</li>"
            for c in plan.get("changes", [])
        )
        or "<li>no changes</li>"
    )
    body = (
        f"<p><a href='/'>← all environments</a></p><h1>{escape(status.name)}</h1>"
        f"<p>{_condition(status)} · drift {_drift(status)} · desired {_revision(status.desired_revision, commit_url)}"
        f" · applied {_revision(status.applied_revision, commit_url)}{' · suspended' if status.suspended else ''}</p>"
        + (f"<div class=failure><p class=message>{escape(failure)}</p></div>" if failure else "")
        + f"<h2>Conditions</h2><table><tr><th>type</th><th>status</th><th>reason</th><th>message</th></tr>{conditions}</table>"
        f"<h2>Last plan <small>{escape(plan.get('summary', ''))}</small></h2><ul>{changes}</ul>"
        + (
            f"<div class=failure><p class=message>This plan waits for approval: {escape(status.awaiting_approval)}."
            f" Review it, then approve exactly it: POST /api/environments/{escape(status.name)}/approve"
            f" with {{&quot;plan_hash&quot;: &quot;{escape(status.awaiting_approval)}&quot;}} and the API token.</p></div>"
            if status.awaiting_approval
            else ""
        )
        + f"<h2>History</h2>{_history(history, commit_url)}"
    )
    return _page(f"stackward · {status.name}", body)
