"""Read a whole PostgreSQL schema into a :class:`Schema` in three catalog queries."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

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
  WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
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
WHERE n.nspname = $1 AND t.relkind IN ('r', 'p')
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


async def introspect(conn: asyncpg.Connection, schema_name: str = "public",
                     exclude: Iterable[str] = INTERNAL_TABLES) -> DatabaseState:
    """Read every table of ``schema_name`` (except ``exclude``) in three queries."""
    skip = set(exclude)
    columns: dict[str, list[Column]] = defaultdict(list)
    facts: dict[str, TableFacts] = {}
    for r in await conn.fetch(_COLUMNS, schema_name):
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

    parts: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for r in await conn.fetch(_CONSTRAINTS, schema_name):
        if r["table_name"] not in columns:
            continue
        bucket = parts[r["table_name"]]
        kind, name, cols = r["kind"], r["name"], tuple(r["columns"])
        if kind == "p":
            bucket["primary_key"] = list(cols)
        elif kind == "u":
            bucket["uniques"].append(Unique(name, cols))
        elif kind == "f":
            bucket["foreign_keys"].append(
                ForeignKey(name, cols, r["ref_table"], tuple(r["ref_columns"]),
                           _FK_ACTIONS[r["on_delete"]], _FK_ACTIONS[r["on_update"]], r["validated"])
            )
        elif kind == "c":
            bucket["checks"].append(Check(name, strip_check(r["definition"]), r["validated"]))

    for r in await conn.fetch(_INDEXES, schema_name):
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

    tables = tuple(
        Table(
            name=name,
            columns=tuple(cols),
            primary_key=tuple(parts[name].get("primary_key", ())),
            indexes=tuple(parts[name].get("indexes", ())),
            uniques=tuple(parts[name].get("uniques", ())),
            foreign_keys=tuple(parts[name].get("foreign_keys", ())),
            checks=tuple(parts[name].get("checks", ())),
        )
        for name, cols in columns.items()
    )
    return DatabaseState(Schema(tables, schema_name).normalised(), facts)


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
