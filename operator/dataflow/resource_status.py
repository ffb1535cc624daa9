"""The status the operator writes (dataflow.k8s.status.build) and the whole resource, as Python types.

Kept apart from :mod:`dataflow.resource` (what authors write) because the phases come from the
Kubernetes layer (:class:`dataflow.k8s.reasons.Phase`), which the manifest reader must not import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataflow.jsonfields import json_field
from dataflow.k8s.reasons import Phase
from dataflow.operations import OPERATION_KINDS
from dataflow.resource import RISK_LEVELS, Spec

_INT64 = {"format": "int64"}
_TIME = {"format": "date-time"}


@dataclass(frozen=True, kw_only=True)
class KindCount:
    operation: str = json_field("operation", schema={"enum": list(OPERATION_KINDS)})
    count: int = json_field("count", schema={"minimum": 0})


@dataclass(frozen=True, kw_only=True)
class RiskCount:
    risk: str = json_field("risk", schema={"enum": list(RISK_LEVELS)})
    count: int = json_field("count", schema={"minimum": 0})


@dataclass(frozen=True, kw_only=True)
class Condition:
    type: str = json_field("type", schema={"minLength": 1})
    status: str = json_field("status", schema={"enum": ["True", "False", "Unknown"]})
    reason: str | None = json_field("reason", default=None)
    message: str | None = json_field("message", default=None)
    last_transition_time: str | None = json_field("lastTransitionTime", default=None, schema=_TIME)
    observed_generation: int | None = json_field("observedGeneration", default=None, schema=_INT64)


@dataclass(frozen=True, kw_only=True)
class Status:
    phase: str | None = json_field("phase", default=None, schema={"enum": [p.value for p in Phase]})
    observed_generation: int | None = json_field("observedGeneration", default=None, schema=_INT64)
    schema_hash: str | None = json_field("schemaHash", "Hash of the canonical spec.tables.", default=None)
    plan_hash: str | None = json_field(
        "planHash",
        "Short hash of the pending plan (12 hex characters).",
        default=None,
        schema={"pattern": "^([0-9a-f]{12})?$"},
    )
    max_risk: str | None = json_field("maxRisk", default=None, schema={"enum": [*RISK_LEVELS, ""]})
    changes: int | None = json_field("changes", default=None, schema={"minimum": 0})
    changes_by_kind: tuple[KindCount, ...] = json_field(
        "changesByKind",
        "How many changes of each operation kind the plan holds.",
        default=(),
        schema={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["operation"]},
    )
    changes_by_risk: tuple[RiskCount, ...] = json_field(
        "changesByRisk",
        "How many changes of each risk level the plan holds.",
        default=(),
        schema={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["risk"]},
    )
    kept: int | None = json_field(
        "kept",
        "Objects of the adopted tables that the spec does not declare, left alone (policy.prune: false); "
        "the plan ConfigMap lists them.",
        default=None,
        schema={"minimum": 0},
    )
    plan_config_map: str | None = json_field(
        "planConfigMap",
        "ConfigMap in this namespace holding the full plan (Markdown, SQL up and down); "
        "`dataflow plan -f` prints the same.",
        default=None,
    )
    verdict: str | None = json_field("verdict", default=None)
    approve_command: str | None = json_field("approveCommand", default=None)
    approved_plan_hash: str | None = json_field(
        "approvedPlanHash", "The plan hash the approval annotation carries, if any.", default=None
    )
    applied_plan_hash: str | None = json_field(
        "appliedPlanHash", "The hash of the plan this resource applied last.", default=None
    )
    last_applied_version: str | None = json_field("lastAppliedVersion", default=None)
    applied_schema_hash: str | None = json_field("appliedSchemaHash", default=None)
    drifted: str | None = json_field(
        "drifted",
        "Whether the database has drifted from the applied spec (the Drifted condition's status).",
        default=None,
        schema={"enum": ["True", "False", "Unknown"]},
    )
    message: str | None = json_field("message", default=None)
    conditions: tuple[Condition, ...] = json_field(
        "conditions",
        default=(),
        schema={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    kopf: dict[str, Any] | None = json_field(
        "kopf",
        "Kopf's own progress bookkeeping.",
        default=None,
        schema={"x-kubernetes-preserve-unknown-fields": True},
    )


@dataclass(frozen=True, kw_only=True)
class DataFlowSchemaResource:
    """The whole object; metadata is the API server's to check (dataflow.manifest checks what it reads)."""

    api_version: str | None = json_field("apiVersion", default=None)
    kind: str | None = json_field("kind", default=None)
    metadata: dict[str, Any] | None = json_field("metadata", default=None)
    spec: Spec = json_field("spec")
    status: Status | None = json_field("status", "Written by the operator.", default=None)
