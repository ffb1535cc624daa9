#!/usr/bin/env python3
"""Plan and apply speed from 10 to 5,000 tables: DataFlow against migra, schemainspect, psql and kailash.

For each size (``--sizes``, default 10 100 1000) a deterministic schema of model classes is built
(~15 columns a table, btree, partial and GIN indexes, unique constraints, foreign keys, checks), and:

1. **Whole-schema apply**: ``DataFlow.initialize()`` on an empty database, against ``psql -X -q
   -v ON_ERROR_STOP=1 -f`` (autocommit) loading DataFlow's own planned SQL for that schema into another empty
   database (the floor). One fresh database per sample.
2. **In-sync plan**: ``DataFlow.auto_migrate(dry_run=True, interactive=False)`` on a database the
   same models were applied to (a fresh connection per call, as an application does), and the engine's
   ``reconcile(..., dry_run)`` on an open connection; migra diffing two databases of the same schema;
   kailash-dataflow's ``auto_migrate(dry_run=True, interactive=False)`` with the same models.
3. **Plan with 2% of the tables changed** (add a column, change a default, add an index, drop a
   column, in turn), the same tools; plus ``schemainspect.get_inspector`` and DataFlow's ``introspect``
   of the whole schema alone.

Every tool runs in its own process (peers in their own virtualenvs under ``bench/.venvs``, created
with pip on first use), timed inside it; the process's peak RSS comes from ``os.wait4``. A tool that
plans operations on an in-sync database is marked WRONG. Scratch databases are dropped at the end,
also on failure. Nothing is asserted about timings: this only measures.

Usage::

    .venv/bin/python bench/plan_speed.py [--sizes 10 100 1000] [--runs N] [--peers migra,...]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from rich.console import Console

from common import reachable_server, redact, with_database

BENCH = Path(__file__).resolve().parent
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
VENVS = BENCH / ".venvs"
OWNER = "bench"
CONFIG = {"owner": OWNER, "max_risk_level": "HIGH"}
DB_PREFIX = "dataflow_bench_speed_"
ALL_PEERS = ("migra", "schemainspect", "psql", "kailash")
CHANGED_FRACTION = 0.02
COLUMNS = 15  # per table, the implicit id included
TARGET_IN_SYNC_MS, TARGET_PLAN_RATIO, TARGET_APPLY_RATIO = 20.0, 3.0, 1.25

# --------------------------------------------------------------------------- the schema, as a spec

# (python type, max_length, possible defaults; None = nullable without default)
_FILLERS: tuple[tuple[str, int | None, tuple[Any, ...]], ...] = (
    ("str", None, (None, None, "", "n/a")),
    ("str", 32, (None, "x")),
    ("str", 255, (None, None, "unknown")),
    ("int", None, (None, 0, -1)),
    ("Decimal", None, (None, "0", "1.50")),
    ("bool", None, (None, False, True)),
    ("datetime", None, (None,)),
    ("dict", None, (None,)),
)
PY_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "bool": bool,
    "Decimal": Decimal,
    "datetime": datetime,
    "dict": dict,
}


def table_name(i: int) -> str:
    return f"bench_t{i:04d}"


def _fk_field(name: str, ref: str, rng: random.Random) -> dict[str, Any]:
    nullable = rng.random() < 0.7
    actions = ("NO ACTION", "CASCADE", "SET NULL") if nullable else ("NO ACTION", "CASCADE", "RESTRICT")
    return {
        "name": name,
        "type": "int",
        "default": None if nullable else "<none>",
        "references": f"{ref}.id",
        "on_delete": rng.choice(actions),
    }


def build_spec(n_tables: int, seed: int = 12) -> list[dict[str, Any]]:
    """A deterministic, varied schema of ``n_tables`` tables as plain data (models are made from it)."""
    rng = random.Random(seed)
    tables = []
    for i in range(n_tables):
        fields: list[dict[str, Any]] = [
            {
                "name": "code",
                "type": "str",
                "max_length": 64,
                "default": "<none>",
                "unique": rng.random() < 0.5,
            },
            {"name": "created_at", "type": "datetime", "default": "<none>", "index": True},
            {"name": "active", "type": "bool", "default": True},
            {"name": "amount", "type": "Decimal", "default": "0"},
            {"name": "payload", "type": "dict", "default": None},
        ]
        if rng.random() < 0.7:
            fields[3]["check"] = "amount >= 0"
        for k in range(min(i, rng.choice((0, 1, 1, 2)))):
            fields.append(_fk_field(f"ref{k}_id", table_name(rng.randrange(0, i)), rng))
        k = 0
        while len(fields) + 1 < COLUMNS:
            typ, max_length, defaults = rng.choice(_FILLERS)
            fields.append(
                {"name": f"c{k:02d}", "type": typ, "max_length": max_length, "default": rng.choice(defaults)}
            )
            k += 1
        partial = rng.random() < 0.5
        gin = rng.random() < 0.4
        if fields[5:] and fields[5].get("references") and not (partial and gin):
            fields[5]["index"] = True
        tables.append({"name": table_name(i), "fields": fields, "partial": partial, "gin": gin})
    return tables


def change_spec(
    spec: list[dict[str, Any]], fraction: float = CHANGED_FRACTION
) -> tuple[list, dict[str, int]]:
    """``fraction`` of the tables, spread evenly, get one change each, four kinds in turn."""
    out = json.loads(json.dumps(spec))
    count = max(1, round(len(out) * fraction))
    step = max(1, len(out) // count)
    kinds = {"add column": 0, "change default": 0, "add index": 0, "drop column": 0}
    for k, idx in enumerate(range(0, len(out), step)):
        if k >= count:
            break
        fields = out[idx]["fields"]
        kind = list(kinds)[k % 4]
        if kind == "add column":
            fields.append({"name": "note", "type": "str", "default": None})
        elif kind == "change default":
            next(f for f in fields if f["name"] == "amount")["default"] = "1"
        elif kind == "add index":
            next(f for f in fields if f["name"] == "code")["index"] = True
        else:  # the last filler column, never indexed or constrained
            fields.remove([f for f in fields if f["name"].startswith("c") and f["name"] != "code"][-1])
        kinds[kind] += 1
    return out, kinds


def _default(f: dict[str, Any]) -> Any:
    value = f["default"]
    return Decimal(value) if f["type"] == "Decimal" and isinstance(value, str) else value


def dataflow_models(spec: list[dict[str, Any]]) -> list[type]:
    """DataFlow model classes for ``spec`` (``Field`` options, ``__dataflow__`` for the extra indexes)."""
    from dataflow import Field

    classes = []
    breadth = breadth_objects(len(spec))
    for index, t in enumerate(spec):
        annotations: dict[str, Any] = {}
        ns: dict[str, Any] = {"__module__": __name__}
        for f in t["fields"]:
            annotations[f["name"]] = PY_TYPES[f["type"]]
            opts: dict[str, Any] = {}
            if f["default"] != "<none>":
                opts["default"] = _default(f)
            for key in ("max_length", "unique", "index", "references", "on_delete", "check"):
                if f.get(key):
                    opts[key] = f[key]
            if opts:
                ns[f["name"]] = Field(**opts)
        pg: dict[str, Any] = {}
        if t["partial"]:
            pg["partial_indexes"] = [{"fields": ["created_at"], "condition": "active AND amount > 0"}]
        if t["gin"]:
            pg["jsonb_gin_indexes"] = ["payload"]
        options: dict[str, Any] = {"table": t["name"], "postgresql": pg}
        extra = breadth.get(index, {})
        for name, (annotation, opts) in extra.get("fields", {}).items():
            annotations[name] = annotation
            ns[name] = Field(**opts)
        options.update(extra.get("options", {}))
        if extra.get("doc"):
            ns["__doc__"] = extra["doc"]
        ns["__annotations__"] = annotations
        ns["__dataflow__"] = options
        classes.append(type(t["name"].title().replace("_", ""), (), ns))
    return classes


# --------------------------------------------------------------------------- breadth: beyond tables

# Enum types some tables' columns use (one per this many tables, at least one).
ENUM_EVERY = 10
ENUM_TYPES = {
    "BenchStatus": ("draft", "active", "archived"),
    "BenchPriority": ("low", "normal", "high", "urgent"),
}


def _enum_classes() -> dict[str, type]:
    import enum

    return {name: enum.Enum(name, {v.upper(): v for v in values}) for name, values in ENUM_TYPES.items()}


ENUMS = _enum_classes()


def breadth_objects(table_count: int) -> dict[int, dict[str, Any]]:
    """Objects beyond tables in the generated schema, as model options by table index: what each model of
    :func:`dataflow_models` gets on top of its columns and indexes.

    - ``fields``: extra fields (name → annotation, ``Field`` options); enum columns every ENUM_EVERY tables;
    - ``options``: ``__dataflow__`` keys merged into the model's: the first table asks for ``pg_trgm`` and
      gets a trigram GIN index (``gin_trgm_ops``) and a sequence of its own; every fifth table a comment;
    - ``doc``: the model docstring (its table comment).

    - views: every VIEW_EVERY-th table a view over its ``code`` and ``amount`` (and every
      MATVIEW_EVERY-th a materialized view of totals); a trigger function (on the first table) and a
      BEFORE trigger executing it every TRIGGER_EVERY tables.

    migra sees them all too: it diffs databases DataFlow applied.
    """
    objects: dict[int, dict[str, Any]] = {}
    for i in range(table_count):
        entry: dict[str, Any] = {"fields": {}, "options": {}, "doc": None}
        if i % ENUM_EVERY == 0:
            enum_cls = list(ENUMS.values())[(i // ENUM_EVERY) % len(ENUMS)]
            first = next(iter(enum_cls))  # type: ignore[var-annotated]
            entry["fields"]["state"] = (enum_cls, {"default": first})
        if i % 5 == 0:
            entry["doc"] = f"Bench table {i}: generated for the plan-speed benchmark."
            entry["fields"]["label"] = (str, {"default": "", "comment": "a commented column"})
        if i == 0:
            entry["options"] = {
                "extensions": ["pg_trgm"],
                "indexes": [
                    {
                        "name": "bench_code_trgm",
                        "fields": ["code"],
                        "method": "gin",
                        "opclasses": ["gin_trgm_ops"],
                    }
                ],
                "sequences": [{"name": "bench_invoice_no", "start": 1000}],
            }
        name = table_name(i)
        views: dict[str, Any] = {}
        if i % VIEW_EVERY == 0:
            views[f"{name}_active"] = f"SELECT code, amount FROM {name} WHERE active"
        if i % MATVIEW_EVERY == MATVIEW_EVERY // 2:
            views[f"{name}_totals"] = {
                "query": f"SELECT active, sum(amount) AS total FROM {name} GROUP BY active",
                "materialized": True,
            }
        if views:
            entry["options"]["views"] = views
        if i == 0:
            entry["options"]["functions"] = [
                {
                    "name": "bench_touch",
                    "returns": "trigger",
                    "language": "plpgsql",
                    "body": "BEGIN NEW.amount := coalesce(NEW.amount, 0); RETURN NEW; END",
                }
            ]
        if i % TRIGGER_EVERY == 0:
            entry["options"]["triggers"] = [
                {
                    "name": f"{name}_touch",
                    "timing": "BEFORE",
                    "events": ["INSERT", "UPDATE"],
                    "function": "bench_touch",
                }
            ]
        if any(entry.values()):
            objects[i] = entry
    return objects


VIEW_EVERY, MATVIEW_EVERY, TRIGGER_EVERY = 20, 100, 25


def make_dataflow(spec: list[dict[str, Any]], dsn: str) -> Any:
    """A DataFlow instance with the models of ``spec``, printing nowhere."""
    from dataflow import DataFlow

    db = DataFlow(dsn, migration_config=dict(CONFIG), console=Console(file=io.StringIO()))
    for cls in dataflow_models(spec):
        db.model(cls)
    return db


# --------------------------------------------------------------------------- DataFlow workers


def _ops(migrations: list[Any]) -> int:
    return sum(len(m.operations) for m in migrations)


async def _timed(fn: Any, runs: int) -> tuple[list[float], Any]:
    result = await fn()  # warm-up, untimed
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        result = await fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples, result


async def worker_apply(args: argparse.Namespace) -> dict[str, Any]:
    """One whole-schema apply: ``initialize()`` on an empty database."""
    db = make_dataflow(build_spec(args.size), args.dsn)
    db.schema()  # building the models is not part of the apply
    start = time.perf_counter()
    await db.initialize()
    return {"samples": [(time.perf_counter() - start) * 1000]}


async def worker_sql(args: argparse.Namespace) -> dict[str, Any]:
    """The whole-schema SQL DataFlow plans against an empty database, for ``psql -f``."""
    from dataflow.reconcile import plan

    db = make_dataflow(build_spec(args.size), args.dsn)
    conn = await asyncpg.connect(args.dsn)
    try:
        migration, _ = await plan(conn, db.schema(), db.owner, db.options)
    finally:
        await conn.close()
    Path(args.out).write_text("".join(s.rstrip().rstrip(";") + ";\n" for s in migration.sql_up))
    return {"statements": len(migration.sql_up)}


async def worker_plan(args: argparse.Namespace) -> dict[str, Any]:
    """Every DataFlow plan measure on one database that holds the base schema."""
    from dataflow.introspect import introspect
    from dataflow.reconcile import reconcile

    base = build_spec(args.size)
    changed, _ = change_spec(base)
    out: dict[str, Any] = {}
    for label, spec in (("in_sync", base), ("changed", changed)):
        db = make_dataflow(spec, args.dsn)

        async def library(db: Any = db) -> int:
            _, migrations = await db.auto_migrate(dry_run=True, interactive=False)
            return _ops(migrations)

        samples, ops = await _timed(library, args.runs)
        out[f"library_{label}"] = {"samples": samples, "ops": ops}
        conn = await asyncpg.connect(args.dsn)
        try:
            desired = db.schema()
            options = replace(db.options, dry_run=True)

            async def engine(conn: Any = conn, desired: Any = desired, options: Any = options) -> int:
                result = await reconcile(conn, args.dsn, desired, OWNER, options)
                return len(result.migration.operations) if result.migration else 0

            samples, ops = await _timed(engine, args.runs)
            out[f"engine_{label}"] = {"samples": samples, "ops": ops}
            if label == "in_sync":

                async def inspect_all(conn: Any = conn) -> None:
                    await introspect(conn, "public")

                samples, _ = await _timed(inspect_all, args.runs)
                out["introspect"] = {"samples": samples}
        finally:
            await conn.close()
    return out


WORKERS = {"apply": worker_apply, "sql": worker_sql, "plan": worker_plan}

# --------------------------------------------------------------------------- peers (in their own venvs)

_MIGRA_RUNNER = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
from importlib.metadata import version
from sqlbag import S

mode, runs, dsns = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def timed(fn):
    result = fn()
    samples = []
    for _ in range(runs):
        t = time.perf_counter(); result = fn(); samples.append((time.perf_counter() - t) * 1000)
    return samples, result
if mode == "schemainspect":
    from schemainspect import get_inspector
    with S(dsns[0]) as s:
        samples, _ = timed(lambda: get_inspector(s))
    out = {"samples": samples, "version": version("schemainspect")}
else:
    from migra import Migration
    def plan(s0, s1):
        m = Migration(s0, s1); m.set_safety(False); m.add_all_changes()
        return [x for x in m.statements if x.strip()]
    with S(dsns[0]) as s0, S(dsns[1]) as s1:
        samples, stmts = timed(lambda: plan(s0, s1))
    out = {"samples": samples, "ops": len(stmts), "version": version("migra")}
print(json.dumps(out))
"""

_KAILASH_RUNNER = r"""
import asyncio, contextlib, json, logging, sys, time
from datetime import datetime
from decimal import Decimal
from typing import Optional
from importlib.metadata import version
logging.disable(logging.CRITICAL)
from dataflow import DataFlow

dsn, spec_file, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
TYPES = {"str": str, "int": int, "bool": bool, "Decimal": Decimal, "datetime": datetime, "dict": dict}
db = DataFlow(dsn, auto_migrate=False, enable_model_persistence=False, cache_enabled=False, monitoring=False,
              pool_size=2, pool_max_overflow=1)
for t in json.load(open(spec_file)):
    ann, ns = {}, {"__tablename__": t["name"]}
    for f in t["fields"]:
        tp = TYPES[f["type"]]
        if f["default"] == "<none>":
            ann[f["name"]] = tp
        elif f["default"] is None:
            ann[f["name"]] = Optional[tp]; ns[f["name"]] = None
        else:
            ann[f["name"]] = tp
            ns[f["name"]] = Decimal(f["default"]) if f["type"] == "Decimal" else f["default"]
    ns["__annotations__"] = ann
    db.model(type(t["name"].title().replace("_", ""), (), ns))

async def main():
    await db.initialize()
    async def plan():
        with contextlib.redirect_stdout(sys.stderr):  # its preview
            ok, migrations = await db.auto_migrate(dry_run=True, interactive=False)
        if not ok:
            raise SystemExit("auto_migrate(dry_run=True) reported failure")
        return sum(len(m.operations) for m in migrations)
    ops = await plan()
    samples = []
    for _ in range(runs):
        t = time.perf_counter(); ops = await plan(); samples.append((time.perf_counter() - t) * 1000)
    return {"samples": samples, "ops": ops, "version": version("kailash-dataflow")}
print(json.dumps(asyncio.run(main())))
"""

VENV_PACKAGES = {
    "migra": (
        ("migra", "sqlalchemy<2", "psycopg2-binary", "matplotlib"),
        "import migra, schemainspect, matplotlib",
    ),
    "kailash": (("kailash-dataflow[postgres-sync]==2.20.1",), "import dataflow.core.engine, psycopg2"),
}


def venv_python(name: str) -> Path | None:
    """``bench/.venvs/<name>``'s python with its packages, installing them with pip when missing."""
    packages, check = VENV_PACKAGES[name]
    py = VENVS / name / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", check], capture_output=True).returncode == 0:
        return py
    print(f"# installing {' '.join(packages)} into {VENVS / name} ...", file=sys.stderr)
    if not py.exists() and subprocess.run([sys.executable, "-m", "venv", str(VENVS / name)]).returncode:
        return None
    pip = [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *packages]
    r = subprocess.run(pip, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"# pip could not install {name}: {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return py if subprocess.run([str(py), "-c", check], capture_output=True).returncode == 0 else None


# --------------------------------------------------------------------------- processes, databases


@dataclass
class Proc:
    returncode: int
    stdout: str
    stderr: str
    wall_ms: float
    rss_mb: float


def run_process(cmd: list[str], timeout: float, cwd: str | None = None) -> Proc:
    """Run ``cmd``, returning its output, wall time and peak RSS (``os.wait4``); killed after ``timeout``."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                p.kill()
                pid, status, usage = os.wait4(p.pid, 0)
                break
            time.sleep(0.005)
        wall = (time.perf_counter() - start) * 1000
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        code = -9 if time.perf_counter() > deadline and p.returncode < 0 else p.returncode
        return Proc(code, out.read(), err.read(), wall, usage.ru_maxrss / 1024)


def last_json(proc: Proc, what: str) -> dict[str, Any]:
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        raise RuntimeError(f"{what}: {'timed out' if proc.returncode == -9 else tail[0][:200]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_worker(mode: str, args: argparse.Namespace, *extra: str) -> Proc:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", mode, *extra]
    return run_process(cmd, args.timeout)


class Databases:
    """Scratch databases of this run, all dropped by ``drop_all``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.run_id = uuid.uuid4().hex[:8]
        self.created: list[str] = []

    async def create(self, label: str) -> str:
        name = f"{DB_PREFIX}{self.run_id}_{label}_{len(self.created)}"
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.created.append(name)
        return with_database(self.url, name)

    async def drop(self, dsn: str) -> None:
        name = urlsplit(dsn).path.lstrip("/")  # the embedded server's DSN has a path in its query too
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        self.created.remove(name)

    async def drop_all(self) -> None:
        for name in list(self.created):
            await self.drop(with_database(self.url, name))


# --------------------------------------------------------------------------- measuring one size


@dataclass
class Row:
    size: int
    tool: str
    measure: str  # "in-sync plan", "2% changed plan", "inspect", "apply"
    samples: list[float] = field(default_factory=list)
    ops: int | None = None
    rss_mb: float | None = None
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def verdict(self) -> str:
        if self.note:
            return self.note
        if self.measure == "in-sync plan" and self.ops:
            return f"WRONG: plans {self.ops} on an in-sync database"
        if self.measure == "2% changed plan" and self.ops == 0:
            return "WRONG: plans nothing"
        return "ok"


async def measure_size(n: int, args: argparse.Namespace, dbs: Databases, peers: set[str]) -> list[Row]:
    rows: list[Row] = []
    base = build_spec(n)
    changed, kinds = change_spec(base)
    runs = args.runs or (10 if n <= 100 else 5 if n <= 1000 else 2)
    apply_runs = args.apply_runs or (3 if n <= 1000 else 1)
    print(f"# {n} tables: {sum(kinds.values())} changed, {runs} runs, {apply_runs} applies", file=sys.stderr)

    sql_file = Path(tempfile.mkstemp(prefix=f"plan_speed_{n}_", suffix=".sql")[1])
    try:
        empty = await dbs.create(f"{n}_sql")
        statements = last_json(run_worker("sql", args, str(n), empty, str(sql_file)), "DataFlow SQL")
        await dbs.drop(empty)
        df_apply = Row(n, "DataFlow", "apply", ops=statements["statements"], rss_mb=0)
        psql_apply = Row(n, "psql -f", "apply", ops=statements["statements"], rss_mb=0)
        kept: list[str] = []  # the first two DataFlow-applied databases: the current one and its twin
        loaded: list[str] = []  # one loaded by psql, without DataFlow's ledger, for kailash
        for i in range(max(apply_runs, 2)):
            dsn = await dbs.create(f"{n}_df")
            proc = run_worker("apply", args, str(n), dsn)
            if i < apply_runs:
                df_apply.samples += last_json(proc, "DataFlow apply")["samples"]
                df_apply.rss_mb = max(df_apply.rss_mb or 0, proc.rss_mb)
            if len(kept) < 2:
                kept.append(dsn)
            else:
                await dbs.drop(dsn)
            if peers & {"psql", "kailash"} and (i < apply_runs or not loaded):
                dsn = await dbs.create(f"{n}_psql")
                cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(sql_file)]
                proc = run_process(cmd, args.timeout)
                if proc.returncode != 0:
                    raise RuntimeError(f"psql -f: {proc.stderr.strip()[:300]}")
                psql_apply.samples.append(proc.wall_ms)
                psql_apply.rss_mb = max(psql_apply.rss_mb or 0, proc.rss_mb)
                if not loaded and "kailash" in peers:
                    loaded.append(dsn)
                else:
                    await dbs.drop(dsn)
        rows.append(df_apply)
        if "psql" in peers:
            psql_apply.samples = psql_apply.samples[:apply_runs]
            rows.append(psql_apply)
    finally:
        sql_file.unlink(missing_ok=True)
    cur, twin = kept
    target = await dbs.create(f"{n}_tgt")  # the changed schema, for migra to diff against
    last_json(run_worker("apply-changed", args, str(n), target), "DataFlow apply (changed)")

    proc = run_worker("plan", args, str(n), cur, "--runs", str(runs))
    out = last_json(proc, "DataFlow plan")
    for key, tool, measure in (
        ("library_in_sync", "DataFlow", "in-sync plan"),
        ("engine_in_sync", "DataFlow engine", "in-sync plan"),
        ("library_changed", "DataFlow", "2% changed plan"),
        ("engine_changed", "DataFlow engine", "2% changed plan"),
        ("introspect", "DataFlow introspect", "inspect"),
    ):
        rows.append(Row(n, tool, measure, out[key]["samples"], out[key].get("ops"), proc.rss_mb))
    rows += peer_rows(n, args, peers, runs, cur, twin, target, changed, loaded[0] if loaded else cur)
    return rows


def peer_rows(
    n: int,
    args: argparse.Namespace,
    peers: set[str],
    runs: int,
    cur: str,
    twin: str,
    target: str,
    changed: list,
    plain: str,
) -> list[Row]:
    """migra diffs ``cur`` against ``twin`` / ``target``; kailash plans against ``plain`` (no DataFlow ledger:
    kailash's own tracking table is also named ``dataflow_migrations``)."""
    rows: list[Row] = []
    migra_py = venv_python("migra") if peers & {"migra", "schemainspect"} else None
    runner = Path(tempfile.mkstemp(suffix="_migra_runner.py")[1])
    runner.write_text(_MIGRA_RUNNER)
    try:
        jobs = []
        if "schemainspect" in peers:
            jobs.append(("schemainspect", "inspect", ["schemainspect", str(runs), cur]))
        if "migra" in peers:
            jobs.append(("migra", "in-sync plan", ["migra", str(runs), cur, twin]))
            jobs.append(("migra", "2% changed plan", ["migra", str(runs), cur, target]))
        for tool, measure, argv in jobs:
            if migra_py is None:
                rows.append(Row(n, tool, measure, note="not run: could not install it (see stderr)"))
                continue
            proc = run_process([str(migra_py), str(runner), *argv], args.timeout)
            rows.append(_peer_row(n, tool, measure, proc))
    finally:
        runner.unlink()
    if "kailash" in peers:
        rows += kailash_rows(n, args, runs, plain, changed)
    return rows


def _peer_row(n: int, tool: str, measure: str, proc: Proc) -> Row:
    try:
        out = last_json(proc, tool)
    except RuntimeError as exc:
        return Row(n, tool, measure, rss_mb=proc.rss_mb, note=f"failed: {exc}")
    return Row(n, f"{tool} {out['version']}", measure, out["samples"], out.get("ops"), proc.rss_mb)


def kailash_rows(n: int, args: argparse.Namespace, runs: int, cur: str, changed: list) -> list[Row]:
    """kailash-dataflow's dry-run ``auto_migrate``, at most 3 runs (it is slow), in a scratch cwd."""
    py = venv_python("kailash")
    if py is None:
        return [
            Row(n, "kailash-dataflow", m, note="not run: could not install it") for m in ("in-sync plan",)
        ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="plan_speed_kailash_") as tmp:
        runner = Path(tmp) / "runner.py"
        runner.write_text(_KAILASH_RUNNER)
        for measure, spec in (("in-sync plan", build_spec(n)), ("2% changed plan", changed)):
            spec_file = Path(tmp) / "spec.json"
            spec_file.write_text(json.dumps(spec))
            proc = run_process(
                [str(py), str(runner), cur, str(spec_file), str(min(runs, 3))], args.kailash_timeout, cwd=tmp
            )
            rows.append(_peer_row(n, "kailash-dataflow", measure, proc))
    return rows


# --------------------------------------------------------------------------- reporting


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def print_table(headers: tuple[str, ...], body: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [headers, *body]) for i in range(len(headers))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in body:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


def find(rows: list[Row], size: int, tool: str, measure: str) -> Row | None:
    for r in rows:
        if r.size == size and r.tool.split(" ")[0] == tool and r.measure == measure and r.samples:
            return r
    return None


def ratios(rows: list[Row], sizes: list[int]) -> list[tuple[str, ...]]:
    """Per size: the three targets of the issue, with MET / NOT MET where both sides were measured."""
    body = []
    for n in sizes:
        in_sync = find(rows, n, "DataFlow", "in-sync plan")
        engine = next(
            (r for r in rows if r.size == n and r.tool == "DataFlow engine" and r.measure == "in-sync plan"),
            None,
        )
        plan = find(rows, n, "DataFlow", "2% changed plan")
        engine_plan = next(
            (
                r
                for r in rows
                if r.size == n and r.tool == "DataFlow engine" and r.measure == "2% changed plan"
            ),
            None,
        )
        inspect = find(rows, n, "schemainspect", "inspect")
        apply, floor = find(rows, n, "DataFlow", "apply"), find(rows, n, "psql", "apply")
        best = min(r.median for r in (in_sync, engine) if r and r.median is not None) if in_sync else None
        # like (1), the engine on an open connection counts: schemainspect's inspection is timed that way too
        r2_library = _ratio(inspect, plan)
        r2 = _ratio(inspect, engine_plan) or r2_library
        r3 = apply.median / floor.median if apply and floor and apply.median and floor.median else None
        body.append(
            (
                f"{n:,}",
                f"{fmt(in_sync.median if in_sync else None)} / {fmt(engine.median if engine else None)}",
                _met(best is not None and best <= TARGET_IN_SYNC_MS, best),
                f"{fmt(r2_library, 2)}× / {fmt(r2, 2)}×",
                _met(r2 is not None and r2 >= TARGET_PLAN_RATIO, r2),
                fmt(r3, 2) + "×",
                _met(r3 is not None and r3 <= TARGET_APPLY_RATIO, r3),
            )
        )
    return body


def _ratio(slow: Row | None, fast: Row | None) -> float | None:
    return slow.median / fast.median if slow and fast and slow.median and fast.median else None


def _met(ok: bool, value: float | None) -> str:
    return "-" if value is None else "MET" if ok else "NOT MET"


async def describe_machine(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores, {mem:.0f} GiB, {platform.machine()}, Python {platform.python_version()}, "
        f"PostgreSQL {version} at {redact(url)}"
    )


def report(rows: list[Row], sizes: list[int], machine: str) -> None:
    print(f"# plan_speed: {machine}")
    print(f"# {COLUMNS} columns a table; {CHANGED_FRACTION:.0%} of the tables changed; times in ms per call")
    print()
    body = [
        (
            f"{r.size:,}",
            r.tool,
            r.measure,
            str(len(r.samples)) if r.samples else "-",
            fmt(r.median),
            fmt(max(r.samples) if r.samples else None),
            "-" if r.ops is None else f"{r.ops:,}",
            r.verdict,
            fmt(r.rss_mb, 0),
        )
        for r in rows
    ]
    headers = (
        "tables",
        "tool",
        "measure",
        "runs",
        "median ms",
        "max ms",
        "ops planned",
        "correct",
        "peak RSS MB",
    )
    print_table(headers, body)
    print()
    print(
        f"# targets: (1) in-sync check <= {TARGET_IN_SYNC_MS:.0f} ms (library / engine on an open connection; "
        f"the faster counts), (2) schemainspect inspection / DataFlow 2% plan (library / engine; the engine "
        f"counts) >= {TARGET_PLAN_RATIO:.0f}x, "
        f"(3) DataFlow apply / psql -f <= {TARGET_APPLY_RATIO}x; the issue sets them at 1,000 tables"
    )
    print_table(
        (
            "tables",
            "in-sync ms (library / engine)",
            "(1)",
            "inspect / plan (library / engine)",
            "(2)",
            "apply / psql",
            "(3)",
        ),
        ratios(rows, sizes),
    )


_PLOT = r"""
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
data, path = json.load(open(sys.argv[1])), sys.argv[2]
fig, ax = plt.subplots(figsize=(9, 6))
for label, points in sorted(data["lines"].items()):
    xs, ys = zip(*sorted(points))
    style = "-" if label.startswith("DataFlow") else "--"
    ax.plot(xs, [y / 1000 for y in ys], style, marker="o", label=label)
ax.set_xscale("log"); ax.set_yscale("log")
ax.set_xlabel("tables (~15 columns each)"); ax.set_ylabel("seconds (median)")
ax.set_title("Plan and apply time against schema size")
ax.grid(True, which="both", alpha=0.3); ax.legend(fontsize=8)
fig.text(0.01, 0.01, data["machine"], fontsize=6)
fig.tight_layout(); fig.savefig(path, dpi=120)
"""


def plot(rows: list[Row], machine: str, path: str) -> None:
    """A log-log plot of the medians, drawn by matplotlib in the migra venv (not a project dependency)."""
    py = venv_python("migra")
    if py is None:
        print("# no plot: matplotlib could not be installed", file=sys.stderr)
        return
    lines: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        if r.median is not None and r.tool != "DataFlow engine":
            lines.setdefault(f"{r.tool.split(' ')[0]}: {r.measure}", []).append((r.size, r.median))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "data.json").write_text(json.dumps({"lines": lines, "machine": machine}))
        (Path(tmp) / "plot.py").write_text(_PLOT)
        r = subprocess.run([str(py), str(Path(tmp) / "plot.py"), str(Path(tmp) / "data.json"), path])
    print(f"# plot: {path}" if r.returncode == 0 else "# plot failed", file=sys.stderr)


# --------------------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> int:
    url = await reachable_server(args.database_url)
    if url is None:
        from dataflow.embedded import embedded_dsn

        url = embedded_dsn()
    peers = set() if args.no_peers else set(args.peers)
    if "psql" in peers and shutil.which("psql") is None:
        print("# psql not found: the apply floor is not measured", file=sys.stderr)
        peers.discard("psql")
    dbs = Databases(url)
    args.run_id = dbs.run_id
    rows: list[Row] = []
    try:
        for n in args.sizes:
            rows += await measure_size(n, args, dbs, peers)
    finally:
        await dbs.drop_all()
    machine = await describe_machine(url)
    report(rows, args.sizes, machine)
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    if args.plot:
        plot(rows, machine, args.plot)
    return 0


async def worker_main(argv: list[str]) -> int:
    """``--worker MODE SIZE DSN [OUT] [--runs N]``: one DataFlow measure, printed as one JSON line."""
    p = argparse.ArgumentParser()
    p.add_argument("--worker", required=True)
    p.add_argument("size", type=int)
    p.add_argument("dsn")
    p.add_argument("out", nargs="?")
    p.add_argument("--runs", type=int, default=1)
    args = p.parse_args(argv)
    if args.worker == "apply-changed":
        db = make_dataflow(change_spec(build_spec(args.size))[0], args.dsn)
        await db.initialize()
        result: dict[str, Any] = {}
    else:
        result = await WORKERS[args.worker](args)
    print(json.dumps(result))
    return 0


def _peers(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in names if v not in ALL_PEERS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(ALL_PEERS)}"
        )
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument(
        "--database-url",
        default=os.environ.get("DATAFLOW_BENCH_DATABASE_URL") or DEFAULT_URL,
        help=f"server for the scratch databases (default $DATAFLOW_BENCH_DATABASE_URL, else {DEFAULT_URL})",
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000], help="tables (also 5000)")
    p.add_argument(
        "--runs", type=int, default=0, help="timed runs per plan (default 10, 5 at 1,000+, 2 at 5,000+)"
    )
    p.add_argument(
        "--apply-runs", type=int, default=0, help="whole-schema applies (default 3, 1 above 1,000)"
    )
    p.add_argument(
        "--peers", type=_peers, default=list(ALL_PEERS), help="comma-separated: " + ",".join(ALL_PEERS)
    )
    p.add_argument("--no-peers", action="store_true", help="measure DataFlow only")
    p.add_argument("--plot", metavar="PATH", help="write a log-log plot (e.g. docs/plan-speed.png)")
    p.add_argument("--json", metavar="PATH", help="also write every sample as JSON")
    p.add_argument("--timeout", type=float, default=1800, help="seconds for one tool's process")
    p.add_argument("--kailash-timeout", type=float, default=900, help="seconds for one kailash process")
    args = p.parse_args(argv)
    if min(args.sizes) < 2 or args.runs < 0 or args.apply_runs < 0:
        p.error("--sizes must be >= 2, --runs and --apply-runs >= 1")
    return args


if __name__ == "__main__":
    if "--worker" in sys.argv:
        sys.exit(asyncio.run(worker_main(sys.argv[1:])))
    sys.exit(asyncio.run(main(parse_args())))
