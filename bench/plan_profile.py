#!/usr/bin/env python3
"""Where the engine's 2% changed plan spends its time: each catalog query's time, and optionally cProfile.

Builds (once, kept for the next call) a database of ``--size`` tables from ``plan_speed.build_spec`` with
``initialize()``, then times ``reconcile(..., dry_run=True)`` with ``change_spec``'s models on one open
connection, the way ``plan_speed`` times the engine. Every ``fetch``/``fetchval``/``fetchrow``/``execute`` of
the last timed call is logged with its time, grouped by statement. Run it from two checkouts against
databases of their own to compare versions (``--bench-dir`` picks whose ``build_spec`` makes the models).

Usage::

    .venv/bin/python bench/plan_profile.py --database plan_profile_1000 --size 1000 [--profile]
    .venv/bin/python bench/plan_profile.py --drop --database plan_profile_1000
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import hashlib
import pstats
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg

from common import with_database

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
QUERIES: dict[str, list[float]] = collections.defaultdict(list)
LOGGING = False


def _log_queries() -> None:
    """Wrap asyncpg's query methods: while LOGGING, each call's time goes to QUERIES by statement."""
    for name in ("fetch", "fetchval", "fetchrow", "execute"):
        original = getattr(asyncpg.Connection, name)

        def wrapped(self: Any, query: str, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            async def run() -> Any:
                started = time.perf_counter()
                try:
                    return await _original(self, query, *args, **kwargs)
                finally:
                    if LOGGING:
                        text = " ".join(str(query).split())
                        key = f"{text[:90]} #{hashlib.sha1(text.encode()).hexdigest()[:6]}"
                        QUERIES[key].append((time.perf_counter() - started) * 1000)

            return run()

        setattr(asyncpg.Connection, name, wrapped)


async def main(args: argparse.Namespace) -> int:
    global LOGGING
    sys.path.insert(0, str(args.bench_dir))
    import plan_speed as ps  # the models of that checkout's benchmark

    dsn = with_database(args.database_url, args.database)
    admin = await asyncpg.connect(args.database_url)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", args.database)
        if args.drop:
            await admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
            return 0
        if not exists:
            await admin.execute(f'CREATE DATABASE "{args.database}"')
            await ps.make_dataflow(ps.build_spec(args.size), dsn).initialize()
    finally:
        await admin.close()

    from dataflow.reconcile import reconcile

    _log_queries()
    changed, _ = ps.change_spec(ps.build_spec(args.size))
    db = ps.make_dataflow(changed, dsn)
    desired, options = db.schema(), replace(db.options, dry_run=True)
    conn = await asyncpg.connect(dsn)
    try:
        result = await reconcile(conn, dsn, desired, ps.OWNER, options)  # warm-up
        samples = []
        for i in range(args.runs):
            LOGGING = i == args.runs - 1
            started = time.perf_counter()
            await reconcile(conn, dsn, desired, ps.OWNER, options)
            samples.append((time.perf_counter() - started) * 1000)
        LOGGING = False
        print(f"# {args.size} tables, {len(result.migration.operations)} operations planned")
        print(
            f"engine 2% changed plan ms: {[round(s) for s in samples]}, median {statistics.median(samples):.0f}"
        )
        total = 0.0
        for text, times in sorted(QUERIES.items(), key=lambda kv: -sum(kv[1])):
            total += sum(times)
            print(f"{sum(times):8.1f} ms {len(times):4d}x  {text}")
        print(f"queries of the last call: {total:.0f} ms")
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(3):
                await reconcile(conn, dsn, desired, ps.OWNER, options)
            profile.disable()
            pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
    finally:
        await conn.close()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--database-url", default=DEFAULT_URL, help="a server DSN (its database is only for admin)"
    )
    p.add_argument("--database", default="plan_profile_1000", help="kept between runs; --drop removes it")
    p.add_argument("--size", type=int, default=1000)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--profile", action="store_true", help="also cProfile three plans")
    p.add_argument("--drop", action="store_true", help="drop --database and exit")
    p.add_argument("--bench-dir", type=Path, default=Path(__file__).resolve().parent)
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
