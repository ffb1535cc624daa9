"""ADD_CONSTRAINT: validates existing rows. Online, each constraint class has its lock-friendly form
(foreign keys and checks: NOT VALID, then VALIDATE; keys: a unique index built CONCURRENTLY, then USING INDEX)."""

from __future__ import annotations

from dataclasses import replace
from functools import singledispatch
from typing import Any

import asyncpg
from pglast.visitors import Visitor

from dataflow.operations import Assessment, Change, Risk, Step
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, SHARE_ROW_EXCLUSIVE, Facts, rows_text, scan_ms
from dataflow.schema import Check, ForeignKey, PrimaryKey, Table, Unique
from dataflow.sqlgen import (
    Options,
    Rendered,
    alter,
    cols,
    constraint_clause,
    constraint_details,
    tx,
    unknown_constraint,
)
from dataflow.sqltext import parse_expression, qualified
from dataflow.sqltext import quote_ident as q

ADD_CONSTRAINT = "ADD_CONSTRAINT"
PROBE_LOCK_TIMEOUT_MS = 200  # how long counting violations waits for a table someone else has locked


@register
class AddConstraint(Kind):
    name = ADD_CONSTRAINT
    order = 140
    undo_risk = Risk.SAFE  # DROP CONSTRAINT: nothing is rewritten or lost

    def needs_row_count(self, change: Change) -> bool:
        return True

    async def probe(
        self, conn: asyncpg.Connection, change: Change, schema: str, db_table: str, facts: Facts
    ) -> Facts:
        """Count the rows the constraint would reject. Unknown (None) when the query cannot run before
        the plan does: a column added or renamed by the same plan, a referenced table it creates."""
        query = violations_query(change.new, qualified(schema, db_table), schema)
        if query is None:
            return facts
        outer = conn.is_in_transaction()
        try:
            async with conn.transaction():  # a savepoint inside a caller's transaction
                if not outer:  # a table locked by someone else leaves the count unknown, not the plan waiting
                    await conn.execute(f"SET LOCAL lock_timeout = {PROBE_LOCK_TIMEOUT_MS}")
                return replace(facts, violating=await conn.fetchval(query))
        except asyncpg.PostgresError:
            if conn.is_closed():
                raise
            return facts

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        lock = SHARE_ROW_EXCLUSIVE if isinstance(change.new, ForeignKey) else ACCESS_EXCLUSIVE
        if context.online:
            lock = f"{lock} (brief), then SHARE UPDATE EXCLUSIVE while validating"
        if not facts.rows:
            return Assessment(Risk.SAFE, "new constraint on an empty table", lock, METADATA_MS)
        if facts.violating:
            return Assessment(
                Risk.HIGH,
                f"{rows_text(facts.violating)} {'violates' if facts.violating == 1 else 'violate'} it: "
                "the migration will fail",
                lock,
                scan_ms(facts),
                affected_rows=facts.violating,
            )
        checked = (
            "; fails if any row violates it"
            if facts.violating is None
            else "; checked: every row satisfies it today"
        )
        return Assessment(Risk.MEDIUM, f"validates {rows_text(facts.rows)}{checked}", lock, scan_ms(facts))

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        t, con = change.table, change.new
        details = constraint_details(con)
        clause = constraint_clause(con, options.schema)
        if not options.online:
            down = (alter(t, f"DROP CONSTRAINT {q(con.name)}", options),)
            return Rendered(tx(alter(t, f"ADD {clause}", options)), down, details)
        return add_online(con, t, clause, details, options)


@singledispatch
def violations_query(con: object, table: str, schema: str) -> str | None:
    """A query counting the rows of ``table`` that ``con`` would reject; one per constraint class."""
    raise unknown_constraint(con)


@violations_query.register
def _(con: Check, table: str, schema: str) -> str | None:
    if _has_subquery(con.expression):
        return None  # PostgreSQL refuses it in a CHECK; the probe must not run it either
    return f"SELECT count(*) FROM {table} WHERE NOT ({con.expression})"


@violations_query.register(PrimaryKey)
@violations_query.register(Unique)
def _(con: PrimaryKey | Unique, table: str, schema: str) -> str | None:
    columns = cols(con.columns)
    nulls = " OR ".join(f"{q(c)} IS NULL" for c in con.columns)
    filled = " AND ".join(f"{q(c)} IS NOT NULL" for c in con.columns)
    duplicates = (
        f"SELECT coalesce(sum(n - 1), 0)::bigint FROM (SELECT count(*) AS n FROM {table}"
        f" WHERE {filled} GROUP BY {columns} HAVING count(*) > 1) d"
    )
    if isinstance(con, Unique):
        return duplicates
    return f"SELECT ({duplicates}) + (SELECT count(*) FROM {table} WHERE {nulls})"


@violations_query.register
def _(con: ForeignKey, table: str, schema: str) -> str | None:
    filled = " AND ".join(f"c.{q(c)} IS NOT NULL" for c in con.columns)
    match = " AND ".join(f"p.{q(r)} = c.{q(c)}" for c, r in zip(con.columns, con.ref_columns, strict=True))
    return (
        f"SELECT count(*) FROM {table} c WHERE {filled} AND NOT EXISTS "
        f"(SELECT 1 FROM {qualified(schema, con.ref_table)} p WHERE {match})"
    )


def _has_subquery(expression: str) -> bool:
    found: list[Any] = []

    class _SubLinks(Visitor):
        def visit_SubLink(self, ancestors: Any, node: Any) -> None:  # noqa: N802 (pglast API)
            found.append(node)

    try:
        _SubLinks()(parse_expression(expression))
    except ValueError:
        return True
    return bool(found)


@singledispatch
def add_online(con: object, table: str, clause: str, details: str, opts: Options) -> Rendered:
    """The lock-friendly way to add ``con`` to a populated table; one per constraint class."""
    raise unknown_constraint(con)


@add_online.register(ForeignKey)
@add_online.register(Check)
def _(con: ForeignKey | Check, table: str, clause: str, details: str, opts: Options) -> Rendered:
    name = q(con.name)
    return Rendered(
        (
            Step(alter(table, f"ADD {clause} NOT VALID", opts)),
            Step(alter(table, f"VALIDATE CONSTRAINT {name}", opts), transactional=False),
        ),
        (alter(table, f"DROP CONSTRAINT IF EXISTS {name}", opts),),
        details,
        strategy="NOT VALID, then VALIDATE",
    )


@add_online.register(PrimaryKey)
@add_online.register(Unique)
def _(con: PrimaryKey | Unique, table: str, clause: str, details: str, opts: Options) -> Rendered:
    name, index = q(con.name), qualified(opts.schema, con.name)
    down = (alter(table, f"DROP CONSTRAINT IF EXISTS {name}", opts), f"DROP INDEX IF EXISTS {index};")
    kind = "PRIMARY KEY" if isinstance(con, PrimaryKey) else "UNIQUE"
    build = Step(
        f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON {qualified(opts.schema, table)} ({cols(con.columns)});",
        transactional=False,
        cleanup=f"DROP INDEX CONCURRENTLY IF EXISTS {index};",
    )
    attach = Step(alter(table, f"ADD CONSTRAINT {name} {kind} USING INDEX {name}", opts))
    return Rendered(
        (build, attach), down, details, strategy=f"unique index CONCURRENTLY, then {kind} USING INDEX"
    )
