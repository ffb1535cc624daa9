"""Smoke test of bench/plan_speed.py at a tiny size: it applies, plans in sync and with a change, loads
the same DDL with psql, prints its tables and drops its scratch databases. No timing is asserted."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_bench():
    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))
    return importlib.import_module("plan_speed")


def test_change_spec_changes_two_percent_of_the_tables_in_four_kinds() -> None:
    bench = _load_bench()
    base = bench.build_spec(200)
    changed, kinds = bench.change_spec(base)
    assert kinds == {"add column": 1, "change default": 1, "add index": 1, "drop column": 1}
    assert sum(a != b for a, b in zip(base, changed, strict=True)) == 4
    assert all(len(t["fields"]) + 1 == bench.COLUMNS for t in base)
    assert bench.build_spec(200) == base  # deterministic


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is the apply floor")
async def test_plan_speed_bench_runs_and_prints_its_tables(server_dsn: str, capsys) -> None:
    bench = _load_bench()
    args = bench.parse_args(
        ["--database-url", server_dsn, "--sizes", "6", "--runs", "1", "--apply-runs", "1", "--peers", "psql"]
    )
    assert await bench.main(args) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| 6 ")]
    by_measure = {(c[2].strip(), c[3].strip()): c for c in (line.split("|") for line in lines)}
    in_sync = by_measure[("DataFlow", "in-sync plan")]
    assert in_sync[7].strip() == "0" and in_sync[8].strip() == "ok"  # nothing planned on an in-sync database
    changed = by_measure[("DataFlow", "2% changed plan")]
    assert int(changed[7]) >= 1 and changed[8].strip() == "ok"
    assert by_measure[("DataFlow", "apply")][7].strip() == by_measure[("psql -f", "apply")][7].strip()
    assert "apply / psql" in out
    conn = await asyncpg.connect(server_dsn)
    try:
        left = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", f"{bench.DB_PREFIX}{args.run_id}%"
        )
    finally:
        await conn.close()
    assert not left
