"""Build a DataFlowSchema's ``.status`` (phase, plan, verdict, Kubernetes-style conditions)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dataflow.k8s.reasons import Phase, Reason
from dataflow.manifest import APPROVAL_ANNOTATION
from dataflow.plan import Migration

# phase -> (Ready, Approved, Synced): condition statuses
_CONDITIONS: dict[Phase, tuple[str, str, str]] = {
    Phase.IN_SYNC: ("True", "True", "True"),
    Phase.APPLIED: ("True", "True", "True"),
    Phase.AWAITING_APPROVAL: ("False", "False", "False"),
    Phase.BLOCKED: ("False", "Unknown", "False"),
    Phase.WAITING_FOR_PROMOTION: ("False", "True", "False"),
    Phase.PLANNING: ("False", "Unknown", "Unknown"),
    Phase.APPLYING: ("False", "True", "False"),
    Phase.FAILED: ("False", "Unknown", "Unknown"),
}
_APPLIED_PHASES = (Phase.IN_SYNC, Phase.APPLIED)  # the schema is in the database


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def approve_command(name: str, namespace: str, plan_hash: str) -> str:
    return (
        f"kubectl annotate dataflowschema {name} -n {namespace} {APPROVAL_ANNOTATION}={plan_hash} --overwrite"
    )


def conditions(
    phase: Phase, reason: Reason, message: str, generation: int, previous: list[Mapping[str, Any]] | None
) -> list[dict[str, Any]]:
    """Ready/Approved/Synced, keeping lastTransitionTime when a condition's status did not change."""
    before = {c.get("type"): c for c in previous or []}
    out = []
    for kind, status in zip(("Ready", "Approved", "Synced"), _CONDITIONS[phase], strict=True):
        old = before.get(kind) or {}
        out.append(
            {
                "type": kind,
                "status": status,
                "reason": reason.value,
                "message": message,
                "lastTransitionTime": old.get("lastTransitionTime") if old.get("status") == status else now(),
                "observedGeneration": generation,
            }
        )
    return out


def build(
    phase: Phase,
    *,
    reason: Reason,
    verdict: str,
    generation: int,
    schema_hash: str,
    migration: Migration | None,
    previous: Mapping[str, Any],
    name: str,
    namespace: str,
    applied_version: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """The full status for one reconcile; fields of an earlier apply are carried over."""
    operations = migration.operations if migration else []
    status: dict[str, Any] = {
        "phase": phase.value,
        "observedGeneration": generation,
        "schemaHash": schema_hash,
        "planHash": migration.plan_hash if migration and operations else "",
        "maxRisk": migration.safety_level if migration and operations else "",
        "changes": len(operations),
        "operations": [
            {
                "table": op.table,
                "operation": op.kind,
                "details": op.details,
                "risk": op.risk.name,
                "reason": op.assessment.reason,
            }
            for op in operations
        ],
        "sql": migration.sql_up if migration and operations else [],
        "rollback": migration.sql_down if migration and operations else [],
        "verdict": verdict,
        "approveCommand": approve_command(name, namespace, migration.plan_hash)
        if phase is Phase.AWAITING_APPROVAL and migration
        else "",
        "lastAppliedVersion": applied_version or previous.get("lastAppliedVersion", ""),
        "appliedSchemaHash": schema_hash
        if phase in _APPLIED_PHASES
        else previous.get("appliedSchemaHash", ""),
        "message": message or verdict,
        "lastReconcileTime": now(),
        "conditions": conditions(phase, reason, verdict, generation, previous.get("conditions")),
    }
    return status
