"""ADD_COLUMN: metadata only, unless existing rows need a value (NOT NULL without default) or a volatile
default gives each row its own (then online: add nullable, backfill in batches, set NOT NULL)."""

from __future__ import annotations

from dataflow.operations import Assessment, Change, Risk, Step
from dataflow.ops.alter_generated import assess_recompute
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import (
    ACCESS_EXCLUSIVE,
    METADATA_MS,
    Facts,
    is_null_expression,
    null_default_reason,
    rows_text,
    scan_ms,
)
from dataflow.schema import Column, Table
from dataflow.sqlgen import Options, Rendered, alter, backfill, column_definition, set_not_null, tx
from dataflow.sqltext import quote_ident as q
from dataflow.types import parse_type

ADD_COLUMN = "ADD_COLUMN"

# Value given to existing rows when a NOT NULL column without a default joins a populated table.
_BACKFILL = {
    "TEXT": "''",
    "VARCHAR": "''",
    "CHAR": "''",
    "SMALLINT": "0",
    "INTEGER": "0",
    "BIGINT": "0",
    "REAL": "0",
    "DOUBLE PRECISION": "0",
    "NUMERIC": "0",
    "BOOLEAN": "false",
    "DATE": "CURRENT_DATE",
    "TIMESTAMP": "CURRENT_TIMESTAMP",
    "TIMESTAMPTZ": "CURRENT_TIMESTAMP",
    "TIME": "'00:00'",
    "INTERVAL": "'0'",
    "JSON": "'{}'",
    "JSONB": "'{}'",
    "BYTEA": "''",
    "UUID": "'00000000-0000-0000-0000-000000000000'",
}


def backfill_value(column: Column) -> str:
    t = parse_type(column.type)
    return "'{}'" if t.array else _BACKFILL.get(t.base, "''")


@register
class AddColumn(Kind):
    name = ADD_COLUMN
    order = 60
    undo_risk = Risk.HIGH  # a DROP COLUMN of whatever the column received since

    def needs_row_count(self, change: Change) -> bool:
        c = change.new
        return c.generated is not None or (not c.nullable and c.default is None and c.identity is None)

    def added_default(self, change: Change) -> str | None:
        return change.new.default

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        c, f = change.new, facts
        lock = f"{ACCESS_EXCLUSIVE} (brief)"
        if c.generated is not None:  # a stored expression is computed for every existing row
            return assess_recompute(f, "adds a stored generated column")
        if f.rows and not c.nullable and c.default is not None and is_null_expression(c.default):
            return Assessment(Risk.HIGH, null_default_reason(f.rows), lock, METADATA_MS, affected_rows=f.rows)
        if c.default is not None and f.volatile_default and f.rows:
            if context.online:
                return Assessment(
                    Risk.MEDIUM,
                    f"volatile default: {rows_text(f.rows)} backfilled in batches",
                    lock,
                    2 * scan_ms(f),
                    affected_rows=f.rows,
                )
            return Assessment(
                Risk.MEDIUM, "volatile default rewrites the table", ACCESS_EXCLUSIVE, 2 * scan_ms(f)
            )
        if c.nullable:
            return Assessment(Risk.SAFE, "nullable column, metadata only", lock, METADATA_MS)
        if c.default is not None or c.identity:
            return Assessment(Risk.SAFE, "constant default, metadata only", lock, METADATA_MS)
        if f.rows:
            return Assessment(
                Risk.MEDIUM,
                f"NOT NULL column on a table with {rows_text(f.rows)}: existing rows get a backfill value",
                lock,
                METADATA_MS,
                affected_rows=f.rows,
            )
        return Assessment(Risk.SAFE, "NOT NULL column on an empty table", lock, METADATA_MS)

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        t, c, opts = change.table, change.new, options
        down = (alter(t, f"DROP COLUMN {q(c.name)}", opts),)
        details = f"{c.name} ({c.type})"
        if opts.populated and opts.online and c.default is not None and opts.volatile_default:
            return _add_backfilled_online(t, c, opts, details)
        if c.nullable or c.default is not None or c.identity or c.generated or not opts.populated:
            return Rendered(tx(alter(t, f"ADD COLUMN {column_definition(c)}", opts)), down, details)
        backfilled = Column(c.name, c.type, nullable=False, default=backfill_value(c))
        return Rendered(
            tx(
                alter(t, f"ADD COLUMN {column_definition(backfilled)}", opts),
                alter(t, f"ALTER COLUMN {q(c.name)} DROP DEFAULT", opts),
            ),
            down,
            f"{details}, existing rows = {backfilled.default}",
        )


def _add_backfilled_online(t: str, c: Column, opts: Options, details: str) -> Rendered:
    """Volatile default on a populated table: add nullable, set the default, fill in batches, then NOT NULL."""
    nullable = Column(c.name, c.type, nullable=True)
    steps = (
        Step(alter(t, f"ADD COLUMN {column_definition(nullable)}", opts)),
        Step(alter(t, f"ALTER COLUMN {q(c.name)} SET DEFAULT {c.default}", opts)),
        *backfill(t, c.name, "DEFAULT", opts),
        *(() if c.nullable else set_not_null(t, c.name, opts)),
    )
    return Rendered(
        steps,
        (alter(t, f"DROP COLUMN IF EXISTS {q(c.name)}", opts),),
        details,
        strategy=f"add nullable, backfill in batches of {opts.batch_size}",
    )
