"""DROP_TABLE: a table this owner created and the schema no longer names; moved to the backup schema when kept."""

from __future__ import annotations

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, Facts, rows_text
from dataflow.schema import Table
from dataflow.sqlgen import BACKUP_SCHEMA, Options, Rendered, alter, backup_prelude, create_table, tx
from dataflow.sqltext import qualified
from dataflow.sqltext import quote_ident as q

DROP_TABLE = "DROP_TABLE"


@register
class DropTable(Kind):
    name = DROP_TABLE
    order = 150  # last: everything that depends on the table has gone first
    undo_risk = Risk.MEDIUM  # re-creates the table and restores its rows from the backup
    destructive = True
    loses_data = True

    def needs_row_count(self, change: Change) -> bool:
        return True

    def needs_backup(self, change: Change, facts: Facts) -> bool:
        return True  # moving the table aside costs nothing, even when it looks empty

    def released_tables(self, change: Change) -> tuple[str, ...]:
        return (change.table,)

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        return Assessment(
            Risk.HIGH,
            f"drops the table and its {rows_text(facts.rows)}",
            ACCESS_EXCLUSIVE,
            METADATA_MS,
            data_loss=facts.rows > 0,
            affected_rows=facts.rows,
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        name, old = change.table, change.old
        details = f"{len(old.columns)} columns"
        if not options.backup:
            return Rendered(
                tx(f"DROP TABLE {qualified(options.schema, name)};"),
                create_table(old, options.schema),
                details,
                irreversible=True,
            )
        backup = qualified(BACKUP_SCHEMA, options.backup)
        steps = tx(
            *backup_prelude(backup),
            alter(name, f"RENAME TO {q(options.backup)}", options),
            f"ALTER TABLE {qualified(options.schema, options.backup)} SET SCHEMA {q(BACKUP_SCHEMA)};",
        )
        down = (
            f"ALTER TABLE {backup} SET SCHEMA {q(options.schema)};",
            alter(options.backup, f"RENAME TO {q(name)}", options),
        )
        return Rendered(steps, down, details, strategy=f"moved to {backup}", backup=backup)
