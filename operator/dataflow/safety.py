"""What grades a change SAFE / MEDIUM / HIGH: the database's facts and the shared measures.

Each operation kind (:mod:`dataflow.ops`) probes the facts its grade needs (NULLs in a column
about to become NOT NULL, values that would fail a cast, values a drop would lose) and grades
itself; this module holds what they share: :class:`Facts`, lock names, row counts, scan times,
and the function catalog and deny-list that keep expressions inside their table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg
from pglast import ast

from dataflow.errors import SchemaError
from dataflow.sqltext import parse_expression, qualified
from dataflow.sqltext import quote_ident as q
from dataflow.types import parse_type

ROW_COUNT_CAP = 100_000
METADATA_MS = 5  # a catalog-only change
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
    violating: int | None = None  # rows a new constraint would reject (None: not checked)


async def count_rows(conn: asyncpg.Connection, schema: str, table: str, estimate: int) -> int:
    """Exact row count up to ROW_COUNT_CAP, the planner's estimate beyond it."""
    capped = await conn.fetchval(
        f"SELECT count(*) FROM (SELECT 1 FROM {qualified(schema, table)} LIMIT {ROW_COUNT_CAP}) s"
    )
    return max(capped, estimate) if capped >= ROW_COUNT_CAP else capped


async def count_failing_cast(
    conn: asyncpg.Connection, schema: str, table_name: str, column: str, new_type: str
) -> int:
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


def scan_ms(f: Facts) -> int:
    """Expected time of one sequential scan of the table."""
    return METADATA_MS + f.size_bytes // _BYTES_PER_MS_SCAN


def rows_text(n: int) -> str:
    return f"{n:,} row{'s' if n != 1 else ''}"


def null_default_reason(nulls: int) -> str:
    return f"{rows_text(nulls)} hold NULL and the default is NULL: the column cannot become NOT NULL"


# Functions an expression must not call unless ``allowed_functions`` names them: they reach outside the
# table (server files, other sessions, server state, other queries, locks, notifications, settings).
DENIED_FUNCTIONS = frozenset(
    {
        "pg_stat_file",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "set_config",
        "current_setting",
        "pg_notify",
        "pg_switch_wal",
        "pg_promote",
        "pg_create_restore_point",
        "pg_start_backup",
        "pg_stop_backup",
        "pg_import_system_collations",
        "pg_log_backend_memory_contexts",
        "pg_current_snapshot",
        "pg_xact_status",
        "pg_drop_replication_slot",
        "pg_logdir_ls",
        "ts_stat",
        "setval",
        "loread",
        "lowrite",
        "pg_export_snapshot",
        "pg_execute_server_program",
        "query_to_json",
    }
)
DENIED_PREFIXES = (
    "pg_read_",
    "pg_ls_",
    "pg_file_",
    "lo_",
    "dblink",
    "pg_sleep",
    "pg_advisory",
    "pg_try_advisory",
    "txid_",
    "pg_current_xact_id",
    "query_to_xml",
    "table_to_xml",
    "cursor_to_xml",
    "schema_to_xml",
    "database_to_xml",
    "pg_stat_reset",
    "pg_replication_",
    "pg_logical_",
    "pg_create_",
    "pg_copy_",
    "pg_wal_",
    "pg_backup_",
    "pg_stat_statements_reset",
)
# Every function these extensions create reaches outside the table (other servers, files, raw pages).
DENIED_EXTENSIONS = frozenset(
    {
        "dblink",
        "postgres_fdw",
        "file_fdw",
        "adminpack",
        "lo",
        "pageinspect",
        "pg_buffercache",
        "pg_prewarm",
        "pgstattuple",
        "pg_visibility",
        "pg_surgery",
        "pg_walinspect",
        "amcheck",
        "pgrowlocks",
        "pg_freespacemap",
    }
)

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
    return SchemaError(
        path, f"calls {name}(), which reaches outside the table; allow it with allowed_functions"
    )


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


def refuse_extension_functions(
    calls: dict[str, frozenset[str]], catalog: FunctionCatalog, allowed: frozenset[str]
) -> None:
    """Raise for a call to a function of an extension that reaches outside the table (dblink, adminpack ...)."""
    for path, names in calls.items():
        for name in sorted(names):
            if name not in allowed and _base_name(name) not in allowed and catalog.extension_of(name):
                raise refuse(path, name)
