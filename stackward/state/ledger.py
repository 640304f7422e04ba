"""The ledger: one record of applies per environment, whoever applied (the CLI, the Action,
the reconciler), kept in the state store and scrubbed of secret values."""

from __future__ import annotations

from typing import Any

from stackward.plan.state import now
from stackward.secrets import Scrubber
from stackward.state import StateStore


class Ledger:
    """Append-only record of one environment's applies, scrubbed of secret values."""

    def __init__(self, store: StateStore, environment: str, scrub: Scrubber | None = None):
        self.store = store
        self.environment = environment
        self.scrub = scrub or Scrubber()

    def record(self, event: str, apply_id: str, **details: Any) -> None:
        entry = self.scrub.data({"at": now(), "event": event, "apply": apply_id, **details})
        self.store.append(self.environment, entry)

    def entries(self) -> list[dict]:
        return self.store.entries(self.environment)

    def applies(self) -> list[dict]:
        """One summary per apply: revision, plan hash, start/end, result, what changed."""
        by_id: dict[str, dict] = {}
        for entry in self.entries():
            if not entry.get("apply"):
                continue  # an event outside an apply (a skipped promotion gate)
            summary = by_id.setdefault(entry["apply"], {"apply": entry["apply"], "done": []})
            if entry["event"] == "started":
                summary.update(
                    revision=entry.get("revision"),
                    plan_hash=entry.get("plan_hash"),
                    started=entry["at"],
                    planned=entry.get("changes", []),
                    by=entry.get("by", ""),
                    reason=entry.get("reason", "apply"),
                )
            elif entry["event"] == "step":
                summary["done"].append(entry.get("change"))
            elif entry["event"] == "finished":
                summary.update(finished=entry["at"], result=entry.get("result"), error=entry.get("error", ""))
        for summary in by_id.values():
            summary.setdefault("result", "interrupted")
        return list(by_id.values())
