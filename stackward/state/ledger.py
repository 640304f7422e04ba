"""The ledger: one record of applies per environment, whoever applied (the CLI, the Action,
the reconciler), kept in the state store and scrubbed of secret values.

Every apply that started has an outcome: `success`, `failed`, or `interrupted` (it stopped:
its lock was lost, the service stopped, Ctrl-C; or it was killed, which leaves no `finished`
entry and reads as interrupted). An apply without an outcome whose lease still holds the
environment reads as `running`."""

from __future__ import annotations

import uuid
from typing import Any

from stackward.plan.state import now
from stackward.secrets import Scrubber
from stackward.state import RETRY_SECONDS, StateStore, StateStoreError, retried


class Ledger:
    """Append-only record of one environment's applies, scrubbed of secret values.

    `record()` fails as the store does: for what is about to happen, so nothing done goes
    unrecorded. `keep()` is for what was done already: it tries again for up to
    `retry_seconds` (a database restart); what still could not be written stays `unrecorded`,
    in order, and goes with the next `keep()` (which tries once while the store stays down)."""

    def __init__(
        self,
        store: StateStore,
        environment: str,
        scrub: Scrubber | None = None,
        retry_seconds: float = RETRY_SECONDS,
    ):
        self.store = store
        self.environment = environment
        self.scrub = scrub or Scrubber()
        self.retry_seconds = retry_seconds
        self.unrecorded: list[dict] = []  # kept entries not written yet, oldest first
        self.failure = ""  # why the last keep() could not write them

    def _entry(self, event: str, apply_id: str, details: dict[str, Any]) -> dict:
        # the id makes an entry sent again after a lost connection count once (PostgreSQL)
        entry = {"at": now(), "event": event, "apply": apply_id, "id": uuid.uuid4().hex, **details}
        return self.scrub.data(entry)

    def record(self, event: str, apply_id: str, **details: Any) -> None:
        self.store.append(self.environment, self._entry(event, apply_id, details))

    def keep(self, event: str, apply_id: str, **details: Any) -> None:
        """Record what was done, never raising: see the class."""
        self.unrecorded.append(self._entry(event, apply_id, details))
        try:
            retried(self._write_unrecorded, 0 if self.failure else self.retry_seconds)
        except StateStoreError as exc:
            self.failure = str(exc)
        else:
            self.failure = ""

    def _write_unrecorded(self) -> None:
        while self.unrecorded:
            self.store.append(self.environment, self.unrecorded[0])
            self.unrecorded.pop(0)

    def entries(self) -> list[dict]:
        return self.store.entries(self.environment)

    def applies(self) -> list[dict]:
        """One summary per apply: revision, plan hash, start/end, result, what changed; an
        apply without a `finished` entry reads as running while its lease holds the
        environment, else as interrupted."""
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
                    lease=entry.get("lease", ""),
                )
            elif entry["event"] == "step":
                summary["done"].append(entry.get("change"))
            elif entry["event"] == "finished":
                summary.update(finished=entry["at"], result=entry.get("result"), error=entry.get("error", ""))
        unfinished = [s for s in by_id.values() if "result" not in s]
        if unfinished:
            holder = self.store.holder(self.environment) or {}
            for summary in unfinished:
                running = summary.get("lease") and summary["lease"] == holder.get("id")
                summary["result"] = "running" if running else "interrupted"
        return list(by_id.values())
