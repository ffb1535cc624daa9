"""DROP_CONSTRAINT: removes a rule; HIGH when foreign keys rely on the key being dropped."""

from __future__ import annotations

from collections.abc import Iterable

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, Facts
from dataflow.schema import ForeignKey, PrimaryKey, Table, Unique
from dataflow.sqlgen import Options, Rendered, alter, constraint_clause, constraint_details, tx
from dataflow.sqltext import quote_ident as q

DROP_CONSTRAINT = "DROP_CONSTRAINT"


def has_dependents(foreign_keys: Iterable[tuple[str, ForeignKey]], table: str, con: object) -> list[str]:
    """Foreign keys (``(table, fk)`` pairs of the whole schema) that rely on unique/primary key ``con`` of ``table``."""
    if not isinstance(con, (Unique, PrimaryKey)):
        return []
    return [
        f"{owner}.{fk.name}"
        for owner, fk in foreign_keys
        if fk.ref_table == table and set(fk.ref_columns) == set(con.columns)
    ]


@register
class DropConstraint(Kind):
    name = DROP_CONSTRAINT
    order = 30
    undo_risk = Risk.MEDIUM  # re-adding validates the rows written since; one that violates it fails the undo

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        dependents = has_dependents(context.foreign_keys, change.table, change.old)
        if dependents:
            return Assessment(
                Risk.HIGH,
                f"foreign keys depend on it: {', '.join(dependents)}",
                ACCESS_EXCLUSIVE,
                METADATA_MS,
            )
        return Assessment(Risk.MEDIUM, "removes a data-integrity rule", ACCESS_EXCLUSIVE, METADATA_MS)

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        t, con = change.table, change.old
        return Rendered(
            tx(alter(t, f"DROP CONSTRAINT {q(con.name)}", options)),
            (alter(t, f"ADD {constraint_clause(con, options.schema)}", options),),
            constraint_details(con),
        )
