"""Create, read, update, delete and list rows of one model's table: what the generated nodes run.

Values travel as text bind parameters cast to each column's type, rows come back as ``to_json`` of
the row, so every type (timestamps, numerics, citext, hstore) arrives as plain JSON values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import asyncpg

from dataflow.errors import DataFlowError, SchemaError
from dataflow.filters import Condition, as_text, cast
from dataflow.schema import Table
from dataflow.sqltext import qualified, quote_ident

MAX_LIMIT = 10_000


def writable(table: Table) -> list[str]:
    """Columns a caller may set: all but identity columns (the database numbers those)."""
    return [c.name for c in table.columns if c.identity is None]


def key_column(table: Table) -> str:
    if len(table.primary_key) != 1:
        raise DataFlowError(f"{table.name}: read, update and delete need a one-column primary key")
    return table.primary_key[0]


def _values(table: Table, values: Mapping[str, Any], first: int) -> tuple[list[str], list[str], list[Any]]:
    names, casts, params = [], [], []
    for name, value in values.items():
        column = table.column(name)
        if column is None or column.identity is not None:
            raise SchemaError(f"{table.name}.{name}", "not a field that can be set")
        names.append(quote_ident(name))
        params.append(as_text(value, column))
        casts.append(cast(first + len(params) - 1, column))
    return names, casts, params


def _row(text: str | None) -> dict[str, Any] | None:
    return None if text is None else json.loads(text)


async def create(
    conn: asyncpg.Connection, schema: str, table: Table, values: Mapping[str, Any]
) -> dict[str, Any]:
    names, casts, params = _values(table, values, 1)
    target = qualified(schema, table.name)
    if names:
        sql = f"INSERT INTO {target} AS r ({', '.join(names)}) VALUES ({', '.join(casts)}) RETURNING to_json(r.*)"
    else:
        sql = f"INSERT INTO {target} AS r DEFAULT VALUES RETURNING to_json(r.*)"
    row = _row(await conn.fetchval(sql, *params))
    assert row is not None
    return row


async def read(conn: asyncpg.Connection, schema: str, table: Table, key: Any) -> dict[str, Any] | None:
    column = table.column(key_column(table))
    assert column is not None
    sql = (
        f"SELECT to_json(r.*) FROM {qualified(schema, table.name)} r "
        f"WHERE r.{quote_ident(column.name)} = {cast(1, column)}"
    )
    return _row(await conn.fetchval(sql, as_text(key, column)))


async def update(
    conn: asyncpg.Connection, schema: str, table: Table, key: Any, values: Mapping[str, Any]
) -> dict[str, Any] | None:
    if not values:
        return await read(conn, schema, table, key)
    column = table.column(key_column(table))
    assert column is not None
    names, casts, params = _values(table, values, 2)
    sets = ", ".join(f"{n} = {c}" for n, c in zip(names, casts, strict=True))
    sql = (
        f"UPDATE {qualified(schema, table.name)} AS r SET {sets} "
        f"WHERE r.{quote_ident(column.name)} = {cast(1, column)} RETURNING to_json(r.*)"
    )
    return _row(await conn.fetchval(sql, as_text(key, column), *params))


async def delete(conn: asyncpg.Connection, schema: str, table: Table, key: Any) -> bool:
    column = table.column(key_column(table))
    assert column is not None
    sql = f"DELETE FROM {qualified(schema, table.name)} r WHERE r.{quote_ident(column.name)} = {cast(1, column)}"
    return await conn.execute(sql, as_text(key, column)) != "DELETE 0"


async def list_rows(
    conn: asyncpg.Connection,
    schema: str,
    table: Table,
    filter: Mapping[str, Any] | None = None,
    order_by: list[str] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Rows matching ``filter``; ``order_by`` names fields (``"-name"``: descending), primary key by default."""
    condition = Condition(table)
    where = condition.where(filter)
    order = []
    for field in order_by or list(table.primary_key):
        name = field[1:] if field.startswith("-") else field
        if table.column(name) is None:
            raise SchemaError(f"order_by.{name}", f"unknown field of {table.name}")
        order.append(f"r.{quote_ident(name)}{' DESC' if field.startswith('-') else ''}")
    for name, value, high in (("limit", limit, MAX_LIMIT), ("offset", offset, None)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (high and value > high):
            raise SchemaError(name, f"must be an integer from 0 to {high or 'any'}, not {value!r}")
    params = condition.params
    sql = (
        f"SELECT to_json(r.*) FROM {qualified(schema, table.name)} r WHERE {where}"
        f"{' ORDER BY ' + ', '.join(order) if order else ''} LIMIT {limit} OFFSET {offset}"
    )
    return [json.loads(r[0]) for r in await conn.fetch(sql, *params)]
