"""Grade each change SAFE / MEDIUM / HIGH from what it does and what the database holds.

:func:`probe` asks the database the facts a grade depends on (row counts, NULLs in a column
about to become NOT NULL, values that would fail a cast, values a drop would lose);
:func:`assess` turns a change plus those facts into an :class:`Assessment`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

import asyncpg
from pglast import ast

from dataflow.errors import SchemaError
from dataflow.operations import Assessment, Change, Risk
from dataflow.schema import Column, ForeignKey, PrimaryKey, Unique
from dataflow.sqltext import parse_expression, qualified, quote_ident as q
from dataflow.types import Conversion, classify_conversion, parse_type

ROW_COUNT_CAP = 100_000
_METADATA_MS = 5
_BYTES_PER_MS_SCAN = 100_000  # ~100 MB/s sequential scan

REWRITE_HIGH_MS = 1_000  # a rewrite expected to hold ACCESS EXCLUSIVE longer than this is HIGH

ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE (writes continue)"
SHARE = "SHARE (blocks writes)"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"


@dataclass(frozen=True)
class Facts:
    """Database facts about one change's table (and column)."""

    rows: int = 0
    size_bytes: int = 0
    nulls: int = 0
    failing_cast: int = 0
    non_null_values: int = 0
    volatile_default: bool = False  # the server's catalog says the new default is volatile


async def count_rows(conn: asyncpg.Connection, schema: str, table: str, estimate: int) -> int:
    """Exact row count up to ROW_COUNT_CAP, the planner's estimate beyond it."""
    capped = await conn.fetchval(
        f"SELECT count(*) FROM (SELECT 1 FROM {qualified(schema, table)} LIMIT {ROW_COUNT_CAP}) s")
    return max(capped, estimate) if capped >= ROW_COUNT_CAP else capped


async def probe(conn: asyncpg.Connection, change: Change, schema: str, db_table: str, facts: Facts) -> Facts:
    """``facts`` completed for ``change``; ``db_table`` is the table's name in the database now (before renames).

    Every name is qualified with ``schema``: the connection's ``search_path`` must not decide
    which table is counted.
    """
    if facts.rows == 0:
        return facts
    col = q(change.subject) if change.subject else None
    table = qualified(schema, db_table)
    if change.kind == "SET_NOT_NULL":
        return replace(facts, nulls=await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {col} IS NULL"))
    if change.kind == "DROP_COLUMN":
        return replace(facts, non_null_values=await conn.fetchval(f"SELECT count({col}) FROM {table}"))
    narrowing = change.kind == "ALTER_COLUMN_TYPE" and \
        classify_conversion(change.old.type, change.new.type) is Conversion.NARROWING
    if narrowing:
        failing = await count_failing_cast(conn, schema, db_table, change.old.name, change.new.type)
        return replace(facts, failing_cast=failing)
    return facts


async def count_failing_cast(conn: asyncpg.Connection, schema: str, table_name: str, column: str, new_type: str) -> int:
    """Rows whose value would not convert to ``new_type`` (length overflow included)."""
    t = parse_type(new_type)
    col = q(column)
    table = qualified(schema, table_name)
    if t.base in ("VARCHAR", "CHAR") and t.length is not None and not t.array:
        return await conn.fetchval(f"SELECT count(*) FROM {table} WHERE length({col}::text) > $1", t.length)
    if conn.get_server_version().major >= 16:
        return await conn.fetchval(
            f"SELECT count(*) FROM {table} WHERE {col} IS NOT NULL AND NOT pg_input_is_valid({col}::text, $1)",
            new_type,
        )
    async with conn.transaction():
        await conn.execute(
            "CREATE FUNCTION pg_temp.dataflow_castable(v text, t text) RETURNS boolean LANGUAGE plpgsql AS $$"
            " BEGIN EXECUTE format('SELECT %L::%s', v, t); RETURN true;"
            " EXCEPTION WHEN others THEN RETURN false; END $$"
        )
        count = await conn.fetchval(
            f"SELECT count(*) FROM {table} WHERE {col} IS NOT NULL AND NOT pg_temp.dataflow_castable({col}::text, $1)",
            new_type,
        )
        await conn.execute("DROP FUNCTION pg_temp.dataflow_castable(text, text)")
        return count


def is_null_expression(expression: str) -> bool:
    """Whether ``expression`` is plainly NULL (``NULL``, ``NULL::text``, ``CAST(NULL AS int)``).

    Such a default cannot fill the NULLs of a column becoming NOT NULL: a backfill from it
    would change nothing, batch after batch.
    """
    try:
        node = parse_expression(expression)
    except ValueError:
        return False
    while isinstance(node, ast.TypeCast):
        node = node.arg
    return isinstance(node, ast.A_Const) and bool(node.isnull)


def _scan_ms(f: Facts) -> int:
    return _METADATA_MS + f.size_bytes // _BYTES_PER_MS_SCAN


def _rows(n: int) -> str:
    return f"{n:,} row{'s' if n != 1 else ''}"


ForeignKeys = Iterable[tuple[str, ForeignKey]]


def has_dependents(foreign_keys: ForeignKeys, table: str, con: object) -> list[str]:
    """Foreign keys (``(table, fk)`` pairs of the whole schema) that rely on unique/primary key ``con`` of ``table``."""
    if not isinstance(con, (Unique, PrimaryKey)):
        return []
    return [
        f"{owner}.{fk.name}"
        for owner, fk in foreign_keys
        if fk.ref_table == table and set(fk.ref_columns) == set(con.columns)
    ]


def assess(change: Change, facts: Facts, foreign_keys: ForeignKeys, online: bool = False) -> Assessment:
    """The risk of one change given the facts; its reason names the facts.

    ``foreign_keys``: every foreign key that points at a table the plan concerns, as ``(table, fk)``.

    ``online``: the change runs with the lock-friendly strategy (concurrent index builds,
    NOT VALID + VALIDATE), which changes the lock it holds, not what it does.
    """
    k, f = change.kind, facts
    populated = f.rows > 0
    if k == "CREATE_TABLE":
        return Assessment(Risk.SAFE, "new table", "none on existing tables", _METADATA_MS)
    if k == "DROP_TABLE":
        return Assessment(Risk.HIGH, f"drops the table and its {_rows(f.rows)}", ACCESS_EXCLUSIVE, _METADATA_MS,
                          data_loss=populated, affected_rows=f.rows)
    if k in ("RENAME_TABLE", "RENAME_COLUMN"):
        return Assessment(Risk.MEDIUM, "rename keeps the data; clients using the old name break",
                          f"{ACCESS_EXCLUSIVE} (brief)", _METADATA_MS)
    if k == "ADD_COLUMN":
        return _assess_add_column(change.new, f, online)
    if k == "DROP_COLUMN":
        return Assessment(Risk.HIGH, f"drops the column: {_rows(f.non_null_values)} lose a value",
                          f"{ACCESS_EXCLUSIVE} (brief)", _METADATA_MS, data_loss=f.non_null_values > 0,
                          affected_rows=f.non_null_values)
    if k == "ALTER_COLUMN_TYPE":
        return _assess_type_change(change, f)
    if k in ("SET_DEFAULT", "DROP_DEFAULT"):
        return Assessment(Risk.SAFE, "changes the default for new rows only", f"{ACCESS_EXCLUSIVE} (brief)", _METADATA_MS)
    if k == "DROP_NOT_NULL":
        return Assessment(Risk.SAFE, "relaxes a constraint", f"{ACCESS_EXCLUSIVE} (brief)", _METADATA_MS)
    if k == "SET_NOT_NULL":
        if f.nulls and change.new.default is None:
            return Assessment(Risk.HIGH, f"{_rows(f.nulls)} hold NULL and the column has no default: "
                              "the migration fails unless they are filled", ACCESS_EXCLUSIVE, _scan_ms(f),
                              affected_rows=f.nulls)
        if f.nulls and is_null_expression(change.new.default):
            return Assessment(Risk.HIGH, _null_default_reason(f.nulls), ACCESS_EXCLUSIVE, _scan_ms(f),
                              affected_rows=f.nulls)
        reason = (f"validates {_rows(f.rows)} with writes continuing" if online
                  else f"scans {_rows(f.rows)} under an exclusive lock")
        if f.nulls:
            reason = f"sets {_rows(f.nulls)} from NULL to the default, then " + reason
        return Assessment(Risk.MEDIUM if populated else Risk.SAFE, reason, ACCESS_EXCLUSIVE, _scan_ms(f),
                          affected_rows=f.nulls)
    if k == "CREATE_INDEX":
        return Assessment(Risk.SAFE, f"builds an index over {_rows(f.rows)}", SHARE_UPDATE_EXCLUSIVE if online else SHARE,
                          _scan_ms(f) + f.rows // 1000)
    if k == "DROP_INDEX":
        return Assessment(Risk.MEDIUM, "queries relying on the index may slow down", ACCESS_EXCLUSIVE, _METADATA_MS)
    if k == "ADD_CONSTRAINT":
        lock = SHARE_ROW_EXCLUSIVE if isinstance(change.new, ForeignKey) else ACCESS_EXCLUSIVE
        if online:
            lock = f"{lock} (brief), then SHARE UPDATE EXCLUSIVE while validating"
        if not populated:
            return Assessment(Risk.SAFE, "new constraint on an empty table", lock, _METADATA_MS)
        return Assessment(Risk.MEDIUM, f"validates {_rows(f.rows)}; fails if any row violates it", lock, _scan_ms(f))
    if k == "DROP_CONSTRAINT":
        dependents = has_dependents(foreign_keys, change.table, change.old)
        if dependents:
            return Assessment(Risk.HIGH, f"foreign keys depend on it: {', '.join(dependents)}", ACCESS_EXCLUSIVE,
                              _METADATA_MS)
        return Assessment(Risk.MEDIUM, "removes a data-integrity rule", ACCESS_EXCLUSIVE, _METADATA_MS)
    raise ValueError(f"unknown change kind {k}")


def _null_default_reason(nulls: int) -> str:
    return f"{_rows(nulls)} hold NULL and the default is NULL: the column cannot become NOT NULL"


def _assess_add_column(c: Column, f: Facts, online: bool) -> Assessment:
    lock = f"{ACCESS_EXCLUSIVE} (brief)"
    if f.rows and not c.nullable and c.default is not None and is_null_expression(c.default):
        return Assessment(Risk.HIGH, _null_default_reason(f.rows), lock, _METADATA_MS, affected_rows=f.rows)
    if c.default is not None and f.volatile_default and f.rows:
        if online:
            return Assessment(Risk.MEDIUM, f"volatile default: {_rows(f.rows)} backfilled in batches", lock,
                              2 * _scan_ms(f), affected_rows=f.rows)
        return Assessment(Risk.MEDIUM, "volatile default rewrites the table", ACCESS_EXCLUSIVE, 2 * _scan_ms(f))
    if c.nullable:
        return Assessment(Risk.SAFE, "nullable column, metadata only", lock, _METADATA_MS)
    if c.default is not None or c.identity:
        return Assessment(Risk.SAFE, "constant default, metadata only", lock, _METADATA_MS)
    if f.rows:
        return Assessment(Risk.MEDIUM, f"NOT NULL column on a table with {_rows(f.rows)}: existing rows get a backfill value",
                          lock, _METADATA_MS, affected_rows=f.rows)
    return Assessment(Risk.SAFE, "NOT NULL column on an empty table", lock, _METADATA_MS)


def _assess_type_change(change: Change, f: Facts) -> Assessment:
    old, new = change.old.type, change.new.type
    conversion = classify_conversion(old, new)
    if conversion is Conversion.IN_PLACE:
        return Assessment(Risk.MEDIUM, "compatible type change, no table rewrite", f"{ACCESS_EXCLUSIVE} (brief)",
                          _METADATA_MS)
    if conversion is Conversion.WIDENING:
        rewrite_ms = 2 * _scan_ms(f)
        if not f.rows:
            return Assessment(Risk.SAFE, "compatible type change; rewriting an empty table is cheap", ACCESS_EXCLUSIVE,
                              rewrite_ms)
        if rewrite_ms > REWRITE_HIGH_MS:
            return Assessment(Risk.HIGH, f"rewrites {_rows(f.rows)} (~{rewrite_ms / 1000:.1f}s) under ACCESS EXCLUSIVE: "
                              "reads and writes wait", ACCESS_EXCLUSIVE, rewrite_ms)
        return Assessment(Risk.MEDIUM, f"compatible type change; rewrites {_rows(f.rows)} under an exclusive lock",
                          ACCESS_EXCLUSIVE, rewrite_ms)
    if f.failing_cast:
        reason = f"{_rows(f.failing_cast)} cannot be converted from {old} to {new}: the migration will fail"
    else:
        reason = f"incompatible type change {old} → {new}; all {_rows(f.rows)} convert today"
    return Assessment(Risk.HIGH, reason, ACCESS_EXCLUSIVE, 2 * _scan_ms(f), affected_rows=f.failing_cast)


# Functions an expression must not call unless ``allowed_functions`` names them: they reach outside the
# table (server files, other sessions, server state, other queries, locks, notifications, settings).
DENIED_FUNCTIONS = frozenset({
    "pg_stat_file", "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
    "set_config", "current_setting", "pg_notify", "pg_switch_wal", "pg_promote", "pg_create_restore_point",
    "pg_start_backup", "pg_stop_backup", "pg_import_system_collations", "pg_log_backend_memory_contexts",
    "pg_current_snapshot", "pg_xact_status", "pg_drop_replication_slot", "pg_logdir_ls", "ts_stat", "setval",
    "loread", "lowrite", "pg_export_snapshot", "pg_execute_server_program", "query_to_json",
})
DENIED_PREFIXES = (
    "pg_read_", "pg_ls_", "pg_file_", "lo_", "dblink", "pg_sleep", "pg_advisory", "pg_try_advisory", "txid_",
    "pg_current_xact_id", "query_to_xml", "table_to_xml", "cursor_to_xml", "schema_to_xml", "database_to_xml",
    "pg_stat_reset", "pg_replication_", "pg_logical_", "pg_create_", "pg_copy_", "pg_wal_", "pg_backup_",
    "pg_stat_statements_reset",
)
# Every function these extensions create reaches outside the table (other servers, files, raw pages).
DENIED_EXTENSIONS = frozenset({
    "dblink", "postgres_fdw", "file_fdw", "adminpack", "lo", "pageinspect", "pg_buffercache", "pg_prewarm",
    "pgstattuple", "pg_visibility", "pg_surgery", "pg_walinspect", "amcheck", "pgrowlocks", "pg_freespacemap",
})

_CATALOG = """
SELECT p.proname AS name, n.nspname AS schema, p.provolatile::text AS volatility, e.extname AS extension
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
LEFT JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
LEFT JOIN pg_extension e ON e.oid = d.refobjid
WHERE p.proname = ANY($1::text[])
"""


def _base_name(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def is_denied(name: str, allowed: frozenset[str] = frozenset()) -> bool:
    """Whether calling ``name`` (``fn`` or ``schema.fn``, lower case) is refused by name."""
    base = _base_name(name)
    if name in allowed or base in allowed:
        return False
    return base in DENIED_FUNCTIONS or base.startswith(DENIED_PREFIXES)


def refuse(path: str, name: str) -> SchemaError:
    return SchemaError(path, f"calls {name}(), which reaches outside the table; allow it with allowed_functions")


def refuse_denied(calls: dict[str, frozenset[str]], allowed: frozenset[str]) -> None:
    """Raise for the first expression (by path) that calls a denied function."""
    for path, names in calls.items():
        for name in sorted(names):
            if is_denied(name, allowed):
                raise refuse(path, name)


@dataclass(frozen=True)
class FunctionCatalog:
    """What the server knows about the functions the desired schema calls: volatility and extension."""

    entries: tuple[tuple[str, str, str, str | None], ...] = ()  # (name, schema, provolatile, extension)

    def _matching(self, name: str) -> list[tuple[str, str, str, str | None]]:
        schema, _, base = name.rpartition(".")
        return [e for e in self.entries if e[0] == base and (not schema or e[1] == schema)]

    def is_volatile(self, names: Iterable[str]) -> bool:
        """Volatile when any called name resolves to a volatile overload, or to none (unknown is the safe side)."""
        return any(not (m := self._matching(n)) or any(e[2] == "v" for e in m) for n in names)

    def extension_of(self, name: str) -> str | None:
        return next((e[3] for e in self._matching(name) if e[3] in DENIED_EXTENSIONS), None)


async def read_function_catalog(conn: asyncpg.Connection, names: Iterable[str]) -> FunctionCatalog:
    """One catalog query for every name (no user table is read)."""
    bases = sorted({_base_name(n) for n in names})
    if not bases:
        return FunctionCatalog()
    rows = await conn.fetch(_CATALOG, bases)
    return FunctionCatalog(tuple((r["name"], r["schema"], r["volatility"], r["extension"]) for r in rows))


def refuse_extension_functions(calls: dict[str, frozenset[str]], catalog: FunctionCatalog,
                               allowed: frozenset[str]) -> None:
    """Raise for a call to a function of an extension that reaches outside the table (dblink, adminpack ...)."""
    for path, names in calls.items():
        for name in sorted(names):
            if name not in allowed and _base_name(name) not in allowed and catalog.extension_of(name):
                raise refuse(path, name)
