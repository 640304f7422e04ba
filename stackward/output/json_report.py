"""Machine-readable output: findings plus a summary per environment."""

from __future__ import annotations

import json

from stackward.checks.validate import Report


def render(report: Report) -> str:
    environments = []
    for env in report.environments:
        found = report.for_environment(env.name)
        environments.append(
            {
                "name": env.name,
                "resources": len(env.resources),
                "errors": sum(d.is_error for d in found),
                "warnings": sum(d.severity.value == "warning" for d in found),
            }
        )
    payload = {
        "ok": report.ok,
        "environments": environments,
        "diagnostics": [d.to_dict() for d in report.diagnostics],
        "policy": (
            {"source": report.policy.source, "engine": report.policy.engine} if report.policy else None
        ),
    }
    return json.dumps(payload, indent=2)
