"""Explicit migration plans: ``MigrationPlan([...steps...])`` applied by ``DataFlow.apply_migration_plan``.

Each schema step (``add_table``, ``add_column``, ``drop_column``, ``rename_column``, ``rename_table``,
``drop_table``, ``add_index``) turns the schema the previous steps left into the next one; the change
between the two is graded and rendered by the same operation kinds as ``auto_migrate`` (backups
included). ``migrate_data`` copies a column into another, in batches keyed by the source's primary
key. Every step is checked against the state the steps before it leave, before anything runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg
from rich.console import Console
from rich.progress import Progress

from dataflow.errors import SchemaError
from dataflow.executor import configure_session, execute_one, reset_session, run_in_transaction
from dataflow.introspect import DatabaseState, introspect
from dataflow.ledger import STATUS_APPLIED, STATUS_FAILED, Ledger
from dataflow.lock import MigrationLease
from dataflow.operations import Assessment, Change, Operation, Risk
from dataflow.ops.add_column import ADD_COLUMN
from dataflow.ops.create_index import CREATE_INDEX
from dataflow.ops.create_table import CREATE_TABLE
from dataflow.ops.drop_column import DROP_COLUMN
from dataflow.ops.drop_table import DROP_TABLE
from dataflow.ops.rename_column import RENAME_COLUMN
from dataflow.ops.rename_table import RENAME_TABLE
from dataflow.options import MigrationOptions
from dataflow.plan import Migration, build_migration, describe, new_version
from dataflow.reconcile import applied_by
from dataflow.safety import count_failing_cast
from dataflow.schema import Schema, Table
from dataflow.sqltext import constraint_name, identifier_problem, qualified
from dataflow.sqltext import quote_ident as q

MIGRATE_DATA = "MIGRATE_DATA"

# step kind -> (required keys, optional keys)
STEP_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "add_table": (("table", "columns"), ("primary_key",)),
    "drop_table": (("table",), ()),
    "rename_table": (("table", "new_name"), ()),
    "add_column": (("table", "column", "type"), ("nullable", "default", "references", "on_delete")),
    "drop_column": (("table", "column"), ()),
    "rename_column": (("table", "column", "new_name"), ()),
    "add_index": (("table", "columns"), ("name", "unique", "method", "where")),
    "migrate_data": (("source", "target"), ("batch_size",)),
}
COLUMN_KEYS = ("name", "type", "nullable", "default", "primary_key", "references", "on_delete")


class MigrationPlan:
    """An ordered list of step dicts, each with an ``operation`` key (see :data:`STEP_KEYS`)."""

    def __init__(self, steps: Sequence[Mapping[str, Any]]) -> None:
        if isinstance(steps, (str, bytes, Mapping)) or not isinstance(steps, Sequence):
            raise SchemaError("MigrationPlan", f"must be a list of steps, not {type(steps).__name__}")
        if not steps:
            raise SchemaError("MigrationPlan", "has no steps")
        self.steps = [dict(s) if isinstance(s, Mapping) else s for s in steps]

    def __len__(self) -> int:
        return len(self.steps)


@dataclass(frozen=True)
class DataMove:
    """A checked ``migrate_data`` step: copy ``source_column`` into ``target_column``, pairing rows by key."""

    source_table: str
    source_column: str
    key: str  # the source's primary-key column
    target_table: str
    target_column: str
    target_type: str
    link: str | None  # the target's column referencing ``key`` (None: same table)
    batch_size: int
    new_target: bool = False  # the target table is created by this plan: empty, every row is inserted


@dataclass
class Segment:
    """One step, checked and rendered: its operations, and the data move of a ``migrate_data``."""

    label: str
    operations: list[Operation]
    move: DataMove | None = None


@dataclass
class CheckedPlan:
    """A plan every step of which passed its checks: the segments to run and the ledger's migration."""

    segments: list[Segment]
    migration: Migration
    final: Schema
    moves: list[DataMove] = field(default_factory=list)


def _where(index: int, step: Mapping[str, Any]) -> str:
    return f"migration_plan.steps[{index}] ({step.get('operation', '?')})"


def _identifier(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str):
        raise SchemaError(f"{where}.{key}", f"must be a name, not {value!r}")
    if problem := identifier_problem(value):
        raise SchemaError(f"{where}.{key}", problem)
    return value


def _dotted(value: Any, where: str, key: str) -> tuple[str, str]:
    """``"table.column"`` as its two names."""
    if not isinstance(value, str) or value.count(".") != 1:
        raise SchemaError(f"{where}.{key}", f"must be 'table.column', not {value!r}")
    table, column = value.split(".")
    return _identifier(table, where, key), _identifier(column, where, key)


def _column_dict(c: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = [k for k in c if k not in COLUMN_KEYS]
    if unknown:
        raise SchemaError(f"{where}.{unknown[0]}", f"unknown column key; known: {', '.join(COLUMN_KEYS)}")
    out: dict[str, Any] = {"name": c.get("name"), "type": c.get("type"), "nullable": c.get("nullable", True)}
    if c.get("default") is not None:
        out["default"] = c["default"]
    return out


def _foreign_key(table: str, column: str, references: Any, on_delete: Any, where: str) -> dict[str, Any]:
    ref_table, ref_column = _dotted(references, where, "references")
    fk: dict[str, Any] = {
        "name": constraint_name(table, [column], "fkey"),
        "columns": [column],
        "refTable": ref_table,
        "refColumns": [ref_column],
    }
    if on_delete is not None:
        fk["onDelete"] = on_delete
    return fk


def _parse_table(d: dict[str, Any], where: str) -> Table:
    """A canonical table dict parsed by the schema module; its errors name the step."""
    try:
        return Schema.from_dict({"tables": [d]}).tables[0]
    except SchemaError as exc:
        raise SchemaError(f"{where}.{exc.field.removeprefix('tables[0].')}", exc.problem) from None


def _table_dict(table: Table) -> dict[str, Any]:
    return Schema((table,)).to_dict()["tables"][0]


def _check_references(schema: Schema, table: Table, where: str) -> None:
    for fk in table.foreign_keys:
        target = schema.table(fk.ref_table) if fk.ref_table != table.name else table
        if target is None:
            raise SchemaError(f"{where}.references", f"table {fk.ref_table!r} does not exist at this step")
        for col in fk.ref_columns:
            if target.column(col) is None:
                raise SchemaError(f"{where}.references", f"column {fk.ref_table}.{col} does not exist")


def _need_table(schema: Schema, name: str, where: str) -> Table:
    table = schema.table(name)
    if table is None:
        raise SchemaError(f"{where}.table", f"table {name!r} does not exist at this step")
    return table


def _need_column(table: Table, name: str, where: str, key: str = "column") -> None:
    if table.column(name) is None:
        raise SchemaError(f"{where}.{key}", f"column {table.name}.{name} does not exist at this step")


def _with_table(schema: Schema, table: Table, replacing: str | None = None) -> Schema:
    drop = replacing or table.name
    return replace(schema, tables=(*[t for t in schema.tables if t.name != drop], table)).normalised()


def next_schema(schema: Schema, step: Mapping[str, Any], where: str) -> Schema:
    """The schema after one schema step (``migrate_data`` leaves it as is); a step that cannot apply
    to ``schema`` raises SchemaError naming it."""
    kind = step["operation"]
    if kind == "add_table":
        name = _identifier(step["table"], where, "table")
        if schema.table(name) is not None:
            raise SchemaError(f"{where}.table", f"table {name!r} already exists at this step")
        columns = step["columns"]
        if not isinstance(columns, list) or not columns or not all(isinstance(c, Mapping) for c in columns):
            raise SchemaError(f"{where}.columns", "must be a non-empty list of column dicts")
        cols = [_column_dict(c, f"{where}.columns[{i}]") for i, c in enumerate(columns)]
        # exactly the columns given (no implicit key, unlike a model): the plan says what the table is
        pk = [c["name"] for c in columns if c.get("primary_key")] or list(step.get("primary_key") or [])
        for c in cols:
            if c["name"] in pk:
                c["nullable"] = False
        fks = [
            _foreign_key(
                name, c.get("name", ""), c["references"], c.get("on_delete"), f"{where}.columns[{i}]"
            )
            for i, c in enumerate(columns)
            if c.get("references") is not None
        ]
        table = _parse_table({"name": name, "columns": cols, "primaryKey": pk, "foreignKeys": fks}, where)
        _check_references(schema, table, where)
        return _with_table(schema, table)
    table = _need_table(schema, _identifier(step["table"], where, "table"), where)
    d = _table_dict(table)
    if kind == "drop_table":
        return replace(schema, tables=tuple(t for t in schema.tables if t.name != table.name))
    if kind == "rename_table":
        new = _identifier(step["new_name"], where, "new_name")
        if schema.table(new) is not None:
            raise SchemaError(f"{where}.new_name", f"table {new!r} already exists at this step")
        return _with_table(
            schema, _parse_table({**d, "name": new, "renamedFrom": table.name}, where), table.name
        )
    if kind == "add_column":
        column = _identifier(step["column"], where, "column")
        if table.column(column) is not None:
            raise SchemaError(f"{where}.column", f"column {table.name}.{column} already exists at this step")
        d["columns"].append(_column_dict({"name": column, "type": step["type"], **_extra(step)}, where))
        if step.get("references") is not None:
            fk = _foreign_key(table.name, column, step["references"], step.get("on_delete"), where)
            d.setdefault("foreignKeys", []).append(fk)
        new_table = _parse_table(d, where)
        _check_references(schema, new_table, where)
        return _with_table(schema, new_table)
    if kind == "drop_column":
        column = _identifier(step["column"], where, "column")
        _need_column(table, column, where)
        if column in table.primary_key:
            raise SchemaError(f"{where}.column", f"{table.name}.{column} is the primary key")
        if len(table.columns) == 1:
            raise SchemaError(f"{where}.column", f"{table.name}.{column} is the table's only column")
        d["columns"] = [c for c in d["columns"] if c["name"] != column]
        for part in ("indexes", "uniques", "foreignKeys"):
            if part in d:
                d[part] = [x for x in d[part] if column not in x.get("columns", ())]
        return _with_table(schema, _parse_table(d, where))
    if kind == "rename_column":
        column = _identifier(step["column"], where, "column")
        new = _identifier(step["new_name"], where, "new_name")
        _need_column(table, column, where)
        if table.column(new) is not None:
            raise SchemaError(f"{where}.new_name", f"column {table.name}.{new} already exists at this step")
        d["columns"] = [
            {**c, "name": new, "renamedFrom": column} if c["name"] == column else c for c in d["columns"]
        ]
        for part in ("indexes", "uniques", "foreignKeys"):
            for x in d.get(part, ()):
                x["columns"] = [new if c == column else c for c in x["columns"]]
        if "primaryKey" in d:
            d["primaryKey"] = [new if c == column else c for c in d["primaryKey"]]
        return _with_table(schema, _parse_table(d, where))
    if kind == "add_index":
        columns = step["columns"]
        if not isinstance(columns, list) or not columns:
            raise SchemaError(f"{where}.columns", "must be a non-empty list of column names")
        for c in columns:
            _need_column(table, _identifier(c, where, "columns"), where, "columns")
        name = step.get("name") or constraint_name(table.name, columns, "idx")
        if any(ix.name == name for ix in table.indexes):
            raise SchemaError(f"{where}.name", f"index {name!r} already exists at this step")
        index: dict[str, Any] = {"name": name, "columns": columns, "unique": bool(step.get("unique", False))}
        for key in ("method", "where"):
            if step.get(key) is not None:
                index[key] = step[key]
        d.setdefault("indexes", []).append(index)
        return _with_table(schema, _parse_table(d, where))
    raise AssertionError(kind)


def _extra(step: Mapping[str, Any]) -> dict[str, Any]:
    return {k: step[k] for k in ("nullable", "default") if k in step}


def check_move(schema: Schema, step: Mapping[str, Any], where: str, batch_size: int) -> DataMove:
    """A ``migrate_data`` step checked against ``schema``: both columns exist, rows pair by key."""
    source_table, source_column = _dotted(step["source"], where, "source")
    target_table, target_column = _dotted(step["target"], where, "target")
    src = schema.table(source_table)
    if src is None:
        raise SchemaError(f"{where}.source", f"table {source_table!r} does not exist at this step")
    _need_column(src, source_column, where, "source")
    tgt = schema.table(target_table)
    if tgt is None:
        raise SchemaError(f"{where}.target", f"table {target_table!r} does not exist at this step")
    _need_column(tgt, target_column, where, "target")
    if (source_table, source_column) == (target_table, target_column):
        raise SchemaError(f"{where}.target", "is the source column itself")
    if len(src.primary_key) != 1:
        raise SchemaError(
            f"{where}.source", f"table {source_table!r} needs a one-column primary key to batch by"
        )
    key = src.primary_key[0]
    link = None
    if target_table != source_table:
        links = [
            fk.columns[0]
            for fk in tgt.foreign_keys
            if fk.ref_table == source_table and fk.ref_columns == (key,) and len(fk.columns) == 1
        ]
        if not links:
            raise SchemaError(
                f"{where}.target",
                f"table {target_table!r} has no column referencing {source_table}.{key}, so its rows"
                " cannot be paired with the source's",
            )
        link = links[0]
        required = [
            c.name
            for c in tgt.columns
            if not c.nullable
            and c.default is None
            and c.identity is None
            and c.name not in (link, target_column)
        ]
        if required:
            raise SchemaError(
                f"{where}.target",
                f"new {target_table} rows would leave NOT NULL column(s) without a default empty: "
                + ", ".join(required),
            )
    size = step.get("batch_size", batch_size)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise SchemaError(f"{where}.batch_size", f"must be a whole number of rows, at least 1, not {size!r}")
    target_type = tgt.column(target_column).type  # type: ignore[union-attr]
    return DataMove(source_table, source_column, key, target_table, target_column, target_type, link, size)


def _move_operation(move: DataMove, existed: bool, rows: int) -> Operation:
    """How a data move shows in the ledger and history: graded MEDIUM (it writes rows), no SQL of its own
    to undo. Overwriting a column that was already there cannot be undone."""
    change = Change(MIGRATE_DATA, move.target_table, move.target_column)
    reason = (
        f"copies {rows} row(s) of {move.source_table}.{move.source_column} in batches of {move.batch_size}"
        f" keyed by {move.key}"
    )
    assessment = Assessment(Risk.MEDIUM, reason, "row locks per batch", max(1, rows // 10), data_loss=existed)
    details = f"{move.source_table}.{move.source_column} -> {move.target_table}.{move.target_column}"
    return Operation(change, assessment, (), (), irreversible=existed, details=details, strategy="batched")


async def check_plan(
    conn: asyncpg.Connection, state: DatabaseState, plan: MigrationPlan, options: MigrationOptions
) -> CheckedPlan:
    """Check every step against the state the steps before it leave, grade and render it; nothing runs."""
    version = new_version()
    schema = state.schema
    segments: list[Segment] = []
    ops: list[Operation] = []
    for i, raw in enumerate(plan.steps):
        if not isinstance(raw, Mapping):
            raise SchemaError(f"migration_plan.steps[{i}]", f"must be a dict, not {type(raw).__name__}")
        where = _where(i, raw)
        kind = raw.get("operation")
        if kind not in STEP_KEYS:
            raise SchemaError(
                f"migration_plan.steps[{i}].operation",
                f"unknown operation {kind!r}; known: {', '.join(STEP_KEYS)}",
            )
        required, optional = STEP_KEYS[kind]
        for key in required:
            if key not in raw:
                raise SchemaError(f"{where}.{key}", "is required")
        for key in raw:
            if key != "operation" and key not in required and key not in optional:
                raise SchemaError(
                    f"{where}.{key}", f"unknown key; {kind} takes {', '.join(required + optional)}"
                )
        if kind == "migrate_data":
            move = check_move(schema, raw, where, options.batch_size)
            move = replace(move, new_target=state.schema.table(move.target_table) is None)
            existed_before = (t := state.schema.table(move.target_table)) is not None and t.column(
                move.target_column
            ) is not None
            rows = await _live_rows(conn, state, move.source_table)
            await _check_cast(conn, state, move, where)
            op = _move_operation(move, existed_before, rows)
            segments.append(Segment(where, [op], move))
            ops.append(op)
            continue
        after = next_schema(schema, raw, where)
        dropped = [t for t in schema.table_names if t not in after.table_names]
        # the schema before this step, over the live facts: tables earlier steps create have none
        before = DatabaseState(schema, dict(state.facts), state.outside_foreign_keys)
        step_options = replace(options, include_tables=None, exclude_operations=())
        rendered = await build_migration(
            conn, before, after, dropped, options=step_options, at=f"{version}:{i}:{after.hash()}"
        )
        if rendered.operations:
            op = one_operation(kind, rendered.operations)
            segments.append(Segment(where, [op]))
            ops.append(op)
        schema = after
    digest = hashlib.sha256(json.dumps([op.to_dict() for op in ops], sort_keys=True).encode()).hexdigest()
    migration = Migration(version, "explicit plan: " + describe(ops), ops, schema.hash(), digest)
    return CheckedPlan(segments, migration, schema, [s.move for s in segments if s.move])


# the operation kind each schema step is recorded as (the step may need more: a new table's foreign keys)
STEP_KIND = {
    "add_table": CREATE_TABLE,
    "drop_table": DROP_TABLE,
    "rename_table": RENAME_TABLE,
    "add_column": ADD_COLUMN,
    "drop_column": DROP_COLUMN,
    "rename_column": RENAME_COLUMN,
    "add_index": CREATE_INDEX,
}


def one_operation(step: str, ops: Sequence[Operation]) -> Operation:
    """A step's operations as one: its statements in order, its undo in reverse, its worst grade.

    The ledger then holds one operation per step of the plan, as the person wrote it.
    """
    main = next((op for op in ops if op.kind == STEP_KIND[step]), ops[0])
    worst = max(ops, key=lambda op: op.risk)
    assessment = replace(worst.assessment, data_loss=any(op.assessment.data_loss for op in ops))
    return Operation(
        main.change,
        assessment,
        tuple(s for op in ops for s in op.steps),
        tuple(s for op in reversed(ops) for s in op.sql_down),
        irreversible=any(op.irreversible for op in ops),
        details="; ".join(op.details for op in ops if op.details),
        strategy=main.strategy,
        backup=next((op.backup for op in ops if op.backup), None),
    )


async def _live_rows(conn: asyncpg.Connection, state: DatabaseState, table: str) -> int:
    if state.schema.table(table) is None:
        return 0
    return await conn.fetchval(f"SELECT count(*) FROM {qualified(state.schema.name, table)}")


async def _check_cast(conn: asyncpg.Connection, state: DatabaseState, move: DataMove, where: str) -> None:
    """When the source is there now, every value must convert to the target's type."""
    src = state.schema.table(move.source_table)
    column = src.column(move.source_column) if src else None
    if column is None or column.type == move.target_type:
        return
    failing = await count_failing_cast(
        conn, state.schema.name, move.source_table, move.source_column, move.target_type
    )
    if failing:
        raise SchemaError(
            f"{where}.target",
            f"{failing} value(s) of {move.source_table}.{move.source_column} do not convert to {move.target_type}",
        )


# running a data move ---------------------------------------------------------------------------
def move_statements(schema: str, m: DataMove) -> list[str]:
    """The statements of one batch, each over source keys ``$1..$2`` (bound), every name quoted."""
    src = qualified(schema, m.source_table)
    value = f"CAST(s.{q(m.source_column)} AS {m.target_type})"
    if m.link is None:
        return [
            f"UPDATE {src} AS s SET {q(m.target_column)} = {value} WHERE s.{q(m.key)} BETWEEN $1 AND $2",
        ]
    tgt = qualified(schema, m.target_table)
    insert = (
        f"INSERT INTO {tgt} ({q(m.link)}, {q(m.target_column)}) SELECT s.{q(m.key)}, {value} FROM {src} AS s"
        f" WHERE s.{q(m.key)} BETWEEN $1 AND $2 AND s.{q(m.source_column)} IS NOT NULL"
    )
    if m.new_target:  # created empty by this plan: nothing to pair with, no scan of the target per batch
        return [insert]
    return [
        f"UPDATE {tgt} AS t SET {q(m.target_column)} = {value} FROM {src} AS s"
        f" WHERE t.{q(m.link)} = s.{q(m.key)} AND s.{q(m.key)} BETWEEN $1 AND $2",
        f"{insert} AND NOT EXISTS (SELECT 1 FROM {tgt} AS t WHERE t.{q(m.link)} = s.{q(m.key)})",
    ]


def batch_keys_sql(schema: str, m: DataMove, first: bool) -> str:
    """The keys of the next batch (after ``$2`` unless ``first``), in key order, ``$1`` of them."""
    after = "" if first else f" WHERE {q(m.key)} > $2"
    return f"SELECT {q(m.key)} FROM {qualified(schema, m.source_table)}{after} ORDER BY {q(m.key)} LIMIT $1"


# applying a checked plan -----------------------------------------------------------------------
@dataclass
class PlanReport:
    """What ``apply_migration_plan`` did: the ledger version, batches per data move, and why it stopped."""

    version: str | None = None
    success: bool = False
    reason: str = ""
    batches: dict[str, int] = field(default_factory=dict)
    migration: Migration | None = None


async def run_operation(
    conn: asyncpg.Connection, schema: str, op: Operation, options: MigrationOptions
) -> None:
    """One rendered operation: transactional steps together in one transaction, the others alone;
    a ``repeat`` step (a backfill batch) commits per batch until it changes no row."""
    pending: list[str] = []

    async def flush() -> None:
        if pending:
            async with conn.transaction():
                await run_in_transaction(conn, schema, list(pending), options)
            pending.clear()

    for step in op.steps:
        if step.transactional and not step.repeat:
            pending.append(step.sql)
            continue
        await flush()
        if step.repeat:
            while True:
                async with conn.transaction():
                    await configure_session(conn, schema, options, local=True)
                    status = await execute_one(conn, step.sql)
                if status.split()[-1] == "0":
                    break
            continue
        await configure_session(conn, schema, options)
        try:
            await execute_one(conn, step.sql)
        except asyncpg.PostgresError:
            if step.cleanup:
                await execute_one(conn, step.cleanup)
            raise
        finally:
            await reset_session(conn)
    await flush()


async def run_move(conn: asyncpg.Connection, schema: str, m: DataMove, console: Console) -> int:
    """Copy in batches keyed by the source's primary key, each batch its own transaction; the batch count.

    A progress bar (rich) shows on a terminal; elsewhere nothing is drawn.
    """
    total = await conn.fetchval(f"SELECT count(*) FROM {qualified(schema, m.source_table)}")
    statements = move_statements(schema, m)
    batches = 0
    last: Any = None
    label = f"migrate_data {m.source_table}.{m.source_column} -> {m.target_table}.{m.target_column}"
    with Progress(console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task(label, total=total)
        while True:
            args = (m.batch_size,) if last is None else (m.batch_size, last)
            keys = [r[0] for r in await conn.fetch(batch_keys_sql(schema, m, last is None), *args)]
            if not keys:
                break
            async with conn.transaction():
                for sql in statements:
                    await conn.execute(sql, keys[0], keys[-1])
            batches += 1
            last = keys[-1]
            progress.advance(task, len(keys))
    return batches


async def run_checked(
    conn: asyncpg.Connection,
    ledger: Ledger,
    checked: CheckedPlan,
    owner: str,
    options: MigrationOptions,
    console: Console,
) -> PlanReport:
    """Run every segment in order under one ledger row; on failure undo what completed (newest first)."""
    migration = checked.migration
    version = await ledger.start(conn, migration, owner, applied_by())
    report = PlanReport(version, migration=migration)
    done: list[Operation] = []
    current = ""
    try:
        for segment in checked.segments:
            current = segment.label
            if segment.move is not None:
                report.batches[segment.label] = await run_move(conn, ledger.schema, segment.move, console)
                continue
            for op in segment.operations:
                await run_operation(conn, ledger.schema, op, options)
                done.append(op)
    except (asyncpg.PostgresError, OSError) as exc:
        report.reason = f"{current} failed: {type(exc).__name__}: {exc}"
        if options.rollback_on_error and done and not conn.is_closed():
            undo = [s for op in reversed(done) for s in op.sql_down]
            try:
                async with conn.transaction():
                    await run_in_transaction(conn, ledger.schema, undo, options)
                report.reason += f"; undid {len(done)} completed operation(s)"
            except asyncpg.PostgresError as undo_exc:
                report.reason += f"; undoing the completed operations failed too: {undo_exc}"
        await ledger.finish(conn, version, STATUS_FAILED, 1, report.reason)
        return report
    await ledger.finish(conn, version, STATUS_APPLIED, 1)
    report.success = True
    report.reason = f"applied {version}"
    return report


async def apply_plan(
    conn: asyncpg.Connection,
    dsn: str,
    schema: str,
    owner: str,
    plan: MigrationPlan,
    options: MigrationOptions,
    console: Console,
) -> PlanReport:
    """Check every step (SchemaError names the first bad one), then, under the schema's lease, check
    again against the database as it is then and run the plan; its risk must be within
    ``options.max_risk_level``."""
    if not isinstance(plan, MigrationPlan):
        raise SchemaError("migration_plan", f"must be a MigrationPlan, not {type(plan).__name__}")
    await check_plan(conn, await introspect(conn, schema), plan, options)
    ledger = Ledger(schema)
    await ledger.ensure(conn)
    lease = MigrationLease(ledger, f"schema:{schema}", ttl=options.lease_ttl_s)
    async with lease.hold(conn, timeout=options.lease_timeout_s, heartbeat_dsn=dsn):
        checked = await check_plan(conn, await introspect(conn, schema), plan, options)
        migration = checked.migration
        if migration.risk > options.max_risk_level:
            worst = [op for op in migration.operations if op.risk > options.max_risk_level]
            reason = (
                f"risk {migration.safety_level} exceeds max_risk_level {options.max_risk_level.name}: "
                + ("; ".join(f"{op.kind} {op.table}.{op.details}: {op.assessment.reason}" for op in worst))
            )
            await ledger.record_refusal(conn, migration, owner, applied_by(), reason)
            return PlanReport(None, False, reason, migration=migration)
        if options.dry_run:
            return PlanReport(None, True, "dry run: nothing applied", migration=migration)
        return await run_checked(conn, ledger, checked, owner, options, console)
