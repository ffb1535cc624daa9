"""One small session pool per database, shared by every resource the operator reconciles there.

Hundreds of resources on one database must not open hundreds of sessions (the server refuses
clients past ``max_connections``, and then refuses everyone else too). So, per database (keyed by
DSN), this process keeps:

- at most ``max_size`` sessions, opened as :func:`dataflow.connect.connect` opens them (validated
  DSN, redacted errors, ``search_path`` pinned to one schema). Resources on one database may use
  different schemas, so idle sessions are kept by the schema they are pinned to: a borrower gets one
  of its schema, else a new one pinned at connect time, and only when the budget is spent one of
  another schema, re-pinned with one statement. asyncpg's own pool cannot pick a session by schema,
  so with as many schemas as sessions every in-sync check would pay that statement;
- one :class:`asyncio.Lock` per schema, taken BEFORE a session is borrowed: resources on one schema
  apply one at a time anyway (the schema's migration lease), so their waiters hold no session;
- one :class:`~dataflow.lock.SharedHeartbeat`: one more session, renewing every lease held there.

A session goes back without a statement, unless the borrower may have left state behind (it applied,
failed or was interrupted, or left a transaction open): then the driver's full reset runs first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any, cast

import asyncpg

from dataflow.connect import CONNECT_TIMEOUT_S, connect, search_path, validate_dsn
from dataflow.lock import MigrationLease, SharedHeartbeat

DEFAULT_MAX_SIZE = 5
IDLE_LIFETIME_S = 120.0  # an idle pooled session is closed after this long
RESET_TIMEOUT_S = 10.0
log = logging.getLogger("dataflow.pool")


class PooledConnection(asyncpg.Connection):
    """A pooled session: the schema it was opened for (``home``), the one it is pinned to now."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.home: str | None = None
        self.pinned: str | None = None
        self.idle_since = 0.0

    async def pin(self, schema: str) -> None:
        """Point ``search_path`` at ``schema`` alone, unless it already is."""
        if self.pinned != schema:
            self.pinned = None  # unknown until the statement has run (it may be interrupted)
            await self.execute("SELECT set_config('search_path', $1, false)", search_path(schema))
            self.pinned = schema


class Session:
    """A borrowed session pinned to one schema; :attr:`conn` stands in for an ``asyncpg.Connection``.

    Attributes other than its own go to the borrowed session. While it waits for a lease held by
    another process, :attr:`heartbeat`'s ``wait`` gives the session back to the pool and borrows one
    again afterwards: the object the engine holds stays the same.
    """

    def __init__(self, database: DatabasePool, schema: str) -> None:
        self._database = database
        self._schema = schema
        self._conn: Any = None  # the pool's proxy while borrowed
        self._dirty = False
        self.heartbeat = SessionHeartbeat(database.heartbeat, self)

    @property
    def conn(self) -> asyncpg.Connection:
        return cast(asyncpg.Connection, self)

    @property
    def borrowed(self) -> bool:
        return self._conn is not None

    def mark_dirty(self) -> None:
        """The borrower may have left session state behind: reset the session fully when it goes back."""
        self._dirty = True

    async def borrow(self) -> None:
        self._conn = await self._database.borrow(self._schema)

    async def give_back(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._database.give_back(conn, dirty=self._dirty)

    def __getattr__(self, name: str) -> Any:
        if self._conn is None:
            raise asyncpg.InterfaceError("the pooled session was given back")
        return getattr(self._conn, name)


class SessionHeartbeat:
    """The :class:`~dataflow.lock.Heartbeat` for one borrower: the database's shared renewal, and a
    ``wait`` that gives the borrowed session back while it sleeps."""

    def __init__(self, shared: SharedHeartbeat, session: Session) -> None:
        self._shared = shared
        self._session = session

    def keep(self, lease: MigrationLease) -> None:
        self._shared.keep(lease)

    def forget(self, lease: MigrationLease) -> None:
        self._shared.forget(lease)

    async def wait(self, seconds: float) -> None:
        await self._session.give_back()
        await asyncio.sleep(seconds)
        await self._session.borrow()


class DatabasePool:
    """The sessions, schema locks and shared heartbeat of one database."""

    def __init__(self, dsn: str, max_size: int) -> None:
        self.dsn = validate_dsn(dsn)
        self.max_size = max_size
        self.heartbeat = SharedHeartbeat(dsn)
        self._schema_locks: dict[str, asyncio.Lock] = {}
        self._idle: dict[str | None, list[PooledConnection]] = {}  # by the schema they are pinned to
        self._size = 0  # sessions open or being opened
        self._freed = asyncio.Condition()
        self._closed = False

    def schema_lock(self, schema: str) -> asyncio.Lock:
        return self._schema_locks.setdefault(schema, asyncio.Lock())

    @property
    def size(self) -> int:
        """Sessions open (idle or borrowed) or being opened."""
        return self._size

    @property
    def in_use(self) -> int:
        """Sessions borrowed right now."""
        return self._size - sum(len(idle) for idle in self._idle.values())

    @asynccontextmanager
    async def session(self, schema: str) -> AsyncIterator[Session]:
        """Wait for ``schema``'s turn (holding no session), then borrow a session pinned to it."""
        async with self.schema_lock(schema):
            session = Session(self, schema)
            await session.borrow()
            try:
                yield session
            except BaseException:
                session.mark_dirty()
                raise
            finally:
                await session.give_back()

    async def borrow(self, schema: str) -> PooledConnection:
        """An idle session of ``schema``, a new one, or (the budget spent) an idle one re-pinned."""
        reuse: PooledConnection | None = None
        async with self._freed:
            while True:
                if self._closed:
                    raise asyncpg.InterfaceError("the database pool is closed")
                await self._expire_idle()
                if self._idle.get(schema):
                    return self._idle[schema].pop()
                if self._size < self.max_size:
                    self._size += 1  # reserved: opened below, outside the lock
                    break
                reuse = next((idle.pop() for idle in self._idle.values() if idle), None)
                if reuse is not None:
                    break
                await self._freed.wait()
        if reuse is None:
            return await self._open(schema)
        try:
            await reuse.pin(schema)
        except BaseException:
            await self.give_back(reuse, dirty=True)
            raise
        return reuse

    async def _open(self, schema: str) -> PooledConnection:
        try:
            conn = cast(
                PooledConnection,
                await connect(self.dsn, schema, timeout=CONNECT_TIMEOUT_S, connection_class=PooledConnection),
            )
        except BaseException:
            async with self._freed:
                self._size -= 1
                self._freed.notify()
            raise
        conn.home = conn.pinned = schema
        return conn

    async def give_back(self, conn: PooledConnection, dirty: bool = False) -> None:
        """Keep ``conn`` for the next borrower (fully reset first if ``dirty``), or drop it."""
        keep = False
        try:
            if not conn.is_closed():
                if dirty or conn.is_in_transaction():
                    await conn.reset(timeout=RESET_TIMEOUT_S)  # ROLLBACK, RESET ALL (back to ``home``), ...
                    conn.pinned = conn.home
                keep = not self._closed
        except Exception as exc:  # noqa: BLE001 - a session that cannot be reset is dropped
            log.debug("dropped a pooled session that could not be reset: %s", type(exc).__name__)
        finally:
            if not keep:
                conn.terminate()
            async with self._freed:
                if keep:
                    conn.idle_since = asyncio.get_running_loop().time()
                    self._idle.setdefault(conn.pinned, []).append(conn)
                else:
                    self._size -= 1
                self._freed.notify()

    async def _expire_idle(self) -> None:
        """Close sessions idle for longer than :data:`IDLE_LIFETIME_S` (the caller holds ``_freed``)."""
        oldest = asyncio.get_running_loop().time() - IDLE_LIFETIME_S
        for idle in self._idle.values():
            for conn in [c for c in idle if c.idle_since < oldest or c.is_closed()]:
                idle.remove(conn)
                self._size -= 1
                with suppress(Exception):
                    await conn.close(timeout=2.0)

    async def close(self) -> None:
        self._closed = True
        await self.heartbeat.close()
        async with self._freed:
            idle = [conn for conns in self._idle.values() for conn in conns]
            self._idle.clear()
            self._size -= len(idle)
            self._freed.notify_all()
        for conn in idle:
            try:
                await conn.close(timeout=2.0)
            except Exception:  # noqa: BLE001 - closing: whatever is left is terminated
                conn.terminate()

    def terminate(self) -> None:
        """Drop every idle session at once (its event loop is gone)."""
        self._closed = True
        for conn in [conn for conns in self._idle.values() for conn in conns]:
            conn.terminate()
        self._idle.clear()
        self.heartbeat.terminate()


class Pools:
    """The process's pools, one per database (by DSN), all with the same ``max_size``.

    Pools belong to the event loop that made them; a pool found from another loop (a test that
    started the operator again) is terminated and replaced.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.max_size = max_size
        self._pools: dict[str, DatabasePool] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def configure(self, max_size: int) -> None:
        self.max_size = max_size

    async def get(self, dsn: str) -> DatabasePool:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._abandon()
            self._loop = loop
        pool = self._pools.get(dsn)
        if pool is None:
            pool = self._pools[dsn] = DatabasePool(dsn, self.max_size)
        return pool

    @asynccontextmanager
    async def session(self, dsn: str, schema: str) -> AsyncIterator[Session]:
        """:meth:`DatabasePool.session` of ``dsn``'s pool."""
        pool = await self.get(dsn)
        async with pool.session(schema) as session:
            yield session

    def all(self) -> list[DatabasePool]:
        return list(self._pools.values())

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.close()

    def _abandon(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:  # their loop is gone: drop the sessions without a goodbye
            with suppress(Exception):
                pool.terminate()


POOLS = Pools()
