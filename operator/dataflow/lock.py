"""A lease lock per database and schema: a row with holder, expiry and heartbeat.

The lease serialises appliers across processes and machines (library, CLI, operator replicas);
a session-level ``pg_advisory_lock`` around the apply backs it up. A holder whose database
session ends (the process died) loses the lease at once; one that hangs stops heart-beating and
its lease expires after ``ttl`` seconds.

Fencing: the heartbeat renews the lease every ``ttl / 3`` seconds on a session of its own. When a
renewal fails (its session died) or matches no row (another process took the lease over), the
lease records why in ``lost`` and cancels the block it guards, well before the lease could expire,
so two appliers never run at once. The executor turns that into one clear "interrupted" error.

A process holding many leases on one database (the operator) passes a :class:`Heartbeat` instead
of a DSN: :class:`SharedHeartbeat` renews every lease the process holds there with one UPDATE per
tick on one connection, and its ``wait`` lets a pooled caller give its connection back while it
waits for a lease another process holds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Protocol

import asyncpg
import tenacity

from dataflow.connect import connect
from dataflow.errors import LockTimeout
from dataflow.executor import CONNECTION_ERRORS, MigrationInterrupted
from dataflow.ledger import Ledger
from dataflow.retry import Backoff

log = logging.getLogger("dataflow.lock")
HEARTBEAT_APPLICATION_NAME = "dataflow-heartbeat"
LEASE_WAIT = Backoff(base_s=0.05, max_s=1.0)  # between tries to take a held lease


class Heartbeat(Protocol):
    """Keeps held leases alive for :meth:`MigrationLease.hold`, in place of a connection per lease."""

    def keep(self, lease: MigrationLease) -> None:
        """Renew ``lease`` from now on (and fence it when a renewal finds it taken over)."""

    def forget(self, lease: MigrationLease) -> None:
        """Stop renewing ``lease``: it is being released."""

    async def wait(self, seconds: float) -> None:
        """Sleep between tries to take a lease another process holds (a pooled caller gives its connection back)."""


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class MigrationLease:
    """Acquire, heartbeat and release the lease named ``key`` in ``ledger``'s schema."""

    def __init__(self, ledger: Ledger, key: str, holder: str | None = None, ttl: float = 30.0) -> None:
        self.ledger = ledger
        self.key = key
        self.holder = holder or default_holder()
        self.ttl = ttl
        self.lost: str | None = None  # why the lease was lost while held (the executor's fence)
        self._guarded: asyncio.Task | None = None  # the task running the held block

    async def try_acquire(self, conn: asyncpg.Connection) -> bool:
        row = await conn.fetchrow(
            f"INSERT INTO {self.ledger.locks} AS l"
            " (lock_key, holder, holder_pid, acquired_at, heartbeat_at, expires_at)"
            " VALUES ($1, $2, pg_backend_pid(), clock_timestamp(), clock_timestamp(),"
            " clock_timestamp() + make_interval(secs => $3))"
            " ON CONFLICT (lock_key) DO UPDATE SET holder = EXCLUDED.holder, holder_pid = EXCLUDED.holder_pid,"
            " acquired_at = EXCLUDED.acquired_at, heartbeat_at = EXCLUDED.heartbeat_at,"
            " expires_at = EXCLUDED.expires_at"
            " WHERE l.expires_at < clock_timestamp() OR l.holder = EXCLUDED.holder"
            # a holder whose database session has ended (the process died) loses the lease at once
            " OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.holder_pid)"
            " RETURNING holder",
            self.key,
            self.holder,
            self.ttl,
        )
        return row is not None

    async def heartbeat(self, conn: asyncpg.Connection, timeout: float | None = None) -> bool:
        """Renew the lease; False when this holder no longer has it."""
        result = await conn.execute(
            f"UPDATE {self.ledger.locks} SET heartbeat_at = clock_timestamp(),"
            " expires_at = clock_timestamp() + make_interval(secs => $3) WHERE lock_key = $1 AND holder = $2",
            self.key,
            self.holder,
            self.ttl,
            timeout=timeout,
        )
        return result.endswith(" 1")

    async def release(self, conn: asyncpg.Connection) -> None:
        await conn.execute(
            f"DELETE FROM {self.ledger.locks} WHERE lock_key = $1 AND holder = $2", self.key, self.holder
        )

    async def current_holder(self, conn: asyncpg.Connection) -> str | None:
        return await conn.fetchval(
            f"SELECT holder FROM {self.ledger.locks} WHERE lock_key = $1 AND expires_at >= clock_timestamp()",
            self.key,
        )

    @asynccontextmanager
    async def hold(
        self,
        conn: asyncpg.Connection,
        timeout: float = 300.0,
        heartbeat_dsn: str | None = None,
        heartbeat: Heartbeat | None = None,
    ) -> AsyncIterator[MigrationLease]:
        """Wait up to ``timeout`` seconds for the lease, keep it alive while the block runs.

        ``heartbeat`` (shared by the process) renews it; otherwise, with ``heartbeat_dsn``, a
        connection of its own does.
        """
        await self._acquire(conn, timeout, heartbeat.wait if heartbeat is not None else asyncio.sleep)
        self.lost = None
        self._guarded = asyncio.current_task()
        beat = None
        if heartbeat is not None:
            heartbeat.keep(self)
        elif heartbeat_dsn:
            beat = asyncio.create_task(self._beat(heartbeat_dsn))
        try:
            yield self
        except asyncio.CancelledError:
            if not self.lost:
                raise
            self._guarded.uncancel()  # our own fencing cancel: report it, not a cancel
            raise MigrationInterrupted(f"{self.lost}; stopped before finishing, run again") from None
        finally:
            self._guarded = None  # from here on the heartbeat cancels nothing
            if heartbeat is not None:
                heartbeat.forget(self)
            if beat:
                beat.cancel()
                await asyncio.gather(beat, return_exceptions=True)
            await self._release_quietly(conn)

    async def _acquire(
        self, conn: asyncpg.Connection, timeout: float, sleep: Callable[[float], Awaitable[None]]
    ) -> None:
        """Try until the lease is ours, backing off with :data:`LEASE_WAIT`; LockTimeout after ``timeout`` seconds."""
        waiting = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_result(lambda acquired: not acquired),
            stop=tenacity.stop_after_delay(timeout),
            wait=LEASE_WAIT,
            sleep=sleep,
        )
        try:
            await waiting(self.try_acquire, conn)
        except tenacity.RetryError:
            holder = await self.current_holder(conn)
            raise LockTimeout(
                f"migration lease {self.key!r} is held by {holder or 'another process'}; "
                f"gave up after {timeout:.0f}s"
            ) from None

    async def _release_quietly(self, conn: asyncpg.Connection) -> None:
        """Release unless the session is gone (then so is the lease: its holder pid no longer exists)."""
        if conn.is_closed():
            return
        try:
            await self.release(conn)
        except CONNECTION_ERRORS as exc:
            log.warning(
                "could not release lease %r (it expires after %.0fs): %s",
                self.key,
                self.ttl,
                type(exc).__name__,
            )

    def _fence(self, why: str) -> None:
        """The lease is lost: stop the block it guards (once)."""
        if self._guarded is not None and not self.lost:
            self.lost = why
            log.error("lease %r: %s; stopping the migration", self.key, why)
            self._guarded.cancel()

    async def _beat(self, dsn: str) -> None:
        """Heartbeat on a connection of its own: the main one is busy inside the migration."""
        interval = self.ttl / 3
        try:
            conn = await connect(dsn, self.ledger.schema, timeout=interval)
        except CONNECTION_ERRORS as exc:
            self._fence(f"could not open the lease heartbeat connection ({type(exc).__name__})")
            return
        try:
            await conn.execute("SELECT set_config('application_name', $1, false)", HEARTBEAT_APPLICATION_NAME)
            while True:
                await asyncio.sleep(interval)
                if not await self.heartbeat(conn, timeout=interval):
                    self._fence(f"lost the migration lease {self.key!r}: another process took it over")
                    return
        except CONNECTION_ERRORS as exc:
            self._fence(f"lost the lease heartbeat connection ({type(exc).__name__}: {exc})")
        finally:
            if not conn.is_closed():
                conn.terminate()


class SharedHeartbeat:
    """One connection per database renewing every lease this process holds there: one UPDATE per tick.

    The tick is a third of the shortest held lease's ttl. A lease whose row the renewal did not find
    (another process took it over) is fenced, as is every lease when a renewal fails (the session
    died under it, or no session can be opened). A session the server closed between ticks is
    replaced first: renewing on a new session is as good as on the old one. The connection stays open while the
    process runs (the operator's pool accounts for it) and is closed by :meth:`close`.
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._leases: dict[int, MigrationLease] = {}
        self._changed = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task | None = None

    def keep(self, lease: MigrationLease) -> None:
        self._leases[id(lease)] = lease
        self._changed.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="dataflow-shared-heartbeat")

    def forget(self, lease: MigrationLease) -> None:
        self._leases.pop(id(lease), None)

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    @property
    def leases(self) -> list[MigrationLease]:
        return list(self._leases.values())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._conn is not None:
            with suppress(*CONNECTION_ERRORS):
                await self._conn.close(timeout=2.0)
            self._conn.terminate()
            self._conn = None

    def terminate(self) -> None:
        """Drop the connection at once (its event loop is gone)."""
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None
        self._task = None

    async def _run(self) -> None:
        """Tick while leases are held; a lease that joins with a shorter ttl brings the next tick closer."""
        loop = asyncio.get_running_loop()
        next_at: float | None = None
        while True:
            self._changed.clear()
            if not self._leases:
                next_at = None
                await self._changed.wait()
                continue
            interval = min(lease.ttl for lease in self._leases.values()) / 3
            now = loop.time()
            next_at = now + interval if next_at is None else min(next_at, now + interval)
            if now < next_at:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), next_at - now)
                continue
            next_at = now + interval
            await self._tick(list(self._leases.values()), interval)

    async def _tick(self, leases: list[MigrationLease], interval: float) -> None:
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = None
                self._conn = await connect(self.dsn, timeout=interval)
                await self._conn.execute(
                    "SELECT set_config('application_name', $1, false)", HEARTBEAT_APPLICATION_NAME
                )
            renewed = await renew(self._conn, leases, timeout=interval)
        except CONNECTION_ERRORS as exc:
            if self._conn is not None:
                self._conn.terminate()
                self._conn = None
            for lease in leases:
                lease._fence(f"lost the lease heartbeat connection ({type(exc).__name__}: {exc})")
            return
        for i, lease in enumerate(leases):
            if i not in renewed:
                lease._fence(f"lost the migration lease {lease.key!r}: another process took it over")


async def renew(
    conn: asyncpg.Connection, leases: list[MigrationLease], timeout: float | None = None
) -> set[int]:
    """Renew ``leases`` (in any ledger schemas) in one statement; the indexes of those still held.

    One data-modifying CTE per lock table, each joined to its leases' keys, holders and ttls.
    """
    by_table: dict[str, list[int]] = {}
    for i, lease in enumerate(leases):
        by_table.setdefault(lease.ledger.locks, []).append(i)
    parts: list[str] = []
    args: list[list[int] | list[str] | list[float]] = []
    for n, (table, indexes) in enumerate(by_table.items()):
        base = len(args)
        parts.append(
            f"u{n} AS (UPDATE {table} AS l SET heartbeat_at = clock_timestamp(),"
            " expires_at = clock_timestamp() + make_interval(secs => v.ttl)"
            f" FROM unnest(${base + 1}::int[], ${base + 2}::text[], ${base + 3}::text[], ${base + 4}::float8[])"
            " AS v(i, lock_key, holder, ttl)"
            " WHERE l.lock_key = v.lock_key AND l.holder = v.holder RETURNING v.i)"
        )
        args += [
            indexes,
            [leases[i].key for i in indexes],
            [leases[i].holder for i in indexes],
            [float(leases[i].ttl) for i in indexes],
        ]
    union = " UNION ALL ".join(f"SELECT i FROM u{n}" for n in range(len(parts)))
    rows = await conn.fetch(f"WITH {', '.join(parts)} {union}", *args, timeout=timeout)
    return {row["i"] for row in rows}
