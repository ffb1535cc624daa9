"""Comments, collations, row security and policies of the tables read, in one catalog query.

Only what differs from a table without them is returned: no comment, the type's default collation,
row security off and no policies leave the introspected table exactly as before these features.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import asyncpg

from dataflow.schema import PUBLIC_ROLE, Policy, Table
from dataflow.sqltext import normalise_expression

# $1 schema, $2 the table names (NULL: all). One row per table that has any of them.
_EXTRAS = """
WITH t AS MATERIALIZED (
  SELECT c.oid, c.relname, c.relrowsecurity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND ($2::text[] IS NULL OR c.relname = ANY($2::text[]))
),
-- the columns worth reading: those with a comment, or a collation other than none (0) or the database
-- default (100); only their attributes are fetched, not every column of every table
keyed AS (
  SELECT d.objoid AS attrelid, d.objsubid AS attnum FROM pg_description d
  WHERE d.classoid = 'pg_class'::regclass AND d.objsubid > 0 AND d.objoid = ANY(ARRAY(SELECT oid FROM t))
  UNION
  SELECT a.attrelid, a.attnum FROM pg_attribute a
  WHERE a.attrelid = ANY(ARRAY(SELECT oid FROM t)) AND a.attnum > 0 AND a.attcollation::int8 NOT IN (0, 100)
),
cols AS (
  SELECT a.attrelid, json_object_agg(a.attname, json_build_array(d.description,
           CASE WHEN a.attcollation <> ty.typcollation THEN
             CASE WHEN cn.nspname IN ('pg_catalog', $1) THEN co.collname ELSE cn.nspname || '.' || co.collname END
           END)) AS columns
  FROM keyed k
  JOIN pg_attribute a ON a.attrelid = k.attrelid AND a.attnum = k.attnum AND NOT a.attisdropped
  JOIN pg_type ty ON ty.oid = a.atttypid
  LEFT JOIN pg_description d ON d.classoid = 'pg_class'::regclass AND d.objoid = a.attrelid AND d.objsubid = a.attnum
  LEFT JOIN pg_collation co ON co.oid = a.attcollation
  LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
  WHERE d.description IS NOT NULL OR a.attcollation <> ty.typcollation
  GROUP BY a.attrelid
),
pols AS (
  SELECT p.polrelid, json_agg(json_build_array(p.polname, p.polcmd::text, p.polpermissive,
           ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r) END FROM unnest(p.polroles) r),
           pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))) AS policies
  FROM t JOIN pg_policy p ON p.polrelid = t.oid GROUP BY p.polrelid
)
SELECT t.relname AS table_name, t.relrowsecurity AS rls, d.description AS comment,
       cols.columns::text AS columns, pols.policies::text AS policies
FROM t
LEFT JOIN pg_description d ON d.classoid = 'pg_class'::regclass AND d.objoid = t.oid AND d.objsubid = 0
LEFT JOIN cols ON cols.attrelid = t.oid
LEFT JOIN pols ON pols.polrelid = t.oid
WHERE t.relrowsecurity OR d.description IS NOT NULL OR cols.columns IS NOT NULL OR pols.policies IS NOT NULL
"""

_COMMANDS = {"*": "ALL", "r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}


async def read_extras(
    conn: asyncpg.Connection, schema: str, only: list[str] | None
) -> dict[str, dict[str, Any]]:
    """Table name → its comment, row security, per-column (comment, collation) and policies."""
    out: dict[str, dict[str, Any]] = {}
    for r in await conn.fetch(_EXTRAS, schema, only):
        out[r["table_name"]] = {
            "comment": r["comment"],
            "rls": r["rls"],
            "columns": json.loads(r["columns"]) if r["columns"] else {},
            "policies": tuple(_policy(p) for p in json.loads(r["policies"])) if r["policies"] else (),
        }
    return out


def _policy(row: list[Any]) -> Policy:
    name, command, permissive, roles, using, check = row
    return Policy(
        name=name,
        command=_COMMANDS[command],
        roles=tuple(sorted(set(roles))) or (PUBLIC_ROLE,),
        using=normalise_expression(using) if using else None,
        with_check=normalise_expression(check) if check else None,
        permissive=permissive,
    )


def with_extras(tables: Iterable[Table], extras: dict[str, dict[str, Any]]) -> tuple[Table, ...]:
    """``tables`` with what :func:`read_extras` found on them."""
    out = []
    for table in tables:
        found = extras.get(table.name)
        if found is None:
            out.append(table)
            continue
        columns = tuple(
            replace(c, comment=found["columns"][c.name][0], collation=found["columns"][c.name][1])
            if c.name in found["columns"]
            else c
            for c in table.columns
        )
        out.append(
            replace(
                table,
                columns=columns,
                comment=found["comment"],
                row_level_security=True if found["rls"] else None,
                policies=tuple(sorted(found["policies"], key=lambda p: p.name)),
            )
        )
    return tuple(out)
