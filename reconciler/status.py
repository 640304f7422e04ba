"""Reconciler status as data: conditions in the vocabulary users know, with named reasons.

A pass owns the status it records, except the fields people set through the API while it runs
(USER_FIELDS): those are read again when it saves (`keep_user_fields`), never overwritten.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum


class Type(StrEnum):
    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    DRIFTED = "Drifted"


class Reason(StrEnum):
    UP_TO_DATE = "UpToDate"
    APPLIED = "Applied"
    OUT_OF_SYNC = "OutOfSync"
    DRIFT_DETECTED = "DriftDetected"
    DRIFT_HEALED = "DriftHealed"
    NO_DRIFT = "NoDrift"
    PROGRESSING = "Progressing"
    INVALID_SPECS = "InvalidSpecs"
    PLAN_FAILED = "PlanFailed"
    APPLY_FAILED = "ApplyFailed"
    APPLY_REFUSED = "ApplyRefused"
    RETRY_LIMIT_REACHED = "RetryLimitReached"
    TIMED_OUT = "TimedOut"
    RECONCILIATION_FAILED = "ReconciliationFailed"  # an unexpected error (logged with its traceback)
    SOURCE_FAILED = "SourceFailed"
    SUSPENDED = "Suspended"
    NOT_RECONCILED = "NotReconciledYet"
    AWAITING_APPROVAL = "AwaitingApproval"  # the plan waits for POST .../approve with its hash
    INTERRUPTED = "Interrupted"  # the service stopped during the pass; the next start reconciles again


USER_FIELDS = ("suspended", "approved_plan")  # set through the API; a pass never overwrites them


@dataclass(frozen=True)
class Condition:
    type: Type
    status: bool
    reason: Reason
    message: str = ""


@dataclass
class EnvironmentStatus:
    """Everything the API and dashboard show for one environment."""

    name: str
    conditions: dict[Type, Condition] = field(default_factory=dict)
    desired_revision: str = ""
    applied_revision: str = ""
    last_plan: dict = field(default_factory=dict)
    suspended: bool = False
    failures: int = 0
    last_reconcile_at: str = ""
    awaiting_approval: str = ""  # the hash of the plan that waits for approval (its changes: last_plan)
    approved_plan: str = ""  # the plan hash approved through the API, applied if the next plan has it

    def set(self, type_: Type, status: bool, reason: Reason, message: str = "") -> None:
        self.conditions[type_] = Condition(type_, status, reason, message[:2000])

    def keep_user_fields(self, stored: EnvironmentStatus | None) -> None:
        """Take the USER_FIELDS from the status as stored now (what the API set meanwhile)."""
        if stored is not None:
            for name in USER_FIELDS:
                setattr(self, name, getattr(stored, name))

    def condition(self, type_: Type) -> Condition | None:
        return self.conditions.get(type_)

    @property
    def ready(self) -> bool:
        ready = self.conditions.get(Type.READY)
        return bool(ready and ready.status)

    @property
    def drifted(self) -> bool:
        drifted = self.conditions.get(Type.DRIFTED)
        return bool(drifted and drifted.status)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["conditions"] = [
            {
                "type": c.type.value,
                "status": "True" if c.status else "False",
                "reason": c.reason.value,
                "message": c.message,
            }
            for c in self.conditions.values()
        ]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> EnvironmentStatus:
        status = cls(**{k: v for k, v in data.items() if k != "conditions"})
        for c in data.get("conditions", []):
            status.set(Type(c["type"]), c["status"] == "True", Reason(c["reason"]), c.get("message", ""))
        return status
