"""ADD_CONSTRAINT: validates existing rows. Online, each constraint class has its lock-friendly form
(foreign keys and checks: NOT VALID, then VALIDATE; keys: a unique index built CONCURRENTLY, then USING INDEX)."""

from __future__ import annotations

from functools import singledispatch

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
from dataflow.sqltext import qualified
from dataflow.sqltext import quote_ident as q

ADD_CONSTRAINT = "ADD_CONSTRAINT"


@register
class AddConstraint(Kind):
    name = ADD_CONSTRAINT
    order = 140

    def needs_row_count(self, change: Change) -> bool:
        return True

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        lock = SHARE_ROW_EXCLUSIVE if isinstance(change.new, ForeignKey) else ACCESS_EXCLUSIVE
        if context.online:
            lock = f"{lock} (brief), then SHARE UPDATE EXCLUSIVE while validating"
        if not facts.rows:
            return Assessment(Risk.SAFE, "new constraint on an empty table", lock, METADATA_MS)
        return Assessment(
            Risk.MEDIUM,
            f"validates {rows_text(facts.rows)}; fails if any row violates it",
            lock,
            scan_ms(facts),
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        t, con = change.table, change.new
        details = constraint_details(con)
        clause = constraint_clause(con, options.schema)
        if not options.online:
            down = (alter(t, f"DROP CONSTRAINT {q(con.name)}", options),)
            return Rendered(tx(alter(t, f"ADD {clause}", options)), down, details)
        return add_online(con, t, clause, details, options)


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
