"""What a reconcile pass does with a plan: a pure function of what the pass knows, tested
without Terraform or ZenML (as tofu-controller pairs each phase with a `shouldX` decision)."""

from __future__ import annotations

from enum import StrEnum


class Decision(StrEnum):
    UP_TO_DATE = "up-to-date"  # nothing to change: the revision is converged
    APPLY = "apply"  # a revision not applied yet, and auto-sync is on
    OUT_OF_SYNC = "out-of-sync"  # a revision not applied yet, and auto-sync is off
    HEAL = "heal"  # the applied revision drifted and the environment says `drift: heal`
    REPORT_DRIFT = "report-drift"  # the applied revision drifted: report it only


def decide(
    *, has_changes: bool, revision: str, applied_revision: str, drift: str, auto_sync: bool
) -> Decision:
    """A plan with changes at the revision last applied is drift; at another it is new specs."""
    if not has_changes:
        return Decision.UP_TO_DATE
    if applied_revision and applied_revision == revision:
        return Decision.HEAL if drift == "heal" else Decision.REPORT_DRIFT
    return Decision.APPLY if auto_sync else Decision.OUT_OF_SYNC
