"""The one way the engine opens a database session: a validated DSN and a pinned ``search_path``.

Every probe and statement is schema-qualified as well; pinning ``search_path`` to the target
schema is the second line of defence, so an unqualified name can never read ``public.<table>``
when the resource lives in another schema.
"""

from __future__ import annotations

import asyncpg

from dataflow.sqltext import quote_ident

CONNECT_TIMEOUT_S = 10.0


async def connect(dsn: str, schema: str | None = None, *, timeout: float = CONNECT_TIMEOUT_S) -> asyncpg.Connection:
    """Open a session on ``dsn``; with ``schema``, its ``search_path`` is that schema alone."""
    settings = {"search_path": quote_ident(schema)} if schema else None
    return await asyncpg.connect(dsn, timeout=timeout, server_settings=settings)
