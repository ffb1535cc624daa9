"""ALTER_COLUMN_TYPE: in place, a rewrite, or a narrowing whose failing values are counted first and whose
old values are kept (primary key + column) in the backup schema."""

from __future__ import annotations

from dataclasses import replace

import asyncpg

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import (
    ACCESS_EXCLUSIVE,
    METADATA_MS,
    REWRITE_HIGH_MS,
    Facts,
    count_failing_cast,
    rows_text,
    scan_ms,
)
from dataflow.schema import Table
from dataflow.sqlgen import Options, Rendered, alter, column_backup, sql_type, tx
from dataflow.sqltext import quote_ident as q
from dataflow.types import Conversion, classify_conversion, parse_type

ALTER_COLUMN_TYPE = "ALTER_COLUMN_TYPE"


@register
class AlterColumnType(Kind):
    name = ALTER_COLUMN_TYPE
    order = 80
    destructive = True

    def needs_row_count(self, change: Change) -> bool:
        return True

    def undo_grade(self, change: Change, assessment: Assessment) -> Risk:
        """The undo converts back: a narrowing when the change widened (values written since may not fit)."""
        back = classify_conversion(change.new.type, change.old.type)
        return Risk.HIGH if back is Conversion.NARROWING else Risk.MEDIUM

    async def probe(
        self, conn: asyncpg.Connection, change: Change, schema: str, db_table: str, facts: Facts
    ) -> Facts:
        """A narrowing counts the values that would not convert."""
        if classify_conversion(change.old.type, change.new.type) is not Conversion.NARROWING:
            return facts
        failing = await count_failing_cast(conn, schema, db_table, change.old.name, change.new.type)
        return replace(facts, failing_cast=failing)

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        old, new, f = change.old.type, change.new.type, facts
        conversion = classify_conversion(old, new)
        if conversion is Conversion.IN_PLACE:
            return Assessment(
                Risk.MEDIUM,
                "compatible type change, no table rewrite",
                f"{ACCESS_EXCLUSIVE} (brief)",
                METADATA_MS,
            )
        if conversion is Conversion.WIDENING:
            return _assess_rewrite(f)
        return _assess_narrowing(old, new, f)

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        t, o, n, opts = change.table, change.old, change.new, options
        details = f"{n.name}: {o.type} → {n.type}"
        up = alter(t, _type_clause(n.name, o.type, n.type), opts)
        down = alter(t, _type_clause(n.name, n.type, o.type), opts)
        conversion = classify_conversion(o.type, n.type)
        strategy = (
            "in place, no rewrite"
            if conversion is Conversion.IN_PLACE
            else "table rewrite under ACCESS EXCLUSIVE"
        )
        if conversion is not Conversion.NARROWING or not opts.backup or not opts.primary_key:
            return Rendered(
                tx(up), (down,), details, irreversible=conversion is Conversion.NARROWING, strategy=strategy
            )
        backup, save, restore = column_backup(t, n.name, opts)
        return Rendered(
            tx(*save, up), (down, restore), details, strategy=f"{strategy}; backup to {backup}", backup=backup
        )


def _assess_narrowing(old: str, new: str, f: Facts) -> Assessment:
    """Graded by what the data holds (the probe checked every row): rows that would fail make it HIGH
    with their count; when every value fits a narrower type of the same family it is MEDIUM, like
    adding a constraint all rows satisfy, unless the rewrite holds the exclusive lock too long."""
    if f.failing_cast:
        return Assessment(
            Risk.HIGH,
            f"{rows_text(f.failing_cast)} cannot be converted from {old} to {new}: the migration will fail",
            ACCESS_EXCLUSIVE,
            2 * scan_ms(f),
            affected_rows=f.failing_cast,
        )
    if not f.rows:
        return Assessment(Risk.SAFE, f"{old} → {new} on an empty table", ACCESS_EXCLUSIVE, METADATA_MS)
    if not same_family(old, new):
        return Assessment(
            Risk.HIGH,
            f"incompatible type change {old} → {new}; all {rows_text(f.rows)} convert today",
            ACCESS_EXCLUSIVE,
            2 * scan_ms(f),
            affected_rows=0,
        )
    checked = f"checked: every value of {rows_text(f.rows)} fits {new}"
    rewrite = _assess_rewrite(f)
    if rewrite.risk is Risk.HIGH:
        return replace(rewrite, reason=f"{old} → {new} ({checked}), but it {rewrite.reason}")
    return Assessment(
        Risk.MEDIUM,
        f"narrows {old} → {new}; {checked}",
        ACCESS_EXCLUSIVE,
        rewrite.estimated_duration_ms,
        affected_rows=0,
    )


_FAMILIES = (
    frozenset({"TEXT", "VARCHAR", "CHAR"}),
    frozenset({"SMALLINT", "INTEGER", "BIGINT"}),
    frozenset({"NUMERIC"}),
)


def same_family(old: str, new: str) -> bool:
    """Whether ``new`` only limits ``old`` (a length, a precision, a smaller integer) rather than giving
    the values another meaning: then the data decides the grade. Another family (text → bigint) is an
    incompatible change for the application whatever the values."""
    a, b = parse_type(old), parse_type(new)
    if a.array != b.array:
        return False
    return a.base == b.base or any(a.base in family and b.base in family for family in _FAMILIES)


def _assess_rewrite(f: Facts) -> Assessment:
    """A widening rewrites the table under ACCESS EXCLUSIVE: HIGH when that lasts too long."""
    rewrite_ms = 2 * scan_ms(f)
    if not f.rows:
        return Assessment(
            Risk.SAFE,
            "compatible type change; rewriting an empty table is cheap",
            ACCESS_EXCLUSIVE,
            rewrite_ms,
        )
    if rewrite_ms > REWRITE_HIGH_MS:
        return Assessment(
            Risk.HIGH,
            f"rewrites {rows_text(f.rows)} (~{rewrite_ms / 1000:.1f}s) under "
            "ACCESS EXCLUSIVE: reads and writes wait",
            ACCESS_EXCLUSIVE,
            rewrite_ms,
        )
    return Assessment(
        Risk.MEDIUM,
        f"compatible type change; rewrites {rows_text(f.rows)} under an exclusive lock",
        ACCESS_EXCLUSIVE,
        rewrite_ms,
    )


def _type_clause(column: str, old: str, new: str) -> str:
    new = sql_type(new, f"{column}.type")
    clause = f"ALTER COLUMN {q(column)} TYPE {new}"
    if classify_conversion(old, new) is not Conversion.IN_PLACE:
        clause += f" USING {q(column)}::{new}"
    return clause
