"""What a reconcile pass does with a plan: the pure decision, every case."""

from __future__ import annotations

import pytest

from reconciler.decision import Decision, decide


@pytest.mark.parametrize(
    ("has_changes", "revision", "applied", "drift", "auto_sync", "expected"),
    [
        (False, "b", "a", "report", True, Decision.UP_TO_DATE),  # new specs that change nothing
        (False, "a", "a", "heal", False, Decision.UP_TO_DATE),
        (True, "b", "a", "report", True, Decision.APPLY),  # a new revision: auto-sync applies it
        (True, "b", "", "heal", True, Decision.APPLY),  # nothing applied yet: not drift
        (True, "b", "a", "heal", False, Decision.OUT_OF_SYNC),  # auto-sync off: report only
        (True, "a", "a", "heal", True, Decision.HEAL),  # the applied revision drifted
        (True, "a", "a", "heal", False, Decision.HEAL),  # healing does not wait for auto-sync
        (True, "a", "a", "report", True, Decision.REPORT_DRIFT),
        (True, "", "", "heal", True, Decision.APPLY),  # no git revision, never applied
    ],
)
def test_decision(has_changes, revision, applied, drift, auto_sync, expected):
    assert (
        decide(
            has_changes=has_changes,
            revision=revision,
            applied_revision=applied,
            drift=drift,
            auto_sync=auto_sync,
        )
        is expected
    )
