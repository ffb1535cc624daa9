"""Render changes as PostgreSQL statements (up and rollback), every identifier quoted.

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

from dataflow.diff import primary_key_name
from dataflow.errors import SchemaError
from dataflow.operations import Change, Step
from dataflow.safety import is_null_expression
from dataflow.schema import FK_ACTIONS, IDENTITY_KINDS, INDEX_METHODS, Check, Column, ForeignKey, Index, PrimaryKey, \
    Table, Unique
from dataflow.sqltext import constraint_name, qualified, quote_ident as q
from dataflow.types import KNOWN_BASE_TYPES, Conversion, classify_conversion, parse_type

# Value given to existing rows when a NOT NULL column without a default joins a populated table.
_BACKFILL = {
    "TEXT": "''", "VARCHAR": "''", "CHAR": "''", "SMALLINT": "0", "INTEGER": "0", "BIGINT": "0",
    "REAL": "0", "DOUBLE PRECISION": "0", "NUMERIC": "0", "BOOLEAN": "false", "DATE": "CURRENT_DATE",
    "TIMESTAMP": "CURRENT_TIMESTAMP", "TIMESTAMPTZ": "CURRENT_TIMESTAMP", "TIME": "'00:00'", "INTERVAL": "'0'",
    "JSON": "'{}'", "JSONB": "'{}'", "BYTEA": "''", "UUID": "'00000000-0000-0000-0000-000000000000'",
}


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
_MULTI_WORD_TYPES = frozenset({
    "DOUBLE PRECISION", "CHARACTER VARYING", "BIT VARYING", "TIME WITH TIME ZONE", "TIME WITHOUT TIME ZONE",
    "TIMESTAMP WITH TIME ZONE", "TIMESTAMP WITHOUT TIME ZONE",
})
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _tx(*sql: str) -> tuple[Step, ...]:
    return tuple(Step(s) for s in sql)


def backfill_value(column: Column) -> str:
    t = parse_type(column.type)
    return "'{}'" if t.array else _BACKFILL.get(t.base, "''")


def _keyword(value: str | None, allowed: tuple[str, ...], field: str) -> str:
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
    if c.identity:
        parts.append(f"GENERATED {_keyword(c.identity, IDENTITY_KINDS, f'{c.name}.identity')} AS IDENTITY")
    parts.append("NULL" if c.nullable else "NOT NULL")
    if c.default is not None and not c.identity:
        parts.append(f"DEFAULT {c.default}")
    return " ".join(parts)


def index_element(element: str, table: Table | None) -> str:
    if table is None or table.column(element) is not None:
        return q(element)
    return f"({element})"


def create_index(ix: Index, table_name: str, table: Table | None, schema: str) -> str:
    unique = "UNIQUE " if ix.unique else ""
    method = _keyword(ix.method, INDEX_METHODS, f"{table_name}.indexes.{ix.name}.method")
    using = "" if method == "btree" else f" USING {method}"
    cols = ", ".join(index_element(e, table) for e in ix.columns)
    where = f" WHERE {ix.where}" if ix.where else ""
    return f"CREATE {unique}INDEX {q(ix.name)} ON {qualified(schema, table_name)}{using} ({cols}){where};"


def constraint_clause(con: object, schema: str) -> str:
    if isinstance(con, PrimaryKey):
        return f"CONSTRAINT {q(con.name)} PRIMARY KEY ({_cols(con.columns)})"
    if isinstance(con, Unique):
        return f"CONSTRAINT {q(con.name)} UNIQUE ({_cols(con.columns)})"
    if isinstance(con, Check):
        return f"CONSTRAINT {q(con.name)} CHECK ({con.expression})"
    if isinstance(con, ForeignKey):
        actions = "".join(
            f" ON {verb} {_keyword(action, FK_ACTIONS, f'{con.name}.on_{verb.lower()}')}"
            for verb, action in (("DELETE", con.on_delete), ("UPDATE", con.on_update))
            if action != "NO ACTION"
        )
        return (f"CONSTRAINT {q(con.name)} FOREIGN KEY ({_cols(con.columns)}) "
                f"REFERENCES {qualified(schema, con.ref_table)} ({_cols(con.ref_columns)}){actions}")
    raise TypeError(f"not a constraint: {con!r}")


def create_table(t: Table, schema: str) -> tuple[str, ...]:
    """CREATE TABLE with columns, primary key, uniques and checks, then its indexes.

    Foreign keys are separate ADD_CONSTRAINT changes, so tables can refer to each other.
    """
    lines = [column_definition(c) for c in t.columns]
    if t.primary_key:
        lines.append(constraint_clause(PrimaryKey(primary_key_name(t.name), t.primary_key), schema))
    lines += [constraint_clause(u, schema) for u in t.uniques]
    lines += [constraint_clause(c, schema) for c in t.checks]
    body = ",\n  ".join(lines)
    return (f"CREATE TABLE {qualified(schema, t.name)} (\n  {body}\n);",
            *(create_index(i, t.name, t, schema) for i in t.indexes))


def _cols(names: tuple[str, ...]) -> str:
    return ", ".join(q(n) for n in names)


def _alter(table: str, clause: str, opts: Options) -> str:
    return f"ALTER TABLE {qualified(opts.schema, table)} {clause};"


def render(change: Change, opts: Options = Options(), table: Table | None = None) -> Rendered:
    """Steps and rollback SQL for one change; ``table`` is the desired table (column names vs expressions)."""
    k, t, o, n, s = change.kind, change.table, change.old, change.new, opts.schema
    if k == "CREATE_TABLE":
        return Rendered(_tx(*create_table(n, s)), (f"DROP TABLE {qualified(s, t)};",), f"{len(n.columns)} columns")
    if k == "DROP_TABLE":
        return _drop_table(t, o, opts)
    if k == "RENAME_TABLE":
        return Rendered(_tx(_alter(o, f"RENAME TO {q(n)}", opts)), (_alter(n, f"RENAME TO {q(o)}", opts),),
                        f"{o} → {n}")
    if k == "RENAME_COLUMN":
        return Rendered(_tx(_alter(t, f"RENAME COLUMN {q(o)} TO {q(n)}", opts)),
                        (_alter(t, f"RENAME COLUMN {q(n)} TO {q(o)}", opts),), f"{o} → {n}")
    if k == "ADD_COLUMN":
        return _add_column(t, n, opts)
    if k == "DROP_COLUMN":
        return _drop_column(t, o, opts)
    if k == "ALTER_COLUMN_TYPE":
        return _alter_type(t, o, n, opts)
    if k == "SET_DEFAULT":
        down = f"ALTER COLUMN {q(n.name)} " + (f"SET DEFAULT {o.default}" if o.default else "DROP DEFAULT")
        return Rendered(_tx(_alter(t, f"ALTER COLUMN {q(n.name)} SET DEFAULT {n.default}", opts)),
                        (_alter(t, down, opts),), f"{n.name} DEFAULT {n.default}")
    if k == "DROP_DEFAULT":
        return Rendered(_tx(_alter(t, f"ALTER COLUMN {q(n.name)} DROP DEFAULT", opts)),
                        (_alter(t, f"ALTER COLUMN {q(n.name)} SET DEFAULT {o.default}", opts),),
                        f"{n.name} (was {o.default})")
    if k == "SET_NOT_NULL":
        return _set_not_null_change(t, n, opts)
    if k == "DROP_NOT_NULL":
        return Rendered(_tx(_alter(t, f"ALTER COLUMN {q(n.name)} DROP NOT NULL", opts)),
                        (_alter(t, f"ALTER COLUMN {q(n.name)} SET NOT NULL", opts),), f"{n.name} NULL")
    if k == "CREATE_INDEX":
        return _create_index(t, n, table, opts)
    if k == "DROP_INDEX":
        name = qualified(s, o.name)
        if opts.online:
            return Rendered((Step(f"DROP INDEX CONCURRENTLY IF EXISTS {name};", transactional=False),),
                            (create_index(o, t, table, s),), _index_details(o), strategy="DROP INDEX CONCURRENTLY")
        return Rendered(_tx(f"DROP INDEX {name};"), (create_index(o, t, table, s),), _index_details(o))
    if k == "ADD_CONSTRAINT":
        return _add_constraint(t, n, opts)
    if k == "DROP_CONSTRAINT":
        return Rendered(_tx(_alter(t, f"DROP CONSTRAINT {q(o.name)}", opts)),
                        (_alter(t, f"ADD {constraint_clause(o, s)}", opts),), _constraint_details(o))
    raise ValueError(f"unknown change kind {k}")


def _set_not_null_change(table: str, c: Column, opts: Options) -> Rendered:
    """Fill NULLs from the default (unless it is NULL: nothing to fill with), then SET NOT NULL."""
    steps: tuple[Step, ...] = ()
    if opts.nulls and c.default is not None and not is_null_expression(c.default):
        steps = _backfill(table, c.name, "DEFAULT", opts) if opts.online else \
            _tx(f"UPDATE {qualified(opts.schema, table)} SET {q(c.name)} = DEFAULT WHERE {q(c.name)} IS NULL;")
    steps += _set_not_null(table, c.name, opts)
    down = [_alter(table, f"ALTER COLUMN {q(c.name)} DROP NOT NULL", opts)]
    if opts.online:  # an interrupted apply may have left the helper CHECK behind
        down.append(_alter(table, f"DROP CONSTRAINT IF EXISTS {q(constraint_name(table, [c.name], 'not_null'))}", opts))
    return Rendered(steps, tuple(down), f"{c.name} NOT NULL",
                    strategy="CHECK NOT VALID, VALIDATE, SET NOT NULL" if opts.online else "transactional")


def _set_not_null(table: str, column: str, opts: Options) -> tuple[Step, ...]:
    """SET NOT NULL; online via a validated CHECK so the exclusive lock skips the full scan."""
    if not opts.online:
        return _tx(_alter(table, f"ALTER COLUMN {q(column)} SET NOT NULL", opts))
    check = q(constraint_name(table, [column], "not_null"))
    return (
        Step(_alter(table, f"ADD CONSTRAINT {check} CHECK ({q(column)} IS NOT NULL) NOT VALID", opts)),
        Step(_alter(table, f"VALIDATE CONSTRAINT {check}", opts), transactional=False),
        Step(_alter(table, f"ALTER COLUMN {q(column)} SET NOT NULL", opts)),
        Step(_alter(table, f"DROP CONSTRAINT {check}", opts)),
    )


def _backfill(table: str, column: str, value: str, opts: Options) -> tuple[Step, ...]:
    """Batches of ``batch_size`` rows keyed by primary key (ctid without one), each committed on its own."""
    key = ", ".join(q(c) for c in opts.primary_key) if opts.primary_key else "ctid"
    name = qualified(opts.schema, table)
    sql = (f"UPDATE {name} SET {q(column)} = {value} WHERE ({key}) IN "
           f"(SELECT {key} FROM {name} WHERE {q(column)} IS NULL LIMIT {int(opts.batch_size)});")
    return (Step(sql, transactional=False, repeat=True),)


def _add_column(table: str, c: Column, opts: Options) -> Rendered:
    down = (_alter(table, f"DROP COLUMN {q(c.name)}", opts),)
    details = f"{c.name} ({c.type})"
    if opts.populated and opts.online and c.default is not None and opts.volatile_default:
        nullable = Column(c.name, c.type, nullable=True)
        steps = (
            Step(_alter(table, f"ADD COLUMN {column_definition(nullable)}", opts)),
            Step(_alter(table, f"ALTER COLUMN {q(c.name)} SET DEFAULT {c.default}", opts)),
            *_backfill(table, c.name, "DEFAULT", opts),
            *(() if c.nullable else _set_not_null(table, c.name, opts)),
        )
        return Rendered(steps, (_alter(table, f"DROP COLUMN IF EXISTS {q(c.name)}", opts),), details,
                        strategy=f"add nullable, backfill in batches of {opts.batch_size}")
    if c.nullable or c.default is not None or c.identity or not opts.populated:
        return Rendered(_tx(_alter(table, f"ADD COLUMN {column_definition(c)}", opts)), down, details)
    backfilled = Column(c.name, c.type, nullable=False, default=backfill_value(c))
    return Rendered(
        _tx(_alter(table, f"ADD COLUMN {column_definition(backfilled)}", opts),
            _alter(table, f"ALTER COLUMN {q(c.name)} DROP DEFAULT", opts)),
        down,
        f"{details}, existing rows = {backfilled.default}",
    )


def _create_index(table: str, ix: Index, desired: Table | None, opts: Options) -> Rendered:
    name = qualified(opts.schema, ix.name)
    down = (f"DROP INDEX {name};",)
    sql = create_index(ix, table, desired, opts.schema)
    if not opts.online:
        return Rendered(_tx(sql), down, _index_details(ix))
    sql = sql.replace("INDEX ", "INDEX CONCURRENTLY ", 1)
    step = Step(sql, transactional=False, cleanup=f"DROP INDEX CONCURRENTLY IF EXISTS {name};")
    return Rendered((step,), (f"DROP INDEX IF EXISTS {name};",), _index_details(ix),
                    strategy="CREATE INDEX CONCURRENTLY")


def _add_constraint(table: str, con: object, opts: Options) -> Rendered:
    name = q(con.name)  # type: ignore[attr-defined]
    down = (_alter(table, f"DROP CONSTRAINT {name}", opts),)
    details = _constraint_details(con)
    clause = constraint_clause(con, opts.schema)
    if not opts.online:
        return Rendered(_tx(_alter(table, f"ADD {clause}", opts)), down, details)
    down = (_alter(table, f"DROP CONSTRAINT IF EXISTS {name}", opts),)
    if isinstance(con, (ForeignKey, Check)):
        return Rendered(
            (Step(_alter(table, f"ADD {clause} NOT VALID", opts)),
             Step(_alter(table, f"VALIDATE CONSTRAINT {name}", opts), transactional=False)),
            down, details, strategy="NOT VALID, then VALIDATE")
    index = qualified(opts.schema, con.name)  # type: ignore[attr-defined]
    down += (f"DROP INDEX IF EXISTS {index};",)
    kind = "PRIMARY KEY" if isinstance(con, PrimaryKey) else "UNIQUE"
    build = Step(f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON {qualified(opts.schema, table)} "
                 f"({_cols(con.columns)});",  # type: ignore[attr-defined]
                 transactional=False, cleanup=f"DROP INDEX CONCURRENTLY IF EXISTS {index};")
    attach = Step(_alter(table, f"ADD CONSTRAINT {name} {kind} USING INDEX {name}", opts))
    return Rendered((build, attach), down, details, strategy=f"unique index CONCURRENTLY, then {kind} USING INDEX")


def _column_backup(table: str, column: str, opts: Options) -> tuple[str, tuple[str, ...], str]:
    """Keep primary key + ``column`` in the backup table: (its name, the statements, the restoring UPDATE)."""
    backup = qualified(BACKUP_SCHEMA, opts.backup or "")
    source = qualified(opts.schema, table)
    join = " AND ".join(f"t.{q(k)} = b.{q(k)}" for k in opts.primary_key)
    save = (*_backup_prelude(backup),
            f"CREATE TABLE {backup} AS SELECT {_cols(opts.primary_key)}, {q(column)} FROM {source};")
    restore = f"UPDATE {source} AS t SET {q(column)} = b.{q(column)} FROM {backup} AS b WHERE {join};"
    return backup, save, restore


def _backup_prelude(backup: str) -> tuple[str, str]:
    return f"CREATE SCHEMA IF NOT EXISTS {q(BACKUP_SCHEMA)};", f"DROP TABLE IF EXISTS {backup};"


def _drop_column(table: str, c: Column, opts: Options) -> Rendered:
    details = f"{c.name} ({c.type})"
    drop = _alter(table, f"DROP COLUMN {q(c.name)}", opts)
    restore_def = Column(c.name, c.type, nullable=True, default=c.default)
    if not opts.backup or not opts.primary_key:
        readd = _alter(table, f"ADD COLUMN {column_definition(c if c.nullable else restore_def)}", opts)
        return Rendered(_tx(drop), (readd,), details, irreversible=True)
    backup, save, restore = _column_backup(table, c.name, opts)
    down = [_alter(table, f"ADD COLUMN {column_definition(restore_def)}", opts), restore]
    if not c.nullable:
        down.append(_alter(table, f"ALTER COLUMN {q(c.name)} SET NOT NULL", opts))
    return Rendered(_tx(*save, drop), tuple(down), details, strategy=f"backup to {backup}", backup=backup)


def _drop_table(table: str, t: Table, opts: Options) -> Rendered:
    details = f"{len(t.columns)} columns"
    if not opts.backup:
        return Rendered(_tx(f"DROP TABLE {qualified(opts.schema, table)};"), create_table(t, opts.schema), details,
                        irreversible=True)
    backup = qualified(BACKUP_SCHEMA, opts.backup)
    steps = _tx(
        *_backup_prelude(backup),
        _alter(table, f"RENAME TO {q(opts.backup)}", opts),
        f"ALTER TABLE {qualified(opts.schema, opts.backup)} SET SCHEMA {q(BACKUP_SCHEMA)};",
    )
    down = (f"ALTER TABLE {backup} SET SCHEMA {q(opts.schema)};",
            _alter(opts.backup, f"RENAME TO {q(table)}", opts))
    return Rendered(steps, down, details, strategy=f"moved to {backup}", backup=backup)


def _alter_type(table: str, o: Column, n: Column, opts: Options) -> Rendered:
    details = f"{n.name}: {o.type} → {n.type}"
    up = _alter(table, _type_clause(n.name, o.type, n.type), opts)
    down = _alter(table, _type_clause(n.name, n.type, o.type), opts)
    conversion = classify_conversion(o.type, n.type)
    strategy = "in place, no rewrite" if conversion is Conversion.IN_PLACE else "table rewrite under ACCESS EXCLUSIVE"
    if conversion is not Conversion.NARROWING or not opts.backup or not opts.primary_key:
        return Rendered(_tx(up), (down,), details, irreversible=conversion is Conversion.NARROWING, strategy=strategy)
    backup, save, restore = _column_backup(table, n.name, opts)
    return Rendered(_tx(*save, up), (down, restore), details, strategy=f"{strategy}; backup to {backup}", backup=backup)


def _type_clause(column: str, old: str, new: str) -> str:
    new = sql_type(new, f"{column}.type")
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
