"""Grade each change SAFE / MEDIUM / HIGH from what it does and what the database holds.

:func:`probe` asks the database the facts a grade depends on (row counts, NULLs in a column
about to become NOT NULL, values that would fail a cast, values a drop would lose);
:func:`assess` turns a change plus those facts into an :class:`Assessment`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg

from dataflow.operations import Assessment, Change, Risk
from dataflow.schema import Column, ForeignKey, PrimaryKey, Schema, Unique
from dataflow.sqltext import quote_ident as q
from dataflow.types import Conversion, classify_conversion, parse_type

ROW_COUNT_CAP = 100_000
_METADATA_MS = 5
_BYTES_PER_MS_SCAN = 100_000  # ~100 MB/s sequential scan
_VOLATILE = re.compile(r"\b(random|clock_timestamp|timeofday|gen_random_uuid|uuid_generate_v[14]|nextval)\s*\(", re.I)

REWRITE_HIGH_MS = 1_000  # a rewrite expected to hold ACCESS EXCLUSIVE longer than this is HIGH

ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE (writes continue)"
SHARE = "SHARE (blocks writes)"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"


@dataclass(frozen=True)
class Facts:
    """Database facts about one change's table (and column)."""

    rows: int = 0
    size_bytes: int = 0
    nulls: int = 0
    failing_cast: int = 0
    non_null_values: int = 0


async def count_rows(conn: asyncpg.Connection, table: str, estimate: int) -> int:
    """Exact row count up to ROW_COUNT_CAP, the planner's estimate beyond it."""
    capped = await conn.fetchval(f"SELECT count(*) FROM (SELECT 1 FROM {q(table)} LIMIT {ROW_COUNT_CAP}) s")
    return max(capped, estimate) if capped >= ROW_COUNT_CAP else capped


async def probe(conn: asyncpg.Connection, change: Change, db_table: str, rows: int, size_bytes: int) -> Facts:
    """Facts for ``change``; ``db_table`` is the table's name in the database now (before renames)."""
    facts = Facts(rows=rows, size_bytes=size_bytes)
    if rows == 0:
        return facts
    col = q(change.subject) if change.subject else None
    if change.kind == "SET_NOT_NULL":
        nulls = await conn.fetchval(f"SELECT count(*) FROM {q(db_table)} WHERE {col} IS NULL")
        return Facts(rows, size_bytes, nulls=nulls)
    if change.kind == "DROP_COLUMN":
        kept = await conn.fetchval(f"SELECT count({col}) FROM {q(db_table)}")
        return Facts(rows, size_bytes, non_null_values=kept)
    if change.kind == "ALTER_COLUMN_TYPE" and classify_conversion(change.old.type, change.new.type) is Conversion.NARROWING:
        failing = await count_failing_cast(conn, db_table, change.old.name, change.new.type)
        return Facts(rows, size_bytes, failing_cast=failing)
    return facts


async def count_failing_cast(conn: asyncpg.Connection, table: str, column: str, new_type: str) -> int:
    """Rows whose value would not convert to ``new_type`` (length overflow included)."""
    t = parse_type(new_type)
    col = q(column)
    if t.base in ("VARCHAR", "CHAR") and t.length is not None and not t.array:
        return await conn.fetchval(f"SELECT count(*) FROM {q(table)} WHERE length({col}::text) > $1", t.length)
    if conn.get_server_version().major >= 16:
        return await conn.fetchval(
            f"SELECT count(*) FROM {q(table)} WHERE {col} IS NOT NULL AND NOT pg_input_is_valid({col}::text, $1)",
            new_type,
        )
    async with conn.transaction():
        await conn.execute(
            "CREATE FUNCTION pg_temp.dataflow_castable(v text, t text) RETURNS boolean LANGUAGE plpgsql AS $$"
            " BEGIN EXECUTE format('SELECT %L::%s', v, t); RETURN true;"
            " EXCEPTION WHEN others THEN RETURN false; END $$"
        )
        count = await conn.fetchval(
            f"SELECT count(*) FROM {q(table)} WHERE {col} IS NOT NULL AND NOT pg_temp.dataflow_castable({col}::text, $1)",
            new_type,
        )
        await conn.execute("DROP FUNCTION pg_temp.dataflow_castable(text, text)")
        return count


def is_volatile(expression: str) -> bool:
    """Whether a default must be evaluated per row (so adding it rewrites or backfills the table)."""
    return bool(_VOLATILE.search(expression))


def _scan_ms(f: Facts) -> int:
    return _METADATA_MS + f.size_bytes // _BYTES_PER_MS_SCAN


def _rows(n: int) -> str:
    return f"{n:,} row{'s' if n != 1 else ''}"


def has_dependents(current: Schema, table: str, con: object) -> list[str]:
    """Foreign keys in ``current`` that rely on unique/primary key ``con`` of ``table``."""
    if not isinstance(con, (Unique, PrimaryKey)):
        return []
    return [
        f"{t.name}.{fk.name}"
        for t in current.tables
        for fk in t.foreign_keys
        if fk.ref_table == table and set(fk.ref_columns) == set(con.columns)
    ]


def assess(change: Change, facts: Facts, current: Schema, online: bool = False) -> Assessment:
    """The risk of one change given the facts; its reason names the facts.

    ``online``: the change runs with the lock-friendly strategy (concurrent index builds,
    NOT VALID + VALIDATE), which changes the lock it holds, not what it does.
    """
    k, f = change.kind, facts
    populated = f.rows > 0
    if k == "CREATE_TABLE":
        return Assessment(Risk.SAFE, "new table", "none on existing tables", _METADATA_MS)
    if k == "DROP_TABLE":
        return Assessment(Risk.HIGH, f"drops the table and its {_rows(f.rows)}", ACCESS_EXCLUSIVE, _METADATA_MS,
                          data_loss=populated, affected_rows=f.rows)
    if k in ("RENAME_TABLE", "RENAME_COLUMN"):
        return Assessment(Risk.MEDIUM, "rename keeps the data; clients using the old name break",
                          f"{ACCESS_EXCLUSIVE} (brief)", _METADATA_MS)
    if k == "ADD_COLUMN":
        return _assess_add_column(change.new, f, online)
    if k == "DROP_COLUMN":
        return Assessment(Risk.HIGH, f"drops the column: {_rows(f.non_null_values)} lose a value",
                          f"{ACCESS_EXCLUSIVE} (brief)", _METADATA_MS, data_loss=f.non_null_values > 0,
                          affected_rows=f.non_null_values)
    if k == "ALTER_COLUMN_TYPE":
        return _assess_type_change(change, f)
    if k in ("SET_DEFAULT", "DROP_DEFAULT"):
        return Assessment(Risk.SAFE, "changes the default for new rows only", f"{ACCESS_EXCLUSIVE} (brief)", _METADATA_MS)
    if k == "DROP_NOT_NULL":
        return Assessment(Risk.SAFE, "relaxes a constraint", f"{ACCESS_EXCLUSIVE} (brief)", _METADATA_MS)
    if k == "SET_NOT_NULL":
        if f.nulls and change.new.default is None:
            return Assessment(Risk.HIGH, f"{_rows(f.nulls)} hold NULL and the column has no default: "
                              "the migration fails unless they are filled", ACCESS_EXCLUSIVE, _scan_ms(f),
                              affected_rows=f.nulls)
        reason = (f"validates {_rows(f.rows)} with writes continuing" if online
                  else f"scans {_rows(f.rows)} under an exclusive lock")
        if f.nulls:
            reason = f"sets {_rows(f.nulls)} from NULL to the default, then " + reason
        return Assessment(Risk.MEDIUM if populated else Risk.SAFE, reason, ACCESS_EXCLUSIVE, _scan_ms(f),
                          affected_rows=f.nulls)
    if k == "CREATE_INDEX":
        return Assessment(Risk.SAFE, f"builds an index over {_rows(f.rows)}", SHARE_UPDATE_EXCLUSIVE if online else SHARE,
                          _scan_ms(f) + f.rows // 1000)
    if k == "DROP_INDEX":
        return Assessment(Risk.MEDIUM, "queries relying on the index may slow down", ACCESS_EXCLUSIVE, _METADATA_MS)
    if k == "ADD_CONSTRAINT":
        lock = SHARE_ROW_EXCLUSIVE if isinstance(change.new, ForeignKey) else ACCESS_EXCLUSIVE
        if online:
            lock = f"{lock} (brief), then SHARE UPDATE EXCLUSIVE while validating"
        if not populated:
            return Assessment(Risk.SAFE, "new constraint on an empty table", lock, _METADATA_MS)
        return Assessment(Risk.MEDIUM, f"validates {_rows(f.rows)}; fails if any row violates it", lock, _scan_ms(f))
    if k == "DROP_CONSTRAINT":
        dependents = has_dependents(current, change.table, change.old)
        if dependents:
            return Assessment(Risk.HIGH, f"foreign keys depend on it: {', '.join(dependents)}", ACCESS_EXCLUSIVE,
                              _METADATA_MS)
        return Assessment(Risk.MEDIUM, "removes a data-integrity rule", ACCESS_EXCLUSIVE, _METADATA_MS)
    raise ValueError(f"unknown change kind {k}")


def _assess_add_column(c: Column, f: Facts, online: bool) -> Assessment:
    lock = f"{ACCESS_EXCLUSIVE} (brief)"
    if c.default is not None and is_volatile(c.default) and f.rows:
        if online:
            return Assessment(Risk.MEDIUM, f"volatile default: {_rows(f.rows)} backfilled in batches", lock,
                              2 * _scan_ms(f), affected_rows=f.rows)
        return Assessment(Risk.MEDIUM, "volatile default rewrites the table", ACCESS_EXCLUSIVE, 2 * _scan_ms(f))
    if c.nullable:
        return Assessment(Risk.SAFE, "nullable column, metadata only", lock, _METADATA_MS)
    if c.default is not None or c.identity:
        return Assessment(Risk.SAFE, "constant default, metadata only", lock, _METADATA_MS)
    if f.rows:
        return Assessment(Risk.MEDIUM, f"NOT NULL column on a table with {_rows(f.rows)}: existing rows get a backfill value",
                          lock, _METADATA_MS, affected_rows=f.rows)
    return Assessment(Risk.SAFE, "NOT NULL column on an empty table", lock, _METADATA_MS)


def _assess_type_change(change: Change, f: Facts) -> Assessment:
    old, new = change.old.type, change.new.type
    conversion = classify_conversion(old, new)
    if conversion is Conversion.IN_PLACE:
        return Assessment(Risk.MEDIUM, "compatible type change, no table rewrite", f"{ACCESS_EXCLUSIVE} (brief)",
                          _METADATA_MS)
    if conversion is Conversion.WIDENING:
        rewrite_ms = 2 * _scan_ms(f)
        if not f.rows:
            return Assessment(Risk.SAFE, "compatible type change; rewriting an empty table is cheap", ACCESS_EXCLUSIVE,
                              rewrite_ms)
        if rewrite_ms > REWRITE_HIGH_MS:
            return Assessment(Risk.HIGH, f"rewrites {_rows(f.rows)} (~{rewrite_ms / 1000:.1f}s) under ACCESS EXCLUSIVE: "
                              "reads and writes wait", ACCESS_EXCLUSIVE, rewrite_ms)
        return Assessment(Risk.MEDIUM, f"compatible type change; rewrites {_rows(f.rows)} under an exclusive lock",
                          ACCESS_EXCLUSIVE, rewrite_ms)
    if f.failing_cast:
        reason = f"{_rows(f.failing_cast)} cannot be converted from {old} to {new}: the migration will fail"
    else:
        reason = f"incompatible type change {old} → {new}; all {_rows(f.rows)} convert today"
    return Assessment(Risk.HIGH, reason, ACCESS_EXCLUSIVE, 2 * _scan_ms(f), affected_rows=f.failing_cast)
