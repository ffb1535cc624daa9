"""`dataflow plan --exit-code`: 0 in sync, 3 changes pending, 1 conflict, 2 error (models file and manifest)."""

import asyncio
import textwrap
from pathlib import Path

import asyncpg
import pytest

from dataflow.cli import main
from dataflow.ledger import Ledger
from tests.helpers import with_database

MODELS = """
@db.model
class Customer:
    name: str
    email: str = Field(max_length=255, unique=True)
"""


def models_file(tmp_path: Path, body: str = MODELS) -> Path:
    path = tmp_path / "models.py"
    path.write_text(
        "from dataflow import DataFlow, Field\n\ndb = DataFlow(migration_config={'owner': 'shop'})\n\n"
        + textwrap.dedent(body)
    )
    return path


async def cli(*args: str) -> int:
    """Run the command line in-process (its own event loop, in a thread), as a shell would see it exit."""
    return await asyncio.to_thread(main, list(args))


async def manifest_file(tmp_path: Path, models: Path) -> Path:
    target = tmp_path / "shop.yaml"
    code = await cli(
        "manifest",
        "generate",
        str(models),
        "--name",
        "shop",
        "--namespace",
        "prod",
        "--secret",
        "db",
        "-o",
        str(target),
    )
    assert code == 0
    return target


@pytest.mark.parametrize("mode", ["models", "manifest"])
async def test_plan_exit_code_tells_drift_apart(
    dsn: str, conn: asyncpg.Connection, tmp_path: Path, mode: str
) -> None:
    models = models_file(tmp_path)
    target = ["-f", str(await manifest_file(tmp_path, models))] if mode == "manifest" else [str(models)]
    url = ["--database-url", dsn]

    assert await cli("plan", *target, *url, "--exit-code") == 3  # nothing created yet: changes pending
    assert await cli("plan", *target, *url) == 0  # without the flag: today's exit code
    assert await conn.fetchval("SELECT to_regclass('public.customer')") is None  # planning wrote nothing

    assert await cli("apply", *target, *url, "--auto-confirm") == 0
    assert await cli("plan", *target, *url, "--exit-code") == 0  # in sync

    await conn.execute('ALTER TABLE "customer" ADD COLUMN "note" TEXT')  # drift by hand
    assert await cli("plan", *target, *url, "--exit-code") == 3
    assert await cli("plan", *target, *url) == 0


@pytest.mark.parametrize("mode", ["models", "manifest"])
async def test_plan_exit_code_conflict_is_1_and_error_is_2(
    dsn: str, conn: asyncpg.Connection, tmp_path: Path, mode: str
) -> None:
    models = models_file(tmp_path)
    target = ["-f", str(await manifest_file(tmp_path, models))] if mode == "manifest" else [str(models)]
    ledger = Ledger("public")
    await ledger.ensure(conn)
    await ledger.claim(conn, "someone-else", ["customer"], [])
    assert await cli("plan", *target, "--database-url", dsn, "--exit-code") == 1

    bad = with_database(dsn, "no_such_database_for_exit_code")
    assert await cli("plan", *target, "--database-url", bad, "--exit-code") == 2
