"""DROP_ENUM: an enum type no model uses any more, planned only when the owner set is complete and
every column that used it belongs to this owner's tables (see :func:`dataflow.ops.alter_enum.compare_enums`).

It runs after the tables and columns that used it are gone; the undo creates it again with its labels.
"""

from __future__ import annotations

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.ops.create_enum import create_enum_sql
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, Facts
from dataflow.schema import EnumType, Table
from dataflow.sqlgen import Options, Rendered, tx
from dataflow.sqltext import qualified

DROP_ENUM = "DROP_ENUM"


@register
class DropEnum(Kind):
    name = DROP_ENUM
    order = 155  # after DROP_TABLE and DROP_COLUMN: nothing uses the type any more
    reads_table = False
    undo_risk = Risk.SAFE  # CREATE TYPE

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        e: EnumType = change.old
        users = ", ".join(f"{t}.{c}" for t, c, _ in e.usages)
        return Assessment(
            Risk.MEDIUM,
            f"drops enum type {e.name}; its last columns ({users}) go in this migration",
            ACCESS_EXCLUSIVE,
            METADATA_MS,
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        e: EnumType = change.old
        return Rendered(
            tx(f"DROP TYPE {qualified(options.schema, e.name)};"),
            (create_enum_sql(e, options.schema),),
            f"{e.name} ({', '.join(e.values)})",
        )
