"""Adopt an existing database: import it as models, baseline it, then change one model.

Run with `make adopt-demo` or `python examples/adopt/adopt.py` (the database is ``DATABASE_URL``, else
the embedded PostgreSQL under ./.dataflow). It starts from an empty ``public`` schema, loads
legacy.sql as a team's hand-grown database, and then runs only ``dataflow`` commands, as a person would.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

import asyncpg

from dataflow.embedded import resolve_dsn

HERE = Path(__file__).resolve().parent


def dataflow(*args: str) -> str:
    """Run ``dataflow ARGS`` as a person would, show its output, and return it (stdout)."""
    print(f"\n$ dataflow {' '.join(args)}", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "dataflow.cli", *args], capture_output=True, text=True, check=False
    )
    print(done.stdout + done.stderr, end="", flush=True)
    if done.returncode != 0:
        raise SystemExit(f"dataflow {args[0]} exited {done.returncode}")
    return done.stdout


async def load_legacy(dsn: str) -> None:
    """A fresh ``public`` schema holding legacy.sql (trusted example data: one simple-query script)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        await conn.execute("CREATE SCHEMA public")
        await conn.execute((HERE / "legacy.sql").read_text())
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: $DATABASE_URL, else the embedded server")
    parser.add_argument("--workdir", type=Path, default=HERE / "out", help="where models.py is written")
    args = parser.parse_args()
    dsn = resolve_dsn(args.database_url)
    args.workdir.mkdir(parents=True, exist_ok=True)
    models = args.workdir / "models.py"

    print("== 1. a database that already exists (legacy.sql)")
    asyncio.run(load_legacy(dsn))

    print("\n== 2. import it as models; what DataFlow does not manage is listed, and left alone")
    dataflow("import", "--database-url", dsn, "-o", str(models))
    print(models.read_text())

    print("== 3. the contract: planning the import against the same database is empty")
    dataflow("plan", str(models), "--database-url", dsn, "--exit-code")

    print("\n== 4. baseline: record it in the ledger and claim the tables; no DDL")
    dataflow("baseline", str(models), "--database-url", dsn)

    print("\n== 5. after adoption the models rule: one new field, exactly one change")
    text = models.read_text()
    models.write_text(text.replace("class Customer:\n", "class Customer:\n    loyalty_points: int = 0\n", 1))
    dataflow("plan", str(models), "--database-url", dsn)
    dataflow("apply", str(models), "--database-url", dsn, "--auto-confirm")
    dataflow("plan", str(models), "--database-url", dsn, "--exit-code")

    print("\n== 6. history")
    dataflow("history", "--database-url", dsn)


if __name__ == "__main__":
    main()
