"""The operator's shared lease heartbeat: one connection per database renews every lease held there,
and fences exactly the lease another process took over (issue 9, item 4). Real PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from dataflow.executor import MigrationInterrupted
from dataflow.ledger import Ledger
from dataflow.lock import HEARTBEAT_APPLICATION_NAME, MigrationLease, SharedHeartbeat

TTL = 0.9  # a tick every 0.3 s


async def heartbeat_sessions(conn: asyncpg.Connection) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
        HEARTBEAT_APPLICATION_NAME,
    )


async def test_one_connection_renews_every_lease_and_fences_the_one_taken_over(dsn: str) -> None:
    admin = await asyncpg.connect(dsn)
    holders = [await asyncpg.connect(dsn) for _ in range(3)]
    shared = SharedHeartbeat(dsn)
    try:
        leases = []
        for schema, key in (("x", "schema:x"), ("y", "schema:y"), ("y", "other")):
            await admin.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            ledger = Ledger(schema)
            await ledger.ensure(admin)
            leases.append(MigrationLease(ledger, key, ttl=TTL))

        async def held(lease: MigrationLease, conn: asyncpg.Connection) -> str:
            async with lease.hold(conn, timeout=5, heartbeat=shared):
                await asyncio.sleep(TTL * 3)  # three ttls: only renewals keep the lease
                return await lease.current_holder(conn) or "expired"

        tasks = [asyncio.create_task(held(lease, conn)) for lease, conn in zip(leases, holders, strict=True)]
        await asyncio.sleep(TTL)
        assert await heartbeat_sessions(admin) == 1
        # another process takes the third lease over
        await admin.execute(
            'UPDATE "y"."dataflow_migration_lock" SET holder = $1 WHERE lock_key = $2', "thief", "other"
        )
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert results[0] == leases[0].holder and results[1] == leases[1].holder, results
        assert isinstance(results[2], MigrationInterrupted), results
        assert "another process took it over" in str(results[2])
        assert leases[2].lost and not leases[0].lost and not leases[1].lost
        assert shared.leases == []  # released leases are no longer renewed
    finally:
        await shared.close()
        for conn in (admin, *holders):
            await conn.close()


async def test_a_lost_heartbeat_session_is_replaced_and_an_unreachable_server_fences(dsn: str) -> None:
    admin = await asyncpg.connect(dsn)
    holder = await asyncpg.connect(dsn)
    shared = SharedHeartbeat(dsn)
    unreachable = SharedHeartbeat("postgresql://postgres@127.0.0.1:1/nowhere")
    try:
        ledger = Ledger("public")
        await ledger.ensure(admin)
        lease = MigrationLease(ledger, "schema:public", ttl=TTL)
        async with lease.hold(holder, timeout=5, heartbeat=shared):
            await asyncio.sleep(TTL / 3 + 0.2)  # the first tick has opened the heartbeat session
            assert await heartbeat_sessions(admin) == 1
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                HEARTBEAT_APPLICATION_NAME,
            )
            await asyncio.sleep(TTL * 3)  # renewed on a new session: still ours
            assert await lease.current_holder(holder) == lease.holder
            assert not lease.lost

        other = MigrationLease(ledger, "schema:public", ttl=TTL)

        async def held() -> None:
            async with other.hold(holder, timeout=5, heartbeat=unreachable):
                await asyncio.sleep(TTL * 10)

        with pytest.raises(MigrationInterrupted, match="heartbeat connection"):
            await asyncio.wait_for(held(), TTL * 5)
    finally:
        await shared.close()
        await unreachable.close()
        await admin.close()
        await holder.close()
