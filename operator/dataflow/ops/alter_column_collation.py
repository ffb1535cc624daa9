"""ALTER_COLUMN_COLLATION: ``ALTER COLUMN ... TYPE <same type> COLLATE ...``, graded like a type change.

The rows are not rewritten (the values are the same bytes), but every index using the column is
rebuilt under ACCESS EXCLUSIVE, since its order depends on the collation: the grade follows the
table's size like a rewrite. The undo sets the previous collation back (the same rebuild).
"""

from __future__ import annotations

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, REWRITE_HIGH_MS, Facts, rows_text, scan_ms
from dataflow.schema import Column, Table
from dataflow.sqlgen import Options, Rendered, alter, sql_type, tx
from dataflow.sqltext import quote_ident as q

ALTER_COLUMN_COLLATION = "ALTER_COLUMN_COLLATION"
DEFAULT_COLLATION = "default"


@register
class AlterColumnCollation(Kind):
    name = ALTER_COLUMN_COLLATION
    order = 87  # after a type change (which resets the collation to the new type's default)

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        old, new = _name(change.old), _name(change.new)
        if not facts.rows:
            return Assessment(
                Risk.SAFE, f"collation {old} → {new} on an empty table", ACCESS_EXCLUSIVE, METADATA_MS
            )
        rebuild_ms = scan_ms(facts)
        what = f"collation {old} → {new}: rebuilds the indexes using it over {rows_text(facts.rows)}"
        if rebuild_ms > REWRITE_HIGH_MS:
            return Assessment(
                Risk.HIGH,
                f"{what} (~{rebuild_ms / 1000:.1f}s) under ACCESS EXCLUSIVE: reads and writes wait",
                ACCESS_EXCLUSIVE,
                rebuild_ms,
            )
        return Assessment(Risk.MEDIUM, f"{what} under an exclusive lock", ACCESS_EXCLUSIVE, rebuild_ms)

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        old: Column = change.old
        new: Column = change.new
        up = alter(change.table, collate_clause(new.name, new.type, new.collation), options)
        down = alter(change.table, collate_clause(new.name, old.type, old.collation), options)
        details = f"{new.name}: collation {_name(old)} → {_name(new)}"
        return Rendered(
            tx(up), (down,), details, strategy="indexes on the column rebuilt under ACCESS EXCLUSIVE"
        )


def collate_clause(column: str, type_text: str, collation: str | None) -> str:
    kind = sql_type(type_text, f"{column}.type")
    return f"ALTER COLUMN {q(column)} TYPE {kind} COLLATE {q(collation or DEFAULT_COLLATION)}"


def _name(column: Column) -> str:
    return column.collation or DEFAULT_COLLATION
