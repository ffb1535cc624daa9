#!/usr/bin/env python3
"""The operator at scale: many DataFlowSchema resources against one database (issue 9, items 4 and 5).

The emulated API server (tests/kube/emulator.py) runs in this process; the operator runs as a real
``kopf run -m dataflow.k8s.operator`` subprocess against it. ``--resources`` resources (default 200,
each its own small table, spread over ``--schemas`` schemas) are created at once, and measured:

- time until every one is Applied (or ``--timeout``), and how many are;
- peak sessions on the database (``pg_stat_activity`` by datname, sampled every 50 ms);
- clients the server refused ("too many clients" in the operator's log or in posted Events);
- the operator process's CPU seconds and peak RSS (``/proc/<pid>/stat``, ``VmHWM``) at that point;
- a steady-state check: ``reconcile_resource`` (the operator's own path) on every in-sync resource,
  twice, in a worker process of the same code; the second round's statements and new sessions per
  resource (asyncpg query loggers on every session the code opens) and its time per check.

``--before DIR`` runs the same with the operator package from ``DIR`` (e.g. /work/main/operator) on
PYTHONPATH, with that checkout's own ``.venv`` interpreter when it has one: the figures before this
branch. The database is a scratch one on an embedded server of
its own (.dataflow/bench-scale-pgdata), so a run that exhausts ``max_connections`` harms no one else;
``--database-url`` picks another server. Nothing is asserted: this only measures.

Usage::

    .venv/bin/python bench/operator_scale.py [--resources 200] [--schemas 1] [--before /work/main/operator]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from common import redact, with_database

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
NS = "bench"
RESOURCE = "dataflow.dev/v1alpha1/dataflowschemas"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def resource_body(i: int, schemas: int) -> dict[str, Any]:
    name = f"app{i:03d}"
    return {
        "apiVersion": "dataflow.dev/v1alpha1",
        "kind": "DataFlowSchema",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "database": {"secretRef": {"name": "db", "key": "dsn"}, "schema": f"s{i % schemas}"},
            "policy": {"maxRiskLevel": "MEDIUM", "driftCheckInterval": "1h"},
            "tables": [
                {
                    "name": f"t_{name}",
                    "primaryKey": ["id"],
                    "columns": [
                        {"name": "id", "type": "BIGINT", "nullable": False},
                        {"name": "note", "type": "TEXT"},
                    ],
                }
            ],
        },
    }


def python_for(code: str | None) -> str:
    """The interpreter for the operator package in ``code``: its checkout's own virtualenv, if it has one
    (its dependencies may differ from this branch's), else this one."""
    if code:
        venv = Path(code).resolve().parent / ".venv" / "bin" / "python"
        if venv.exists():
            return str(venv)
    return sys.executable


def proc_usage(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) and peak RSS in MiB of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    hwm = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmHWM")
    )
    return cpu, hwm / 1024


# client sessions only: autovacuum workers of the database show up in pg_stat_activity too
SESSIONS = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'"


async def sample_sessions(
    admin: asyncpg.Connection, database: str, peak: list[int], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        n = await admin.fetchval(SESSIONS, database)
        peak[0] = max(peak[0], n)
        try:
            await asyncio.wait_for(stop.wait(), 0.05)
        except TimeoutError:
            pass


async def until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def run(args: argparse.Namespace, server_url: str) -> dict[str, Any]:
    from tests.kube.emulator import run_api_server

    database = f"bench_scale_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{database}"')
    dsn = with_database(server_url, database)
    env = {
        **os.environ,
        "DATAFLOW_DRIFT_TICK": "30",
        "DATAFLOW_RETRY_BASE": "1",
        "DATAFLOW_POOL_MAX": str(args.pool_max),
    }
    if args.before:
        env["PYTHONPATH"] = args.before
    result: dict[str, Any] = {"code": args.before or "this branch", "resources": args.resources}
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        log_path = Path(tmp) / "operator.log"
        async with run_api_server(kubeconfig) as api:
            # each checkout's own CRD: its defaults fill in only the fields that code knows
            checkout = Path(args.before).resolve().parent if args.before else ROOT
            api.load_crd(checkout / "crds" / "dataflowschema.yaml")
            api.create("v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
            api.create(
                "v1/secrets",
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "db"},
                    "data": {"dsn": base64.b64encode(dsn.encode()).decode()},
                },
                namespace=NS,
            )
            env["KUBECONFIG"] = str(kubeconfig)
            with log_path.open("wb") as log:
                proc = await asyncio.create_subprocess_exec(
                    python_for(args.before),
                    "-m",
                    "kopf",
                    "run",
                    "--standalone",
                    "--namespace",
                    NS,
                    "-m",
                    "dataflow.k8s.operator",
                    env=env,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                )
            peak, stop = [0], asyncio.Event()
            sampler = asyncio.create_task(sample_sessions(admin, database, peak, stop))
            try:
                await asyncio.sleep(2.0)  # the operator's startup and first listing
                start = time.monotonic()
                for i in range(args.resources):
                    api.create(RESOURCE, resource_body(i, args.schemas), namespace=NS)

                def applied() -> int:
                    return sum(
                        (o.get("status") or {}).get("phase") == "Applied"
                        for o in api.list_objects(RESOURCE, NS)
                    )

                done = await until(lambda: applied() == args.resources, args.timeout)
                result["seconds_to_all_applied"] = round(time.monotonic() - start, 1) if done else None
                result["applied"] = applied()
                if proc.returncode is not None:
                    tail = log_path.read_text(errors="replace").splitlines()[-15:]
                    raise RuntimeError("the operator exited:\n" + "\n".join(tail))
                result["cpu_s"], result["peak_rss_mib"] = proc_usage(proc.pid)
                result["peak_sessions"] = peak[0]
            finally:
                stop.set()
                await sampler
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.3)
                api.close_watches()
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            texts = [e.get("message", "") for e in api.list_objects("v1/events", NS)]
            texts += log_path.read_text(errors="replace").splitlines()
            result["refused"] = sum("too many clients" in t for t in texts)
            bodies = api.list_objects(RESOURCE, NS)
    result["steady"] = await steady_state(args, dsn, bodies, env)
    await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
    await admin.close()
    return result


async def steady_state(args: argparse.Namespace, dsn: str, bodies: list[dict], env: dict[str, str]) -> dict:
    """The worker process: reconcile_resource on every resource, twice; the second round's costs."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"dsn": dsn, "bodies": bodies}, f)
    try:
        proc = await asyncio.create_subprocess_exec(
            python_for(args.before),
            str(Path(__file__)),
            "--worker",
            f.name,
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
    finally:
        os.unlink(f.name)
    return json.loads(out.decode().strip().splitlines()[-1])


async def worker(path: str) -> None:
    """Count what every session the operator's code opens is sent (a query logger on each)."""
    data = json.loads(Path(path).read_text())
    statements: list[str] = []
    opened = [0]
    real_connect = asyncpg.connect

    async def counting_connect(*a: Any, **kw: Any) -> asyncpg.Connection:
        conn = await real_connect(*a, **kw)
        conn.add_query_logger(lambda record: statements.append(record.query))
        opened[0] += 1
        return conn

    asyncpg.connect = counting_connect  # type: ignore[assignment]
    from dataflow.k8s.reconciler import reconcile_resource

    async def secret(namespace: str, name: str, key: str) -> str:
        return data["dsn"]

    async def no_peer(namespace: str, name: str) -> None:
        return None

    phases: dict[str, int] = {}
    elapsed = 0.0
    for round_ in range(2):
        statements.clear()
        opened[0] = 0
        start = time.perf_counter()
        for body in data["bodies"]:
            reaction = await reconcile_resource(body, read_secret=secret, read_peer=no_peer)
            if round_:
                phases[reaction.status["phase"]] = phases.get(reaction.status["phase"], 0) + 1
        elapsed = time.perf_counter() - start
        await asyncio.sleep(0.1)  # asyncpg calls query loggers soon after the query
    n = len(data["bodies"])
    print(
        json.dumps(
            {
                "phases": phases,
                "statements_per_check": round(len(statements) / n, 2),
                "sessions_opened_per_check": round(opened[0] / n, 2),
                "ms_per_check": round(elapsed / n * 1000, 2),
            }
        )
    )


def report(results: list[dict[str, Any]]) -> None:
    rows = [
        ("code", lambda r: r["code"]),
        ("resources Applied", lambda r: f"{r['applied']}/{r['resources']}"),
        ("time until all Applied s", lambda r: r["seconds_to_all_applied"] or "never"),
        ("peak sessions on the database", lambda r: r["peak_sessions"]),
        ('"too many clients" refusals', lambda r: r["refused"]),
        ("operator CPU s (to all Applied)", lambda r: f"{r['cpu_s']:.1f}"),
        ("operator peak RSS MiB", lambda r: f"{r['peak_rss_mib']:.0f}"),
        ("steady check: statements / resource", lambda r: r["steady"]["statements_per_check"]),
        ("steady check: new sessions / resource", lambda r: r["steady"]["sessions_opened_per_check"]),
        ("steady check: ms / resource", lambda r: r["steady"]["ms_per_check"]),
        ("steady check: phases", lambda r: ", ".join(f"{k} {v}" for k, v in r["steady"]["phases"].items())),
    ]
    width = max(len(label) for label, _ in rows)
    cols = [[str(get(r)) for r in results] for _, get in rows]
    colw = [max(len(c[i]) for c in cols) for i in range(len(results))]
    for (label, _), cells in zip(rows, cols, strict=True):
        print(
            f"| {label:<{width}} | "
            + " | ".join(f"{c:>{w}}" for c, w in zip(cells, colw, strict=True))
            + " |"
        )


async def main(args: argparse.Namespace) -> int:
    if args.database_url:
        url = args.database_url
    else:
        from dataflow.embedded import embedded_dsn

        url = embedded_dsn(ROOT / ".dataflow" / "bench-scale-pgdata")  # its own: "before" may exhaust it
    admin = await asyncpg.connect(url)
    limit = await admin.fetchval("SHOW max_connections")
    await admin.close()
    print(
        f"# server {redact(url)} (max_connections {limit}); "
        f"{args.resources} resources over {args.schemas} schema(s)",
        file=sys.stderr,
    )
    results = []
    for before in ([args.before] if args.before else []) + [None]:
        results.append(await run(argparse.Namespace(**{**vars(args), "before": before}), url))
        print(f"# {json.dumps(results[-1])}", file=sys.stderr)
    report(results)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--resources", type=int, default=200)
    p.add_argument("--schemas", type=int, default=1, help="spread the resources over this many schemas")
    p.add_argument("--pool-max", type=int, default=5, help="DATAFLOW_POOL_MAX for the operator")
    p.add_argument("--before", metavar="DIR", help="also run the operator package in DIR (PYTHONPATH) first")
    p.add_argument("--timeout", type=float, default=240, help="seconds to wait for all Applied")
    p.add_argument("--database-url", help="server for the scratch database (default: an embedded one)")
    return p.parse_args(argv)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        asyncio.run(worker(sys.argv[2]))
        sys.exit(0)
    sys.exit(asyncio.run(main(parse_args())))
