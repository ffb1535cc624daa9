"""The migration ledger (``dataflow_migrations``) and table ownership, kept in the target schema."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from dataflow.adoption import KeptObject, from_rows, kept_by_table, to_json
from dataflow.claims import EXTENSION_CLAIM, claimed_extension, extension_claim  # noqa: F401 (re-exported)
from dataflow.sqltext import qualified, quote_ident

if TYPE_CHECKING:
    from dataflow.plan import Migration

LEDGER = "dataflow_migrations"
LOCKS = "dataflow_migration_lock"
OWNERS = "dataflow_owned_tables"
QUEUE = "dataflow_migration_queue"  # created by dataflow.queue, only when a migration is queued
INTERNAL_TABLES = frozenset({LEDGER, LOCKS, OWNERS, QUEUE})  # DataFlow's own tables: never diffed
# The ownership row of an extension an owner created (CREATE_EXTENSION), kept in OWNERS beside the tables':
# its key starts with a control character, which no table name of a model or manifest has.
_DDL = (
    """CREATE TABLE IF NOT EXISTS {ledger} (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  version TEXT NOT NULL UNIQUE,
  owner TEXT NOT NULL,
  description TEXT NOT NULL,
  status TEXT NOT NULL,
  safety_level TEXT NOT NULL,
  checksum TEXT NOT NULL,
  schema_hash TEXT NOT NULL,
  plan JSONB NOT NULL,
  error TEXT,
  applied_by TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  progress JSONB,
  started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
  finished_at TIMESTAMPTZ,
  duration_ms DOUBLE PRECISION
)""",
    """CREATE TABLE IF NOT EXISTS {locks} (
  lock_key TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  holder_pid INTEGER,
  acquired_at TIMESTAMPTZ NOT NULL,
  heartbeat_at TIMESTAMPTZ NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL
)""",
    "ALTER TABLE {ledger} ADD COLUMN IF NOT EXISTS progress JSONB",
    "ALTER TABLE {locks} ADD COLUMN IF NOT EXISTS holder_pid INTEGER",
    # what an applied migration left: the plan key it was made for and the fingerprint of the result
    "ALTER TABLE {ledger} ADD COLUMN IF NOT EXISTS plan_key TEXT",
    "ALTER TABLE {ledger} ADD COLUMN IF NOT EXISTS fingerprint TEXT",
    """CREATE TABLE IF NOT EXISTS {owners} (
  table_name TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  claimed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
)""",
    # what the models did not declare when the table was adopted, left alone since (dataflow.adoption)
    "ALTER TABLE {owners} ADD COLUMN IF NOT EXISTS kept JSONB",
)

STATUS_RUNNING = "running"
STATUS_APPLIED = "applied"
STATUS_FAILED = "failed"
STATUS_REFUSED = "refused"
STATUS_ROLLED_BACK = "rolled_back"
STATUS_INTERRUPTED = "interrupted"  # stopped part-way: lost connection, lost lease, or the process died

# Pending work (``progress.pending``): the steps of a migration the schema cannot show once its DDL is
# done (batched backfills, validations), each with its state and how many batches have committed.
PENDING_WAITING = "waiting"  # not started
PENDING_RUNNING = "running"  # started, maybe part-way (a backfill records each committed batch)
PENDING_DONE = "done"
PENDING_SKIPPED = "skipped"  # not resumed: what it works on is gone, or the desired schema moved on
# SQL, on a ledger row: its migration is unfinished (still running, or interrupted with pending work)
UNFINISHED_SQL = (
    f"(status = '{STATUS_RUNNING}' OR (status = '{STATUS_INTERRUPTED}'"
    f' AND progress @? \'$.pending[*] ? (@.state == "{PENDING_WAITING}" || @.state == "{PENDING_RUNNING}")\'))'
)


@dataclass(frozen=True)
class MigrationRecord:
    """One ledger row, as :meth:`DataFlow.get_migration_history` returns it."""

    version: str
    owner: str
    description: str
    status: str
    safety_level: str
    checksum: str
    schema_hash: str
    operations: list[dict[str, Any]]
    sql_down: list[str]
    error: str | None
    applied_by: str
    attempts: int
    started_at: datetime
    finished_at: datetime | None
    duration_ms: float | None
    step_timings: tuple[dict[str, Any], ...] = ()  # per step: operation, table, sql, batched, ms

    @property
    def name(self) -> str:
        return self.version

    @property
    def applied_at(self) -> datetime | None:
        return self.finished_at if self.status in (STATUS_APPLIED, STATUS_ROLLED_BACK) else None


@dataclass(frozen=True)
class Unfinished:
    """An interrupted migration of one owner with pending work left: what a later run resumes."""

    version: str
    schema_hash: str  # the desired schema it was planned for
    attempts: int
    pending: list[dict[str, Any]]  # progress.pending: {"step", "sql", "kind", "batches", "state"}
    steps_done: int  # progress.stepsDone: step groups known committed (exact for transactional ones)

    def _reached(self, item: dict[str, Any]) -> bool:
        return item["state"] == PENDING_RUNNING or item["step"] - 1 <= self.steps_done

    @property
    def left(self) -> list[tuple[int, dict[str, Any]]]:
        """(index, item) of the pending steps to finish, in order: not done, and every step before them
        committed (so the DDL they follow is there)."""
        return [
            (i, p)
            for i, p in enumerate(self.pending)
            if p["state"] in (PENDING_WAITING, PENDING_RUNNING) and self._reached(p)
        ]

    @property
    def unreached(self) -> list[tuple[int, dict[str, Any]]]:
        """(index, item) of the pending steps the migration never reached: a new plan renders them."""
        return [
            (i, p)
            for i, p in enumerate(self.pending)
            if p["state"] == PENDING_WAITING and not self._reached(p)
        ]


# Called inside the transaction that closes an applied migration: (plan key, fingerprint) to record.
Seal = Callable[[asyncpg.Connection], Awaitable[tuple[str, str]]]


class Ledger:
    """Reads and writes the ledger tables of one schema.

    ``seal``, when set, is asked for the plan key and fingerprint an applied migration leaves; they
    are stored with its row in the transaction that closes it, so a later check can trust them.
    """

    def __init__(self, schema: str = "public", seal: Seal | None = None) -> None:
        self.schema = schema
        self.table = qualified(schema, LEDGER)
        self.locks = qualified(schema, LOCKS)
        self.owners = qualified(schema, OWNERS)
        self.seal = seal
        # set by the apply that adopts tables: what its plan kept (not in the models), recorded by
        # :meth:`claim` with the ownership rows of the tables it claims (dataflow.adoption)
        self.kept: list[KeptObject] | None = None

    async def is_current(self, conn: asyncpg.Connection) -> bool:
        """Whether every ledger table is there with the columns this version writes and reads."""
        return await conn.fetchval(
            "SELECT count(*) = 5 FROM pg_attribute WHERE (attrelid, attname) IN"
            " ((to_regclass($1), 'progress'), (to_regclass($2), 'holder_pid'),"
            " (to_regclass($1), 'plan_key'), (to_regclass($1), 'fingerprint'), (to_regclass($3), 'kept'))",
            self.table,
            self.locks,
            self.owners,
        )

    async def ensure(self, conn: asyncpg.Connection) -> None:
        """Create the schema and ledger tables if missing (safe to race from many processes)."""
        if await self.is_current(conn):
            return
        from dataflow.executor import execute_one  # the executor imports this module

        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", f"dataflow-bootstrap:{self.schema}"
            )
            await execute_one(conn, f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.schema)}")
            for ddl in _DDL:
                await execute_one(conn, ddl.format(ledger=self.table, locks=self.locks, owners=self.owners))

    async def start(
        self,
        conn: asyncpg.Connection,
        migration: Migration,
        owner: str,
        applied_by: str,
        progress: dict[str, Any] | None = None,
    ) -> str:
        """Record an attempt as running (with its ``progress``: pending work); returns its (unique) version.

        Each candidate version is taken by one atomic ``INSERT ... ON CONFLICT DO NOTHING``, so
        attempts started in the same second by many processes get distinct versions, never an error.
        """
        base = migration.version
        taken = {
            r["version"]
            for r in await conn.fetch(
                f"SELECT version FROM {self.table} WHERE version = $1 OR version LIKE $2", base, base + "\\_%"
            )
        }
        suffix = 1
        while True:
            version = base if suffix == 1 else f"{base}_{suffix}"
            suffix += 1
            if version in taken:
                continue
            inserted = await conn.fetchval(
                f"INSERT INTO {self.table} (version, owner, description, status, safety_level, checksum, schema_hash,"
                " plan, applied_by, progress) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10::jsonb)"
                " ON CONFLICT (version) DO NOTHING RETURNING version",
                version,
                owner,
                migration.description,
                STATUS_RUNNING,
                migration.safety_level,
                migration.checksum,
                migration.schema_hash,
                json.dumps(migration.to_dict()),
                applied_by,
                None if progress is None else json.dumps(progress),
            )
            if inserted is not None:
                migration.version = version
                return version

    async def finish(
        self, conn: asyncpg.Connection, version: str, status: str, attempts: int, error: str | None = None
    ) -> None:
        """Close an attempt; called inside the migration's transaction for success (then sealed, see ``seal``)."""
        key, fingerprint = (
            await self.seal(conn) if status == STATUS_APPLIED and self.seal is not None else (None, None)
        )
        await conn.execute(
            f"UPDATE {self.table} SET status = $2, attempts = $3, error = $4, finished_at = clock_timestamp(),"
            " duration_ms = extract(epoch FROM clock_timestamp() - started_at) * 1000,"
            " plan_key = $5, fingerprint = $6 WHERE version = $1",
            version,
            status,
            attempts,
            error,
            key,
            fingerprint,
        )

    async def progress(self, conn: asyncpg.Connection, version: str, done: int, total: int) -> None:
        """After each committed step group: how far a migration got (a crash leaves this behind)."""
        await conn.execute(
            f"UPDATE {self.table} SET progress = coalesce(progress, '{{}}'::jsonb)"
            " || jsonb_build_object('stepsDone', $2::int, 'stepsTotal', $3::int) WHERE version = $1",
            version,
            done,
            total,
        )

    async def record_timings(
        self, conn: asyncpg.Connection, version: str, timings: list[dict[str, Any]]
    ) -> None:
        """Each step's measured duration (``progress.timings``), for the performance analysis."""
        await conn.execute(
            f"UPDATE {self.table} SET progress = coalesce(progress, '{{}}'::jsonb)"
            " || jsonb_build_object('timings', $2::jsonb) WHERE version = $1",
            version,
            json.dumps(timings),
        )

    async def pending_progress(
        self, conn: asyncpg.Connection, version: str, index: int, state: str, batches: int
    ) -> None:
        """How far pending step ``index`` of ``version`` got: its state and the batches committed."""
        await conn.execute(
            f"UPDATE {self.table} SET progress = jsonb_set(progress, ARRAY['pending', $2::text],"
            " progress #> ARRAY['pending', $2::text] || jsonb_build_object('state', $3::text, 'batches', $4::int))"
            " WHERE version = $1",
            version,
            str(index),
            state,
            batches,
        )

    async def unfinished(self, conn: asyncpg.Connection, owner: str) -> list[Unfinished]:
        """``owner``'s interrupted migrations with pending work left, oldest first (call under the lease,
        after :meth:`mark_interrupted`)."""
        rows = await conn.fetch(
            f"SELECT version, schema_hash, attempts, progress FROM {self.table}"
            f" WHERE owner = $1 AND status = $2 AND {UNFINISHED_SQL} ORDER BY id",
            owner,
            STATUS_INTERRUPTED,
        )
        progress = [json.loads(r["progress"]) for r in rows]
        return [
            Unfinished(r["version"], r["schema_hash"], r["attempts"], p["pending"], p.get("stepsDone", 0))
            for r, p in zip(rows, progress, strict=True)
        ]

    async def record_refusal(
        self, conn: asyncpg.Connection, migration: Migration, owner: str, applied_by: str, reason: str
    ) -> None:
        """Record a refused plan once (an operator re-checking the same plan adds no rows).

        A transaction-level advisory lock per owner makes check-then-insert atomic across processes.
        """
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", f"dataflow-refusal:{self.schema}:{owner}"
            )
            last = await conn.fetchrow(
                f"SELECT status, checksum FROM {self.table} WHERE owner = $1 ORDER BY id DESC LIMIT 1", owner
            )
            if last and last["status"] == STATUS_REFUSED and last["checksum"] == migration.checksum:
                return
            version = await self.start(conn, migration, owner, applied_by)
            await self.finish(conn, version, STATUS_REFUSED, 0, reason)

    async def exists(self, conn: asyncpg.Connection) -> bool:
        """Whether the ledger table is there: reading history must not create it."""
        return await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", self.table)

    async def history(
        self, conn: asyncpg.Connection, limit: int = 10, owner: str | None = None
    ) -> list[MigrationRecord]:
        if not await self.exists(conn):
            return []
        rows = await conn.fetch(
            f"SELECT * FROM {self.table} WHERE ($2::text IS NULL OR owner = $2) ORDER BY id DESC LIMIT $1",
            limit,
            owner,
        )
        return [self._record(r) for r in rows]

    async def get(self, conn: asyncpg.Connection, version: str) -> MigrationRecord | None:
        if not await self.exists(conn):
            return None
        row = await conn.fetchrow(f"SELECT * FROM {self.table} WHERE version = $1", version)
        return self._record(row) if row else None

    async def interrupt(self, conn: asyncpg.Connection, version: str, what: str) -> None:
        """Mark one attempt interrupted, unless something else closed it already."""
        await conn.execute(
            f"UPDATE {self.table} SET status = $2, error = $3, finished_at = clock_timestamp(),"
            " duration_ms = extract(epoch FROM clock_timestamp() - started_at) * 1000"
            " WHERE version = $1 AND status = $4",
            version,
            STATUS_INTERRUPTED,
            f"interrupted: {what}",
            STATUS_RUNNING,
        )

    async def has_unfinished(self, conn: asyncpg.Connection, owner: str) -> bool:
        """Whether ``owner`` has a migration still marked running, or interrupted with pending work
        (read-only: planning writes nothing)."""
        if not await self.exists(conn):
            return False
        return await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {self.table} WHERE owner = $1 AND {UNFINISHED_SQL})", owner
        )

    async def settle_ownership(self, conn: asyncpg.Connection, owner: str, tables: list[str]) -> None:
        """After an attempt that died between its last step and its ledger update: ``owner`` holds ``tables``,
        and no longer the tables of its that are gone."""
        async with conn.transaction():
            await conn.execute(
                f"DELETE FROM {self.owners} WHERE owner = $1"
                " AND to_regclass(quote_ident($2) || '.' || quote_ident(table_name)) IS NULL"
                " AND NOT starts_with(table_name, $3)",  # an extension's claim: it is no table
                owner,
                self.schema,
                EXTENSION_CLAIM,
            )
            await self.claim(conn, owner, tables, [])

    async def mark_interrupted(self, conn: asyncpg.Connection) -> int:
        """Close attempts left 'running' by a holder that is gone (call while holding the lease)."""
        result = await conn.execute(
            f"UPDATE {self.table} SET status = $1, error = 'interrupted: the applying process stopped before it"
            " finished; the next run re-plans from what it left', finished_at = clock_timestamp() WHERE status = $2",
            STATUS_INTERRUPTED,
            STATUS_RUNNING,
        )
        return int(result.split()[-1])

    @staticmethod
    def _record(r: asyncpg.Record) -> MigrationRecord:
        plan = json.loads(r["plan"])
        return MigrationRecord(
            version=r["version"],
            owner=r["owner"],
            description=r["description"],
            status=r["status"],
            safety_level=r["safety_level"],
            checksum=r["checksum"],
            schema_hash=r["schema_hash"],
            operations=plan.get("operations", []),
            sql_down=plan.get("sqlDown", []),
            error=r["error"],
            applied_by=r["applied_by"],
            attempts=r["attempts"],
            started_at=r["started_at"],
            finished_at=r["finished_at"],
            duration_ms=r["duration_ms"],
            step_timings=tuple(json.loads(r["progress"] or "{}").get("timings", ())),
        )

    # ownership ---------------------------------------------------------------
    async def owners_of(self, conn: asyncpg.Connection) -> dict[str, str]:
        """Which owner holds which table; none before the ledger exists."""
        if await conn.fetchval("SELECT to_regclass($1) IS NULL", self.owners):
            return {}
        return {
            r["table_name"]: r["owner"]
            for r in await conn.fetch(f"SELECT table_name, owner FROM {self.owners}")
        }

    async def claim(
        self, conn: asyncpg.Connection, owner: str, tables: list[str], released: list[str]
    ) -> None:
        """Inside the migration transaction: this owner now holds ``tables`` and not ``released``."""
        if released:
            await conn.execute(
                f"DELETE FROM {self.owners} WHERE owner = $1 AND table_name = ANY($2::text[])",
                owner,
                released,
            )
        await conn.executemany(
            f"INSERT INTO {self.owners} (table_name, owner) VALUES ($1, $2) ON CONFLICT (table_name) DO NOTHING",
            [(t, owner) for t in tables],
        )
        if self.kept is not None:
            await self.record_kept(conn, owner, kept_by_table(self.kept, tables))

    async def record_kept(
        self, conn: asyncpg.Connection, owner: str, kept: Mapping[str, list[KeptObject]]
    ) -> None:
        """What each of ``owner``'s tables keeps (not in the models): replaces what was recorded before,
        so an object since declared, or dropped by hand, is no longer kept."""
        await conn.executemany(
            f"UPDATE {self.owners} SET kept = $3::jsonb WHERE table_name = $1 AND owner = $2",
            [(t, owner, to_json(objects) if objects else None) for t, objects in kept.items()],
        )

    async def kept_of(self, conn: asyncpg.Connection, owner: str) -> set[KeptObject]:
        """The objects recorded as kept on ``owner``'s tables; none before the ledger exists.

        Read as ``to_jsonb(row)``, so a ledger of an older version (no ``kept`` column) reads as none.
        """
        if await conn.fetchval("SELECT to_regclass($1) IS NULL", self.owners):
            return set()
        rows = await conn.fetch(
            f"SELECT o.table_name, to_jsonb(o) -> 'kept' AS kept FROM {self.owners} o WHERE o.owner = $1",
            owner,
        )
        return from_rows({r["table_name"]: r["kept"] for r in rows})

    async def release_owner(self, conn: asyncpg.Connection, owner: str) -> list[str]:
        """Drop every claim of ``owner`` (its resource was deleted); returns the tables it released.

        The tables and their data stay; another owner may claim them next. Without the ownership
        table there is nothing to release, and nothing is created.
        """
        if await conn.fetchval("SELECT to_regclass($1) IS NULL", self.owners):
            return []
        rows = await conn.fetch(f"DELETE FROM {self.owners} WHERE owner = $1 RETURNING table_name", owner)
        return sorted(r["table_name"] for r in rows if claimed_extension(r["table_name"]) is None)
