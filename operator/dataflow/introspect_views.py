"""Read a schema's views and materialized views in one catalog query, and compare declared ones with them.

One query reads every view of the schema (relkind ``v`` and ``m``): its ``pg_get_viewdef`` text, its
columns, and what it reads (``pg_depend`` rows of its ``pg_rewrite`` rule, column by column), so the
diff can order drops and re-create the views a column change would break.

PostgreSQL rewrites a view's text (qualified columns, added casts and parentheses), so a declared
query is compared with the live view by what PostgreSQL makes of it: :func:`align_views` creates each
declared query whose canonical text differs from the live one's as a temporary view, in one transaction
that is rolled back, and compares the two ``pg_get_viewdef`` texts (printed under the same
``search_path``). A role without TEMP on the database creates the probes in the schema itself, inside
the same rolled-back transaction (nobody else ever sees them). A view whose canonical texts already
agree costs nothing, nor does a pair of texts a probe of this process already found alike (so a steady
state probes once per process); the fingerprint path never gets here.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

import asyncpg

from dataflow.connect import search_path
from dataflow.schema import Schema, View
from dataflow.sqltext import qualified
from dataflow.viewsql import normalise_query

# $1: the schema. Dependencies on relations of the same schema only (the view itself excluded).
_VIEWS = """
SELECT c.relname AS name, c.relkind = 'm' AS materialized, pg_get_viewdef(c.oid) AS definition,
       c.relispopulated AS populated,
       CASE WHEN c.relkind = 'm' THEN pg_total_relation_size(c.oid) ELSE 0 END AS size_bytes,
       ARRAY(SELECT ARRAY[a.attname::text, format_type(a.atttypid, a.atttypmod)] FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum) AS columns,
       ARRAY(SELECT DISTINCT ARRAY[rc.relname::text, coalesce(ra.attname::text, '')]
             FROM pg_rewrite r
             JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                  AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> c.oid
             JOIN pg_class rc ON rc.oid = d.refobjid AND rc.relnamespace = c.relnamespace
             LEFT JOIN pg_attribute ra ON ra.attrelid = d.refobjid AND ra.attnum = d.refobjsubid
                  AND d.refobjsubid > 0
             WHERE r.ev_class = c.oid) AS depends_on
FROM pg_class c
WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1) AND c.relkind IN ('v', 'm')
ORDER BY c.relname
"""

PROBE_PREFIX = "dataflow_probe_"
# (schema, live text, declared text) pairs a probe found alike: the next full plan of the same state
# compares them without a probe (PostgreSQL printing the declared query as the live text is what it checked)
_ALIKE: OrderedDict[tuple[str, str, str], None] = OrderedDict()
ALIKE_SIZE = 4096


def _definition(text: str) -> str:
    """``pg_get_viewdef``'s text in canonical form (its own text when pglast cannot read it)."""
    try:
        return normalise_query(text)
    except ValueError:
        return text.strip().rstrip(";")


async def read_views(conn: asyncpg.Connection, schema: str) -> tuple[View, ...]:
    """Every view of ``schema`` (a DBA's too: the diff touches only those the owner declares or declared)."""
    return tuple(
        View(
            r["name"],
            _definition(r["definition"]),
            r["materialized"],
            columns=tuple((a, t) for a, t in r["columns"]),
            depends_on=tuple(sorted((rel, col) for rel, col in r["depends_on"])),
            size_bytes=int(r["size_bytes"] or 0),
            populated=bool(r["populated"]),
        )
        for r in await conn.fetch(_VIEWS, schema)
    )


async def align_views(conn: asyncpg.Connection, current: Schema, desired: Schema) -> tuple[Schema, Schema]:
    """``(current, desired)`` with each declared view PostgreSQL reads the same as the live one given the
    declared text in ``current`` (so the diff sees no change), and each declared view that differs given
    the columns PostgreSQL would give it (``columns``: what decides CREATE OR REPLACE; None when
    PostgreSQL refused the query as it stands, e.g. it reads a table the plan has yet to create).

    Only views whose canonical texts differ are probed, all in one transaction that is rolled back.
    """
    same: set[str] = set()
    probe = []
    for d in desired.views:
        live = current.view(d.name)
        if live is None or live.query == d.query:
            continue
        if (desired.name, live.query, d.query) in _ALIKE:
            _ALIKE.move_to_end((desired.name, live.query, d.query))
            same.add(d.name)
        else:
            probe.append((d, live))
    if probe:
        columns = await _probe(conn, desired.name, probe, same)
    else:
        columns = {}
    current = replace(
        current,
        views=tuple(
            replace(v, query=declared.query) if v.name in same and (declared := desired.view(v.name)) else v
            for v in current.views
        ),
    )
    desired = replace(
        desired,
        views=tuple(replace(v, columns=columns[v.name]) if v.name in columns else v for v in desired.views),
    )
    return current, desired


async def _probe(
    conn: asyncpg.Connection, schema: str, probe: list[tuple[View, View]], same: set[str]
) -> dict[str, tuple[tuple[str, str], ...] | None]:
    """Create each declared query as a temporary view (one rolled-back transaction); add the names PostgreSQL
    prints alike to ``same``; the columns of the others (None: PostgreSQL refused the query as it stands)."""
    lives = {d.name: live.query for d, live in probe}
    columns: dict[str, tuple[tuple[str, str], ...] | None] = {}
    tr = conn.transaction()
    await tr.start()
    try:
        await conn.execute("SELECT set_config('search_path', $1, true)", search_path(schema))
        created: list[tuple[str, str]] = []  # (view, its probe's qualified name)
        temporary = True  # a role without TEMP on the database probes in the schema itself (rolled back too)
        for i, (d, _) in enumerate(probe):
            for _attempt in range(2):
                where = "pg_temp" if temporary else schema
                probe_name = qualified(where, f"{PROBE_PREFIX}{i}")
                try:
                    async with conn.transaction():  # a savepoint: one refused query leaves the others
                        await conn.execute(f"CREATE VIEW {probe_name} AS {d.query}")
                    created.append((d.name, probe_name))
                except asyncpg.InsufficientPrivilegeError:
                    if temporary:
                        temporary = False
                        continue
                    columns[d.name] = None
                except asyncpg.PostgresError:
                    columns[d.name] = None
                break
        if created:
            rows = await conn.fetch(
                """SELECT p.name,
                          pg_get_viewdef(to_regclass(quote_ident($1) || '.' || quote_ident(p.name))) AS live,
                          pg_get_viewdef(to_regclass(p.probe)) AS declared,
                          ARRAY(SELECT ARRAY[a.attname::text, format_type(a.atttypid, a.atttypmod)]
                                FROM pg_attribute a WHERE a.attrelid = to_regclass(p.probe) AND a.attnum > 0
                                ORDER BY a.attnum) AS columns
                   FROM unnest($2::text[], $3::text[]) AS p(name, probe)""",
                schema,
                [n for n, _ in created],
                [t for _, t in created],
            )
            for r in rows:
                if r["live"] is not None and r["live"] == r["declared"]:
                    same.add(r["name"])
                else:
                    columns[r["name"]] = tuple((a, t) for a, t in r["columns"])
    finally:
        await tr.rollback()
    for name in same & set(lives):
        declared = next(d for d, _ in probe if d.name == name)
        _ALIKE[(schema, lives[name], declared.query)] = None
    while len(_ALIKE) > ALIKE_SIZE:
        _ALIKE.popitem(last=False)
    return columns
