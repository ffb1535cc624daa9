"""A lease lock per database and schema: a row with holder, expiry and heartbeat.

The lease serialises appliers across processes and machines (library, CLI, operator replicas);
a session-level ``pg_advisory_lock`` around the apply backs it up. A holder whose database
session ends (the process died) loses the lease at once; one that hangs stops heart-beating and
its lease expires after ``ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import uuid
from contextlib import asynccontextmanager
from typing import AsyncIterator

import asyncpg

from dataflow.errors import LockTimeout
from dataflow.ledger import Ledger


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class MigrationLease:
    """Acquire, heartbeat and release the lease named ``key`` in ``ledger``'s schema."""

    def __init__(self, ledger: Ledger, key: str, holder: str | None = None, ttl: float = 30.0) -> None:
        self.ledger = ledger
        self.key = key
        self.holder = holder or default_holder()
        self.ttl = ttl

    async def try_acquire(self, conn: asyncpg.Connection) -> bool:
        row = await conn.fetchrow(
            f"INSERT INTO {self.ledger.locks} AS l (lock_key, holder, holder_pid, acquired_at, heartbeat_at, expires_at)"
            " VALUES ($1, $2, pg_backend_pid(), clock_timestamp(), clock_timestamp(),"
            " clock_timestamp() + make_interval(secs => $3))"
            " ON CONFLICT (lock_key) DO UPDATE SET holder = EXCLUDED.holder, holder_pid = EXCLUDED.holder_pid,"
            " acquired_at = EXCLUDED.acquired_at, heartbeat_at = EXCLUDED.heartbeat_at, expires_at = EXCLUDED.expires_at"
            " WHERE l.expires_at < clock_timestamp() OR l.holder = EXCLUDED.holder"
            # a holder whose database session has ended (the process died) loses the lease at once
            " OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.holder_pid)"
            " RETURNING holder",
            self.key, self.holder, self.ttl,
        )
        return row is not None

    async def heartbeat(self, conn: asyncpg.Connection) -> bool:
        result = await conn.execute(
            f"UPDATE {self.ledger.locks} SET heartbeat_at = clock_timestamp(),"
            " expires_at = clock_timestamp() + make_interval(secs => $3) WHERE lock_key = $1 AND holder = $2",
            self.key, self.holder, self.ttl,
        )
        return result.endswith(" 1")

    async def release(self, conn: asyncpg.Connection) -> None:
        await conn.execute(f"DELETE FROM {self.ledger.locks} WHERE lock_key = $1 AND holder = $2", self.key, self.holder)

    async def current_holder(self, conn: asyncpg.Connection) -> str | None:
        return await conn.fetchval(
            f"SELECT holder FROM {self.ledger.locks} WHERE lock_key = $1 AND expires_at >= clock_timestamp()", self.key)

    @asynccontextmanager
    async def hold(self, conn: asyncpg.Connection, timeout: float = 300.0,
                   heartbeat_dsn: str | None = None) -> AsyncIterator["MigrationLease"]:
        """Wait up to ``timeout`` seconds for the lease, keep it alive while the block runs."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.05
        while not await self.try_acquire(conn):
            if loop.time() >= deadline:
                holder = await self.current_holder(conn)
                raise LockTimeout(f"migration lease {self.key!r} is held by {holder or 'another process'}; "
                                  f"gave up after {timeout:.0f}s")
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)
        beat = asyncio.create_task(self._beat(heartbeat_dsn)) if heartbeat_dsn else None
        try:
            yield self
        finally:
            if beat:
                beat.cancel()
                await asyncio.gather(beat, return_exceptions=True)
            await self.release(conn)

    async def _beat(self, dsn: str) -> None:
        """Heartbeat on a connection of its own: the main one is busy inside the migration."""
        conn = await asyncpg.connect(dsn)
        try:
            while True:
                await asyncio.sleep(self.ttl / 3)
                await self.heartbeat(conn)
        finally:
            await conn.close()
