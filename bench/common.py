"""Helpers shared by the benchmark scripts (run as `python bench/<script>.py`)."""

from __future__ import annotations

import sys
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def with_database(dsn: str, database: str) -> str:
    """The same server DSN pointing at another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def redact(url: str) -> str:
    """The URL with its password masked, for printing."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


async def reachable_server(url: str) -> str | None:
    """``url`` when a server answers there, else None (the caller falls back to the embedded one)."""
    try:
        conn = await asyncpg.connect(url, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        print(
            f"# no server at {redact(url)} ({type(exc).__name__}: {exc}); using the embedded server",
            file=sys.stderr,
        )
        return None
    await conn.close()
    return url
