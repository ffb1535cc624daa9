#!/usr/bin/env python3
"""How long planning a 200-table schema takes: DataFlow against a peer tool, same machine, same run.

What it does:

1. Builds a varied schema of ``--tables`` tables (8-15 columns of mixed types, defaults, a
   primary key, 1-3 indexes incl. partial and GIN ones, unique constraints, foreign keys,
   checks) and applies it with DataFlow to a fresh scratch database (``..._cur``).
2. Modifies the desired schema in ~20 tables (add a column, change a default, add an index,
   drop a column) and applies that modified schema to a second fresh database (``..._tgt``),
   which the peer tool diffs against.
3. Times ``dataflow.reconcile.plan`` (introspection + diff + safety probes + SQL) of the
   modified schema against ``..._cur``, and ``dataflow.introspect.introspect`` alone; counts the
   statements each sends (asyncpg query logger).
4. Runs the peer (migra + schemainspect, or else alembic's ``compare_metadata``) in its own
   virtualenv as a subprocess, timed inside the subprocess, on the same two databases.
5. Prints one table and drops its scratch databases.

Usage::

    .venv/bin/python bench/plan_200_tables.py [--database-url URL] [--tables 200] [--runs 10]

No timing is asserted anywhere; this only measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg

from common import reachable_server, redact, with_database
from dataflow.introspect import introspect
from dataflow.operations import Risk
from dataflow.options import MigrationOptions
from dataflow.reconcile import Outcome, plan, reconcile
from dataflow.schema import Check, Column, ForeignKey, Index, Schema, Table, Unique

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
OWNER = "bench"
POLICY = MigrationOptions(max_risk_level=Risk.HIGH)
DEFAULT_PEER_VENV = Path("/tmp/bench-peer-venv")
MODIFIED_TABLES = 20


# --------------------------------------------------------------------------- schema generation

_FILLER_TYPES = (
    # (type, possible defaults as the catalog prints them after normalisation; None = no default)
    ("TEXT", (None, None, "''", "'n/a'")),
    ("VARCHAR(32)", (None, "'x'")),
    ("VARCHAR(255)", (None, None, "'unknown'")),
    ("BIGINT", (None, "0", "-1")),
    ("NUMERIC(10,2)", (None, "0", "1.50")),
    ("BOOLEAN", (None, "false", "true")),
    ("TIMESTAMPTZ", (None, None, "CURRENT_TIMESTAMP")),
    ("JSONB", (None, "'[]'")),
)


def table_name(i: int) -> str:
    return f"bench_t{i:03d}"


def build_schema(n_tables: int, seed: int = 200) -> Schema:
    """A deterministic, varied schema of ``n_tables`` tables."""
    rng = random.Random(seed)
    tables = []
    for i in range(n_tables):
        t = table_name(i)
        identity = "BY DEFAULT" if i % 3 == 0 else None
        columns = [
            Column("id", "BIGINT", nullable=False, identity=identity),
            Column("code", "VARCHAR(64)", nullable=False),
            Column("created_at", "TIMESTAMPTZ", nullable=False, default="CURRENT_TIMESTAMP"),
            Column("active", "BOOLEAN", nullable=False, default="true"),
            Column("amount", "NUMERIC(10,2)", nullable=False, default="0"),
            Column("payload", "JSONB", nullable=True, default="'{}'"),
        ]
        fks = []
        if i > 0:
            for k in range(min(i, rng.choice((0, 1, 1, 2)))):
                ref = table_name(rng.randrange(0, i))
                col = f"ref{k}_id"
                columns.append(Column(col, "BIGINT", nullable=rng.random() < 0.7))
                on_delete = (
                    rng.choice(("NO ACTION", "CASCADE", "RESTRICT"))
                    if not columns[-1].nullable
                    else rng.choice(("NO ACTION", "CASCADE", "SET NULL"))
                )
                fks.append(ForeignKey(f"{t}_{col}_fkey", (col,), ref, ("id",), on_delete=on_delete))
        target = rng.randint(8, 15)
        for k in range(max(1, target - len(columns))):
            typ, defaults = rng.choice(_FILLER_TYPES)
            default = rng.choice(defaults)
            nullable = default is None or rng.random() < 0.5
            columns.append(Column(f"c{k:02d}", typ, nullable=nullable, default=default))

        indexes = [Index(f"{t}_created_idx", ("created_at",))]
        if rng.random() < 0.5:
            indexes.append(Index(f"{t}_active_created_idx", ("created_at",), where="active AND amount > 0"))
        if rng.random() < 0.4:
            indexes.append(Index(f"{t}_payload_gin", ("payload",), method="gin"))
        if fks and len(indexes) < 3:
            indexes.append(Index(f"{t}_ref0_idx", ("ref0_id",)))
        uniques = [Unique(f"{t}_code_key", ("code",))] if rng.random() < 0.5 else []
        checks = [Check(f"{t}_amount_check", "amount >= 0")] if rng.random() < 0.7 else []
        tables.append(
            Table(
                t,
                tuple(columns),
                primary_key=("id",),
                indexes=tuple(indexes),
                uniques=tuple(uniques),
                foreign_keys=tuple(fks),
                checks=tuple(checks),
            )
        )
    return Schema(tables=tuple(tables), name="public").normalised()


def modify_schema(schema: Schema, count: int = MODIFIED_TABLES) -> tuple[Schema, dict[str, int]]:
    """``count`` tables spread over the schema get one change each, four kinds in turn."""
    tables = list(schema.tables)
    step = max(1, len(tables) // count)
    kinds = {"ADD_COLUMN": 0, "SET_DEFAULT": 0, "CREATE_INDEX": 0, "DROP_COLUMN": 0}
    for k, idx in enumerate(range(0, len(tables), step)):
        if k >= count:
            break
        t = tables[idx]
        kind = list(kinds)[k % 4]
        if kind == "ADD_COLUMN":
            t = replace(t, columns=t.columns + (Column("note", "TEXT"),))
        elif kind == "SET_DEFAULT":
            t = replace(
                t, columns=tuple(replace(c, default="1") if c.name == "amount" else c for c in t.columns)
            )
        elif kind == "CREATE_INDEX":
            t = replace(t, indexes=t.indexes + (Index(f"{t.name}_code_idx", ("code",)),))
        else:  # DROP_COLUMN: the last filler column (never indexed or constrained)
            last = [c for c in t.columns if c.name.startswith("c")][-1]
            t = replace(t, columns=tuple(c for c in t.columns if c is not last))
        kinds[kind] += 1
        tables[idx] = t
    return replace(schema, tables=tuple(tables)).normalised(), kinds


# --------------------------------------------------------------------------- measuring helpers


@dataclass
class Row:
    tool: str
    what: str
    median_ms: float | None
    p95_ms: float | None
    round_trips: str
    statements: str


def p95(samples: list[float]) -> float:
    """Nearest-rank 95th percentile (with 10 runs: the slowest run)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


class QueryCounter:
    """Counts the statements an asyncpg connection sends (one logged query = one round trip
    with a warm statement cache; a first-seen statement adds a prepare round trip)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, record: object) -> None:
        self.count += 1


async def timed(fn, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def count_queries(conn: asyncpg.Connection, fn) -> int:
    counter = QueryCounter()
    conn.add_query_logger(counter)
    try:
        await fn()
        await asyncio.sleep(0)  # the logger's callbacks run via call_soon
        await asyncio.sleep(0)
    finally:
        conn.remove_query_logger(counter)
    return counter.count


# --------------------------------------------------------------------------- the peer

_MIGRA_RUNNER = r"""
import json, statistics, sys, time, warnings
warnings.filterwarnings("ignore")
from importlib.metadata import version
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlbag import S
from migra import Migration
from schemainspect import get_inspector

cur, tgt, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
count = [0]
@event.listens_for(Engine, "before_cursor_execute")
def _count(*a, **k):
    count[0] += 1

def plan(s0, s1):
    m = Migration(s0, s1)
    m.set_safety(False)
    m.add_all_changes()
    return [s for s in m.statements if s.strip()]

out = {"versions": {p: version(p) for p in ("migra", "schemainspect", "sqlbag", "SQLAlchemy", "psycopg2-binary")}}
with S(cur) as s0, S(tgt) as s1:
    stmts = plan(s0, s1)  # warm-up (connections, catalog caches)
    full, alone = [], []
    for _ in range(runs):
        t = time.perf_counter(); plan(s0, s1); full.append((time.perf_counter() - t) * 1000)
    for _ in range(runs):
        t = time.perf_counter(); get_inspector(s0); alone.append((time.perf_counter() - t) * 1000)
    count[0] = 0; plan(s0, s1); full_rt = count[0]
    count[0] = 0; get_inspector(s0); alone_rt = count[0]
out.update(full=full, alone=alone, full_rt=full_rt, alone_rt=alone_rt, statements=len(stmts), sql=stmts)
print(json.dumps(out))
"""

_ALEMBIC_RUNNER = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
from importlib.metadata import version
from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine
from alembic.migration import MigrationContext
from alembic.autogenerate import compare_metadata, produce_migrations, render_python_code

# SQLAlchemy 2.1 maps postgresql:// to psycopg 3; name the installed driver explicitly
cur, tgt = (u.replace("postgresql://", "postgresql+psycopg2://", 1) for u in sys.argv[1:3])
runs = int(sys.argv[3])
count = [0]
@event.listens_for(Engine, "before_cursor_execute")
def _count(*a, **k):
    count[0] += 1

target = MetaData()
target.reflect(create_engine(tgt))  # stands in for the application's models (not timed)
engine = create_engine(cur)
out = {"versions": {p: version(p) for p in ("alembic", "SQLAlchemy", "psycopg2-binary")}}
with engine.connect() as conn:
    def plan():
        return compare_metadata(MigrationContext.configure(conn), target)
    diffs = plan()
    full = []
    for _ in range(runs):
        t = time.perf_counter(); plan(); full.append((time.perf_counter() - t) * 1000)
    alone = []
    for _ in range(runs):
        t = time.perf_counter(); MetaData().reflect(conn); alone.append((time.perf_counter() - t) * 1000)
    count[0] = 0; plan(); full_rt = count[0]
    count[0] = 0; MetaData().reflect(conn); alone_rt = count[0]
out.update(full=full, alone=alone, full_rt=full_rt, alone_rt=alone_rt, statements=len(diffs),
           sql=[repr(d) for d in diffs])
print(json.dumps(out))
"""

PEERS = {
    "migra": (("migra", "sqlalchemy<2", "psycopg2-binary"), _MIGRA_RUNNER),
    "alembic": (("alembic", "sqlalchemy", "psycopg2-binary"), _ALEMBIC_RUNNER),
}


def peer_python(venv: Path, peer: str) -> Path | None:
    """The venv's python with ``peer`` importable, installing it with pip if needed."""
    packages, _ = PEERS[peer]
    py = venv / "bin" / "python"
    check = [str(py), "-c", f"import {peer}, psycopg2, sqlalchemy"]
    if py.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return py
    print(f"# installing {', '.join(packages)} into {venv} ...", file=sys.stderr)
    if not py.exists():
        if subprocess.run([sys.executable, "-m", "venv", str(venv)]).returncode != 0:
            return None
    r = subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *packages],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        print(f"# pip could not install {peer}: {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return py if subprocess.run(check, capture_output=True).returncode == 0 else None


def run_peer(venv: Path, cur: str, tgt: str, runs: int, choice: str = "auto") -> tuple[str, dict] | None:
    for peer in ("migra", "alembic") if choice == "auto" else (choice,):
        py = peer_python(venv if peer == "migra" else venv.with_name(venv.name + "-alembic"), peer)
        if py is None:
            continue
        _, code = PEERS[peer]
        with tempfile.NamedTemporaryFile("w", suffix=f"_{peer}_runner.py", delete=False) as f:
            f.write(code)
        try:
            r = subprocess.run(
                [str(py), f.name, cur, tgt, str(runs)], capture_output=True, text=True, timeout=3600
            )
        finally:
            os.unlink(f.name)
        if r.returncode == 0:
            return peer, json.loads(r.stdout.strip().splitlines()[-1])
        print(f"# {peer} failed:\n{r.stderr[-2000:]}", file=sys.stderr)
    return None


# --------------------------------------------------------------------------- the run


async def create_db(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_dbs(admin_dsn: str, names: list[str]) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def apply(dsn: str, schema: Schema) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        start = time.perf_counter()
        result = await reconcile(conn, dsn, schema, owner=OWNER, options=POLICY)
        if result.outcome is not Outcome.APPLIED:
            raise RuntimeError(f"applying the schema: {result.outcome.value}: {result.reason}")
        return time.perf_counter() - start
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> int:
    url = await reachable_server(args.database_url)
    if url is None:
        from dataflow.embedded import embedded_dsn

        url = embedded_dsn()
    base = build_schema(args.tables)
    desired, kinds = modify_schema(base, min(MODIFIED_TABLES, args.tables))
    n_cols = sum(len(t.columns) for t in base.tables)
    n_idx = sum(len(t.indexes) for t in base.tables)
    n_fk = sum(len(t.foreign_keys) for t in base.tables)
    n_uq = sum(len(t.uniques) for t in base.tables)
    n_ck = sum(len(t.checks) for t in base.tables)

    run_id = uuid.uuid4().hex[:8]
    cur_db, tgt_db = f"dataflow_bench_{run_id}_cur", f"dataflow_bench_{run_id}_tgt"
    cur_dsn, tgt_dsn = with_database(url, cur_db), with_database(url, tgt_db)
    created: list[str] = []
    rows: list[Row] = []
    notes: list[str] = []
    try:
        for name in (cur_db, tgt_db):
            await create_db(url, name)
            created.append(name)
        t_apply = await apply(cur_dsn, base)
        await apply(tgt_dsn, desired)

        conn = await asyncpg.connect(cur_dsn)
        try:
            server_version = await conn.fetchval("SHOW server_version")
            baseline, _ = await plan(conn, base, OWNER, POLICY)
            if baseline.operations:
                notes.append(
                    f"WARNING: re-planning the applied schema is not empty ({len(baseline.operations)} "
                    f"operations: {baseline.description[:300]})"
                )
            migration, conflicts = await plan(conn, desired, OWNER, POLICY)  # warm-up
            statements = len(migration.sql_up)

            async def do_plan() -> None:
                await plan(conn, desired, OWNER, POLICY)

            async def do_introspect() -> None:
                await introspect(conn, "public")

            plan_ms = await timed(do_plan, args.runs)
            intro_ms = await timed(do_introspect, args.runs)
            plan_rt = await count_queries(conn, do_plan)
            intro_rt = await count_queries(conn, do_introspect)
        finally:
            await conn.close()

        rows.append(
            Row(
                "DataFlow",
                "plan(): ledger check + introspect + diff + safety probes + SQL",
                statistics.median(plan_ms),
                p95(plan_ms),
                str(plan_rt),
                str(statements),
            )
        )
        rows.append(
            Row(
                "DataFlow",
                "introspect() of the whole schema alone",
                statistics.median(intro_ms),
                p95(intro_ms),
                str(intro_rt),
                "-",
            )
        )

        peer = (
            None if args.no_peer else run_peer(Path(args.peer_venv), cur_dsn, tgt_dsn, args.runs, args.peer)
        )
        peer_label = "none"
        if peer is None:
            notes.append(
                "peer: not run"
                + (" (--no-peer)" if args.no_peer else " (no peer could be installed or run; see stderr)")
            )
        else:
            name, out = peer
            v = out["versions"]
            peer_label = ", ".join(f"{k} {val}" for k, val in v.items())
            if name == "migra":
                rows.append(
                    Row(
                        f"migra {v['migra']}",
                        "inspect current + target DB (schemainspect), diff, SQL",
                        statistics.median(out["full"]),
                        p95(out["full"]),
                        str(out["full_rt"]),
                        str(out["statements"]),
                    )
                )
                rows.append(
                    Row(
                        f"schemainspect {v['schemainspect']}",
                        "inspect the current DB alone",
                        statistics.median(out["alone"]),
                        p95(out["alone"]),
                        str(out["alone_rt"]),
                        "-",
                    )
                )
            else:
                rows.append(
                    Row(
                        f"alembic {v['alembic']}",
                        "compare_metadata: reflect current DB, diff vs metadata",
                        statistics.median(out["full"]),
                        p95(out["full"]),
                        str(out["full_rt"]),
                        f"{out['statements']} diffs",
                    )
                )
                rows.append(
                    Row(
                        f"SQLAlchemy {v['SQLAlchemy']}",
                        "MetaData.reflect() of the current DB alone",
                        statistics.median(out["alone"]),
                        p95(out["alone"]),
                        str(out["alone_rt"]),
                        "-",
                    )
                )
            if args.show_sql:
                notes.append(f"{name} statements:\n  " + "\n  ".join(out["sql"]))
        if args.show_sql:
            notes.append("DataFlow statements:\n  " + "\n  ".join(migration.sql_up))
    finally:
        if created:
            await drop_dbs(url, created)

    print(
        f"# plan_200_tables: {args.tables} tables, {n_cols} columns, {n_idx} indexes, {n_fk} foreign keys, "
        f"{n_uq} unique constraints, {n_ck} checks; applied once in {t_apply:.1f} s"
    )
    print(f"# modified {sum(kinds.values())} tables: " + ", ".join(f"{n} {k}" for k, n in kinds.items()))
    print(f"# runs: {args.runs} (after one warm-up); p95 = nearest rank; times are wall clock per plan")
    print(
        f"# machine: {platform.node()}, nproc {os.cpu_count()}, {platform.machine()}, "
        f"Python {platform.python_version()}, PostgreSQL {server_version} at {redact(url)}"
    )
    print(f"# peer: {peer[0] if peer else 'none'} ({peer_label})")
    print()
    header = ("tool", "what it does", "median ms", "p95 ms", "round trips", "statements planned")
    table = [header] + [
        (
            r.tool,
            r.what,
            f"{r.median_ms:.1f}" if r.median_ms is not None else "-",
            f"{r.p95_ms:.1f}" if r.p95_ms is not None else "-",
            r.round_trips,
            r.statements,
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in table[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    for note in notes:
        print()
        print(note)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--database-url",
        default=os.environ.get("DATAFLOW_BENCH_DATABASE_URL") or DEFAULT_URL,
        help="server to create scratch databases on (default: $DATAFLOW_BENCH_DATABASE_URL, else "
        f"{DEFAULT_URL}; the embedded server when unreachable)",
    )
    p.add_argument("--tables", type=int, default=200)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument(
        "--peer-venv",
        default=str(DEFAULT_PEER_VENV),
        help="virtualenv for the peer tool (created and filled with pip when missing)",
    )
    p.add_argument(
        "--peer",
        choices=("auto", "migra", "alembic"),
        default="auto",
        help="peer tool: migra when installable, else alembic (default auto)",
    )
    p.add_argument("--no-peer", action="store_true", help="measure DataFlow only")
    p.add_argument("--show-sql", action="store_true", help="also print every tool's planned statements")
    args = p.parse_args(argv)
    if args.tables < 2 or args.runs < 1:
        p.error("--tables must be >= 2 and --runs >= 1")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
