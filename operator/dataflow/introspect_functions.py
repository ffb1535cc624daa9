"""Functions of a schema and triggers of the tables read: one catalog query each.

A DBA's functions are read too (the diff touches only those a model names, or those marked as DataFlow's);
functions that belong to an extension are not. Text the canonical form cannot hold (a type or body it does
not parse) is kept as the catalog prints it: it then differs from any declaration, which replaces it.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import replace

import asyncpg

from dataflow.errors import SchemaError
from dataflow.functions import (
    MARKER,
    canonical_arguments,
    canonical_returns,
    marked_owner,
    normalise_body,
    trigger_from_definition,
)
from dataflow.schema import Function, Table, Trigger

_FUNCTIONS = """
SELECT p.proname AS name, pg_get_function_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS returns, l.lanname AS language, p.prosrc AS body,
       p.provolatile::text AS volatility, p.prosecdef AS security_definer,
       CASE WHEN starts_with(d.description, $2) THEN d.description END AS mark
FROM pg_proc p
JOIN pg_language l ON l.oid = p.prolang
LEFT JOIN pg_description d ON d.classoid = 'pg_proc'::regclass AND d.objoid = p.oid AND d.objsubid = 0
WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1) AND p.prokind = 'f'
  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid
                  AND e.deptype = 'e')
ORDER BY p.proname, p.oid
"""

# $1 schema, $2 the table names read (NULL: all); triggers PostgreSQL makes for constraints are internal
_TRIGGERS = """
SELECT c.relname AS table_name, t.tgname AS name, pg_get_triggerdef(t.oid) AS definition,
       CASE WHEN pn.nspname = $1 THEN p.proname ELSE pn.nspname || '.' || p.proname END AS function,
       t.tgnargs AS nargs
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_proc p ON p.oid = t.tgfoid
JOIN pg_namespace pn ON pn.oid = p.pronamespace
WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1) AND NOT t.tgisinternal
  AND c.relkind IN ('r', 'p') AND ($2::text[] IS NULL OR c.relname = ANY($2::text[]))
ORDER BY c.relname, t.tgname
"""

_VOLATILITY = {"v": "volatile", "s": "stable", "i": "immutable"}


def _or_raw(convert: Callable[[str], str], text: str) -> str:
    try:
        return convert(text)
    except SchemaError:
        return text


async def read_functions(conn: asyncpg.Connection, schema: str) -> tuple[Function, ...]:
    """Every function of ``schema`` but extensions' (overloads included, each its own entry)."""
    out = []
    for r in await conn.fetch(_FUNCTIONS, schema, MARKER):
        language: str = r["language"]
        out.append(
            Function(
                name=r["name"],
                returns=_or_raw(lambda t: canonical_returns(t, "returns"), r["returns"]),
                body=_or_raw(
                    functools.partial(normalise_body, language=language, field="body"), r["body"] or ""
                ),
                arguments=_or_raw(lambda t: canonical_arguments(t, "arguments"), r["arguments"]),
                language=language,
                volatility=_VOLATILITY.get(r["volatility"], r["volatility"]),
                security_definer=r["security_definer"],
                owner=marked_owner(r["mark"]),
            )
        )
    return tuple(out)


async def read_triggers(
    conn: asyncpg.Connection, schema: str, only: list[str] | None
) -> dict[str, tuple[Trigger, ...]]:
    """Table name → its triggers (but PostgreSQL's internal ones), sorted by name."""
    found: dict[str, list[Trigger]] = defaultdict(list)
    for r in await conn.fetch(_TRIGGERS, schema, only):
        # a trigger with arguments is not one DataFlow writes: its function name says so, so it never matches
        function = r["function"] if not r["nargs"] else f"{r['function']}(...)"
        found[r["table_name"]].append(trigger_from_definition(r["name"], function, r["definition"]))
    return {table: tuple(triggers) for table, triggers in found.items()}


def with_triggers(tables: Iterable[Table], triggers: dict[str, tuple[Trigger, ...]]) -> tuple[Table, ...]:
    return tuple(replace(t, triggers=triggers[t.name]) if t.name in triggers else t for t in tables)
