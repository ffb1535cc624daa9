"""DROP_COLUMN: the column's values are lost unless kept (primary key + column) in the backup schema."""

from __future__ import annotations

from dataclasses import replace

import asyncpg

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, Facts, rows_text
from dataflow.schema import Column, Table
from dataflow.sqlgen import Options, Rendered, alter, column_backup, column_definition, tx
from dataflow.sqltext import qualified
from dataflow.sqltext import quote_ident as q

DROP_COLUMN = "DROP_COLUMN"


@register
class DropColumn(Kind):
    name = DROP_COLUMN
    order = 120
    undo_risk = Risk.MEDIUM  # re-adds the column and restores it from the backup (a table update)
    destructive = True
    loses_data = True

    def needs_row_count(self, change: Change) -> bool:
        return True

    def needs_backup(self, change: Change, facts: Facts) -> bool:
        """A generated column's values are computed again when the undo re-adds it: nothing to keep."""
        return change.old.generated is None and super().needs_backup(change, facts)

    async def probe(
        self, conn: asyncpg.Connection, change: Change, schema: str, db_table: str, facts: Facts
    ) -> Facts:
        """How many rows hold a value the drop would lose."""
        count = await conn.fetchval(f"SELECT count({q(change.name)}) FROM {qualified(schema, db_table)}")
        return replace(facts, non_null_values=count)

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        lost = facts.non_null_values
        if change.old.generated is not None:
            return Assessment(
                Risk.MEDIUM,
                "drops a generated column: its values are computed, none is lost",
                f"{ACCESS_EXCLUSIVE} (brief)",
                METADATA_MS,
            )
        return Assessment(
            Risk.HIGH,
            f"drops the column: {rows_text(lost)} lose a value",
            f"{ACCESS_EXCLUSIVE} (brief)",
            METADATA_MS,
            data_loss=lost > 0,
            affected_rows=lost,
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        t, c, opts = change.table, change.old, options
        details = f"{c.name} ({c.type})"
        drop = alter(t, f"DROP COLUMN {q(c.name)}", opts)
        if c.generated is not None:  # the undo computes the values again
            return Rendered(tx(drop), (alter(t, f"ADD COLUMN {column_definition(c)}", opts),), details)
        restore_def = Column(c.name, c.type, nullable=True, default=c.default)
        if not opts.backup or not opts.primary_key:
            readd = alter(t, f"ADD COLUMN {column_definition(c if c.nullable else restore_def)}", opts)
            return Rendered(tx(drop), (readd,), details, irreversible=True)
        backup, save, restore = column_backup(t, c.name, opts)
        down = [alter(t, f"ADD COLUMN {column_definition(restore_def)}", opts), restore]
        if not c.nullable:
            down.append(alter(t, f"ALTER COLUMN {q(c.name)} SET NOT NULL", opts))
        return Rendered(tx(*save, drop), tuple(down), details, strategy=f"backup to {backup}", backup=backup)
