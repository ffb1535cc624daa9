"""Build a :class:`Migration` from the database's state and a desired schema."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from dataflow import extensions, fingerprint
from dataflow.adoption import KeptObject, keep_undeclared
from dataflow.diff import compare_schemas, missing_tables
from dataflow.errors import SchemaError
from dataflow.introspect import DatabaseState
from dataflow.introspect_views import align_views
from dataflow.operations import Change, Operation, Risk, RollbackStep
from dataflow.ops import Context, kind_of
from dataflow.ops.create_view import undeclared_view_refusals
from dataflow.options import MigrationOptions
from dataflow.safety import (
    Facts,
    FunctionCatalog,
    count_rows,
    read_function_catalog,
    refuse_denied,
    refuse_extension_functions,
)
from dataflow.schema import Schema, Table
from dataflow.schema_memo import per_schema
from dataflow.sqlgen import Options
from dataflow.sqltext import constraint_name, function_names
from dataflow.viewsql import query_function_names

PLAN_HASH_LENGTH = 12


def needs_row_count(change: Change) -> bool:
    """Whether the change's risk or SQL depends on exact row counts (else the planner's estimate serves)."""
    return kind_of(change.kind).needs_row_count(change)


@dataclass
class Migration:
    """A planned (or applied) migration: the unit the executor runs in one transaction."""

    version: str
    description: str
    operations: list[Operation]
    schema_hash: str
    checksum: str
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    position: str = ""  # where the database stood when planned (:func:`position`); backups are named from it
    # tables this owner created that the models no longer name, left alone (the model set may be partial)
    kept_tables: list[str] = field(default_factory=list)
    # objects of adopted tables the models do not declare, left alone (dataflow.adoption)
    kept_objects: list[KeptObject] = field(default_factory=list)

    @property
    def risk(self) -> Risk:
        return max((op.risk for op in self.operations), default=Risk.SAFE)

    @property
    def safety_level(self) -> str:
        return self.risk.name

    risk_level = safety_level

    @property
    def plan_hash(self) -> str:
        """Short hash naming this exact plan (what an approval refers to)."""
        return self.checksum[:PLAN_HASH_LENGTH]

    @property
    def sql_up(self) -> list[str]:
        return [s for op in self.operations for s in op.sql_up]

    @property
    def sql_down(self) -> list[str]:
        return [s for op in reversed(self.operations) for s in op.sql_down]

    @property
    def rollback_steps(self) -> list[RollbackStep]:
        return [
            RollbackStep(
                operation_type=f"UNDO_{op.kind}",
                sql=sql,
                risk_level=kind_of(op.kind).undo_grade(op.change, op.assessment).name,
                estimated_duration_ms=op.assessment.estimated_duration_ms,
                irreversible=op.irreversible,
                note="data removed by this migration is not restored" if op.irreversible else "",
            )
            for op in reversed(self.operations)
            for sql in op.sql_down
        ]

    @property
    def estimated_duration_ms(self) -> int:
        return sum(op.assessment.estimated_duration_ms for op in self.operations)

    @property
    def tables(self) -> list[str]:
        return sorted({op.table for op in self.operations})

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "description": self.description,
            "safetyLevel": self.safety_level,
            "schemaHash": self.schema_hash,
            "checksum": self.checksum,
            "planHash": self.plan_hash,
            "position": self.position,
            "keptTables": self.kept_tables,
            "keptObjects": [k.to_dict() for k in self.kept_objects],
            "operations": [op.to_dict() for op in self.operations],
            "backups": [op.backup for op in self.operations if op.backup],
            "sqlUp": self.sql_up,
            "sqlDown": self.sql_down,
        }


def empty_migration(schema_hash: str) -> Migration:
    """The plan of a database already in line with the schema of ``schema_hash`` (what a full plan finds)."""
    return Migration(new_version(), describe([]), [], schema_hash, plan_checksum(schema_hash, []))


def new_version(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("migration_%Y%m%d_%H%M%S")


def filter_changes(
    changes: list[Change], include_tables: Iterable[str] | None, exclude_operations: Iterable[str] | None
) -> list[Change]:
    """``changes`` of the ``include_tables`` (None: all), without the kinds of ``exclude_operations``.

    A new schema-wide object (an enum type, a sequence no table outside them owns, a function) is kept with
    any ``include_tables`` (:meth:`Kind.schema_wide`), since an included table being created may use it
    (``initialize`` creates only the missing tables, and their enum columns need the type).
    """
    include = set(include_tables) if include_tables is not None else None
    exclude = set(exclude_operations or ())
    return [
        c
        for c in changes
        if (include is None or c.table in include or kind_of(c.kind).schema_wide(c, include))
        and c.kind not in exclude
    ]


def concerned_tables(desired: Schema, owned: Iterable[str]) -> list[str]:
    """The relations a plan reads: the tables ``desired`` names, their ``renamed_from`` sources, those ``owned``,
    its sequences, views and functions."""
    names = set(desired.table_names) | set(owned)
    names |= {t.renamed_from for t in desired.tables if t.renamed_from}
    names |= {q.name for q in desired.sequences}  # their pg_class and pg_sequence rows are fingerprinted
    names |= {v.name for v in desired.views}  # their pg_class, pg_attribute and pg_rewrite rows likewise
    names |= {f.name for f in desired.functions}  # their pg_proc rows (a table so named is read)
    return sorted(names)


def table_expressions(table: Table) -> Iterator[tuple[str, str]]:
    """``(path, SQL)`` of every expression in ``table``: defaults, checks, index conditions and expressions."""
    for c in table.columns:
        if c.default is not None:
            yield f"{table.name}.{c.name}.default", c.default
        if c.generated is not None:
            yield f"{table.name}.{c.name}.generated", c.generated
    for check in table.checks:
        yield f"{table.name}.checks.{check.name}", check.expression
    for ix in table.indexes:
        if ix.where:
            yield f"{table.name}.indexes.{ix.name}.where", ix.where
        for element in ix.columns:
            if table.column(element) is None:
                yield f"{table.name}.indexes.{ix.name}.columns", element


@per_schema
def function_calls(desired: Schema) -> dict[str, frozenset[str]]:
    """The functions each expression of ``desired`` calls, by the expression's path (remembered by schema
    hash: ~40 ms of parsing at 1,000 tables, for every plan of an unchanged model set)."""
    calls: dict[str, frozenset[str]] = {}
    for table in desired.tables:
        for path, expression in table_expressions(table):
            try:
                calls[path] = calls.get(path, frozenset()) | function_names(expression)
            except ValueError as exc:
                raise SchemaError(path, str(exc)) from None
    for view in desired.views:
        calls[f"views.{view.name}.query"] = query_function_names(view.query)
    return calls


async def check_functions(
    conn: asyncpg.Connection, desired: Schema, allowed: frozenset[str]
) -> FunctionCatalog:
    """Refuse expressions that reach outside the table; the catalog facts (volatility) of every function called.

    Runs before any probe: a refused schema costs one catalog query and reads no table.
    """
    calls = function_calls(desired)
    allowed = frozenset(n.lower() for n in allowed)
    refuse_denied(calls, allowed)
    catalog = await read_function_catalog(conn, {n for names in calls.values() for n in names})
    refuse_extension_functions(calls, catalog, allowed)
    return catalog


def volatile_default(change: Change, catalog: FunctionCatalog) -> bool:
    """Whether the default the change gives existing rows is volatile per the server's catalog (unknown: yes)."""
    default = kind_of(change.kind).added_default(change)
    return default is not None and catalog.is_volatile(function_names(default))


def position(reading: fingerprint.Reading) -> str:
    """Where the database stands, as a hash: which database, its last applied migration, its schema.

    A plan hash covers it, so an approval names one plan for one database at one point: after any apply
    (a new last migration, new catalog rows) or any DDL by hand, or on another database that merely
    looks alike (the fingerprint holds the database's identity), the same changes get another hash.
    It is made of one fingerprint reading, already taken before a plan: no extra round trip.
    """
    parts = ("position-v1", reading.recorded_version or "", reading.fingerprint)
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def backup_name(change: Change, position: str) -> str:
    """Deterministic for one position (so a plan made again is the same plan), unique per change; a later
    migration starts from another position, so it never reuses (or overwrites) an earlier one's backup."""
    return constraint_name(change.table, [change.subject or "table"], position[:10])


async def build_migration(
    conn: asyncpg.Connection,
    state: DatabaseState,
    desired: Schema,
    owned: Iterable[str] = (),
    *,
    options: MigrationOptions = MigrationOptions(),
    at: str = "",
    adopting: Iterable[str] = (),
    recorded_kept: Iterable[KeptObject] = (),
    owner: str = "",
    owned_extensions: Iterable[str] = (),
) -> Migration:
    """Diff, probe facts, grade and render: the migration that makes the database ``desired``.

    ``adopting``: existing tables this owner does not hold yet; what the models do not declare on
    them is kept unless ``options.prune``, as are the objects ``recorded_kept`` at an earlier
    adoption (:func:`dataflow.adoption.keep_undeclared`).

    ``options`` says which tables and operation kinds to plan (``include_tables``, ``exclude_operations``)
    and how to render them (``strategy``, ``backup``, ``batch_size``, ``allowed_functions``).
    ``at`` is the database's :func:`position`: the checksum (what an approval names) and backup names
    derive from it. ``owner`` marks the functions the plan creates (only an owner's own are ever dropped).
    ``owned_extensions``: the extensions this owner created (the ledger's claims).
    """
    catalog = await check_functions(conn, desired, options.allowed_functions)
    schema_hash = fingerprint.schema_hash(desired)  # remembered: ~0.1 s at 1,000 tables
    drop = options.drop_missing_tables
    # extension types as the server spells them; the extensions to create, and (owner set complete) to drop
    resolved = await extensions.resolve(conn, desired, owned_extensions if drop else ())
    desired = resolved.schema
    current, desired = await align_views(conn, state.schema, desired)  # views PostgreSQL reads alike
    compared, kept_objects = keep_undeclared(
        compare_schemas(current, desired, owned, drop, owner), desired, adopting, recorded_kept, options.prune
    )
    changes = resolved.with_changes(
        filter_changes(compared, options.include_tables, options.exclude_operations),
        options.exclude_operations,
    )
    if refusals := undeclared_view_refusals(current, changes):
        raise SchemaError(
            "views",
            "; ".join(refusals) + ": PostgreSQL refuses the change under a view; declare the view (it is "
            "then re-created around the change) or drop it",
        )
    include = options.include_tables
    kept = [
        t.name
        for t in ([] if drop else missing_tables(state.schema, desired, owned))
        if include is None or t.name in include
    ]
    renamed = {c.table: old for c in changes if (old := kind_of(c.kind).renamed_from(c))}
    foreign_keys = tuple(state.foreign_keys)
    row_counts: dict[str, int] = {}
    operations: list[Operation] = []
    for change in changes:
        kind = kind_of(change.kind)
        db_table = renamed.get(change.table, change.table)
        facts = await _facts(conn, state, desired.name, change, db_table, catalog, row_counts)
        online = options.strategy == "online" and facts.rows > 0
        existing = state.schema.table(db_table)
        backup = None
        if options.backup is not False and kind.needs_backup(change, facts):
            backup = backup_name(change, at or schema_hash)
        render_options = Options(
            populated=facts.rows > 0,
            nulls=facts.nulls,
            online=online,
            batch_size=options.batch_size,
            backup=backup,
            schema=desired.name,
            primary_key=existing.primary_key if existing else (),
            volatile_default=facts.volatile_default,
        )
        assessment = kind.assess(change, facts, Context(foreign_keys, online))
        r = kind.render(change, render_options, desired.table(change.table))
        operations.append(
            Operation(change, assessment, r.steps, r.down, r.irreversible, r.details, r.strategy, r.backup)
        )
    checksum = plan_checksum(schema_hash, operations, at)
    return Migration(
        new_version(),
        describe(operations),
        operations,
        schema_hash,
        checksum,
        position=at,
        kept_tables=kept,
        kept_objects=[k for k in kept_objects if include is None or k.table in include],
    )


async def _facts(
    conn: asyncpg.Connection,
    state: DatabaseState,
    schema: str,
    change: Change,
    db_table: str,
    catalog: FunctionCatalog,
    row_counts: dict[str, int],
) -> Facts:
    """What the database says about the change's table, completed by the kind's own probe.

    The planner's estimate is 0 for a table never analysed: then, or when the grade depends on
    it, rows are counted (capped, once per table); otherwise the estimate is good enough. An empty
    table has nothing more to probe.
    """
    kind = kind_of(change.kind)
    table_facts = state.facts.get(db_table)
    if not kind.reads_table:  # a database object (an enum type): its kind probes what it needs
        return await kind.probe(conn, change, schema, db_table, Facts())
    if table_facts is None:
        return Facts()
    if db_table not in row_counts and (kind.needs_row_count(change) or table_facts.rows == 0):
        row_counts[db_table] = await count_rows(conn, schema, db_table, table_facts.rows)
    rows = row_counts.get(db_table, table_facts.rows)
    known = Facts(rows, table_facts.size_bytes, volatile_default=volatile_default(change, catalog))
    if known.rows == 0:
        return known
    return await kind.probe(conn, change, schema, db_table, known)


def plan_checksum(schema_hash: str, operations: list[Operation], at: str = "") -> str:
    """The plan's identity: desired schema, statements, risks and the position they were planned at.

    An empty plan has nothing to approve: its hash is the same at any position, whichever path (the
    fingerprint's or a full plan) found it.
    """
    payload = json.dumps(
        {
            "schema": schema_hash,
            "position": at if operations else "",
            "sql": [[(s.sql, s.transactional) for s in op.steps] for op in operations],
            "risk": [op.risk.name for op in operations],
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def describe(operations: list[Operation]) -> str:
    if not operations:
        return "no changes"
    counts: dict[str, int] = {}
    for op in operations:
        counts[op.kind] = counts.get(op.kind, 0) + 1
    tables = sorted({op.table for op in operations})
    parts = ", ".join(f"{n} {kind.lower().replace('_', ' ')}" for kind, n in counts.items())
    return f"{parts} on {', '.join(tables)}"
