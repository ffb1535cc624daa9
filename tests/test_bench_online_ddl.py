"""Smoke test of bench/online_ddl.py on a tiny table: it runs both strategies, applies the migration,
ends with identical schemas and drops its scratch databases. No timing is asserted."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent


def _load_bench():
    # imported by name (not from a file spec): the writer runs in a spawned process, which imports
    # the module again by name, with the parent's sys.path
    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))
    return importlib.import_module("online_ddl")


async def test_online_ddl_bench_runs_both_strategies(server_dsn: str, capsys) -> None:
    bench = _load_bench()
    args = bench.parse_args(
        [
            "--database-url",
            server_dsn,
            "--rows",
            "2000",
            "--owners",
            "20",
            "--warmup",
            "0.2",
            "--tail",
            "0.2",
            "--max-seconds",
            "60",
        ]
    )
    assert await bench.main(args) == 0
    out = capsys.readouterr().out
    assert "| online " in out and "| transactional " in out
    assert "final schemas (dataflow.introspect): identical" in out
    assert args.schemas_identical
    conn = await asyncpg.connect(server_dsn)
    try:
        left = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", bench.DB_PREFIX + "%"
        )
    finally:
        await conn.close()
    assert not [
        r["datname"]
        for r in left
        if r["datname"].endswith(("_online", "_transactional")) and "_" + args.run_id + "_" in r["datname"]
    ]
