"""A fingerprint of the managed tables in one catalog query: when it has not moved, the plan is still empty.


Every DDL statement writes new catalog row versions, each stamped with the writing transaction's id
(``xmin``). A hash over the ``(key, xmin)`` of the managed tables' pg_class, pg_attribute, pg_attrdef,
pg_constraint, pg_index, pg_description (comments), pg_policy and pg_trigger rows, their indexes' pg_class
rows, identity sequences' pg_sequence rows, the declared views' pg_rewrite rows, and the declared
functions' pg_proc rows and marks
(plus ``indisvalid`` and friends, which CREATE INDEX CONCURRENTLY may update in place) therefore changes
with any DDL on those tables and with nothing else: rows written to a table, VACUUM and ANALYZE
(in-place updates) and DDL on other tables leave it as it was. The requested names are part of it, so a
table still missing counts too. The same statement reads the ownership rows that decide a plan and
whether this owner has unfinished work: an attempt marked running, or an interrupted one with pending
steps the schema cannot show (backfills, validations); then the full path must run, and it resumes that
work under the lease.

The database's identity (:data:`DATABASE_IDENTITY`) is part of the fingerprint, so two databases whose
tables look alike never share one, and neither do the plans made from them (see ``plan.position``).

A fingerprint is trusted only when it equals one taken of a state known to be in sync for the same
plan key (desired schema and plan-filtering options): one cached in this process after a full plan
found nothing or an apply finished, or the one recorded with this owner's last applied migration.
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg

from dataflow.ledger import LEDGER, OWNERS, STATUS_APPLIED, UNFINISHED_SQL, Ledger
from dataflow.options import MigrationOptions
from dataflow.schema import Schema
from dataflow.sqltext import qualified

CACHE_SIZE = 256  # (database, schema, owner, plan key) entries kept per process

# Which database this is, readable without superuser. ``current_database()`` alone is not enough (staging
# and production are often both "shop"); the database's oid tells databases of one server apart; the
# system identifier (chosen at initdb, ``pg_control_system()``, executable by PUBLIC since PostgreSQL 10
# unless a platform revokes it: then it is left out rather than failing) tells servers apart even when
# a restore reproduced names and oids. A physical copy (base backup, replica promoted to staging) shares
# all three, and is told apart only by its position (its own DDL and ledger) once either side changes.
DATABASE_IDENTITY = """current_database(),
  (SELECT oid FROM pg_database WHERE datname = current_database()),
  CASE WHEN has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE')
       THEN (SELECT system_identifier FROM pg_catalog.pg_control_system()) END"""


def _sum_of(key: str, xmin: str, source: str) -> str:
    """SQL: ``count:sum`` of a 64-bit hash of (row key, row version) over ``source``.

    A sum needs no sort and no text per row (at 1,000 tables x 15 columns, string_agg ORDER BY
    takes ~20 ms, this ~5 ms); the count guards against a row appearing while another disappears.
    """
    return (
        f"(SELECT count(*) || ':' || coalesce(sum(hashint8extended(({key})::int8, ({xmin})::text::int8)), 0)"
        f" FROM {source})"
    )


# ``::int8 = ::int8`` keeps pg_class's oid index out: one hash join beats 4,000 index probes (~2 ms).
_INDEX_RELATIONS = "pg_index i JOIN pg_class ic ON ic.oid::int8 = i.indexrelid::int8"
_IN_REL = "ANY(ARRAY(SELECT oid FROM rel))"

# the managed tables' identity sequences (ALTER COLUMN ... SET INCREMENT writes only their pg_sequence row)
_IDENTITY_SEQUENCES = f"""pg_depend dep JOIN pg_sequence s ON s.seqrelid = dep.objid
  WHERE dep.refobjid = {_IN_REL} AND dep.deptype = 'i'
    AND dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass"""

# functions of the schema named among $2 (plan.concerned_tables adds the declared functions' names)
_FUNCTIONS = "pg_proc p WHERE p.pronamespace = (SELECT oid FROM nsp) AND p.proname = ANY($2::text[])"
_FUNCTION_MARKS = (
    "pg_description d WHERE d.classoid = 'pg_proc'::regclass"
    " AND d.objoid = ANY(ARRAY(SELECT p.oid FROM pg_proc p WHERE p.pronamespace = (SELECT oid FROM nsp)"
    " AND p.proname = ANY($2::text[])))"
)

# $1 schema, $2 the table names (sorted), $3 the owner. The schema's own oid is not in it: creating the
# schema (the ledger bootstrap does) changes no plan, and every table in it brings its own oid.
_CATALOG = f"""
WITH nsp AS (SELECT oid FROM pg_namespace WHERE nspname = $1),
rel AS MATERIALIZED (
  SELECT c.oid, c.xmin, c.relkind, c.relname FROM pg_class c
  WHERE c.relnamespace = (SELECT oid FROM nsp) AND c.relname = ANY($2::text[])
)
SELECT concat_ws('|',
  {DATABASE_IDENTITY}, $2::text[]::text,
  {_sum_of("hashtextextended(c.relname, c.oid::int8 * 256 + ascii(c.relkind))", "c.xmin", "rel c")},
  {
    _sum_of(
        "(a.attrelid::int8 << 16) + a.attnum",
        "a.xmin",
        f"pg_attribute a WHERE a.attrelid = {_IN_REL} AND a.attnum > 0",
    )
},
  {_sum_of("d.oid", "d.xmin", f"pg_attrdef d WHERE d.adrelid = {_IN_REL}")},
  {
    _sum_of(
        "k.oid::int8 * 2 + k.convalidated::int", "k.xmin", f"pg_constraint k WHERE k.conrelid = {_IN_REL}"
    )
},
  {
    _sum_of(
        "hashint8extended(i.indexrelid::int8 * 8 + i.indisvalid::int * 4 + i.indisready::int * 2"
        " + i.indislive::int, ic.xmin::text::int8)",
        "i.xmin",
        f"{_INDEX_RELATIONS} WHERE i.indrelid = {_IN_REL}",
    )
},
  -- the schema's enum types and their labels (NULL, so left out, while it has none)
  nullif({
    _sum_of(
        "ty.oid", "ty.xmin", "pg_type ty WHERE ty.typtype = 'e' AND ty.typnamespace = (SELECT oid FROM nsp)"
    )
}
    || {
    _sum_of(
        "e.oid",
        "e.xmin",
        "pg_enum e JOIN pg_type et ON et.oid = e.enumtypid"
        " WHERE et.typtype = 'e' AND et.typnamespace = (SELECT oid FROM nsp)",
    )
}, '0:00:0'),
  {_sum_of("s.seqrelid", "s.xmin", _IDENTITY_SEQUENCES)},
  {_sum_of("s.seqrelid", "s.xmin", f"pg_sequence s WHERE s.seqrelid = {_IN_REL}")},
  {
    _sum_of(
        "(d.objoid::int8 << 16) + d.objsubid",
        "d.xmin",
        f"pg_description d WHERE d.classoid = 'pg_class'::regclass AND d.objoid = {_IN_REL}",
    )
},
  {_sum_of("p.oid", "p.xmin", f"pg_policy p WHERE p.polrelid = {_IN_REL}")},
  -- the declared views' rules (CREATE OR REPLACE VIEW rewrites only this row); NULL while there are none
  nullif({_sum_of("r.oid", "r.xmin", f"pg_rewrite r WHERE r.ev_class = {_IN_REL}")}, '0:0'),
  -- the declared functions (their names are among $2) with their marks, and the managed tables' triggers
  -- (NULL, so left out, while there are none)
  nullif({_sum_of("p.oid", "p.xmin", _FUNCTIONS)}
    || {_sum_of("d.objoid", "d.xmin", _FUNCTION_MARKS)}, '0:00:0'),
  nullif({
    _sum_of("t.oid", "t.xmin", f"pg_trigger t WHERE t.tgrelid = {_IN_REL} AND NOT t.tgisinternal")
}, '0:0'),
  -- the database's extensions (spec.extensions: one dropped or created by hand is noticed)
  {_sum_of("x.oid", "x.xmin", "pg_extension x")},
  {{owners}}
) AS catalog{{ledger_columns}}
"""

# The rows of the ownership table that decide a plan: who holds each desired table, and which tables
# this owner holds beyond them (with their pg_class row version: one re-created by hand is dropped again).
_OWNERS = """(SELECT count(*) || ':' || coalesce(sum(hashtextextended(o.table_name || '=' || o.owner,
                 CASE WHEN w.name IS NULL THEN coalesce(c.xmin::text::int8, -1) ELSE 0 END)), 0)
   FROM {owners} o
   LEFT JOIN unnest($2::text[]) AS w(name) ON w.name = o.table_name
   LEFT JOIN pg_class c ON w.name IS NULL AND c.relname = o.table_name AND c.relnamespace = (SELECT oid FROM nsp)
   WHERE o.owner = $3 OR w.name IS NOT NULL)"""
_LEDGER_COLUMNS = f""",
  EXISTS (SELECT 1 FROM {{ledger}} WHERE owner = $3 AND {UNFINISHED_SQL}) AS running,
  r.version AS recorded_version, r.plan_key AS recorded_key, r.fingerprint AS recorded_fingerprint
FROM (SELECT) one LEFT JOIN LATERAL (
  SELECT version, plan_key, fingerprint FROM {{ledger}} WHERE owner = $3 AND status = '{STATUS_APPLIED}'
  ORDER BY id DESC LIMIT 1
) r ON true"""
# Without a ledger nobody owns anything: the same text as an empty ownership table, so creating the
# ledger (the first apply does, before it plans under the lease) moves neither fingerprint nor plan hash.
_NO_OWNERS = "'0:0'"


@functools.lru_cache(maxsize=64)
def _statement(schema: str | None) -> str:
    """The fingerprint query; with ``schema``, it also reads that schema's ledger (which must exist)."""
    if schema is None:
        return _CATALOG.format(owners=_NO_OWNERS, ledger_columns="")
    return _CATALOG.format(
        owners=_OWNERS.format(owners=qualified(schema, OWNERS)),
        ledger_columns=_LEDGER_COLUMNS.format(ledger=qualified(schema, LEDGER)),
    )


@dataclass(frozen=True)
class Reading:
    """One fingerprint query's answer: the fingerprint, and what the ledger says about this owner."""

    fingerprint: str
    running: bool  # this owner has unfinished work: an attempt running, or one interrupted with steps pending
    recorded_version: str | None = None  # this owner's last applied migration (None: none, or no ledger)
    recorded_key: str | None = None  # its plan key
    recorded_fingerprint: str | None = None  # and the fingerprint taken when it closed


async def read(conn: asyncpg.Connection, schema: str, tables: Iterable[str], owner: str) -> Reading:
    """The fingerprint of ``tables`` in ``schema`` and the ledger's facts for ``owner``: one query.

    The ledger tables cannot be named in a statement unless they exist, and planning must not create
    them: the query that reads them is tried first, and a database without a ledger answers the
    catalog-only one (a second round trip only there). Inside a transaction, where a failed statement
    would abort it, the ledger's presence is looked up first instead.
    """
    args = (schema, sorted(set(tables)), owner)  # the statement without the ledger takes no owner ($3)
    ledger = Ledger(schema)
    if conn.is_in_transaction() and not await ledger.is_current(conn):
        return Reading(
            _digest(await conn.fetchval(_statement(None), *args[:2])), running=await ledger.exists(conn)
        )
    try:
        row = await conn.fetchrow(_statement(schema), *args)
    except asyncpg.UndefinedTableError:
        return Reading(_digest(await conn.fetchval(_statement(None), *args[:2])), running=False)
    except asyncpg.UndefinedColumnError:  # a ledger of an older version: the full plan decides
        return Reading(_digest(await conn.fetchval(_statement(None), *args[:2])), running=True)
    return Reading(
        _digest(row["catalog"]),
        row["running"],
        row["recorded_version"],
        row["recorded_key"],
        row["recorded_fingerprint"],
    )


def _digest(catalog: str) -> str:
    return hashlib.md5(catalog.encode(), usedforsecurity=False).hexdigest()


async def fingerprint(conn: asyncpg.Connection, schema: str, tables: Iterable[str], owner: str = "") -> str:
    """The fingerprint of ``tables`` (present or not) in ``schema``: any DDL on them changes it."""
    return (await read(conn, schema, tables, owner)).fingerprint


_HASHES: OrderedDict[int, tuple[Schema, str]] = OrderedDict()


def schema_hash(desired: Schema) -> str:
    """``desired.hash()``, remembered per Schema object: the canonical JSON of 1,000 tables costs ~0.1 s.

    Keyed by identity (a Schema is immutable); the entry holds the object, so its id cannot be reused.
    """
    entry = _HASHES.get(id(desired))
    if entry is not None and entry[0] is desired:
        _HASHES.move_to_end(id(desired))
        return entry[1]
    value = desired.hash()
    _HASHES[id(desired)] = (desired, value)
    while len(_HASHES) > CACHE_SIZE // 4:
        _HASHES.popitem(last=False)
    return value


def plan_key(desired: Schema, options: MigrationOptions, desired_hash: str | None = None) -> str:
    """What an empty plan depends on besides the database: the desired schema and the options that filter it."""
    parts = [
        desired_hash or desired.hash(),
        desired.name,
        repr(sorted(options.include_tables) if options.include_tables is not None else None),
        repr(sorted(options.exclude_operations)),
        repr(sorted(options.allowed_functions)),
        options.strategy,
    ]
    if not options.drop_missing_tables:
        parts.append("keep-missing-tables")
    if options.prune:  # adopting a table then drops what the models do not declare
        parts.append("prune")
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


class InSyncCache:
    """Fingerprints of states found in sync (or just applied), by database, schema, owner and plan key.

    A small LRU: the operator checks many resources from one process, the library one or two.
    """

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, str, str, str], str] = OrderedDict()

    @staticmethod
    def _database(dsn: str | None) -> str:
        # hashed: the key never holds a password in the clear
        return hashlib.sha256((dsn or "").encode()).hexdigest()

    def get(self, dsn: str | None, schema: str, owner: str, key: str) -> str | None:
        entry = (self._database(dsn), schema, owner, key)
        value = self._entries.get(entry)
        if value is not None:
            self._entries.move_to_end(entry)
        return value

    def put(self, dsn: str | None, schema: str, owner: str, key: str, value: str) -> None:
        entry = (self._database(dsn), schema, owner, key)
        self._entries[entry] = value
        self._entries.move_to_end(entry)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


IN_SYNC = InSyncCache()


def matches(reading: Reading, key: str, cached: str | None) -> bool:
    """Whether ``reading`` shows a state known to be in sync for ``key`` (never while an attempt is running)."""
    if reading.running:
        return False
    if cached is not None and reading.fingerprint == cached:
        return True
    return reading.recorded_key == key and reading.recorded_fingerprint == reading.fingerprint
