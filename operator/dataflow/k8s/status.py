"""Build a DataFlowSchema's ``.status``: phase, a plan summary, hashes, verdict, Kubernetes-style conditions.

The status stays small whatever the plan's size (counts, not SQL: the full plan goes to a ConfigMap)
and holds no clock reading, so that an unchanged state builds an identical status and the operator
can skip the PATCH (:func:`changes`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
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
    Phase.PLANNED: ("True", "Unknown", "False"),
    Phase.APPLYING: ("False", "True", "False"),
    Phase.FAILED: ("False", "Unknown", "Unknown"),
}
APPLIED_PHASES = (Phase.IN_SYNC, Phase.APPLIED)  # the schema is in the database
KOPF_FIELD = "kopf"  # Kopf's own part of the status, never ours to write or compare


@dataclass(frozen=True)
class Extra:
    """A condition beyond Ready/Approved/Synced (Drifted, PromotionPending)."""

    type: str
    status: str
    reason: Reason
    message: str


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def approve_command(name: str, namespace: str, plan_hash: str) -> str:
    return (
        f"kubectl annotate dataflowschema {name} -n {namespace} {APPROVAL_ANNOTATION}={plan_hash} --overwrite"
    )


def conditions(
    phase: Phase,
    reason: Reason,
    message: str,
    generation: int,
    previous: list[Mapping[str, Any]] | None,
    extra: tuple[Extra, ...] = (),
    synced: str | None = None,
) -> list[dict[str, Any]]:
    """Ready/Approved/Synced and ``extra``, keeping lastTransitionTime when a condition's status did not change."""
    before = {c.get("type"): c for c in previous or []}
    ready, approved, in_sync = _CONDITIONS[phase]
    rows = [
        ("Ready", ready, reason, message),
        ("Approved", approved, reason, message),
        ("Synced", synced or in_sync, reason, message),
        *((e.type, e.status, e.reason, e.message) for e in extra),
    ]
    out = []
    for kind, status, why, text in rows:
        old = before.get(kind) or {}
        out.append(
            {
                "type": kind,
                "status": status,
                "reason": why.value,
                "message": text,
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
    applied_plan: str | None = None,
    approved_plan: str | None = None,
    plan_config_map: str = "",
    extra: tuple[Extra, ...] = (),
    synced: str | None = None,
    approvable: bool = False,
    applied_schema_hash: str | None = None,
    kept: int | None = None,
) -> dict[str, Any]:
    """The status for one reconcile; fields of an earlier apply are carried over.

    ``approvable``: the plan may be applied by approving it (besides AwaitingApproval: reported drift).
    ``kept``: how many objects the adoption kept (None: as before; the fast path does not count them).
    """
    operations = migration.operations if migration else []
    planned = bool(migration and operations)
    drifted = next((e.status for e in extra if e.type == "Drifted"), "Unknown")
    kept_count = kept if kept is not None else previous.get("kept", 0)
    return {
        **({"kept": kept_count} if kept_count else {}),
        "phase": phase.value,
        "observedGeneration": generation,
        "schemaHash": schema_hash,
        "planHash": migration.plan_hash if migration and planned else "",
        "maxRisk": migration.safety_level if migration and planned else "",
        "changes": len(operations),
        "changesByKind": [
            {"operation": k, "count": n} for k, n in sorted(Counter(op.kind for op in operations).items())
        ],
        "changesByRisk": [
            {"risk": r, "count": n} for r, n in sorted(Counter(op.risk.name for op in operations).items())
        ],
        "planConfigMap": plan_config_map if planned or (migration and migration.kept_objects) else "",
        "verdict": verdict,
        "approveCommand": approve_command(name, namespace, migration.plan_hash)
        if migration and planned and (phase is Phase.AWAITING_APPROVAL or approvable)
        else "",
        "approvedPlanHash": approved_plan or "",
        "appliedPlanHash": applied_plan or previous.get("appliedPlanHash", ""),
        "lastAppliedVersion": applied_version or previous.get("lastAppliedVersion", ""),
        "appliedSchemaHash": applied_schema_hash
        or (schema_hash if phase in APPLIED_PHASES and drifted != "True" else "")
        or previous.get("appliedSchemaHash", ""),
        "drifted": drifted,
        "message": verdict,
        "conditions": conditions(
            phase, reason, verdict, generation, previous.get("conditions"), extra=extra, synced=synced
        ),
    }


def changes(previous: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``previous`` into ``new``: {} when they are equal.

    Fields no longer written are removed (None), maps are patched key by key (a merge patch merges
    them, so a stale key would otherwise stay), lists are replaced. Kopf's own field is left alone.
    """
    patch: dict[str, Any] = {}
    for key, value in new.items():
        old = previous.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            inner = changes(old, value)
            if inner:
                patch[key] = inner
        elif old != value or key not in previous:
            patch[key] = value
    patch.update({k: None for k in previous if k not in new and k != KOPF_FIELD})
    return patch
