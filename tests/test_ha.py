"""Two replicas as the chart runs them: real `kopf run` subprocesses with the chart's own arguments
and environment, against the emulated API server, with real PostgreSQL behind the Secret.

Exactly one replica reconciles; SIGKILL it and the other takes over within 30 s; a replica paused
with no active peer (same priority) fails its probe; every request the replicas make is allowed
by the chart's RBAC rules.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from dataflow.k8s.ha import priority_for
from tests import test_operator as base
from tests.helm_render import render_chart
from tests.kube.emulator import ApiServer, run_api_server
from tests.kube.paths import parse_api_path

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "dataflow-operator"
NS, RESOURCE, PATH, MERGE = base.NS, base.RESOURCE, base.PATH, base.MERGE
secret_dsn = base.secret_dsn
TEST_AGENT = "dataflow-test"  # the test's own requests; every other one came from an operator
VERBS = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chart(values: dict) -> list[dict]:
    docs = []
    for text in render_chart(CHART, values, release="df", namespace="ops").values():
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


class Replica:
    """One operator replica: the Deployment's container command, args and env, as a subprocess."""

    def __init__(self, pod: str, log: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.pod, self.log = pod, log
        self.health, self.metrics = free_port(), free_port()
        docs = chart({"healthPort": self.health, "metrics": {"port": self.metrics}})
        (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
        (c,) = deployment["spec"]["template"]["spec"]["containers"]
        self.command = [*c["command"], *c["args"], *extra_args]
        self.env = {e["name"]: e.get("value", pod) for e in c["env"]}  # valueFrom: the pod's name
        assert self.env["POD_ID"] == pod and self.env["DATAFLOW_METRICS_PORT"] == str(self.metrics)
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, kubeconfig: Path) -> None:
        assert self.command[0] == "kopf"
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            *self.command,
            env={**os.environ, **self.env, "KUBECONFIG": str(kubeconfig)},
            stdout=self.log.open("wb"),
            stderr=asyncio.subprocess.STDOUT,
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(sig)

    async def healthz(self, http: aiohttp.ClientSession) -> int:
        try:
            async with http.get(f"http://127.0.0.1:{self.health}/healthz") as resp:
                return resp.status
        except aiohttp.ClientError:
            return 0

    async def reconciles(self, http: aiohttp.ClientSession) -> float:
        async with http.get(f"http://127.0.0.1:{self.metrics}/metrics") as resp:
            text = await resp.text()
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            if family.name == "dataflow_reconciles"
            for s in family.samples
            if s.name == "dataflow_reconciles_total"
        )


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiServer]:
    async with run_api_server(tmp_path / "kubeconfig") as server:
        server.load_crd(ROOT / "crds" / "dataflowschema.yaml")
        for crd in yaml.safe_load_all((CHART / "crds" / "kopf-peering.yaml").read_text()):
            server.load_crd(crd)
        server.create("v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        (peering,) = [d for d in chart({}) if d["kind"] == "ClusterKopfPeering"]  # the chart's own
        server.create("kopf.dev/v1/clusterkopfpeerings", peering)
        yield server
        server.close_watches()


@contextmanager
def replicas(*items: Replica) -> Iterator[None]:
    try:
        yield
    finally:
        for r in items:
            r.kill()


async def eventually(check, timeout: float, what: str) -> float:
    """Await ``check()`` (an async predicate) until true; returns the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not await check():
        assert loop.time() - start < timeout, f"never happened within {timeout} s: {what}"
        await asyncio.sleep(0.2)
    return loop.time() - start


def rbac_allows(rules: list[dict], verb: str, group: str, resource: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)


async def test_one_replica_reconciles_and_a_standby_takes_over(
    api: ApiServer, dsn: str, secret_dsn: str, tmp_path: Path
) -> None:
    base.make_secret(api, "shop-db", secret_dsn)
    a, b = Replica("df-operator-aaaaa", tmp_path / "a.log"), Replica("df-operator-bbbbb", tmp_path / "b.log")
    leader, standby = (a, b) if priority_for(a.pod) > priority_for(b.pod) else (b, a)
    headers = {"User-Agent": TEST_AGENT}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        aiohttp.ClientSession(base_url=api.url, headers=headers) as kube,
    ):
        with replicas(a, b):
            await a.start(api.kubeconfig)
            await b.start(api.kubeconfig)
            for r in (a, b):  # the active one and the standby both pass their probes
                await eventually(lambda r=r: _is(r.healthz(http), 200), 60, f"{r.pod} healthy")

            await base.send(kube, "POST", PATH, base.resource("shop", "shop-db", [base.user_table()]))
            await base.phase(api, "shop", "Applied", timeout=30)
            await asyncio.sleep(1)  # a standby that wrongly reconciled would have done so by now
            assert await leader.reconciles(http) >= 1
            assert await standby.reconciles(http) == 0, "the standby reconciled too"
            first = base.status_of(api, "shop")["lastAppliedVersion"]

            leader.kill()  # no goodbye: its keep-alive must expire
            await leader.proc.wait()  # type: ignore[union-attr]
            loop = asyncio.get_running_loop()
            killed = loop.time()
            change = {"spec": {"tables": [base.user_table(base.column("phone", "TEXT"))]}}
            await base.send(kube, "PATCH", f"{PATH}/shop", change, headers=MERGE)

            async def applied_again() -> bool:
                st = base.status_of(api, "shop")
                return st.get("phase") == "Applied" and st.get("lastAppliedVersion") != first

            took = await eventually(applied_again, 30, "the standby applying the change")
            assert loop.time() - killed <= 30
            assert await standby.reconciles(http) >= 1
            assert await base.columns_of(dsn, "user") == ["id", "email", "phone"]
            print(f"takeover: change applied {took:.1f} s after the leader was killed")

            # a replica paused with no active peer fails its probe: a third one shares the survivor's
            # priority, so Kopf pauses both; when it goes, the survivor resumes and is healthy again
            twin = Replica(
                "df-operator-twin", tmp_path / "twin.log", (f"--priority={priority_for(standby.pod)}",)
            )
            with replicas(twin):
                await twin.start(api.kubeconfig)
                await eventually(lambda: _is(standby.healthz(http), 500), 30, "the paused survivor failing")
                await eventually(lambda: _is(twin.healthz(http), 500), 30, "the paused twin failing")
                twin.kill(signal.SIGTERM)  # a clean exit removes its keep-alive at once
                await twin.proc.wait()  # type: ignore[union-attr]
            await eventually(lambda: _is(standby.healthz(http), 200), 30, "the survivor resuming")

    # every request a replica made is allowed by the chart's ClusterRole (the test's own are not counted)
    (role,) = [d for d in chart({}) if d["kind"] == "ClusterRole"]
    used = set()
    for request in list(api):
        if request.headers.get("User-Agent", "").startswith(TEST_AGENT):
            continue
        path = parse_api_path(request.url.path)
        if path is None or path.plural is None:
            continue  # discovery
        verb = VERBS[str(request.method.value).upper()]
        if verb == "get" and path.name is None:
            verb = "watch" if request.url.query.get("watch") in ("true", "1") else "list"
        resource = path.plural + (f"/{path.subresource}" if path.subresource else "")
        used.add((verb, path.group, resource))
    denied = sorted(u for u in used if not rbac_allows(role["rules"], *u))
    assert not denied, f"the chart's RBAC does not allow {denied}"
    assert ("patch", "kopf.dev", "clusterkopfpeerings") in used and ("get", "", "secrets") in used


async def _is(status: object, expected: int) -> bool:
    return await status == expected  # type: ignore[misc]


def test_peering_health_rules() -> None:
    """The probe's verdict from a peering object's status (the end-to-end test covers the live cases)."""
    from datetime import UTC, datetime, timedelta

    from dataflow.k8s.ha import peering_problem

    now = datetime.now(UTC)

    def peer(priority: int, age_s: float = 1, lifetime: int = 15) -> dict:
        return {
            "priority": priority,
            "lifetime": lifetime,
            "lastseen": (now - timedelta(seconds=age_s)).isoformat(),
        }

    assert peering_problem({"me": peer(5)}, 5, now) is None  # active
    assert peering_problem({"me": peer(5), "leader": peer(9)}, 5, now) is None  # standby
    assert "share priority" in peering_problem({"me": peer(5), "twin": peer(5)}, 5, now)
    assert (
        peering_problem({"me": peer(5), "dead": peer(9, age_s=20)}, 5, now) is None
    )  # dead leader: take over
    assert "no live keep-alive" in peering_problem({"leader": peer(9, age_s=20)}, 5, now)
    assert peering_problem({"me": peer(5), "twin": peer(5, age_s=20)}, 5, now) is None
    assert len({priority_for(f"df-operator-{i}") for i in range(1000)}) == 1000
