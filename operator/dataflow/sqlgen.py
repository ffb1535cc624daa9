"""Shared SQL building blocks for the operation kinds (:mod:`dataflow.ops`), every identifier quoted.

Each kind renders its own statements; :func:`render` hands a change to its kind.

Every table and index is schema-qualified (``Options.schema``): statements, and the rollback SQL
the ledger keeps, mean the same table on any connection whatever its ``search_path``. Keywords
(FK actions, index methods, identity kinds) come from the closed lists in :mod:`dataflow.schema`
and types must parse, checked here again so even a hand-built Schema cannot inject. Values in
DEFAULT and CHECK clauses are SQL expressions that were parsed as a single expression (pglast)
before they got here; DDL takes no bind parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import singledispatch

from dataflow.errors import SchemaError
from dataflow.operations import Change, Step
from dataflow.schema import (
    EXCLUSION_OPERATOR,
    FK_ACTIONS,
    IDENTITY_KINDS,
    INDEX_METHODS,
    Check,
    Column,
    Exclusion,
    ForeignKey,
    Index,
    PrimaryKey,
    Table,
    Unique,
)
from dataflow.sqltext import constraint_name, parse_expression, qualified
from dataflow.sqltext import quote_ident as q
from dataflow.types import KNOWN_BASE_TYPES, parse_type


@dataclass(frozen=True)
class Rendered:
    """Steps for one change; ``irreversible`` when the rollback cannot restore data."""

    steps: tuple[Step, ...]
    down: tuple[str, ...]
    details: str
    irreversible: bool = False
    strategy: str = "transactional"
    backup: str | None = None

    @property
    def up(self) -> tuple[str, ...]:
        return tuple(s.sql for s in self.steps)


@dataclass(frozen=True)
class Options:
    """How to render: ``online`` picks lock-friendly strategies (the table has rows and the
    migration runs with strategy "online"); ``backup`` names the table in ``BACKUP_SCHEMA`` that
    keeps data a destructive change removes (None: no backup); ``volatile_default``: the added
    column's default is volatile per the server's catalog (each row gets its own value)."""

    populated: bool = False
    nulls: int = 0
    online: bool = False
    batch_size: int = 1000
    backup: str | None = None
    schema: str = "public"
    primary_key: tuple[str, ...] = ()
    volatile_default: bool = False


BACKUP_SCHEMA = "dataflow_backup"
# Type names of more than one word that PostgreSQL's grammar knows; any other type must be one word.
_MULTI_WORD_TYPES = frozenset(
    {
        "DOUBLE PRECISION",
        "CHARACTER VARYING",
        "BIT VARYING",
        "TIME WITH TIME ZONE",
        "TIME WITHOUT TIME ZONE",
        "TIMESTAMP WITH TIME ZONE",
        "TIMESTAMP WITHOUT TIME ZONE",
    }
)
# one name, or a schema-qualified one, each part bare or quoted (an extension's type: public.citext)
_NAME_PART = r'(?:[A-Za-z_][A-Za-z0-9_]*|"(?:[^"\x00]|"")+")'
_WORD = re.compile(rf"{_NAME_PART}(?:\.{_NAME_PART})?")


def primary_key_name(table: str) -> str:
    """The name PostgreSQL gives a primary key it creates: ``<table>_pkey``."""
    return constraint_name(table, [], "pkey")


def tx(*sql: str) -> tuple[Step, ...]:
    """Statements that run inside the migration's transaction."""
    return tuple(Step(s) for s in sql)


def keyword(value: str | None, allowed: tuple[str, ...], field: str) -> str:
    """``value`` if the closed list has it: keywords are pasted into SQL, so nothing else may pass."""
    if value not in allowed:
        raise SchemaError(field, f"must be one of {', '.join(allowed)}, not {value!r}")
    return value


def sql_type(type_text: str, field: str) -> str:
    """A column type safe to paste: it parses, and its name is a known type or a single word."""
    try:
        base = parse_type(type_text).base
    except ValueError as exc:
        raise SchemaError(field, str(exc)) from None
    if base not in KNOWN_BASE_TYPES and base not in _MULTI_WORD_TYPES and not _WORD.fullmatch(base):
        raise SchemaError(field, f"not a PostgreSQL type: {type_text!r}")
    return type_text


def column_definition(c: Column) -> str:
    parts = [q(c.name), sql_type(c.type, f"{c.name}.type")]
    if c.collation:
        parts.append(f"COLLATE {q(c.collation)}")
    if c.identity:
        parts.append(f"GENERATED {keyword(c.identity, IDENTITY_KINDS, f'{c.name}.identity')} AS IDENTITY")
        if c.identity_start is not None or c.identity_increment is not None:
            parts.append(f"({identity_options(c)})")
    if c.generated is not None:
        parts.append(f"GENERATED ALWAYS AS ({c.generated}) STORED")
    parts.append("NULL" if c.nullable else "NOT NULL")
    if c.default is not None and not c.identity:
        parts.append(f"DEFAULT {c.default}")
    return " ".join(parts)


def identity_options(c: Column, keyword_prefix: str = "", both: bool = False) -> str:
    """``START WITH n INCREMENT BY m`` of an identity column: the options given, or ``both`` (1 where
    not given, PostgreSQL's own); ``keyword_prefix`` "SET " makes them ALTER COLUMN clauses."""
    parts = []
    if both or c.identity_start is not None:
        parts.append(
            f"{keyword_prefix}START WITH {int(c.identity_start if c.identity_start is not None else 1)}"
        )
    if both or c.identity_increment is not None:
        increment = int(c.identity_increment if c.identity_increment is not None else 1)
        parts.append(f"{keyword_prefix}INCREMENT BY {increment}")
    return " ".join(parts)


def index_element(element: str, table: Table | None) -> str:
    if table is None or table.column(element) is not None:
        return q(element)
    return f"({element})"


def create_index(ix: Index, table_name: str, table: Table | None, schema: str) -> str:
    unique = "UNIQUE " if ix.unique else ""
    method = keyword(ix.method, INDEX_METHODS, f"{table_name}.indexes.{ix.name}.method")
    using = "" if method == "btree" else f" USING {method}"
    opclasses = ix.opclasses or ("",) * len(ix.columns)
    order = ix.order or ("ASC",) * len(ix.columns)
    cols = ", ".join(
        index_element(e, table) + (f" {q(opc)}" if opc else "") + ("" if o == "ASC" else f" {o}")
        for e, opc, o in zip(ix.columns, opclasses, order, strict=True)
    )
    include = f" INCLUDE ({', '.join(q(c) for c in ix.include)})" if ix.include else ""
    nulls = " NULLS NOT DISTINCT" if ix.nulls_not_distinct else ""
    where = f" WHERE {ix.where}" if ix.where else ""
    return (
        f"CREATE {unique}INDEX {q(ix.name)} ON {qualified(schema, table_name)}{using} ({cols})"
        f"{include}{nulls}{where};"
    )


def unknown_constraint(con: object) -> SchemaError:
    """The error for a constraint class no renderer knows: it must not fall through to another kind of SQL."""
    return SchemaError(
        str(getattr(con, "name", "constraint")), f"no SQL for constraint class {type(con).__name__}"
    )


@singledispatch
def constraint_clause(con: object, schema: str) -> str:
    """``CONSTRAINT name ...`` for ``con``; one renderer per constraint class."""
    raise unknown_constraint(con)


@constraint_clause.register
def _(con: PrimaryKey, schema: str) -> str:
    return f"CONSTRAINT {q(con.name)} PRIMARY KEY ({cols(con.columns)})"


@constraint_clause.register
def _(con: Unique, schema: str) -> str:
    return f"CONSTRAINT {q(con.name)} UNIQUE ({cols(con.columns)})"


@constraint_clause.register
def _(con: Check, schema: str) -> str:
    return f"CONSTRAINT {q(con.name)} CHECK ({con.expression})"


@constraint_clause.register
def _(con: Exclusion, schema: str) -> str:
    method = keyword(con.method, INDEX_METHODS, f"{con.name}.method")
    pairs = ", ".join(
        f"{exclusion_element(e)} WITH {keyword_operator(op, con.name)}"
        for e, op in zip(con.elements, con.operators, strict=True)
    )
    where = f" WHERE ({con.where})" if con.where else ""
    return f"CONSTRAINT {q(con.name)} EXCLUDE USING {method} ({pairs}){where}"


def exclusion_element(element: str) -> str:
    """A column name quoted, an expression in parentheses (a bare column reference is a column)."""
    try:
        node = parse_expression(element)
    except ValueError:
        return q(element)
    fields = getattr(node, "fields", None)
    if type(node).__name__ == "ColumnRef" and fields and len(fields) == 1:
        return q(element)
    return f"({element})"


def keyword_operator(op: str, name: str) -> str:
    """An exclusion operator: symbols only, since it is pasted into SQL."""
    if not re.fullmatch(EXCLUSION_OPERATOR, op):
        raise SchemaError(f"{name}.operators", f"must be an operator such as = or &&, not {op!r}")
    return op


@constraint_clause.register
def _(con: ForeignKey, schema: str) -> str:
    actions = "".join(
        f" ON {verb} {keyword(action, FK_ACTIONS, f'{con.name}.on_{verb.lower()}')}"
        for verb, action in (("DELETE", con.on_delete), ("UPDATE", con.on_update))
        if action != "NO ACTION"
    )
    return (
        f"CONSTRAINT {q(con.name)} FOREIGN KEY ({cols(con.columns)}) "
        f"REFERENCES {qualified(schema, con.ref_table)} ({cols(con.ref_columns)}){actions}"
    )


def create_table(t: Table, schema: str) -> tuple[str, ...]:
    """CREATE TABLE with columns, primary key, uniques and checks, then its indexes.

    Foreign keys are separate ADD_CONSTRAINT changes, so tables can refer to each other.
    """
    lines = [column_definition(c) for c in t.columns]
    if t.primary_key:
        lines.append(constraint_clause(PrimaryKey(primary_key_name(t.name), t.primary_key), schema))
    lines += [constraint_clause(u, schema) for u in t.uniques]
    lines += [constraint_clause(c, schema) for c in t.checks]
    lines += [constraint_clause(x, schema) for x in t.exclusions]
    body = ",\n  ".join(lines)
    return (
        f"CREATE TABLE {qualified(schema, t.name)} (\n  {body}\n);",
        *(create_index(i, t.name, t, schema) for i in t.indexes),
    )


def cols(names: tuple[str, ...]) -> str:
    return ", ".join(q(n) for n in names)


def alter(table: str, clause: str, opts: Options) -> str:
    return f"ALTER TABLE {qualified(opts.schema, table)} {clause};"


def set_not_null(table: str, column: str, opts: Options) -> tuple[Step, ...]:
    """SET NOT NULL; online via a validated CHECK so the exclusive lock skips the full scan."""
    if not opts.online:
        return tx(alter(table, f"ALTER COLUMN {q(column)} SET NOT NULL", opts))
    check = q(constraint_name(table, [column], "not_null"))
    return (
        Step(alter(table, f"ADD CONSTRAINT {check} CHECK ({q(column)} IS NOT NULL) NOT VALID", opts)),
        Step(alter(table, f"VALIDATE CONSTRAINT {check}", opts), transactional=False),
        Step(alter(table, f"ALTER COLUMN {q(column)} SET NOT NULL", opts)),
        Step(alter(table, f"DROP CONSTRAINT {check}", opts)),
    )


def backfill(table: str, column: str, value: str, opts: Options) -> tuple[Step, ...]:
    """Batches of ``batch_size`` rows keyed by primary key (ctid without one), each committed on its own."""
    key = ", ".join(q(c) for c in opts.primary_key) if opts.primary_key else "ctid"
    name = qualified(opts.schema, table)
    sql = (
        f"UPDATE {name} SET {q(column)} = {value} WHERE ({key}) IN "
        f"(SELECT {key} FROM {name} WHERE {q(column)} IS NULL LIMIT {int(opts.batch_size)});"
    )
    return (Step(sql, transactional=False, repeat=True),)


def column_backup(table: str, column: str, opts: Options) -> tuple[str, tuple[str, ...], str]:
    """Keep primary key + ``column`` in the backup table: (its name, the statements, the restoring UPDATE)."""
    backup = qualified(BACKUP_SCHEMA, opts.backup or "")
    source = qualified(opts.schema, table)
    join = " AND ".join(f"t.{q(k)} = b.{q(k)}" for k in opts.primary_key)
    save = (
        *backup_prelude(backup),
        f"CREATE TABLE {backup} AS SELECT {cols(opts.primary_key)}, {q(column)} FROM {source};",
    )
    restore = f"UPDATE {source} AS t SET {q(column)} = b.{q(column)} FROM {backup} AS b WHERE {join};"
    return backup, save, restore


def backup_prelude(backup: str) -> tuple[str]:
    """What comes before a backup is made: its schema. Never a ``DROP`` of ``backup``: names are unique
    per migration (:func:`dataflow.plan.backup_name`), so one that exists is an earlier migration's, which
    its rollback needs; creating the backup then fails (relation already exists) and nothing is applied."""
    return (f"CREATE SCHEMA IF NOT EXISTS {q(BACKUP_SCHEMA)};",)


def index_details(ix: Index) -> str:
    kind = "unique " if ix.unique else ""
    method = "" if ix.method == "btree" else f" {ix.method}"
    where = f" WHERE {ix.where}" if ix.where else ""
    opclasses = ix.opclasses or ("",) * len(ix.columns)
    order = ix.order or ("ASC",) * len(ix.columns)
    keys = ", ".join(
        " ".join(part for part in (e, opc, "" if o == "ASC" else o) if part)
        for e, opc, o in zip(ix.columns, opclasses, order, strict=True)
    )
    include = f" INCLUDE ({', '.join(ix.include)})" if ix.include else ""
    nulls = " NULLS NOT DISTINCT" if ix.nulls_not_distinct else ""
    return f"{kind}{ix.name}{method} ({keys}){include}{nulls}{where}"


@singledispatch
def constraint_details(con: object) -> str:
    """How a plan names ``con`` for people; one describer per constraint class."""
    raise unknown_constraint(con)


@constraint_details.register
def _(con: Exclusion) -> str:
    pairs = ", ".join(f"{e} WITH {op}" for e, op in zip(con.elements, con.operators, strict=True))
    where = f" WHERE {con.where}" if con.where else ""
    return f"{con.name}: EXCLUDE USING {con.method} ({pairs}){where}"


@constraint_details.register
def _(con: ForeignKey) -> str:
    return f"{con.name}: ({', '.join(con.columns)}) → {con.ref_table} ({', '.join(con.ref_columns)})"


@constraint_details.register
def _(con: Check) -> str:
    return f"{con.name}: CHECK ({con.expression})"


@constraint_details.register
def _(con: PrimaryKey) -> str:
    return f"{con.name}: PRIMARY KEY ({', '.join(con.columns)})"


@constraint_details.register
def _(con: Unique) -> str:
    return f"{con.name}: UNIQUE ({', '.join(con.columns)})"


def render(change: Change, opts: Options = Options(), table: Table | None = None) -> Rendered:
    """Steps and rollback SQL for one change, by its kind; ``table`` is the desired table."""
    from dataflow.ops import kind_of  # the kinds build on this module's helpers

    return kind_of(change.kind).render(change, opts, table)
