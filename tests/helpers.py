"""Small helpers shared by the engine tests."""

from __future__ import annotations

import io

import asyncpg
from rich.console import Console

from dataflow import DataFlow
from dataflow.introspect import introspect


def dataflow(dsn: str, **config: object) -> DataFlow:
    """A DataFlow whose preview goes to a buffer (read it with ``output(db)``)."""
    return DataFlow(dsn, migration_config=dict(config), console=Console(file=io.StringIO(), width=160))


def output(db: DataFlow) -> str:
    return db.console.file.getvalue()  # type: ignore[attr-defined]


async def snapshot(conn: asyncpg.Connection) -> tuple[object, dict[str, list[tuple]]]:
    """The schema and every row of every table, to compare before and after."""
    state = await introspect(conn)
    data = {}
    for table in state.schema.tables:
        rows = await conn.fetch(f'SELECT * FROM "{table.name}" ORDER BY 1')
        data[table.name] = [tuple(r) for r in rows]
    return state.schema, data
