"""Issue 9, item 1 through the operator: an approval annotation left on a resource is used once.

Real Kopf against the emulated API server, real kubectl, real PostgreSQL. After the approved HIGH plan
applied, a DBA re-adds the dropped column and writes to it; the drift check (``policy.drift: revert``)
plans the same-looking drop again, and the annotation still on the resource must not approve it.
"""

from __future__ import annotations

import asyncpg

from dataflow.manifest import APPROVAL_ANNOTATION
from tests.kube.emulator import ApiServer
from tests.test_operator import (  # noqa: F401 - fixtures
    MERGE,
    NS,
    PATH,
    api,
    column,
    columns_of,
    eventually,
    http,
    kubectl,
    make_secret,
    operator,
    phase,
    resource,
    secret_dsn,
    send,
    status_of,
    user_table,
)

POLICY = {"maxRiskLevel": "MEDIUM", "driftCheckInterval": "1s", "drift": "revert"}


async def test_an_applied_approval_does_not_approve_the_same_drop_again(
    api: ApiServer,  # noqa: F811 - the fixtures imported above
    operator: None,  # noqa: F811
    http,  # noqa: F811
    dsn: str,
    secret_dsn: str,  # noqa: F811
) -> None:
    make_secret(api, "shop-db", secret_dsn)
    tables = [user_table(column("metadata", "TEXT"))]
    await send(http, "POST", PATH, resource("shop", "shop-db", tables, policy=POLICY))
    await phase(api, "shop", "Applied")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO \"user\" (email, metadata) SELECT 'u' || g, 'm' || g FROM generate_series(1, 5) g"
        )
        await send(http, "PATCH", f"{PATH}/shop", {"spec": {"tables": [user_table()]}}, headers=MERGE)
        st = await phase(api, "shop", "AwaitingApproval")
        await kubectl(api, *st["approveCommand"].split()[1:])
        await phase(api, "shop", "Applied")
        assert "metadata" not in await columns_of(dsn, "user")
        backups = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'dataflow_backup'")
        assert backups == 1

        # a DBA re-adds the column and writes to it; the annotation is still there
        await conn.execute('ALTER TABLE "user" ADD COLUMN metadata TEXT')
        await conn.execute("UPDATE \"user\" SET metadata = 'dba'")
        again = await phase(api, "shop", "AwaitingApproval")
        assert again["planHash"] != st["planHash"]
        await eventually(
            lambda: "does not match" in status_of(api, "shop").get("verdict", ""), what="stale approval seen"
        )
        assert (api.get("dataflow.dev/v1alpha1/dataflowschemas", NS, "shop") or {})["metadata"][
            "annotations"
        ][APPROVAL_ANNOTATION] == st["planHash"]
        assert await conn.fetchval("SELECT count(*) FROM \"user\" WHERE metadata = 'dba'") == 5
        assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'dataflow_backup'") == 1
    finally:
        await conn.close()
