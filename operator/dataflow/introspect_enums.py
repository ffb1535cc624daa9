"""Read the enum types of a schema, with the columns that use them, in one catalog query."""

from __future__ import annotations

import asyncpg

from dataflow.schema import EnumType
from dataflow.sqltext import normalise_default

# $1: the schema. Labels in sort order; usages: columns of that schema's tables of exactly the type.
_ENUMS = """
WITH ty AS MATERIALIZED (
  SELECT t.oid, t.typname FROM pg_type t
  WHERE t.typtype = 'e' AND t.typnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)
),
used AS (  -- one pass over pg_attribute for all the types (atttypid has no index)
  SELECT a.atttypid AS oid,
         array_agg(ARRAY[c.relname, a.attname, pg_get_expr(d.adbin, d.adrelid)] ORDER BY c.relname, a.attnum) AS usages
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid AND c.relkind IN ('r', 'p')
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE a.atttypid IN (SELECT oid FROM ty) AND a.attnum > 0 AND NOT a.attisdropped
  GROUP BY a.atttypid
)
SELECT ty.typname AS name,
       ARRAY(SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = ty.oid ORDER BY e.enumsortorder) AS labels,
       coalesce(used.usages, '{}') AS usages
FROM ty LEFT JOIN used ON used.oid = ty.oid
ORDER BY ty.typname
"""


async def introspect_enums(conn: asyncpg.Connection, schema_name: str) -> tuple[EnumType, ...]:
    """Every enum type of ``schema_name`` (a DBA's too: the diff touches only those the models name)."""
    return tuple(
        EnumType(
            r["name"],
            tuple(r["labels"]),
            usages=tuple(
                (u[0], u[1], None if u[2] is None else normalise_default(u[2])) for u in r["usages"]
            ),
        )
        for r in await conn.fetch(_ENUMS, schema_name)
    )
