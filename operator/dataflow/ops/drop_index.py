"""DROP_INDEX: dropped CONCURRENTLY (outside a transaction) when online; the rollback builds it again."""

from __future__ import annotations

from dataflow.operations import Assessment, Change, Risk, Step
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, Facts
from dataflow.schema import Table
from dataflow.sqlgen import Options, Rendered, create_index, index_details, tx
from dataflow.sqltext import qualified

DROP_INDEX = "DROP_INDEX"


@register
class DropIndex(Kind):
    name = DROP_INDEX
    order = 40

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        return Assessment(
            Risk.MEDIUM, "queries relying on the index may slow down", ACCESS_EXCLUSIVE, METADATA_MS
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        ix, s = change.old, options.schema
        name = qualified(s, ix.name)
        down = (create_index(ix, change.table, table, s),)
        if options.online:
            return Rendered(
                (Step(f"DROP INDEX CONCURRENTLY IF EXISTS {name};", transactional=False),),
                down,
                index_details(ix),
                strategy="DROP INDEX CONCURRENTLY",
            )
        return Rendered(tx(f"DROP INDEX {name};"), down, index_details(ix))
