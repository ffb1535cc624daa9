"""ADD_EXCLUSION: an exclusion constraint (``EXCLUDE USING gist (room WITH =, during WITH &&)``).

PostgreSQL has no lock-friendly form (no NOT VALID, no USING INDEX): the constraint's index is built and
every row checked under ACCESS EXCLUSIVE, so the grade follows the table's size. Removing one is an
ordinary DROP_CONSTRAINT. Equality on scalar columns in a gist exclusion needs ``btree_gist``, which a
model gets as an extension (created first by CREATE_EXTENSION).
"""

from __future__ import annotations

from collections.abc import Iterator

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.ops.drop_constraint import DROP_CONSTRAINT
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, REWRITE_HIGH_MS, Facts, rows_text, scan_ms
from dataflow.schema import Table
from dataflow.sqlgen import Options, Rendered, alter, constraint_clause, constraint_details, tx
from dataflow.sqltext import quote_ident as q

ADD_EXCLUSION = "ADD_EXCLUSION"


@register
class AddExclusion(Kind):
    name = ADD_EXCLUSION
    order = 147  # after columns and indexes, next to the other constraints
    undo_risk = Risk.SAFE  # DROP CONSTRAINT: nothing is rewritten or lost

    def needs_row_count(self, change: Change) -> bool:
        return True

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        if not facts.rows:
            return Assessment(
                Risk.SAFE, "new exclusion constraint on an empty table", ACCESS_EXCLUSIVE, METADATA_MS
            )
        ms = scan_ms(facts) + facts.rows // 1000
        risk = Risk.HIGH if ms > REWRITE_HIGH_MS else Risk.MEDIUM
        return Assessment(
            risk,
            f"builds its index over {rows_text(facts.rows)} under ACCESS EXCLUSIVE (no online form); "
            "fails if two rows conflict",
            ACCESS_EXCLUSIVE,
            ms,
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        t, con = change.table, change.new
        return Rendered(
            tx(alter(t, f"ADD {constraint_clause(con, options.schema)}", options)),
            (alter(t, f"DROP CONSTRAINT IF EXISTS {q(con.name)}", options),),
            constraint_details(con),
        )


def compare_exclusions(old: Table, new: Table) -> Iterator[Change]:
    """Exclusion constraints by name; a changed definition is dropped and added again."""
    olds = {x.name: x for x in old.exclusions}
    news = {x.name: x for x in new.exclusions}
    for name, x in olds.items():
        if name not in news or news[name] != x:
            yield Change(DROP_CONSTRAINT, new.name, name, old=x)
    for name, x in news.items():
        if name not in olds or olds[name] != x:
            yield Change(ADD_EXCLUSION, new.name, name, new=x)
