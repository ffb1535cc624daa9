"""Read a PostgreSQL schema (or the tables a plan concerns) into a :class:`Schema`, one catalog query per kind.

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

from dataflow.introspect_enums import introspect_enums
from dataflow.introspect_extras import read_extras, with_extras
from dataflow.introspect_functions import read_functions, read_triggers, with_triggers
from dataflow.introspect_indexes import exclusion_from_definition, index_features, index_flags
from dataflow.introspect_sequences import read_sequences
from dataflow.introspect_views import read_views
from dataflow.ledger import INTERNAL_TABLES
from dataflow.operations import TableFacts
from dataflow.schema import Check, Column, ForeignKey, Index, Schema, Table, Unique
from dataflow.sqltext import normalise_default, normalise_expression, parse_expression, strip_check
from dataflow.types import canonical_type

# The tables read: those of the schema ($1), all or only those named ($2). Every query reads the same set,
# so attribute numbers of a table read resolve to names in Python rather than in per-row subqueries.
_TABLES = """
  SELECT c.oid, c.relname,
         -- catalog statistics only: pg_relation_size() would open the table and wait behind its locks
         greatest(c.reltuples, 0)::bigint AS est_rows,
         c.relpages::bigint * current_setting('block_size')::bigint AS size_bytes
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND ($2::text[] IS NULL OR c.relname = ANY($2::text[]))
"""

# a default is deparsed only where a column has one; an identity column's START and INCREMENT come with
# the schema's sequences (dataflow.introspect_sequences): a join here would cost one probe per column
_COLUMNS = f"""
WITH t AS MATERIALIZED ({_TABLES})
SELECT t.relname AS table_name, a.attnum, a.attname AS column_name,
       format_type(a.atttypid, a.atttypmod) AS data_type, NOT a.attnotnull AS nullable,
       pg_get_expr(d.adbin, d.adrelid) AS default_expr, a.attidentity::text AS identity,
       a.attgenerated::text AS generated, t.est_rows, t.size_bytes
FROM t
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = t.oid AND d.adnum = a.attnum
ORDER BY t.relname, a.attnum
"""

# Raw attribute numbers; names are joined in only for the side of a foreign key that lies outside the
# tables read (a table not asked for, or another schema). Only a check's text is deparsed. Plain joins,
# no per-row subqueries: their estimated cost would wake the JIT compiler for a 50 ms catalog read.
_CONSTRAINTS = f"""
WITH t AS MATERIALIZED ({_TABLES}),
x AS MATERIALIZED (
  SELECT con.oid, con.conrelid, con.confrelid, con.conname, con.contype, con.conkey, con.confkey,
         con.confdeltype, con.confupdtype, con.convalidated,
         mine.oid IS NOT NULL AS read, theirs.oid IS NOT NULL AS ref_read
  FROM pg_constraint con
  LEFT JOIN t mine ON mine.oid = con.conrelid
  LEFT JOIN t theirs ON theirs.oid = con.confrelid
  WHERE con.contype IN ('p', 'u', 'f', 'c', 'x') AND con.conparentid = 0  -- not a partition's copy
    AND (mine.oid IS NOT NULL OR (con.contype = 'f' AND theirs.oid IS NOT NULL))
),
outside_columns AS (
  SELECT x.oid, array_agg(a.attname ORDER BY k.ord) AS names
  FROM x CROSS JOIN unnest(x.conkey) WITH ORDINALITY k(num, ord)
  JOIN pg_attribute a ON a.attrelid = x.conrelid AND a.attnum = k.num
  WHERE NOT x.read GROUP BY x.oid
),
outside_refs AS (
  SELECT x.oid, array_agg(a.attname ORDER BY k.ord) AS names
  FROM x CROSS JOIN unnest(x.confkey) WITH ORDINALITY k(num, ord)
  JOIN pg_attribute a ON a.attrelid = x.confrelid AND a.attnum = k.num
  WHERE x.contype = 'f' AND NOT x.ref_read GROUP BY x.oid
)
SELECT c.relname AS table_name, x.conname AS name, x.contype::text AS kind,
       CASE WHEN x.contype IN ('c', 'x') THEN pg_get_constraintdef(x.oid) END AS definition,
       x.conkey AS keys, oc.names AS columns, fc.relname AS ref_table, x.confkey AS ref_keys,
       orf.names AS ref_columns,
       x.confdeltype::text AS on_delete, x.confupdtype::text AS on_update, x.convalidated AS validated
FROM x
JOIN pg_class c ON c.oid = x.conrelid
LEFT JOIN pg_class fc ON fc.oid = x.confrelid
LEFT JOIN outside_columns oc ON oc.oid = x.oid
LEFT JOIN outside_refs orf ON orf.oid = x.oid
WHERE x.read OR (c.relkind IN ('r', 'p') AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1))
ORDER BY c.relname, x.conname
"""

# Plain column keys come back as attribute numbers; pg_get_indexdef runs only for an index with an
# expression key (attribute number 0); pg_get_indexdef(oid) only for an index with INCLUDE columns, a sort
# order, an operator class or NULLS NOT DISTINCT (dataflow.introspect_indexes parses it).
_INDEXES = f"""
WITH t AS MATERIALIZED ({_TABLES})
SELECT t.relname AS table_name, i.relname AS name, ix.indisunique AS is_unique, am.amname AS method,
       pg_get_expr(ix.indpred, ix.indrelid) AS predicate, ix.indisvalid AS valid,
       (ix.indkey::int2[])[0:ix.indnkeyatts - 1] AS keys,
       CASE WHEN 0 = ANY(ix.indkey::int2[]) THEN
         ARRAY(SELECT pg_get_indexdef(ix.indexrelid, k::int, true) FROM generate_series(1, 32) k
               WHERE k <= ix.indnkeyatts ORDER BY k)
       END AS elements,
       CASE WHEN {{flags}} THEN pg_get_indexdef(ix.indexrelid) END AS definition
FROM t
JOIN pg_index ix ON ix.indrelid = t.oid
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_am am ON am.oid = i.relam
WHERE NOT EXISTS (SELECT 1 FROM pg_constraint con
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


async def existing_relations(conn: asyncpg.Connection, schema: str, names: Iterable[str]) -> list[str]:
    """Which of ``names`` exist in ``schema`` as tables (ordinary or partitioned) or views (plain or
    materialized), in their order: one catalog lookup, no introspection."""
    wanted = list(names)
    present = {
        r["relname"]
        for r in await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND c.relkind IN ('r', 'p', 'v', 'm')",
            schema,
            wanted,
        )
    }
    return [name for name in wanted if name in present]


async def introspect(
    conn: asyncpg.Connection,
    schema_name: str = "public",
    exclude: Iterable[str] = INTERNAL_TABLES,
    tables: Iterable[str] | None = None,
) -> DatabaseState:
    """Read the tables of ``schema_name`` (``tables`` only, when given; never ``exclude``), one query per kind."""
    skip = set(exclude)
    only = sorted(set(tables)) if tables is not None else None
    columns: dict[str, list[Column]] = defaultdict(list)
    facts: dict[str, TableFacts] = {}
    attnames: dict[str, dict[int, str]] = defaultdict(dict)  # every table read, skipped ones too
    sequences, identity_options = await read_sequences(conn, schema_name)
    for r in await conn.fetch(_COLUMNS, schema_name, only):
        attnames[r["table_name"]][r["attnum"]] = r["column_name"]
        if r["table_name"] in skip:
            continue
        identity = _IDENTITY.get(r["identity"] or "")
        start, increment = identity_options.get((r["table_name"], r["column_name"]), (None, None))
        generated = r["generated"] == "s"  # a stored generated column's expression is its "default"
        columns[r["table_name"]].append(
            Column(
                name=r["column_name"],
                type=canonical_type(r["data_type"]),
                nullable=r["nullable"],
                default=None if identity or generated else normalise_default(r["default_expr"]),
                identity=identity,
                generated=normalise_expression(r["default_expr"]) if generated else None,
                identity_start=start if identity else None,
                identity_increment=increment if identity else None,
            )
        )
        facts[r["table_name"]] = TableFacts(rows=r["est_rows"], size_bytes=r["size_bytes"])

    parts: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(list))
    outside: list[tuple[str, ForeignKey]] = []
    for r in await conn.fetch(_CONSTRAINTS, schema_name, only):
        kind, name = r["kind"], r["name"]
        if r["table_name"] not in columns:
            if kind == "f" and r["table_name"] not in skip:
                outside.append((r["table_name"], _foreign_key(r, attnames)))
            continue
        bucket = parts[r["table_name"]]
        if kind == "p":
            bucket["primary_key"] = list(_names(r["columns"], r["keys"], attnames[r["table_name"]]))
            bucket["primary_key_name"] = name
        elif kind == "u":
            bucket["uniques"].append(Unique(name, _names(r["columns"], r["keys"], attnames[r["table_name"]])))
        elif kind == "f":
            bucket["foreign_keys"].append(_foreign_key(r, attnames))
        elif kind == "c":
            bucket["checks"].append(Check(name, strip_check(r["definition"]), r["validated"]))
        elif kind == "x":
            bucket["exclusions"].append(exclusion_from_definition(name, r["definition"]))

    indexes_sql = _INDEXES.replace("{flags}", index_flags(conn.get_server_version().major * 10000))
    for r in await conn.fetch(indexes_sql, schema_name, only):
        if r["table_name"] not in columns:
            continue
        parts[r["table_name"]]["indexes"].append(
            Index(
                name=r["name"],
                columns=_index_columns(r, attnames[r["table_name"]]),
                unique=r["is_unique"],
                method=r["method"],
                where=normalise_expression(r["predicate"]) if r["predicate"] else None,
                valid=r["valid"],
                **index_features(r["definition"]),
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
            exclusions=tuple(parts[name].get("exclusions", ())),
        )
        for name, cols in columns.items()
    )
    read = with_extras(read, await read_extras(conn, schema_name, only))  # comments, collations, policies
    read = with_triggers(read, await read_triggers(conn, schema_name, only))
    enums = await introspect_enums(conn, schema_name)
    views = await read_views(conn, schema_name)
    functions = await read_functions(conn, schema_name)
    schema = Schema(
        read, schema_name, enums=enums, sequences=sequences, views=views, functions=functions
    ).normalised()
    return DatabaseState(schema, facts, tuple(outside))


def _names(named: list[str] | None, keys: list[int], attnames: dict[int, str]) -> tuple[str, ...]:
    """Column names of a constraint side: as the catalog query named them (a table outside those read),
    else its attribute numbers looked up in the columns already read."""
    if named is not None:
        return tuple(named)
    return tuple(attnames[k] for k in keys)


def _foreign_key(r: asyncpg.Record, attnames: dict[str, dict[int, str]]) -> ForeignKey:
    return ForeignKey(
        r["name"],
        _names(r["columns"], r["keys"], attnames.get(r["table_name"], {})),
        r["ref_table"],
        _names(r["ref_columns"], r["ref_keys"], attnames.get(r["ref_table"], {})),
        _FK_ACTIONS[r["on_delete"]],
        _FK_ACTIONS[r["on_update"]],
        r["validated"],
    )


def _index_columns(r: asyncpg.Record, attnames: dict[int, str]) -> tuple[str, ...]:
    """The key columns of an index: names by attribute number, deparsed text only when a key is an expression."""
    if r["elements"] is None:
        return tuple(attnames[k] for k in r["keys"])
    names = set(attnames.values())
    return tuple(_index_element(e, names) for e in r["elements"])


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
