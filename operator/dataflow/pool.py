"""One small connection pool per database, shared by every resource the operator reconciles there.

Hundreds of resources on one database must not open hundreds of sessions (the server refuses
clients past ``max_connections``, and then refuses everyone else too). So, per database (keyed by
DSN), this process keeps:

- one asyncpg pool of at most ``max_size`` sessions, opened as :func:`dataflow.connect.connect`
  opens them (validated DSN, redacted errors). Resources on one database may use different schemas:
  a session remembers the schema its ``search_path`` is pinned to and is re-pinned (one statement)
  only when the next borrower's schema differs, so the steady state costs nothing extra;
- one :class:`asyncio.Lock` per schema, taken BEFORE a session is borrowed: resources on one schema
  apply one at a time anyway (the schema's migration lease), so their waiters hold no session;
- one :class:`~dataflow.lock.SharedHeartbeat`: one more session, renewing every lease held there.

A session is released without the driver's reset query (a statement per release) unless the
borrower may have left session state behind (it applied, failed or was interrupted).
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
log = logging.getLogger("dataflow.pool")


class PooledConnection(asyncpg.Connection):
    """A pooled session that knows the schema it is pinned to, and whether it needs the full reset."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pinned: str | None = None
        self.dirty = False

    async def pin(self, schema: str) -> None:
        """Point ``search_path`` at ``schema`` alone, unless it already is."""
        if self.pinned != schema:
            self.pinned = None  # unknown until the statement has run (it may be interrupted)
            await self.execute("SELECT set_config('search_path', $1, false)", search_path(schema))
            self.pinned = schema

    def mark_dirty(self) -> None:
        self.dirty = True


async def _open(dsn: str, **_: Any) -> PooledConnection:
    conn = await connect(dsn, timeout=CONNECT_TIMEOUT_S, connection_class=PooledConnection)
    return cast(PooledConnection, conn)


async def _reset(conn: asyncpg.Connection) -> None:
    """After the driver's own cleanup (a ROLLBACK if a transaction was left open): the full reset only if needed."""
    pooled = cast(PooledConnection, conn)
    if pooled.dirty:
        await conn.execute(conn.get_reset_query())  # RESET ALL also unpins search_path
        pooled.pinned, pooled.dirty = None, False


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
        conn = await self._database.pool.acquire()
        try:
            await conn.pin(self._schema)
        except BaseException:
            await self._database.pool.release(conn)
            raise
        self._conn = conn

    async def give_back(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._dirty:
            conn.mark_dirty()
        try:
            await self._database.pool.release(conn)
        except Exception as exc:  # noqa: BLE001 - a session that cannot be reset is terminated by the pool
            log.debug("a pooled session was dropped on release: %s", type(exc).__name__)

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
        self.pool = asyncpg.create_pool(
            dsn,
            min_size=0,
            max_size=max_size,
            max_inactive_connection_lifetime=IDLE_LIFETIME_S,
            connect=_open,
            reset=_reset,
            connection_class=PooledConnection,
        )
        self.heartbeat = SharedHeartbeat(dsn)
        self._schema_locks: dict[str, asyncio.Lock] = {}

    async def start(self) -> None:
        await self.pool  # min_size=0: opens nothing yet

    def schema_lock(self, schema: str) -> asyncio.Lock:
        return self._schema_locks.setdefault(schema, asyncio.Lock())

    @property
    def in_use(self) -> int:
        """Sessions borrowed right now."""
        return self.pool.get_size() - self.pool.get_idle_size()

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

    async def close(self) -> None:
        await self.heartbeat.close()
        try:
            await asyncio.wait_for(self.pool.close(), timeout=5.0)
        except (TimeoutError, Exception):  # noqa: BLE001 - closing: whatever is left is terminated
            self.pool.terminate()


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
            pool = DatabasePool(dsn, self.max_size)
            await pool.start()
            self._pools[dsn] = pool
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
                pool.pool.terminate()
            with suppress(Exception):
                pool.heartbeat.terminate()


POOLS = Pools()
