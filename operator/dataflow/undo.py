"""What undoing an applied migration would remove, and keeping it before the undo runs.

A migration's rollback SQL is written when it is planned: the undo of ADD COLUMN is a DROP COLUMN,
that of CREATE TABLE a DROP TABLE, of a column or table that was empty then. Data written since
lives nowhere else; it is counted here (for ``analyze_rollback``) and copied to the backup schema
before the undo drops it (primary key + column, or the whole table), so it can be put back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import asyncpg

from dataflow.ledger import MigrationRecord
from dataflow.ops.add_column import ADD_COLUMN
from dataflow.ops.create_table import CREATE_TABLE
from dataflow.safety import count_rows, rows_text
from dataflow.sqlgen import BACKUP_SCHEMA, backup_prelude, cols
from dataflow.sqltext import constraint_name, qualified
from dataflow.sqltext import quote_ident as q


@dataclass(frozen=True)
class UndoLoss:
    """Data an undo would remove: ``rows`` of ``table`` (of ``column``, or whole rows when None)."""

    schema: str
    table: str
    column: str | None
    rows: int
    backup: str  # the qualified backup table the rollback copies it to
    primary_key: tuple[str, ...] = ()

    @property
    def undone(self) -> str:
        """The kind of the operation whose undo removes the data."""
        return ADD_COLUMN if self.column else CREATE_TABLE

    @property
    def what(self) -> str:
        return f"{self.table}.{self.column}" if self.column else f"table {self.table}"

    def describe(self) -> str:
        held = "hold a value" if self.column else "of data"
        return f"{self.what}: {rows_text(self.rows)} {held} that the undo would remove"

    def kept_message(self) -> str:
        return (
            f"kept {rows_text(self.rows)} of {self.what} in {self.backup}; "
            f"to put them back once it exists again: {self.restore_sql}"
        )

    @property
    def save_sql(self) -> str:
        source = qualified_source(self)
        if self.column is None:
            return f"CREATE TABLE {self.backup} AS TABLE {source};"
        # without a primary key to match values by, whole rows are kept
        kept = f"{cols(self.primary_key)}, {q(self.column)}" if self.primary_key else "*"
        return (
            f"CREATE TABLE {self.backup} AS SELECT {kept} FROM {source} WHERE {q(self.column)} IS NOT NULL;"
        )

    @property
    def restore_sql(self) -> str:
        """Puts the values back once the column (or table) exists again, e.g. after re-applying it."""
        source = qualified_source(self)
        if self.column is None:
            return f"INSERT INTO {source} SELECT * FROM {self.backup};"
        if not self.primary_key:
            return f"-- {self.backup} holds whole rows: {self.table} has no primary key to match them by"
        join = " AND ".join(f"t.{q(k)} = b.{q(k)}" for k in self.primary_key)
        col = q(self.column)
        return f"UPDATE {source} AS t SET {col} = b.{col} FROM {self.backup} AS b WHERE {join};"


def qualified_source(loss: UndoLoss) -> str:
    return qualified(loss.schema, loss.table)


def undo_backup_name(table: str, part: str, version: str) -> str:
    """Unique per migration and object: a migration is rolled back once, so its undo never reuses one."""
    tag = "undo_" + hashlib.sha256(version.encode()).hexdigest()[:8]
    return qualified(BACKUP_SCHEMA, constraint_name(table, [part], tag))


_COLUMN = """
SELECT a.attnotnull, pg_get_expr(d.adbin, d.adrelid) AS default_sql
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped
"""
_PRIMARY_KEY = """
SELECT a.attname FROM pg_index i
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY k.n
"""


async def undo_losses(conn: asyncpg.Connection, schema: str, record: MigrationRecord) -> list[UndoLoss]:
    """The data written since ``record`` applied that its undo would drop (columns it added, tables it created)."""
    losses = []
    for op in record.operations:
        loss = await _loss(conn, schema, record.version, op)
        if loss is not None:
            losses.append(loss)
    return losses


async def _loss(conn: asyncpg.Connection, schema: str, version: str, op: dict[str, Any]) -> UndoLoss | None:
    table = op.get("table", "")
    regclass = qualified(schema, table)
    if await conn.fetchval("SELECT to_regclass($1)", regclass) is None:
        return None
    if op.get("operation") == CREATE_TABLE:
        rows = await count_rows(conn, schema, table, 0)
        if not rows:
            return None
        return UndoLoss(schema, table, None, rows, undo_backup_name(table, "table", version))
    if op.get("operation") != ADD_COLUMN:
        return None
    column = op.get("subject") or str(op.get("details", "")).split(" (")[0]
    found = await conn.fetchrow(_COLUMN, regclass, column)
    if found is None:
        return None
    # values other than the column's default: a default fills every row, it is not data written since
    default = found["default_sql"]
    counted = default and "nextval(" not in default  # never advance a sequence to count
    differs = f" AND {q(column)} IS DISTINCT FROM ({default})" if counted else ""
    rows = await conn.fetchval(f"SELECT count(*) FROM {regclass} WHERE {q(column)} IS NOT NULL{differs}")
    if not rows:
        return None
    keys = tuple(r["attname"] for r in await conn.fetch(_PRIMARY_KEY, regclass))
    return UndoLoss(schema, table, column, rows, undo_backup_name(table, column, version), keys)


async def keep(conn: asyncpg.Connection, loss: UndoLoss) -> None:
    """Copy what the undo removes to the backup schema (a column without a primary key: whole rows)."""
    for sql in (*backup_prelude(loss.backup), loss.save_sql):
        await conn.execute(sql)
