"""Every phase and condition reason a DataFlowSchema status can hold, as typed constants.

Like the Atlas operator's ``reason.go``: status, events and tests use these names, and
:func:`classify` maps an engine result to them from its typed fields (outcome, refusal kind),
never from its message text.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dataflow.reconcile import Outcome, Refusal


class Phase(StrEnum):
    """``status.phase``; the values are the CRD's enum."""

    PLANNING = "Planning"
    PLANNED = "Planned"  # dryRun: the plan is in status and its ConfigMap; terminal
    IN_SYNC = "InSync"
    AWAITING_APPROVAL = "AwaitingApproval"
    BLOCKED = "Blocked"
    WAITING_FOR_PROMOTION = "WaitingForPromotion"
    APPLYING = "Applying"
    APPLIED = "Applied"
    FAILED = "Failed"


class Reason(StrEnum):
    """The ``reason`` of conditions and events."""

    IN_SYNC = "InSync"
    APPLIED = "Applied"
    DRY_RUN = "DryRun"
    CONFLICT = "Conflict"
    APPROVAL_REQUIRED = "ApprovalRequired"
    PLAN_CHANGED = "PlanChanged"
    DECLINED = "Declined"
    APPLY_FAILED = "ApplyFailed"
    INVALID_SPEC = "InvalidSpec"
    SECRET_UNAVAILABLE = "SecretUnavailable"
    INVALID_DATABASE_URL = "InvalidDatabaseURL"
    DATABASE_UNAVAILABLE = "DatabaseUnavailable"
    WAITING_FOR_PROMOTION = "WaitingForPromotion"
    PROMOTION_PENDING = "PromotionPending"
    APPLYING = "Applying"
    DRIFTED = "Drifted"
    DRIFT_REVERTED = "DriftReverted"
    NO_DRIFT = "NoDrift"
    ADOPTED = "Adopted"  # spec.adopt: existing tables recorded as they are (a baseline, no DDL)


class EventType(StrEnum):
    """Kubernetes event types."""

    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class Classification:
    """How the operator reports one engine result: phase, reason, the event (None: post none), retry."""

    phase: Phase
    reason: Reason
    event: EventType | None
    retry: bool = False


_BY_OUTCOME: dict[Outcome, Classification] = {
    Outcome.IN_SYNC: Classification(Phase.IN_SYNC, Reason.IN_SYNC, None),
    Outcome.APPLIED: Classification(Phase.APPLIED, Reason.APPLIED, EventType.NORMAL),
    Outcome.DRY_RUN: Classification(Phase.PLANNED, Reason.DRY_RUN, None),
    Outcome.CONFLICT: Classification(Phase.BLOCKED, Reason.CONFLICT, EventType.WARNING),
    # the operator never asks a person: a DECLINED result (library/CLI only) is reported, not retried
    Outcome.DECLINED: Classification(Phase.BLOCKED, Reason.DECLINED, EventType.WARNING),
    Outcome.FAILED: Classification(Phase.FAILED, Reason.APPLY_FAILED, EventType.WARNING, retry=True),
}

_BY_REFUSAL: dict[Refusal, Classification] = {
    Refusal.RISK_ABOVE_POLICY: Classification(
        Phase.AWAITING_APPROVAL, Reason.APPROVAL_REQUIRED, EventType.WARNING
    ),
    Refusal.DATA_LOSS_PROTECTION: Classification(
        Phase.AWAITING_APPROVAL, Reason.APPROVAL_REQUIRED, EventType.WARNING
    ),
    Refusal.APPROVAL_MISMATCH: Classification(
        Phase.AWAITING_APPROVAL, Reason.APPROVAL_REQUIRED, EventType.WARNING
    ),
    # the database moved under a confirmed plan: plan again shortly
    Refusal.PLAN_CHANGED: Classification(Phase.FAILED, Reason.PLAN_CHANGED, EventType.WARNING, retry=True),
}


def classify(outcome: Outcome, refusal: Refusal | None = None) -> Classification:
    """The phase, reason and event type for an engine outcome (and, for REFUSED, its refusal kind)."""
    if outcome is Outcome.REFUSED:
        if refusal is None:
            raise ValueError("a REFUSED result carries its refusal kind")
        return _BY_REFUSAL[refusal]
    return _BY_OUTCOME[outcome]
