"""CREATE_TABLE: a new table with its columns, keys, checks and indexes (foreign keys follow as ADD_CONSTRAINT)."""

from __future__ import annotations

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import METADATA_MS, Facts
from dataflow.schema import Table
from dataflow.sqlgen import Options, Rendered, create_table, tx
from dataflow.sqltext import qualified

CREATE_TABLE = "CREATE_TABLE"


@register
class CreateTable(Kind):
    name = CREATE_TABLE
    order = 50
    undo_risk = Risk.HIGH  # a DROP TABLE of the rows written since
    reads_table = False  # nothing to measure: the table does not exist yet

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        return Assessment(Risk.SAFE, "new table", "none on existing tables", METADATA_MS)

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        new, schema = change.new, options.schema
        return Rendered(
            tx(*create_table(new, schema)),
            (f"DROP TABLE {qualified(schema, change.table)};",),
            f"{len(new.columns)} columns",
        )
