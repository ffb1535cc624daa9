"""DROP_EXTENSION: an extension this owner created (its CREATE_EXTENSION was applied for it, so the ledger's
ownership rows hold its claim) and no longer declares, planned only when the owner set is complete
(``drop_missing``). An extension a DBA installed, or one another owner created, is never dropped.

``DROP EXTENSION`` without CASCADE: when anything still depends on it (a column of its type, an index
of its operator class), PostgreSQL refuses and the migration rolls back whole. The undo creates it again.
"""

from __future__ import annotations

from dataflow.claims import extension_claim
from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.ops.create_extension import Extension
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, Facts
from dataflow.schema import Table
from dataflow.sqlgen import Options, Rendered, tx
from dataflow.sqltext import quote_ident

DROP_EXTENSION = "DROP_EXTENSION"


@register
class DropExtension(Kind):
    name = DROP_EXTENSION
    order = 158  # last: after every table, column, index and type that could have used it
    reads_table = False
    undo_risk = Risk.SAFE  # CREATE EXTENSION

    def released_tables(self, change: Change) -> tuple[str, ...]:
        return (extension_claim(change.subject or change.table),)

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        ext: Extension = change.old
        return Assessment(
            Risk.HIGH,
            f"drops extension {ext.name} {ext.version}, which this owner created and no longer declares; "
            "without CASCADE: if any object still depends on it PostgreSQL refuses and nothing changes",
            ACCESS_EXCLUSIVE,
            METADATA_MS,
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        ext: Extension = change.old
        name, schema = quote_ident(ext.name), quote_ident(options.schema)
        return Rendered(
            tx(f"DROP EXTENSION {name};"),
            (f"CREATE EXTENSION IF NOT EXISTS {name} WITH SCHEMA {schema};",),
            f"{ext.name} {ext.version}",
        )
