"""Render changes as PostgreSQL statements (up and rollback), every identifier quoted.

Names are unqualified: the executor sets ``search_path`` to the target schema inside the
migration's transaction. Values in DEFAULT and CHECK clauses are SQL expressions that were
parsed as a single expression (pglast) before they got here; DDL takes no bind parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

from dataflow.operations import Change
from dataflow.schema import Check, Column, ForeignKey, Index, PrimaryKey, Table, Unique
from dataflow.sqltext import quote_ident as q
from dataflow.types import Conversion, classify_conversion, parse_type

# Value given to existing rows when a NOT NULL column without a default joins a populated table.
_BACKFILL = {
    "TEXT": "''", "VARCHAR": "''", "CHAR": "''", "SMALLINT": "0", "INTEGER": "0", "BIGINT": "0",
    "REAL": "0", "DOUBLE PRECISION": "0", "NUMERIC": "0", "BOOLEAN": "false", "DATE": "CURRENT_DATE",
    "TIMESTAMP": "CURRENT_TIMESTAMP", "TIMESTAMPTZ": "CURRENT_TIMESTAMP", "TIME": "'00:00'", "INTERVAL": "'0'",
    "JSON": "'{}'", "JSONB": "'{}'", "BYTEA": "''", "UUID": "'00000000-0000-0000-0000-000000000000'",
}


@dataclass(frozen=True)
class Rendered:
    """Statements for one change; ``irreversible`` when the rollback cannot restore data."""

    up: tuple[str, ...]
    down: tuple[str, ...]
    details: str
    irreversible: bool = False


def backfill_value(column: Column) -> str:
    t = parse_type(column.type)
    return "'{}'" if t.array else _BACKFILL.get(t.base, "''")


def column_definition(c: Column) -> str:
    parts = [q(c.name), c.type]
    if c.identity:
        parts.append(f"GENERATED {c.identity} AS IDENTITY")
    parts.append("NULL" if c.nullable else "NOT NULL")
    if c.default is not None and not c.identity:
        parts.append(f"DEFAULT {c.default}")
    return " ".join(parts)


def index_element(element: str, table: Table | None) -> str:
    if table is None or table.column(element) is not None:
        return q(element)
    return f"({element})"


def create_index(ix: Index, table_name: str, table: Table | None) -> str:
    unique = "UNIQUE " if ix.unique else ""
    using = "" if ix.method == "btree" else f" USING {ix.method}"
    cols = ", ".join(index_element(e, table) for e in ix.columns)
    where = f" WHERE {ix.where}" if ix.where else ""
    return f"CREATE {unique}INDEX {q(ix.name)} ON {q(table_name)}{using} ({cols}){where};"


def constraint_clause(con: object) -> str:
    if isinstance(con, PrimaryKey):
        return f"CONSTRAINT {q(con.name)} PRIMARY KEY ({_cols(con.columns)})"
    if isinstance(con, Unique):
        return f"CONSTRAINT {q(con.name)} UNIQUE ({_cols(con.columns)})"
    if isinstance(con, Check):
        return f"CONSTRAINT {q(con.name)} CHECK ({con.expression})"
    if isinstance(con, ForeignKey):
        actions = "".join(
            f" ON {verb} {action}"
            for verb, action in (("DELETE", con.on_delete), ("UPDATE", con.on_update))
            if action != "NO ACTION"
        )
        return (f"CONSTRAINT {q(con.name)} FOREIGN KEY ({_cols(con.columns)}) "
                f"REFERENCES {q(con.ref_table)} ({_cols(con.ref_columns)}){actions}")
    raise TypeError(f"not a constraint: {con!r}")


def create_table(t: Table) -> tuple[str, ...]:
    """CREATE TABLE with columns, primary key, uniques and checks, then its indexes.

    Foreign keys are separate ADD_CONSTRAINT changes, so tables can refer to each other.
    """
    lines = [column_definition(c) for c in t.columns]
    if t.primary_key:
        lines.append(constraint_clause(PrimaryKey(f"{t.name}_pkey", t.primary_key)))
    lines += [constraint_clause(u) for u in t.uniques]
    lines += [constraint_clause(c) for c in t.checks]
    body = ",\n  ".join(lines)
    return (f"CREATE TABLE {q(t.name)} (\n  {body}\n);", *(create_index(i, t.name, t) for i in t.indexes))


def _cols(names: tuple[str, ...]) -> str:
    return ", ".join(q(n) for n in names)


def _alter(table: str, clause: str) -> str:
    return f"ALTER TABLE {q(table)} {clause};"


def render(change: Change, *, populated: bool = False, nulls: int = 0, table: Table | None = None) -> Rendered:
    """Up and rollback SQL for one change.

    ``populated`` says the table has rows (a NOT NULL column is then added with a backfill
    value); ``nulls`` counts rows that are NULL in a column about to become NOT NULL;
    ``table`` is the desired table, to tell column names from index expressions.
    """
    k, t, o, n = change.kind, change.table, change.old, change.new
    if k == "CREATE_TABLE":
        return Rendered(create_table(n), (f"DROP TABLE {q(t)};",), f"{len(n.columns)} columns")
    if k == "DROP_TABLE":
        return Rendered((f"DROP TABLE {q(t)};",), create_table(o), f"{len(o.columns)} columns", irreversible=True)
    if k == "RENAME_TABLE":
        return Rendered((_alter(o, f"RENAME TO {q(n)}"),), (_alter(n, f"RENAME TO {q(o)}"),), f"{o} → {n}")
    if k == "RENAME_COLUMN":
        return Rendered((_alter(t, f"RENAME COLUMN {q(o)} TO {q(n)}"),),
                        (_alter(t, f"RENAME COLUMN {q(n)} TO {q(o)}"),), f"{o} → {n}")
    if k == "ADD_COLUMN":
        return _add_column(t, n, populated)
    if k == "DROP_COLUMN":
        return Rendered((_alter(t, f"DROP COLUMN {q(o.name)}"),), (_alter(t, f"ADD COLUMN {column_definition(o)}"),),
                        f"{o.name} ({o.type})", irreversible=True)
    if k == "ALTER_COLUMN_TYPE":
        return Rendered((_alter(t, _type_clause(n.name, o.type, n.type)),),
                        (_alter(t, _type_clause(n.name, n.type, o.type)),), f"{n.name}: {o.type} → {n.type}")
    if k == "SET_DEFAULT":
        down = f"ALTER COLUMN {q(n.name)} " + (f"SET DEFAULT {o.default}" if o.default else "DROP DEFAULT")
        return Rendered((_alter(t, f"ALTER COLUMN {q(n.name)} SET DEFAULT {n.default}"),), (_alter(t, down),),
                        f"{n.name} DEFAULT {n.default}")
    if k == "DROP_DEFAULT":
        return Rendered((_alter(t, f"ALTER COLUMN {q(n.name)} DROP DEFAULT"),),
                        (_alter(t, f"ALTER COLUMN {q(n.name)} SET DEFAULT {o.default}"),), f"{n.name} (was {o.default})")
    if k == "SET_NOT_NULL":
        up = [_alter(t, f"ALTER COLUMN {q(n.name)} SET NOT NULL")]
        if nulls and n.default is not None:
            up.insert(0, f"UPDATE {q(t)} SET {q(n.name)} = DEFAULT WHERE {q(n.name)} IS NULL;")
        return Rendered(tuple(up), (_alter(t, f"ALTER COLUMN {q(n.name)} DROP NOT NULL"),), f"{n.name} NOT NULL")
    if k == "DROP_NOT_NULL":
        return Rendered((_alter(t, f"ALTER COLUMN {q(n.name)} DROP NOT NULL"),),
                        (_alter(t, f"ALTER COLUMN {q(n.name)} SET NOT NULL"),), f"{n.name} NULL")
    if k == "CREATE_INDEX":
        return Rendered((create_index(n, t, table),), (f"DROP INDEX {q(n.name)};",), _index_details(n))
    if k == "DROP_INDEX":
        return Rendered((f"DROP INDEX {q(o.name)};",), (create_index(o, t, table),), _index_details(o))
    if k == "ADD_CONSTRAINT":
        return Rendered((_alter(t, f"ADD {constraint_clause(n)}"),), (_alter(t, f"DROP CONSTRAINT {q(n.name)}"),),
                        _constraint_details(n))
    if k == "DROP_CONSTRAINT":
        return Rendered((_alter(t, f"DROP CONSTRAINT {q(o.name)}"),), (_alter(t, f"ADD {constraint_clause(o)}"),),
                        _constraint_details(o))
    raise ValueError(f"unknown change kind {k}")


def _add_column(table: str, c: Column, populated: bool) -> Rendered:
    down = (_alter(table, f"DROP COLUMN {q(c.name)}"),)
    details = f"{c.name} ({c.type})"
    if c.nullable or c.default is not None or c.identity or not populated:
        return Rendered((_alter(table, f"ADD COLUMN {column_definition(c)}"),), down, details)
    backfilled = Column(c.name, c.type, nullable=False, default=backfill_value(c))
    return Rendered(
        (_alter(table, f"ADD COLUMN {column_definition(backfilled)}"),
         _alter(table, f"ALTER COLUMN {q(c.name)} DROP DEFAULT")),
        down,
        f"{details}, existing rows = {backfilled.default}",
    )


def _type_clause(column: str, old: str, new: str) -> str:
    clause = f"ALTER COLUMN {q(column)} TYPE {new}"
    if classify_conversion(old, new) is not Conversion.IN_PLACE:
        clause += f" USING {q(column)}::{new}"
    return clause


def _index_details(ix: Index) -> str:
    kind = "unique " if ix.unique else ""
    method = "" if ix.method == "btree" else f" {ix.method}"
    where = f" WHERE {ix.where}" if ix.where else ""
    return f"{kind}{ix.name}{method} ({', '.join(ix.columns)}){where}"


def _constraint_details(con: object) -> str:
    if isinstance(con, ForeignKey):
        return f"{con.name}: ({', '.join(con.columns)}) → {con.ref_table} ({', '.join(con.ref_columns)})"
    if isinstance(con, Check):
        return f"{con.name}: CHECK ({con.expression})"
    kind = "PRIMARY KEY" if isinstance(con, PrimaryKey) else "UNIQUE"
    return f"{con.name}: {kind} ({', '.join(con.columns)})"  # type: ignore[attr-defined]
