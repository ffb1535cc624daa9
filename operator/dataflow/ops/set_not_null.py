"""SET_NOT_NULL: NULLs counted first and filled from the default; online via a validated CHECK so the
exclusive lock skips the full scan."""

from __future__ import annotations

from dataclasses import replace

import asyncpg

from dataflow.operations import Assessment, Change, Risk, Step
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import (
    ACCESS_EXCLUSIVE,
    Facts,
    is_null_expression,
    null_default_reason,
    rows_text,
    scan_ms,
)
from dataflow.schema import Column, Table
from dataflow.sqlgen import Options, Rendered, alter, backfill, set_not_null, tx
from dataflow.sqltext import constraint_name, qualified
from dataflow.sqltext import quote_ident as q

SET_NOT_NULL = "SET_NOT_NULL"


@register
class SetNotNull(Kind):
    name = SET_NOT_NULL
    order = 110
    undo_risk = Risk.SAFE  # DROP NOT NULL: metadata only

    def needs_row_count(self, change: Change) -> bool:
        return True

    async def probe(
        self, conn: asyncpg.Connection, change: Change, schema: str, db_table: str, facts: Facts
    ) -> Facts:
        """How many rows hold NULL today."""
        nulls = await conn.fetchval(
            f"SELECT count(*) FROM {qualified(schema, db_table)} WHERE {q(change.name)} IS NULL"
        )
        return replace(facts, nulls=nulls)

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        f, default = facts, change.new.default
        if f.nulls and default is None:
            return Assessment(
                Risk.HIGH,
                f"{rows_text(f.nulls)} hold NULL and the column has no default: "
                "the migration fails unless they are filled",
                ACCESS_EXCLUSIVE,
                scan_ms(f),
                affected_rows=f.nulls,
            )
        if f.nulls and is_null_expression(default):
            return Assessment(
                Risk.HIGH, null_default_reason(f.nulls), ACCESS_EXCLUSIVE, scan_ms(f), affected_rows=f.nulls
            )
        reason = (
            f"validates {rows_text(f.rows)} with writes continuing"
            if context.online
            else f"scans {rows_text(f.rows)} under an exclusive lock"
        )
        if f.nulls:
            reason = f"sets {rows_text(f.nulls)} from NULL to the default, then " + reason
        return Assessment(
            Risk.MEDIUM if f.rows > 0 else Risk.SAFE,
            reason,
            ACCESS_EXCLUSIVE,
            scan_ms(f),
            affected_rows=f.nulls,
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        """Fill NULLs from the default (unless it is NULL: nothing to fill with), then SET NOT NULL."""
        t, c, opts = change.table, change.new, options
        steps = _fill_nulls(t, c, opts) + set_not_null(t, c.name, opts)
        down = [alter(t, f"ALTER COLUMN {q(c.name)} DROP NOT NULL", opts)]
        if opts.online:  # an interrupted apply may have left the helper CHECK behind
            check = q(constraint_name(t, [c.name], "not_null"))
            down.append(alter(t, f"DROP CONSTRAINT IF EXISTS {check}", opts))
        return Rendered(
            steps,
            tuple(down),
            f"{c.name} NOT NULL",
            strategy="CHECK NOT VALID, VALIDATE, SET NOT NULL" if opts.online else "transactional",
        )


def _fill_nulls(t: str, c: Column, opts: Options) -> tuple[Step, ...]:
    if not opts.nulls or c.default is None or is_null_expression(c.default):
        return ()
    if opts.online:
        return backfill(t, c.name, "DEFAULT", opts)
    return tx(f"UPDATE {qualified(opts.schema, t)} SET {q(c.name)} = DEFAULT WHERE {q(c.name)} IS NULL;")
