"""The dashboard: plain server-rendered HTML, no script, nothing loaded from outside."""

from __future__ import annotations

from html import escape

from reconciler.status import EnvironmentStatus, Type

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1f2328}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #d0d7de;padding:.45rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.warn{color:#9a6700;font-weight:600}
code{background:#f6f8fa;padding:0 .25rem;border-radius:4px}h1{font-size:1.4rem}a{color:#0969da}
"""


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
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


def _revision(revision: str, commit_url: str) -> str:
    if not revision:
        return "—"
    short = escape(revision[:12])
    return (
        f'<a href="{escape(commit_url + revision)}"><code>{short}</code></a>'
        if commit_url
        else f"<code>{short}</code>"
    )


def overview(statuses: list[EnvironmentStatus], commit_url: str) -> str:
    rows = "".join(
        f"<tr><td><a href='/environments/{escape(s.name)}'>{escape(s.name)}</a></td><td>{_condition(s)}</td>"
        f"<td>{_revision(s.applied_revision, commit_url)}</td>"
        f"<td>{'<span class=bad>drifted</span>' if s.drifted else '<span class=ok>none</span>'}</td>"
        f"<td>{escape(s.last_reconcile_at or '—')}</td></tr>"
        for s in statuses
    )
    table = (
        "<table><tr><th>environment</th><th>condition</th><th>last applied revision</th><th>drift</th>"
        f"<th>last reconcile</th></tr>{rows}</table>"
    )
    return _page("stackward", f"<h1>stackward environments</h1>{table}")


def environment_page(status: EnvironmentStatus, history: list[dict], commit_url: str) -> str:
    conditions = "".join(
        f"<tr><td>{escape(c.type.value)}</td><td>{'True' if c.status else 'False'}</td><td>{escape(c.reason.value)}</td>"
        f"<td>{escape(c.message)}</td></tr>"
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
    rows = "".join(
        f"<tr><td>{escape(str(h.get('finished', '')))}</td><td>{_revision(str(h.get('revision', '')), commit_url)}</td>"
        f"<td>{escape(str(h.get('result', '')))}</td><td>{escape(', '.join(h.get('changes', [])) or h.get('error', ''))}</td></tr>"
        for h in history
    )
    body = (
        f"<p><a href='/'>← all environments</a></p><h1>{escape(status.name)}</h1>"
        f"<p>{_condition(status)} · desired {_revision(status.desired_revision, commit_url)} · applied "
        f"{_revision(status.applied_revision, commit_url)}{' · suspended' if status.suspended else ''}</p>"
        f"<h2>Conditions</h2><table><tr><th>type</th><th>status</th><th>reason</th><th>message</th></tr>{conditions}</table>"
        f"<h2>Last plan <small>{escape(plan.get('summary', ''))}</small></h2><ul>{changes}</ul>"
        f"<h2>History</h2><table><tr><th>finished</th><th>revision</th><th>result</th><th>changes</th></tr>{rows}</table>"
    )
    return _page(f"stackward · {status.name}", body)
