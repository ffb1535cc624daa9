"""The ``DataFlowSchema`` spec as Python types: the one declaration of its fields.

``spec.tables`` is :class:`dataflow.schema.Table`; the rest is declared here, the status in
:mod:`dataflow.resource_status`. :mod:`dataflow.crdgen` generates the CRD and the docs' field tables
from these types; :func:`dataflow.manifest.from_resource` reads manifests with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dataflow.durations import DURATION_PATTERN
from dataflow.jsonfields import json_field
from dataflow.operations import OPERATION_KINDS, Risk
from dataflow.schema import IDENTIFIER, IDENTIFIER_ITEM, EnumType, Function, Sequence, Table, View

DNS_SUBDOMAIN = "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
RISK_LEVELS = tuple(r.name for r in Risk)
DEFAULT_SECRET_KEY = "dsn"
# spec.deletionPolicy: what deleting the resource does (the tables and their data are kept either way)
RETAIN, ORPHAN = "Retain", "Orphan"
DELETION_POLICIES = (RETAIN, ORPHAN)
_DNS_NAME = {"minLength": 1, "maxLength": 253, "pattern": DNS_SUBDOMAIN}
_DURATION = {"pattern": DURATION_PATTERN}
_FUNCTION = {
    "type": "string",
    "description": "A function name, optionally schema-qualified (schema.function).",
    "minLength": 1,
    "maxLength": 127,
    "pattern": r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$",
}


class DriftPolicy(StrEnum):
    """``spec.policy.drift``: what the operator does when the database no longer matches the applied spec."""

    REPORT = "report"  # a Drifted condition, a Warning event and the printer column; nothing applied
    REVERT = "revert"  # apply the spec again, within maxRiskLevel (above it: approval as for any plan)


# spec -----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class SecretRef:
    name: str = json_field("name", "Name of the Secret.", schema=_DNS_NAME)
    key: str = json_field(
        "key",
        "Key in the Secret whose value is the DSN.",
        default=DEFAULT_SECRET_KEY,
        publish_default=True,
        schema={"minLength": 1, "pattern": "^[-._a-zA-Z0-9]+$"},
    )


@dataclass(frozen=True, kw_only=True)
class Database:
    secret_ref: SecretRef = json_field(
        "secretRef", "A Secret in the same namespace holding the PostgreSQL DSN."
    )
    schema: str = json_field(
        "schema",
        "PostgreSQL schema (namespace) holding the tables.",
        default="public",
        publish_default=True,
        schema=IDENTIFIER,
    )


@dataclass(frozen=True, kw_only=True)
class PolicySpec:
    max_risk_level: str = json_field(
        "maxRiskLevel",
        "Highest risk applied without approval.",
        default="MEDIUM",
        publish_default=True,
        schema={"enum": list(RISK_LEVELS)},
    )
    include_tables: tuple[str, ...] = json_field(
        "includeTables",
        "Only manage these tables (all tables when empty).",
        default=(),
        items=IDENTIFIER_ITEM,
    )
    exclude_operations: tuple[str, ...] = json_field(
        "excludeOperations",
        "Operations the operator never performs.",
        default=(),
        items={"enum": list(OPERATION_KINDS)},
    )
    dry_run: bool = json_field(
        "dryRun", "Plan and report only; never apply.", default=False, publish_default=True
    )
    lock_timeout: str = json_field(
        "lockTimeout",
        "PostgreSQL lock_timeout for migration statements.",
        default="2s",
        publish_default=True,
        schema=_DURATION,
    )
    statement_timeout: str = json_field(
        "statementTimeout",
        "PostgreSQL statement_timeout for migration statements.",
        default="5m",
        publish_default=True,
        schema=_DURATION,
    )
    drift_check_interval: str = json_field(
        "driftCheckInterval",
        "How often the live database is compared with the spec.",
        default="5m",
        publish_default=True,
        schema=_DURATION,
    )
    drift: str = json_field(
        "drift",
        "When the database no longer matches the spec this resource applied (someone changed it by hand): "
        "report it (a Drifted condition and a Warning event; nothing applied) or revert it.",
        default=DriftPolicy.REPORT.value,
        publish_default=True,
        schema={"enum": [p.value for p in DriftPolicy]},
    )
    prune: bool = json_field(
        "prune",
        "The tables are complete as declared: when this resource first adopts an existing table, drop the "
        "columns, indexes and constraints it does not declare. Otherwise they are kept, reported and "
        "recorded, and left alone afterwards.",
        default=False,
        publish_default=True,
    )
    allowed_functions: tuple[str, ...] = json_field(
        "allowedFunctions",
        "Functions a default or check may call although they reach outside the table "
        "(for example dblink); every other such function is refused.",
        default=(),
        items=_FUNCTION,
    )


@dataclass(frozen=True, kw_only=True)
class Promotion:
    after: str | None = json_field(
        "after",
        "Name of a DataFlowSchema in the same namespace that must be Applied with the same schema first.",
        default=None,
        schema=_DNS_NAME,
    )


@dataclass(frozen=True, kw_only=True)
class Spec:
    database: Database = json_field(
        "database", "Where the schema lives. The DSN is read from a Secret, never from the spec."
    )
    tables: tuple[Table, ...] = json_field(
        "tables", "Tables in canonical form, sorted by name (docs/canonical-schema.md)."
    )
    policy: PolicySpec = json_field(
        "policy", "What the operator may apply on its own, and how.", default=PolicySpec()
    )
    promotion: Promotion | None = json_field(
        "promotion", "Promotion gating between environments.", default=None
    )
    deletion_policy: str = json_field(
        "deletionPolicy",
        "What deleting this resource does; the tables and their data are kept either way. Retain: "
        "release its claim on the tables, so another DataFlowSchema may manage them (deletion waits "
        "for the database). Orphan: leave the database untouched, claim included (for a database that "
        "is gone, or a resource re-created under the same name).",
        default=RETAIN,
        publish_default=True,
        schema={"enum": list(DELETION_POLICIES)},
    )
    adopt: bool = json_field(
        "adopt",
        "The tables already exist: the first reconcile records them as they are (a baseline in the "
        "ledger, no DDL) and claims them; objects they do not declare are kept unless policy.prune.",
        default=False,
        publish_default=True,
    )
    extensions: tuple[str, ...] = json_field(
        "extensions",
        "PostgreSQL extensions the tables need (CREATE EXTENSION IF NOT EXISTS, first), sorted; one this "
        "resource created and no longer names is dropped only under drop_missing (HIGH).",
        default=(),
        items=IDENTIFIER_ITEM,
    )
    enums: tuple[EnumType, ...] = json_field(
        "enums", "Enum types the tables use, sorted by name; created before them.", default=()
    )
    sequences: tuple[Sequence, ...] = json_field(
        "sequences",
        "Sequences of their own (not identity columns'), sorted by name; one left out is never dropped.",
        default=(),
    )
    views: tuple[View, ...] = json_field(
        "views",
        "Views and materialized views, sorted by name; created after the tables, in dependency order. "
        "One never declared is never touched.",
        default=(),
    )
    functions: tuple[Function, ...] = json_field(
        "functions",
        "Functions, sorted by name; created before the triggers that execute them. One left out is dropped "
        "only with drop missing, and only if this owner created it.",
        default=(),
    )
