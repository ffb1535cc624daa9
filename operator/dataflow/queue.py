"""The migration queue: a table in the ledger's schema that every process sharing the database reads.

``DataFlow.queue_migration`` adds an entry; one worker at a time (it holds the ``queue:<schema>``
lease) takes entries highest priority first, then first come, and runs each through
:func:`dataflow.reconcile.reconcile`. An entry still queued past its timeout is marked ``timed_out``
and never run. The table is created the first time a migration is queued, never by reading.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from dataflow.errors import LockTimeout, SchemaError
from dataflow.executor import execute_one
from dataflow.ledger import QUEUE, Ledger
from dataflow.lock import MigrationLease
from dataflow.options import positive_seconds, risk
from dataflow.schema import Schema
from dataflow.sqltext import qualified, quote_ident

log = logging.getLogger("dataflow.queue")

QUEUED = "queued"
RUNNING = "running"
APPLIED = "applied"
FAILED = "failed"
TIMED_OUT = "timed_out"
CANCELLED = "cancelled"
STATUSES = (QUEUED, RUNNING, APPLIED, FAILED, TIMED_OUT, CANCELLED)
FINAL = frozenset({APPLIED, FAILED, TIMED_OUT, CANCELLED})

REQUEST_KEYS = ("target_schema", "priority", "timeout", "max_risk_level")

_DDL = (
    """CREATE TABLE IF NOT EXISTS {queue} (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  owner TEXT NOT NULL,
  priority INTEGER NOT NULL,
  target JSONB NOT NULL,
  max_risk_level TEXT,
  timeout_s DOUBLE PRECISION NOT NULL,
  status TEXT NOT NULL,
  queued_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
  deadline TIMESTAMPTZ NOT NULL,
  started_at TIMESTAMPTZ,
  finished_at TIMESTAMPTZ,
  version TEXT,
  error TEXT,
  worker TEXT
)""",
    "CREATE INDEX IF NOT EXISTS {index} ON {queue} (priority DESC, id) WHERE status = 'queued'",
)


@dataclass(frozen=True)
class QueueRequest:
    """A checked ``queue_migration`` request: what to migrate to, how urgent, how long it may wait."""

    target: dict[str, Any]  # the desired schema, canonical form
    priority: int
    timeout_s: float
    max_risk_level: str | None


@dataclass(frozen=True)
class MigrationStatus:
    """What ``get_migration_status`` returns: ``status`` (one of :data:`STATUSES`) and ``position``.

    ``position`` is the entry's place among the queued entries (1 runs next); 0 once it left the queue.
    """

    id: int
    status: str
    position: int
    priority: int
    version: str | None
    error: str | None
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class Entry:
    """An entry a worker took: run it before ``remaining_s`` seconds are up."""

    id: int
    owner: str
    target: dict[str, Any]
    max_risk_level: str | None
    remaining_s: float


def parse_request(request: Any, default_target: Callable[[], Schema], timeout_s: float) -> QueueRequest:
    """Check a ``queue_migration`` dict; a wrong or unknown key raises SchemaError naming it."""
    if not isinstance(request, Mapping):
        raise SchemaError("queue_migration", f"must be a dict, not {type(request).__name__}")
    for key in request:
        if key not in REQUEST_KEYS:
            raise SchemaError(f"queue_migration.{key}", f"unknown key; known: {', '.join(REQUEST_KEYS)}")
    priority = request.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or not -(2**31) <= priority < 2**31:
        raise SchemaError("queue_migration.priority", f"must be a 32-bit integer, not {priority!r}")
    timeout = request.get("timeout", timeout_s)
    if problem := positive_seconds(timeout):
        raise SchemaError("queue_migration.timeout", problem)
    level = request.get("max_risk_level")
    if level is not None and (problem := risk(level)):
        raise SchemaError("queue_migration.max_risk_level", problem)
    target = request.get("target_schema")
    if target is None:
        schema = default_target()
    elif isinstance(target, Schema):
        schema = target
    elif isinstance(target, Mapping):
        try:
            schema = Schema.from_dict(target)
        except SchemaError as exc:
            raise SchemaError(f"queue_migration.target_schema.{exc.field}", exc.problem) from None
    else:
        raise SchemaError(
            "queue_migration.target_schema",
            f"must be a Schema or a canonical schema dict, not {type(target).__name__}",
        )
    return QueueRequest(schema.to_dict(), priority, float(timeout), None if level is None else str(level))


class MigrationQueue:
    """The queue table of one schema (next to the ledger)."""

    def __init__(self, schema: str = "public") -> None:
        self.schema = schema
        self.table = qualified(schema, QUEUE)
        self.ledger = Ledger(schema)

    async def exists(self, conn: asyncpg.Connection) -> bool:
        return await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", self.table)

    async def ensure(self, conn: asyncpg.Connection) -> None:
        """The ledger tables (the worker's lease lives there) and the queue table, safe to race."""
        await self.ledger.ensure(conn)
        if await self.exists(conn):
            return
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"dataflow-queue:{self.schema}")
            for ddl in _DDL:
                await execute_one(conn, ddl.format(queue=self.table, index=quote_ident(f"{QUEUE}_next")))

    async def enqueue(self, conn: asyncpg.Connection, owner: str, request: QueueRequest) -> int:
        await self.ensure(conn)
        return await conn.fetchval(
            f"INSERT INTO {self.table} (owner, priority, target, max_risk_level, timeout_s, status, deadline)"
            " VALUES ($1, $2, $3::jsonb, $4, $5, $6, clock_timestamp() + make_interval(secs => $5))"
            " RETURNING id",
            owner,
            request.priority,
            json.dumps(request.target),
            request.max_risk_level,
            request.timeout_s,
            QUEUED,
        )

    async def expire(self, conn: asyncpg.Connection) -> int:
        """Mark every queued entry past its deadline ``timed_out``; they are never run."""
        status = await conn.execute(
            f"UPDATE {self.table} SET status = $1, finished_at = clock_timestamp(),"
            " error = format('not started within its timeout of %s s', timeout_s)"
            " WHERE status = $2 AND deadline < clock_timestamp()",
            TIMED_OUT,
            QUEUED,
        )
        return int(status.split()[-1])

    async def status(self, conn: asyncpg.Connection, entry_id: int) -> MigrationStatus | None:
        if not await self.exists(conn):
            return None
        await self.expire(conn)
        row = await conn.fetchrow(
            f"SELECT q.*, CASE WHEN q.status = $2 THEN (SELECT count(*) + 1 FROM {self.table} o"
            " WHERE o.status = $2 AND (o.priority > q.priority OR (o.priority = q.priority AND o.id < q.id)))"
            f" ELSE 0 END AS position FROM {self.table} q WHERE q.id = $1",
            entry_id,
            QUEUED,
        )
        if row is None:
            return None
        return MigrationStatus(
            row["id"],
            row["status"],
            row["position"],
            row["priority"],
            row["version"],
            row["error"],
            row["queued_at"],
            row["started_at"],
            row["finished_at"],
        )

    async def cancel(self, conn: asyncpg.Connection, entry_id: int) -> bool:
        """Cancel a queued entry; False when it already left the queue (or does not exist)."""
        if not await self.exists(conn):
            return False
        status = await conn.execute(
            f"UPDATE {self.table} SET status = $2, finished_at = clock_timestamp() WHERE id = $1 AND status = $3",
            entry_id,
            CANCELLED,
            QUEUED,
        )
        return status.endswith(" 1")

    async def has_queued(self, conn: asyncpg.Connection) -> bool:
        if not await self.exists(conn):
            return False
        return await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {self.table} WHERE status = $1)", QUEUED)

    async def take(self, conn: asyncpg.Connection, worker: str) -> Entry | None:
        """Expire what waited too long, then mark the next entry running (call holding the queue lease)."""
        async with conn.transaction():
            await self.expire(conn)
            row = await conn.fetchrow(
                f"UPDATE {self.table} SET status = $1, started_at = clock_timestamp(), worker = $2"
                f" WHERE id = (SELECT id FROM {self.table} WHERE status = $3 ORDER BY priority DESC, id"
                " LIMIT 1 FOR UPDATE SKIP LOCKED)"
                " RETURNING id, owner, target, max_risk_level,"
                " extract(epoch FROM deadline - clock_timestamp())::float8 AS remaining",
                RUNNING,
                worker,
                QUEUED,
            )
        if row is None:
            return None
        return Entry(
            row["id"],
            row["owner"],
            json.loads(row["target"]),
            row["max_risk_level"],
            max(row["remaining"], 0.1),
        )

    async def finish(
        self, conn: asyncpg.Connection, entry_id: int, status: str, version: str | None, error: str | None
    ) -> None:
        await conn.execute(
            f"UPDATE {self.table} SET status = $2, version = $3, error = $4, finished_at = clock_timestamp()"
            " WHERE id = $1",
            entry_id,
            status,
            version,
            error,
        )

    async def fail_abandoned(self, conn: asyncpg.Connection) -> None:
        """Entries left running by a worker that stopped (the new worker holds the lease): failed."""
        await conn.execute(
            f"UPDATE {self.table} SET status = $1, finished_at = clock_timestamp(),"
            " error = 'interrupted: the worker running it stopped; queue it again' WHERE status = $2",
            FAILED,
            RUNNING,
        )


# Runs one entry; returns (status, ledger version, error).
Run = Callable[[Entry], Awaitable[tuple[str, str | None, str | None]]]


async def drain(conn: asyncpg.Connection, queue: MigrationQueue, dsn: str, run: Run) -> list[int]:
    """Run queued entries until none is left, holding the queue lease; the ids run (taken by this call).

    When another process holds the lease it is draining: return at once. After the lease is given
    back the queue is checked again, so an entry added while the lease was being released still runs.
    """
    done: list[int] = []
    lease = MigrationLease(queue.ledger, f"queue:{queue.schema}")
    while await queue.has_queued(conn):
        try:
            async with lease.hold(conn, timeout=0, heartbeat_dsn=dsn):
                await queue.fail_abandoned(conn)
                while (entry := await queue.take(conn, lease.holder)) is not None:
                    try:
                        status, version, error = await run(entry)
                    except Exception as exc:  # noqa: BLE001 - one entry's failure must not stop the queue
                        status, version, error = FAILED, None, f"{type(exc).__name__}: {exc}"
                    await queue.finish(conn, entry.id, status, version, error)
                    log.info("queued migration %s: %s", entry.id, status)
                    done.append(entry.id)
        except LockTimeout:
            return done
    return done
