#!/usr/bin/env python3
"""Writer stalls during a migration: DataFlow's online strategy against plain DDL in one transaction.

What it does, once per strategy ("online", then "transactional"), each on a fresh scratch database
``dataflow_bench_online_<id>_<strategy>``:

1. Two models, ``Owner`` (``--owners`` rows) and ``Account`` (``--rows`` rows: ``email VARCHAR(100)``,
   ``balance BIGINT``, ``owner_id BIGINT``, ``note TEXT NULL``), created by ``db.initialize()`` and
   seeded with ``INSERT ... SELECT generate_series``, then ``ANALYZE``.
2. A writer on its own asyncpg connection starts: single-row UPDATEs of random ids and INSERTs,
   alternating, each timed. It runs for the whole migration and stops 1 s after it ends (or after
   ``--max-writes`` statements, or ``--max-seconds``).
3. ``Account`` is redefined and one ``auto_migrate(auto_confirm=True, max_risk_level="HIGH")`` applies:
   a NOT NULL column with a default (``status = "active"``), an index on ``balance``, a foreign key
   ``owner_id -> owner.id``, a unique constraint on ``email`` and ``email`` widened to VARCHAR(200).
   ``DataFlow(dsn, migration_config={"strategy": ..., ...})`` passes the strategy through.
4. Reported per strategy: the longest writer stall (the longest gap between two consecutive
   statement completions, counting the start of the writer and its end as completions), the p99
   statement latency, the number of writes done, writer errors, and the wall time of the
   ``auto_migrate`` call (planning included).

Then it compares the two resulting schemas (``dataflow.introspect.introspect``), checks for invalid
indexes and unvalidated constraints, prints one table and drops its scratch databases (also on failure).

Usage::

    .venv/bin/python bench/online_ddl.py [--database-url URL] [--rows 1000000] [--batch-size 10000]

No timing is asserted anywhere; this only measures.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import multiprocessing
import os
import platform
import random
import sys
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import asyncpg
from rich.console import Console

from common import reachable_server, redact, with_database
from dataflow import DataFlow, Field
from dataflow.introspect import introspect

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
STRATEGIES = ("online", "transactional")
TARGET_STALL_MS = 200.0
TARGET_RATIO = 20.0
DB_PREFIX = "dataflow_bench_online_"


# --------------------------------------------------------------------------- the models


def register_before(db: DataFlow) -> None:
    """The schema before the migration."""

    @db.model
    class Owner:
        name: str

    @db.model
    class Account:
        email: str = Field(max_length=100)
        balance: int
        owner_id: int
        note: str | None = None


def register_after(db: DataFlow) -> None:
    """The schema after it: one migration with five kinds of change to ``account``."""

    @db.model
    class Account:  # replaces the Account model registered before (same class name)
        email: str = Field(max_length=200, unique=True)  # VARCHAR widening + unique constraint
        balance: int = Field(index=True)  # new index
        owner_id: int = Field(references="owner.id")  # new foreign key
        note: str | None = None
        status: str = "active"  # NOT NULL column with a default


# --------------------------------------------------------------------------- helpers


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def engine_version() -> str:
    """Where ``dataflow`` was imported from and, in a git checkout, its commit and whether the engine
    had uncommitted changes (the numbers depend on which engine ran)."""
    import subprocess
    from pathlib import Path

    import dataflow

    src = Path(dataflow.__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return f"{src} at {sha}" + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return str(src)


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the writer


@dataclass
class WriterStats:
    latencies_ms: list[float] = field(default_factory=list)
    completions: list[float] = field(default_factory=list)  # perf_counter() at each completion
    started: float = 0.0
    ended: float = 0.0
    errors: Counter = field(default_factory=Counter)
    slowest: list[tuple[float, str, float]] = field(default_factory=list)  # (latency ms, kind, at s)

    @property
    def writes(self) -> int:
        return len(self.latencies_ms)

    def longest_stall(self) -> tuple[float, float]:
        """(longest gap in ms, the perf_counter() it began at) between consecutive completions,
        counting the writer's start and end as completions."""
        points = [self.started, *self.completions, self.ended]
        best, at = 0.0, self.started
        for a, b in zip(points, points[1:], strict=False):
            if b - a > best:
                best, at = b - a, a
        return best * 1000.0, at


async def writer(
    dsn: str,
    rows: int,
    owners: int,
    run_id: str,
    stop,
    stats: WriterStats,
    max_writes: int,
    max_seconds: float,
) -> None:
    """Alternate single-row UPDATEs of random ids and INSERTs until ``stop`` (bounded in count and time)."""
    conn = await asyncpg.connect(dsn)
    rng = random.Random(42)
    # a stalled statement must not wait forever; long enough to see any stall a migration causes
    await conn.execute(f"SET statement_timeout = '{int(max_seconds * 1000)}ms'")
    update = "UPDATE account SET balance = balance + 1 WHERE id = $1"
    insert = "INSERT INTO account (email, balance, owner_id) VALUES ($1, $2, $3)"
    deadline = time.perf_counter() + max_seconds
    n = 0
    stats.started = time.perf_counter()
    try:
        while not stop.is_set() and n < max_writes and time.perf_counter() < deadline:
            n += 1
            if n % 2:
                kind, sql, params = "UPDATE", update, (rng.randint(1, rows),)
            else:
                kind, sql, params = (
                    "INSERT",
                    insert,
                    (f"w{n}.{run_id}@writer.example", rng.randint(0, 1_000_000), rng.randint(1, owners)),
                )
            t0 = time.perf_counter()
            try:
                await conn.execute(sql, *params)
            except asyncpg.PostgresError as exc:
                stats.errors[f"{kind}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"] += 1
            t1 = time.perf_counter()
            ms = (t1 - t0) * 1000.0
            stats.latencies_ms.append(ms)
            stats.completions.append(t1)
            if ms > 50.0:
                stats.slowest.append((ms, kind, t0))
    finally:
        stats.ended = time.perf_counter()
        await conn.close()


def load_process(
    dsn: str, rows: int, owners: int, run_id: str, ready, stop, results, max_writes: int, max_seconds: float
) -> None:
    """The writer and the activity sampler, in a process of their own: the migration's Python work
    (planning, preview) cannot delay them, so a stall measured here is the database's."""

    async def run() -> dict:
        stats = WriterStats()
        activity: dict = {}
        task = asyncio.create_task(writer(dsn, rows, owners, run_id, stop, stats, max_writes, max_seconds))
        watch = asyncio.create_task(watch_activity(dsn, activity, stop))
        await asyncio.sleep(0.1)
        ready.set()
        await asyncio.gather(task, watch)
        return {
            "latencies_ms": stats.latencies_ms,
            "completions": stats.completions,
            "started": stats.started,
            "ended": stats.ended,
            "errors": dict(stats.errors),
            "slowest": stats.slowest,
            **activity,
        }

    try:
        results.put(asyncio.run(run()))
    except BaseException as exc:  # report it to the parent rather than hang it
        results.put({"failure": f"{type(exc).__name__}: {exc}"})


# --------------------------------------------------------------------------- one scenario


@dataclass
class Result:
    strategy: str
    database: str
    success: bool = False
    migration_s: float = math.nan
    seed_s: float = math.nan
    stall_ms: float = math.nan
    stall_at_s: float = math.nan
    p99_ms: float = math.nan
    p50_ms: float = math.nan
    max_ms: float = math.nan
    writes: int = 0
    writes_during_migration: int = 0
    errors: Counter = field(default_factory=Counter)
    slowest: list[tuple[float, str, float]] = field(default_factory=list)
    preview: str = ""
    error: str | None = None
    statements: list[str] = field(default_factory=list)
    server_log: list[str] = field(default_factory=list)


def migration_config(strategy: str, args: argparse.Namespace) -> dict:
    if strategy == "online":
        return {"strategy": "online", "lock_timeout_ms": args.lock_timeout_ms, "batch_size": args.batch_size}
    return {"strategy": "transactional"}


async def seed(dsn: str, rows: int, owners: int) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        t0 = time.perf_counter()
        await conn.execute(
            "INSERT INTO owner (name) SELECT 'owner ' || g FROM generate_series(1, $1) g", owners
        )
        await conn.execute(
            "INSERT INTO account (email, balance, owner_id, note)"
            " SELECT 'user' || g || '@example.com', (g::bigint * 7919) % 1000003, 1 + (g % $2),"
            "        CASE WHEN g % 10 = 0 THEN 'note ' || g END"
            " FROM generate_series(1, $1) g",
            rows,
            owners,
        )
        await conn.execute("ANALYZE owner")
        await conn.execute("ANALYZE account")
        return time.perf_counter() - t0
    finally:
        await conn.close()


async def run_scenario(
    admin_dsn: str, strategy: str, run_id: str, args: argparse.Namespace, created: list[str]
) -> Result:
    name = f"{DB_PREFIX}{run_id}_{strategy}"
    res = Result(strategy, name)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    created.append(name)
    dsn = with_database(admin_dsn, name)

    out = io.StringIO()
    console = Console(file=out, width=160, soft_wrap=False, color_system=None)
    db = DataFlow(dsn, migration_config=migration_config(strategy, args), console=console)
    register_before(db)
    await db.initialize()
    log(f"[{strategy}] seeding {args.rows:,} accounts and {args.owners:,} owners in {name}")
    res.seed_s = await seed(dsn, args.rows, args.owners)
    log(f"[{strategy}] seeded in {res.seed_s:.1f}s; starting the writer and the migration")

    register_after(db)
    ctx = multiprocessing.get_context("spawn")
    ready, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(
        target=load_process,
        name=f"writer-{strategy}",
        daemon=True,
        args=(dsn, args.rows, args.owners, run_id, ready, stop, results, args.max_writes, args.max_seconds),
    )
    proc.start()
    try:
        if not await asyncio.to_thread(ready.wait, 60):
            raise RuntimeError("the writer process did not start")
        await asyncio.sleep(args.warmup)
        m0 = time.perf_counter()
        try:
            success, migrations = await db.auto_migrate(
                auto_confirm=True, max_risk_level="HIGH", show_sql=True
            )
            res.success = bool(success and migrations)
            if not migrations:
                res.error = "auto_migrate found nothing to apply"
        except Exception as exc:  # measure anyway, report the failure
            res.error = f"{type(exc).__name__}: {exc}"
            log(f"[{strategy}] auto_migrate raised:\n{traceback.format_exc()}")
        m1 = time.perf_counter()
        res.migration_s = m1 - m0
        await asyncio.sleep(args.tail)
    finally:
        stop.set()
        try:
            data = await asyncio.to_thread(results.get, True, args.max_seconds + 60)
        finally:
            await asyncio.to_thread(proc.join, 30)
    if "failure" in data:
        raise RuntimeError(f"writer process failed: {data['failure']}")
    res.preview = out.getvalue()
    res.statements = data.get("statements", [])
    res.server_log = data.get("lock_waits", [])
    stats = WriterStats(
        data["latencies_ms"],
        data["completions"],
        data["started"],
        data["ended"],
        Counter(data["errors"]),
        data["slowest"],
    )

    res.stall_ms, stall_at = stats.longest_stall()
    res.stall_at_s = stall_at - m0
    res.p99_ms = percentile(stats.latencies_ms, 99)
    res.p50_ms = percentile(stats.latencies_ms, 50)
    res.max_ms = max(stats.latencies_ms, default=math.nan)
    res.writes = stats.writes
    res.writes_during_migration = sum(m0 <= t <= m1 for t in stats.completions)
    res.errors = stats.errors
    res.slowest = sorted(((ms, kind, t - m0) for ms, kind, t in stats.slowest), reverse=True)[:5]
    log(
        f"[{strategy}] migration {'applied' if res.success else 'FAILED'} in {res.migration_s:.2f}s; "
        f"longest stall {res.stall_ms:.1f} ms, {res.writes:,} writes, {sum(res.errors.values())} errors"
    )
    return res


async def watch_activity(dsn: str, out: dict, stop) -> None:
    """Samples what other backends of this database run (every 50 ms): the migration's statements
    and the writer's lock waits, for the report. Bounded by ``stop``."""
    conn = await asyncpg.connect(dsn)
    seen: dict[str, None] = {}
    waits: Counter = Counter()
    try:
        while not stop.is_set():
            for r in await conn.fetch(
                "SELECT query, state, wait_event_type, wait_event, backend_type FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ):
                q = " ".join((r["query"] or "").split())[:160]
                if r["wait_event_type"] == "Lock":
                    waits[f"{r['wait_event']}: {q[:90]}"] += 1
                if (
                    q
                    and not q.startswith(
                        (
                            "UPDATE account SET balance",
                            "INSERT INTO account (email, balance, owner_id) VALUES ($1",
                        )
                    )
                    and r["state"] == "active"
                    and r["backend_type"] == "client backend"
                ):
                    seen.setdefault(q, None)
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    out["statements"] = list(seen)
    out["lock_waits"] = [f"{n:>5} samples  {w}" for w, n in waits.most_common(8)]


async def final_state(dsn: str) -> tuple[object, list[str]]:
    conn = await asyncpg.connect(dsn)
    try:
        state = await introspect(conn, "public")
        problems = [
            f"invalid index {r['n']}"
            for r in await conn.fetch(
                "SELECT c.relname AS n FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = 'public' AND NOT i.indisvalid"
            )
        ]
        problems += [
            f"constraint {r['n']} NOT VALID"
            for r in await conn.fetch(
                "SELECT conname AS n FROM pg_constraint c JOIN pg_namespace s ON s.oid = c.connamespace"
                " WHERE s.nspname = 'public' AND NOT c.convalidated"
            )
        ]
        problems += [
            f"leftover {r['n']}"
            for r in await conn.fetch(
                "SELECT relname AS n FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace"
                " WHERE s.nspname = 'public' AND c.relkind IN ('r','i') AND relname NOT LIKE 'dataflow\\_%'"
                " AND relname NOT LIKE 'account%' AND relname NOT LIKE 'owner%'"
            )
        ]
        nulls = await conn.fetchval("SELECT count(*) FROM account WHERE status IS NULL")
        if nulls:
            problems.append(f"{nulls} accounts with status NULL")
        return state.schema, problems
    finally:
        await conn.close()


# --------------------------------------------------------------------------- the run


def fmt(x: float, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def render(results: list[Result]) -> str:
    header = (
        "strategy",
        "longest writer stall ms",
        "p99 write latency ms",
        "writes done",
        "migration wall time s",
    )
    rows = [
        (
            r.strategy + ("" if r.success else " (FAILED)"),
            fmt(r.stall_ms),
            fmt(r.p99_ms, 2),
            f"{r.writes:,}",
            fmt(r.migration_s, 2),
        )
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]

    def line(cells: tuple[str, ...]) -> str:
        padded = (
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "| " + " | ".join(padded) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


async def main(args: argparse.Namespace) -> int:
    url = await reachable_server(args.database_url)
    if url is None:
        from dataflow.embedded import embedded_dsn

        url = embedded_dsn()
    run_id = args.run_id = uuid.uuid4().hex[:8]
    args.schemas_identical = None
    created: list[str] = []
    results: list[Result] = []
    try:
        conn = await asyncpg.connect(url)
        server_version = await conn.fetchval("SHOW server_version")
        await conn.close()
        for strategy in args.strategies:
            results.append(await run_scenario(url, strategy, run_id, args, created))
        schemas = {}
        problems = {}
        for r in results:
            schemas[r.strategy], problems[r.strategy] = await final_state(with_database(url, r.database))
    finally:
        conn = await asyncpg.connect(url)
        try:
            for name in created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    print()
    print(
        f"Online DDL: writer stalls during one migration of `account` ({args.rows:,} rows, "
        f"{args.owners:,} owners), batch_size {args.batch_size}, lock_timeout_ms {args.lock_timeout_ms} (online)"
    )
    print(
        f"Machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}, "
        f"PostgreSQL {server_version}, server {redact(urlsplit(url).hostname or '?')}"
    )
    print(f"Engine: {engine_version()}")
    print()
    print(render(results))
    print()
    for r in results:
        print(
            f"{r.strategy}: p50 {fmt(r.p50_ms, 2)} ms, slowest statement {fmt(r.max_ms)} ms, "
            f"{r.writes_during_migration:,} writes completed during the migration, longest stall began "
            f"{fmt(r.stall_at_s, 2)} s after the migration started; seeding took {fmt(r.seed_s)} s"
        )
        if r.error:
            print(f"  migration error: {r.error}")
        for e, n in r.errors.most_common(5):
            print(f"  writer error x{n}: {e}")
        if r.slowest:
            print(
                "  slowest writes: " + "; ".join(f"{ms:.0f} ms {k} at +{at:.2f}s" for ms, k, at in r.slowest)
            )
        for w in r.server_log:
            print(f"  lock wait seen (pg_stat_activity, 50 ms samples) {w}")
        if args.show_sql:
            print("  statements seen running (pg_stat_activity):")
            for q in r.statements:
                print(f"    {q}")
            print("  preview:")
            print("    " + r.preview.replace("\n", "\n    "))

    by = {r.strategy: r for r in results}
    if "online" in by and "transactional" in by:
        on, tx = by["online"], by["transactional"]
        ratio = tx.stall_ms / on.stall_ms if on.stall_ms and on.stall_ms > 0 else math.nan
        print()
        print(f"ratio of longest stalls (transactional / online): {fmt(ratio)}x")
        met = on.success and tx.success and on.stall_ms <= TARGET_STALL_MS and ratio >= TARGET_RATIO
        print(
            f"target (longest stall <= {TARGET_STALL_MS:.0f} ms with DataFlow online and >= {TARGET_RATIO:.0f}x "
            f"below plain DDL): {'MET' if met else 'NOT MET'} "
            f"(online {fmt(on.stall_ms)} ms, ratio {fmt(ratio)}x)"
        )
        same = schemas["online"] == schemas["transactional"]
        args.schemas_identical = same
        print(f"final schemas (dataflow.introspect): {'identical' if same else 'DIFFERENT'}")
        if not same:
            a, b = schemas["online"], schemas["transactional"]
            for name in sorted(set(a.table_names) | set(b.table_names)):
                if a.table(name) != b.table(name):
                    print(
                        f"  table {name}:\n    online:        {a.table(name)}\n    transactional: {b.table(name)}"
                    )
    for s, p in problems.items():
        print(f"{s}: {'; '.join(p) if p else 'no invalid indexes, unvalidated constraints or leftovers'}")
    return 0 if all(r.success for r in results) and args.schemas_identical is not False else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--database-url",
        default=os.environ.get("DATAFLOW_BENCH_DATABASE_URL", DEFAULT_URL),
        help="server to create the scratch databases on (default $DATAFLOW_BENCH_DATABASE_URL, else "
        f"{DEFAULT_URL}; the embedded server when none answers)",
    )
    p.add_argument("--rows", type=int, default=1_000_000, help="accounts to seed (default 1000000)")
    p.add_argument("--owners", type=int, default=1000, help="owners to seed (default 1000)")
    p.add_argument(
        "--batch-size", type=int, default=10_000, help="online strategy's batch size (default 10000)"
    )
    p.add_argument(
        "--lock-timeout-ms", type=int, default=500, help="online strategy's lock timeout (default 500)"
    )
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    p.add_argument("--warmup", type=float, default=1.0, help="seconds the writer runs before the migration")
    p.add_argument("--tail", type=float, default=1.0, help="seconds the writer runs after the migration")
    p.add_argument("--max-writes", type=int, default=2_000_000, help="bound on the writer's statements")
    p.add_argument("--max-seconds", type=float, default=600.0, help="bound on the writer's time")
    p.add_argument(
        "--show-sql", action="store_true", help="print the preview and the statements seen running"
    )
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
