"""CREATE_INDEX: built CONCURRENTLY on a populated table when online (outside a transaction; a failed build
leaves an INVALID index that the cleanup drops before a retry)."""

from __future__ import annotations

from dataflow.operations import Assessment, Change, Risk, Step
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import SHARE, SHARE_UPDATE_EXCLUSIVE, Facts, rows_text, scan_ms
from dataflow.schema import Table
from dataflow.sqlgen import Options, Rendered, create_index, index_details, tx
from dataflow.sqltext import qualified

CREATE_INDEX = "CREATE_INDEX"


@register
class CreateIndex(Kind):
    name = CREATE_INDEX
    order = 130
    undo_risk = Risk.MEDIUM  # DROP INDEX: queries that relied on it slow down

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        lock = SHARE_UPDATE_EXCLUSIVE if context.online else SHARE
        return Assessment(
            Risk.SAFE,
            f"builds an index over {rows_text(facts.rows)}",
            lock,
            scan_ms(facts) + facts.rows // 1000,
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        ix = change.new
        name = qualified(options.schema, ix.name)
        sql = create_index(ix, change.table, table, options.schema)
        if not options.online:
            return Rendered(tx(sql), (f"DROP INDEX {name};",), index_details(ix))
        sql = sql.replace("INDEX ", "INDEX CONCURRENTLY ", 1)
        step = Step(sql, transactional=False, cleanup=f"DROP INDEX CONCURRENTLY IF EXISTS {name};")
        return Rendered(
            (step,),
            (f"DROP INDEX IF EXISTS {name};",),
            index_details(ix),
            strategy="CREATE INDEX CONCURRENTLY",
        )
