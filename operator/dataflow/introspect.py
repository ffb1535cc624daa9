"""Read a PostgreSQL schema (or the tables a plan concerns) into a :class:`Schema` in three catalog queries.

With ``tables``, only those tables are read: a table the plan does not concern, however exotic its
types or expressions, cannot break the plan. Foreign keys of other tables that point at them are
still read (names and columns only), so dropping a key they rely on is graded as such.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from dataflow.ledger import INTERNAL_TABLES
from dataflow.operations import TableFacts
from dataflow.schema import Check, Column, ForeignKey, Index, Schema, Table, Unique
from dataflow.sqltext import normalise_default, normalise_expression, parse_expression, strip_check
from dataflow.types import canonical_type

_COLUMNS = """
WITH t AS MATERIALIZED (
  -- catalog statistics only: pg_relation_size() would open the table and wait behind its locks
  SELECT c.oid, c.relname, greatest(c.reltuples, 0)::bigint AS est_rows,
         c.relpages::bigint * current_setting('block_size')::bigint AS size_bytes
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND ($2::text[] IS NULL OR c.relname = ANY($2::text[]))
)
SELECT t.relname AS table_name, a.attname AS column_name,
       format_type(a.atttypid, a.atttypmod) AS data_type, NOT a.attnotnull AS nullable,
       pg_get_expr(d.adbin, d.adrelid) AS default_expr, a.attidentity::text AS identity,
       t.est_rows, t.size_bytes
FROM t
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = t.oid AND d.adnum = a.attnum
ORDER BY t.relname, a.attnum
"""

_CONSTRAINTS = """
SELECT c.relname AS table_name, con.conname AS name, con.contype::text AS kind,
       pg_get_constraintdef(con.oid) AS definition,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.ord) AS columns,
       fc.relname AS ref_table,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.ord) AS ref_columns,
       con.confdeltype::text AS on_delete, con.confupdtype::text AS on_update, con.convalidated AS validated
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class fc ON fc.oid = con.confrelid
WHERE n.nspname = $1 AND con.contype IN ('p', 'u', 'f', 'c') AND c.relkind IN ('r', 'p')
  AND ($2::text[] IS NULL OR c.relname = ANY($2::text[]) OR (con.contype = 'f' AND fc.relname = ANY($2::text[])))
ORDER BY c.relname, con.conname
"""

_INDEXES = """
SELECT t.relname AS table_name, i.relname AS name, ix.indisunique AS is_unique, am.amname AS method,
       pg_get_expr(ix.indpred, ix.indrelid) AS predicate, ix.indisvalid AS valid,
       ARRAY(SELECT pg_get_indexdef(ix.indexrelid, k, true)
             FROM generate_series(1, ix.indnkeyatts) k ORDER BY k) AS elements
FROM pg_index ix
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_class t ON t.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_am am ON am.oid = i.relam
WHERE n.nspname = $1 AND t.relkind IN ('r', 'p') AND ($2::text[] IS NULL OR t.relname = ANY($2::text[]))
  AND NOT EXISTS (SELECT 1 FROM pg_constraint con
                  WHERE con.conindid = ix.indexrelid AND con.conrelid = ix.indrelid
                    AND con.contype IN ('p', 'u', 'x'))
ORDER BY t.relname, i.relname
"""

_FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
_IDENTITY = {"a": "ALWAYS", "d": "BY DEFAULT"}


@dataclass
class DatabaseState:
    """An introspected schema plus per-table facts (row estimates, sizes)."""

    schema: Schema
    facts: dict[str, TableFacts] = field(default_factory=dict)
    outside_foreign_keys: tuple[tuple[str, ForeignKey], ...] = ()  # (table, fk) of tables not read

    @property
    def foreign_keys(self) -> list[tuple[str, ForeignKey]]:
        """Every foreign key read, as ``(table, fk)``: those of the tables read and those pointing at them."""
        return [(t.name, fk) for t in self.schema.tables for fk in t.foreign_keys] + list(
            self.outside_foreign_keys
        )


async def introspect(
    conn: asyncpg.Connection,
    schema_name: str = "public",
    exclude: Iterable[str] = INTERNAL_TABLES,
    tables: Iterable[str] | None = None,
) -> DatabaseState:
    """Read the tables of ``schema_name`` (``tables`` only, when given; never ``exclude``) in three queries."""
    skip = set(exclude)
    only = sorted(set(tables)) if tables is not None else None
    columns: dict[str, list[Column]] = defaultdict(list)
    facts: dict[str, TableFacts] = {}
    for r in await conn.fetch(_COLUMNS, schema_name, only):
        if r["table_name"] in skip:
            continue
        identity = _IDENTITY.get(r["identity"] or "")
        columns[r["table_name"]].append(
            Column(
                name=r["column_name"],
                type=canonical_type(r["data_type"]),
                nullable=r["nullable"],
                default=None if identity else normalise_default(r["default_expr"]),
                identity=identity,
            )
        )
        facts[r["table_name"]] = TableFacts(rows=r["est_rows"], size_bytes=r["size_bytes"])

    parts: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(list))
    outside: list[tuple[str, ForeignKey]] = []
    for r in await conn.fetch(_CONSTRAINTS, schema_name, only):
        kind, name, cols = r["kind"], r["name"], tuple(r["columns"])
        if r["table_name"] not in columns:
            if kind == "f" and r["table_name"] not in skip:
                outside.append((r["table_name"], _foreign_key(r)))
            continue
        bucket = parts[r["table_name"]]
        if kind == "p":
            bucket["primary_key"] = list(cols)
            bucket["primary_key_name"] = name
        elif kind == "u":
            bucket["uniques"].append(Unique(name, cols))
        elif kind == "f":
            bucket["foreign_keys"].append(_foreign_key(r))
        elif kind == "c":
            bucket["checks"].append(Check(name, strip_check(r["definition"]), r["validated"]))

    for r in await conn.fetch(_INDEXES, schema_name, only):
        if r["table_name"] not in columns:
            continue
        names = {c.name for c in columns[r["table_name"]]}
        parts[r["table_name"]]["indexes"].append(
            Index(
                name=r["name"],
                columns=tuple(_index_element(e, names) for e in r["elements"]),
                unique=r["is_unique"],
                method=r["method"],
                where=normalise_expression(r["predicate"]) if r["predicate"] else None,
                valid=r["valid"],
            )
        )

    read = tuple(
        Table(
            name=name,
            columns=tuple(cols),
            primary_key=tuple(parts[name].get("primary_key", ())),
            primary_key_name=parts[name].get("primary_key_name"),
            indexes=tuple(parts[name].get("indexes", ())),
            uniques=tuple(parts[name].get("uniques", ())),
            foreign_keys=tuple(parts[name].get("foreign_keys", ())),
            checks=tuple(parts[name].get("checks", ())),
        )
        for name, cols in columns.items()
    )
    return DatabaseState(Schema(read, schema_name).normalised(), facts, tuple(outside))


def _foreign_key(r: asyncpg.Record) -> ForeignKey:
    return ForeignKey(
        r["name"],
        tuple(r["columns"]),
        r["ref_table"],
        tuple(r["ref_columns"]),
        _FK_ACTIONS[r["on_delete"]],
        _FK_ACTIONS[r["on_update"]],
        r["validated"],
    )


def _index_element(text: str, column_names: set[str]) -> str:
    """An index key as the catalog prints it → a column name, or a normalised expression."""
    if text in column_names:
        return text
    node = parse_expression(text)
    fields = getattr(node, "fields", None)
    if type(node).__name__ == "ColumnRef" and fields and len(fields) == 1:
        name = fields[0].sval
        if name in column_names:
            return name
    return normalise_expression(text)
