"""The Kopf operator end to end: real Kopf over HTTP against the emulated API server, real
PostgreSQL behind the Secrets, and real kubectl for get / annotate / apply."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml
from kopf.testing import KopfRunner

from dataflow.manifest import APPROVAL_ANNOTATION
from tests.helpers import with_database
from tests.kube.emulator import ApiServer, run_api_server

ROOT = Path(__file__).resolve().parent.parent
NS = "prod"
RESOURCE = "dataflow.dev/v1alpha1/dataflowschemas"
PATH = f"/apis/dataflow.dev/v1alpha1/namespaces/{NS}/dataflowschemas"
MERGE = {"Content-Type": "application/merge-patch+json"}
PASSWORD = "Sup3r-S3cret-pw"


# fixtures -------------------------------------------------------------------------------------
@pytest.fixture
async def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ApiServer]:
    async with run_api_server(tmp_path / "kubeconfig") as server:
        server.load_crd(ROOT / "crds" / "dataflowschema.yaml")
        server.create("v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig))
        yield server


@pytest.fixture
async def operator(api: ApiServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[KopfRunner]:
    """Real Kopf (``kopf run -m dataflow.k8s.operator``) in KopfRunner's thread; fast ticks and retries.

    The settings are environment variables the operator reads at startup, so they are set per test.
    Entering and leaving run in a worker thread: the emulated API server lives on this event loop.
    """
    monkeypatch.setenv("DATAFLOW_DRIFT_TICK", "0")  # act on every timer tick
    monkeypatch.setenv("DATAFLOW_RETRY_BASE", "0.3")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # `kopf run` configures the root logger; restore it after
    runner = KopfRunner(
        ["run", "--standalone", "--verbose", "--namespace", NS, "-m", "dataflow.k8s.operator"], timeout=30
    )
    await asyncio.to_thread(runner.__enter__)
    try:
        yield runner
    finally:
        leaving = asyncio.create_task(asyncio.to_thread(runner.__exit__, None, None, None))
        await asyncio.sleep(
            0.1
        )  # the stop flag is set; now end the long-polling watches so Kopf stops promptly
        api.close_watches()
        await leaving
        root.handlers[:] = handlers
        root.setLevel(level)
    assert runner.exit_code == 0, runner.output


@pytest.fixture
async def secret_dsn(dsn: str, server_dsn: str) -> str:
    """The test database's DSN with a password in it (trust auth ignores it), to prove it never leaks."""
    parts = urlsplit(dsn)
    if parts.hostname:
        netloc = f"{parts.username or 'postgres'}:{PASSWORD}@{parts.hostname}:{parts.port or 5432}"
        return parts._replace(netloc=netloc).geturl()
    return dsn + f"&password={PASSWORD}"


@pytest.fixture
async def http(api: ApiServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=api.url) as session:
        yield session


# helpers --------------------------------------------------------------------------------------
def make_secret(api: ApiServer, name: str, dsn: str) -> None:
    api.create(
        "v1/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "data": {"dsn": base64.b64encode(dsn.encode()).decode()},
        },
        namespace=NS,
    )


def column(name: str, type_: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def user_table(*extra_columns: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "user",
        "primaryKey": ["id"],
        "columns": [
            column("id", "BIGINT", nullable=False, identity="BY DEFAULT"),
            column("email", "TEXT", nullable=False),
            *extra_columns,
        ],
    }


def resource(name: str, secret: str, tables: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "dataflow.dev/v1alpha1",
        "kind": "DataFlowSchema",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "database": {"secretRef": {"name": secret, "key": "dsn"}},
            "policy": {"maxRiskLevel": "MEDIUM", "driftCheckInterval": "1h"},
            "tables": tables,
            **spec,
        },
    }


async def send(
    http: aiohttp.ClientSession, method: str, path: str, body: Any = None, **kw: Any
) -> dict[str, Any]:
    async with http.request(method, path, json=body, **kw) as resp:
        payload = await resp.json()
        assert resp.status < 400, payload
        return payload


def status_of(api: ApiServer, name: str) -> dict[str, Any]:
    return (api.get(RESOURCE, NS, name) or {}).get("status") or {}


async def eventually(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.05)


async def phase(api: ApiServer, name: str, expected: str, timeout: float = 20.0) -> dict[str, Any]:
    await eventually(
        lambda: status_of(api, name).get("phase") == expected,
        timeout,
        f"{name} reaching {expected} (last: {api.get(RESOURCE, NS, name)})",
    )
    return status_of(api, name)


async def kubectl(api: ApiServer, *args: str, stdin: bytes | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        *args,
        env={**os.environ, "KUBECONFIG": str(api.kubeconfig)},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate(stdin)
    assert proc.returncode == 0, out.decode()
    return out.decode()


def phase_history(api: ApiServer, name: str) -> list[str]:
    """Every status.phase the object has had, oldest first, from the emulator's watch-event log."""
    out: list[str] = []
    for event in api.events:
        obj = event["object"]
        if obj.get("kind") == "DataFlowSchema" and obj["metadata"]["name"] == name:
            value = (obj.get("status") or {}).get("phase", "")
            if not out or out[-1] != value:
                out.append(value)
    return out


def secret_reads(api: ApiServer) -> int:
    return sum(1 for request in api if request.url.path.startswith(f"/api/v1/namespaces/{NS}/secrets/"))


def status_patches(api: ApiServer, name: str) -> int:
    """PATCH requests sent to one DataFlowSchema (object or status) so far: kmock logs every request."""
    return sum(
        1
        for request in api
        if request.method.value.upper() == "PATCH" and request.url.path.startswith(f"{PATH}/{name}")
    )


async def execute(dsn: str, *statements: str) -> None:
    """What a DBA does by hand."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


async def indexes_of(dsn: str, table: str) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = $1 ORDER BY 1", table)
        return [r["indexname"] for r in rows]
    finally:
        await conn.close()


def condition(api: ApiServer, name: str, kind: str) -> dict[str, Any]:
    return next((c for c in status_of(api, name).get("conditions", []) if c["type"] == kind), {})


def events(api: ApiServer, reason: str) -> list[dict[str, Any]]:
    return [e for e in api.list_objects("v1/events", NS) if e.get("reason") == reason]


async def posted(api: ApiServer, reason: str, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The events of ``reason`` once there is one: the operator posts them after it writes the status."""
    await eventually(lambda: bool(events(api, reason)), timeout, f"an event {reason}")
    return events(api, reason)


def config_map(api: ApiServer, name: str) -> dict[str, Any]:
    return api.get("v1/configmaps", NS, name) or {}


async def columns_of(dsn: str, table: str) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1 "
            "ORDER BY ordinal_position",
            table,
        )
        return [r["column_name"] for r in rows]
    finally:
        await conn.close()


# tests ----------------------------------------------------------------------------------------
async def test_create_applies_then_safe_change_applies(
    api: ApiServer, operator: None, http, dsn: str, secret_dsn: str, tmp_path: Path
) -> None:
    make_secret(api, "shop-db", secret_dsn)
    manifest = tmp_path / "shop.yaml"
    manifest.write_text(yaml.safe_dump(resource("shop", "shop-db", [user_table()])))
    await kubectl(api, "apply", "--validate=false", "-f", str(manifest))
    st = await phase(api, "shop", "Applied")
    assert st["changes"] == 1 and st["maxRisk"] == "SAFE" and st["appliedSchemaHash"] == st["schemaHash"]
    assert {c["type"]: c["status"] for c in st["conditions"]} == {
        "Ready": "True",
        "Approved": "True",
        "Synced": "True",
        "Drifted": "False",
    }
    assert await columns_of(dsn, "user") == ["id", "email"]

    table = await kubectl(api, "get", "dataflowschemas", "-n", NS)
    header, row = table.strip().splitlines()
    assert header.split() == ["NAME", "PHASE", "RISK", "CHANGES", "PLAN", "DRIFTED", "AGE"]
    assert row.split()[:4] == ["shop", "Applied", "SAFE", "1"] and row.split()[5] == "False"

    # a SAFE change is applied without anyone
    manifest.write_text(yaml.safe_dump(resource("shop", "shop-db", [user_table(column("phone", "TEXT"))])))
    await kubectl(api, "apply", "--validate=false", "-f", str(manifest))
    await eventually(
        lambda: (
            status_of(api, "shop").get("lastAppliedVersion") != st["lastAppliedVersion"]
            and status_of(api, "shop").get("phase") == "Applied"
        ),
        what="second apply",
    )
    assert await columns_of(dsn, "user") == ["id", "email", "phone"]
    events = [e for e in api.list_objects("v1/events", NS) if e.get("reason") == "Applied"]
    assert len(events) >= 2


async def test_high_change_waits_for_approval_of_that_exact_plan(
    api: ApiServer, operator: None, http, dsn: str, secret_dsn: str
) -> None:
    make_secret(api, "shop-db", secret_dsn)
    await send(http, "POST", PATH, resource("shop", "shop-db", [user_table(column("legacy", "TEXT"))]))
    await phase(api, "shop", "Applied")

    # dropping a column is HIGH: blocked, with the approve command in status and a Warning event
    await send(http, "PATCH", f"{PATH}/shop", {"spec": {"tables": [user_table()]}}, headers=MERGE)
    st = await phase(api, "shop", "AwaitingApproval")
    plan = st["planHash"]
    assert st["maxRisk"] == "HIGH" and len(plan) == 12
    assert (
        st["approveCommand"]
        == f"kubectl annotate dataflowschema shop -n {NS} {APPROVAL_ANNOTATION}={plan} --overwrite"
    )
    assert st["changesByKind"] == [{"operation": "DROP_COLUMN", "count": 1}]
    assert st["changesByRisk"] == [{"risk": "HIGH", "count": 1}]
    assert "HIGH" in st["verdict"]
    assert any(
        e.get("reason") == "ApprovalRequired" and e.get("type") == "Warning"
        for e in api.list_objects("v1/events", NS)
    )

    # an approval of another plan applies nothing
    await kubectl(
        api,
        "annotate",
        "dataflowschema",
        "shop",
        "-n",
        NS,
        f"{APPROVAL_ANNOTATION}=0123456789ab",
        "--overwrite",
    )
    await eventually(
        lambda: "does not match" in status_of(api, "shop").get("verdict", ""), what="stale approval seen"
    )
    assert status_of(api, "shop")["phase"] == "AwaitingApproval"
    assert "legacy" in await columns_of(dsn, "user")

    # the exact command from status applies it; status shows Applying while it runs (Argo: Progressing)
    await kubectl(api, *st["approveCommand"].split()[1:])
    done = await phase(api, "shop", "Applied")
    assert "legacy" not in await columns_of(dsn, "user")
    phases = [p for p in phase_history(api, "shop") if p]
    assert phases[phases.index("AwaitingApproval") :][-2:] == ["Applying", "Applied"], phases
    assert done["approvedPlanHash"] == plan and done["appliedPlanHash"] == plan

    # a new HIGH change after the approval is blocked again: the old approval is for the old plan
    await send(
        http, "PATCH", f"{PATH}/shop", {"spec": {"tables": [user_table(column("x", "TEXT"))]}}, headers=MERGE
    )
    await phase(api, "shop", "Applied")  # adding a nullable column is SAFE
    await send(http, "PATCH", f"{PATH}/shop", {"spec": {"tables": [user_table()]}}, headers=MERGE)
    st2 = await phase(api, "shop", "AwaitingApproval")
    assert st2["planHash"] != plan and "x" in await columns_of(dsn, "user")


async def test_promotion_applies_production_only_after_staging(
    api: ApiServer, operator: None, http, dsn: str, server_dsn: str
) -> None:
    import asyncpg

    prod_db = with_database(server_dsn, urlsplit(dsn).path.strip("/") + "_prod")
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{urlsplit(prod_db).path.strip("/")}"')
    try:
        make_secret(api, "staging-db", dsn)
        make_secret(api, "production-db", prod_db)
        tables = [user_table(column("phone", "TEXT"))]
        production = resource("shop-production", "production-db", tables, promotion={"after": "shop-staging"})
        production["spec"]["policy"]["driftCheckInterval"] = "1s"
        await send(http, "POST", PATH, production)
        st = await phase(api, "shop-production", "WaitingForPromotion")
        assert "shop-staging" in st["verdict"]
        assert await columns_of(prod_db, "user") == []

        await send(http, "POST", PATH, resource("shop-staging", "staging-db", tables))
        await phase(api, "shop-staging", "Applied")
        await phase(api, "shop-production", "Applied")
        assert await columns_of(prod_db, "user") == ["id", "email", "phone"]

        # staging moves ahead: production, in sync with its own spec, stays Ready with PromotionPending
        ahead = [user_table(column("phone", "TEXT"), column("age", "BIGINT"))]
        await send(http, "PATCH", f"{PATH}/shop-staging", {"spec": {"tables": ahead}}, headers=MERGE)
        await eventually(
            lambda: condition(api, "shop-production", "PromotionPending").get("status") == "True",
            what="PromotionPending on production",
        )
        st = status_of(api, "shop-production")
        assert (
            st["phase"] in ("Applied", "InSync")
            and condition(api, "shop-production", "Ready")["status"] == "True"
        )
        assert (
            "shop-staging has applied schema"
            in condition(api, "shop-production", "PromotionPending")["message"]
        )

        # and its drift checks go on: a column dropped by hand is reported
        await execute(prod_db, 'ALTER TABLE "user" DROP COLUMN phone')
        await eventually(
            lambda: status_of(api, "shop-production").get("drifted") == "True", what="drift seen"
        )
        assert status_of(api, "shop-production")["phase"] in ("Applied", "InSync")
        assert "phone" in condition(api, "shop-production", "Drifted")["message"]

        # a new schema: production waits until staging has it; the applied state is still checked
        newer = [user_table(column("phone", "TEXT"), column("nick", "TEXT"))]
        await send(http, "PATCH", f"{PATH}/shop-production", {"spec": {"tables": newer}}, headers=MERGE)
        st = await phase(api, "shop-production", "WaitingForPromotion")
        assert (
            st["drifted"] == "True"
            and "fingerprint" in condition(api, "shop-production", "Drifted")["message"]
        )
        assert await columns_of(prod_db, "user") == ["id", "email"]
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{urlsplit(prod_db).path.strip("/")}" WITH (FORCE)')
        await admin.close()


async def test_two_resources_claiming_one_table_conflict(
    api: ApiServer, operator: None, http, dsn: str
) -> None:
    make_secret(api, "shop-db", dsn)
    await send(http, "POST", PATH, resource("first", "shop-db", [user_table()]))
    await phase(api, "first", "Applied")
    await send(http, "POST", PATH, resource("second", "shop-db", [user_table(column("nick", "TEXT"))]))
    st = await phase(api, "second", "Blocked")
    assert "user (owned by k8s:prod/first)" in st["verdict"]
    assert "nick" not in await columns_of(dsn, "user")


async def test_missing_secret_fails_then_recovers(api: ApiServer, operator: None, http, dsn: str) -> None:
    await send(http, "POST", PATH, resource("shop", "late-db", [user_table()]))
    st = await phase(api, "shop", "Failed")
    assert st["verdict"] == f"Cannot read the database Secret: Secret {NS}/late-db not found"
    make_secret(api, "late-db", dsn)
    await phase(api, "shop", "Applied")


class Proxy:
    """A TCP proxy in front of the database that the test can take down and bring back."""

    def __init__(self, target_dsn: str) -> None:
        parts = urlsplit(target_dsn)
        self.target = parts
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def _connect_target(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.target.hostname:
            return await asyncio.open_connection(self.target.hostname, self.target.port or 5432)
        host = dict(p.split("=", 1) for p in self.target.query.split("&"))["host"]
        return await asyncio.open_unix_connection(f"{host}/.s.PGSQL.5432")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await self._connect_target()
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        await self.server.wait_closed()

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{self.port}/{database}"


async def test_database_down_then_back(api: ApiServer, operator: None, http, dsn: str) -> None:
    proxy = Proxy(dsn)
    await proxy.start()
    make_secret(api, "shop-db", proxy.dsn(urlsplit(dsn).path.strip("/")))
    await proxy.stop()
    await send(http, "POST", PATH, resource("shop", "shop-db", [user_table()]))
    st = await phase(api, "shop", "Failed")
    assert st["verdict"].startswith("Database unreachable: ") and PASSWORD not in json.dumps(st)
    await proxy.start()  # same port: the database is back
    await phase(api, "shop", "Applied")
    assert await columns_of(dsn, "user") == ["id", "email"]
    await proxy.stop()


async def test_no_secret_value_in_status_events_or_logs(
    api: ApiServer, operator: None, http, dsn: str, secret_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    make_secret(api, "shop-db", secret_dsn)
    await send(http, "POST", PATH, resource("shop", "shop-db", [user_table(column("legacy", "TEXT"))]))
    await phase(api, "shop", "Applied")
    await send(http, "PATCH", f"{PATH}/shop", {"spec": {"tables": [user_table()]}}, headers=MERGE)
    await phase(api, "shop", "AwaitingApproval")
    make_secret_broken = {
        "data": {"dsn": base64.b64encode(b"postgresql://u:" + PASSWORD.encode() + b"@127.0.0.1:1/x").decode()}
    }
    await send(http, "PATCH", f"/api/v1/namespaces/{NS}/secrets/shop-db", make_secret_broken, headers=MERGE)
    await send(
        http,
        "PATCH",
        f"{PATH}/shop",
        {"spec": {"tables": [user_table(column("legacy", "TEXT"))]}},
        headers=MERGE,
    )
    await phase(api, "shop", "Failed")
    everything = json.dumps([api.list_objects(RESOURCE, NS), api.list_objects("v1/events", NS)])
    assert "Database unreachable" in everything
    for secret in (PASSWORD, secret_dsn, base64.b64encode(secret_dsn.encode()).decode()):
        assert secret not in everything
        assert secret not in caplog.text


async def test_drift_is_reported_and_nothing_applied(
    api: ApiServer, operator: None, http, dsn: str, tmp_path: Path
) -> None:
    make_secret(api, "shop-db", dsn)
    doc = resource("shop", "shop-db", [user_table(column("phone", "TEXT"))])
    doc["spec"]["policy"]["driftCheckInterval"] = "1s"
    await send(http, "POST", PATH, doc)
    await phase(api, "shop", "Applied")
    await execute(dsn, 'CREATE INDEX dba_email ON "user" (email)')

    await eventually(lambda: status_of(api, "shop").get("drifted") == "True", what="drift reported")
    st = status_of(api, "shop")
    drifted = condition(api, "shop", "Drifted")
    assert (
        drifted["status"] == "True" and drifted["reason"] == "Drifted" and "dba_email" in drifted["message"]
    )
    assert st["phase"] == "Applied" and condition(api, "shop", "Synced")["status"] == "False"
    assert st["approveCommand"].endswith(f"={st['planHash']} --overwrite")  # approving reverts it
    assert [e["type"] for e in await posted(api, "Drifted")] == ["Warning"]
    row = (await kubectl(api, "get", "dfs", "shop", "-n", NS)).strip().splitlines()[1].split()
    assert row[0] == "shop" and row[1] == "Applied" and "True" in row

    await asyncio.sleep(2 * 5.5)  # two more drift checks: still reported once, still not reverted
    assert await indexes_of(dsn, "user") == ["dba_email", "user_pkey"]
    assert len(events(api, "Drifted")) == 1 and status_of(api, "shop")["drifted"] == "True"
    assert not events(api, "DriftReverted")


async def test_drift_is_reverted_under_revert_policy(api: ApiServer, operator: None, http, dsn: str) -> None:
    make_secret(api, "shop-db", dsn)
    doc = resource("shop", "shop-db", [user_table(column("phone", "TEXT"))])
    doc["spec"]["policy"].update(driftCheckInterval="1s", drift="revert")
    await send(http, "POST", PATH, doc)
    await phase(api, "shop", "Applied")
    await execute(dsn, 'ALTER TABLE "user" DROP COLUMN phone')

    await eventually(lambda: bool(events(api, "DriftReverted")), what="drift reverted")
    assert await columns_of(dsn, "user") == ["id", "email", "phone"]
    (event,) = events(api, "DriftReverted")
    assert event["type"] == "Normal" and "Drift reverted" in event["message"]
    st = await phase(api, "shop", "Applied")
    assert st["drifted"] == "False" and condition(api, "shop", "Drifted")["reason"] == "DriftReverted"


async def test_dry_run_ends_planned_with_the_plan_in_a_config_map(
    api: ApiServer, operator: None, http, dsn: str
) -> None:
    make_secret(api, "shop-db", dsn)
    doc = resource("shop", "shop-db", [user_table()])
    doc["spec"]["policy"]["dryRun"] = True
    created = await send(http, "POST", PATH, doc)
    st = await phase(api, "shop", "Planned")
    assert (
        st["planConfigMap"] == "shop-plan"
        and st["changes"] == 1
        and st["changesByKind"] == [{"operation": "CREATE_TABLE", "count": 1}]
    )
    cm = config_map(api, "shop-plan")
    assert cm["data"]["planHash"] == st["planHash"] and "CREATE TABLE" in cm["data"]["up.sql"]
    assert st["planHash"] in cm["data"]["plan.md"] and "DROP TABLE" in cm["data"]["down.sql"]
    (owner,) = cm["metadata"]["ownerReferences"]
    assert owner["kind"] == "DataFlowSchema" and owner["uid"] == created["metadata"]["uid"]
    assert await columns_of(dsn, "user") == []


async def test_steady_state_sends_no_patch(api: ApiServer, operator: None, http, dsn: str) -> None:
    make_secret(api, "shop-db", dsn)
    doc = resource("shop", "shop-db", [user_table()])
    doc["spec"]["policy"]["driftCheckInterval"] = "1s"
    await send(http, "POST", PATH, doc)
    await phase(api, "shop", "Applied")
    await asyncio.sleep(6)  # the first drift check may record InSync
    patches, checks = status_patches(api, "shop"), secret_reads(api)
    await asyncio.sleep(3 * 5.5)  # three drift checks (each reads the Secret)
    assert secret_reads(api) >= checks + 2, "the drift checks did not run"
    assert status_patches(api, "shop") == patches
    assert "lastReconcileTime" not in status_of(api, "shop")


async def test_status_stays_small_and_kopf_keeps_no_copy_of_the_spec(
    api: ApiServer, operator: None, http, dsn: str
) -> None:
    make_secret(api, "shop-db", dsn)
    tables = [
        {
            "name": f"t{i:03}",
            "primaryKey": ["id"],
            "columns": [column("id", "BIGINT", nullable=False), *(column(f"c{j}", "TEXT") for j in range(8))],
        }
        for i in range(120)
    ]
    doc = resource("big", "shop-db", tables)
    doc["spec"]["policy"]["dryRun"] = True
    await send(http, "POST", PATH, doc)
    st = await phase(api, "big", "Planned")
    obj = api.get(RESOURCE, NS, "big") or {}
    assert st["changes"] == 120 and len(json.dumps(st)) < 4000, len(json.dumps(st))
    annotations = obj["metadata"].get("annotations") or {}
    assert len(json.dumps(annotations)) < 400, annotations
    assert not any("last-handled-configuration" in key for key in annotations)
    sql = config_map(api, "big-plan")["data"]["up.sql"]
    assert sql.count("CREATE TABLE") == 120 and len(json.dumps(doc["spec"])) > 30_000


def test_plan_parts_over_the_config_map_budget_are_cut_with_a_note() -> None:
    from dataflow.k8s.reconciler import PLAN_PART_LIMIT, _truncated

    sql = "".join(f'CREATE TABLE "t{i}" (id bigint);\n' for i in range(20_000))
    cut = _truncated(sql, sql=True)
    assert len(sql.encode()) > PLAN_PART_LIMIT >= len(cut.encode()) - 200
    assert cut.endswith("run `dataflow plan -f <manifest>` for the whole plan\n") and cut.startswith(
        sql[:100]
    )
    assert _truncated("short") == "short"
