"""The confirmation prompt, as a person sees it in a real terminal (a pseudo-terminal here)."""

from __future__ import annotations

import asyncio
import textwrap

import asyncpg

from tests.terminal import converse

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from dataflow import DataFlow

    db = DataFlow(sys.argv[1])

    @db.model
    class Gadget:
        name: str

    async def main() -> None:
        ok, applied = await db.auto_migrate()
        print("RESULT", ok, len(applied))

    asyncio.run(main())
    """
)


def _run_in_terminal(dsn: str, answer: bytes) -> str:
    return converse(SCRIPT, [dsn], [(b"[y/N]:", answer)])


async def test_prompt_shows_y_n_and_a_yes_applies(dsn: str) -> None:
    shown = await asyncio.to_thread(_run_in_terminal, dsn, b"y\n")
    assert "Apply these changes? [y/N]:" in shown, shown
    assert "RESULT True 1" in shown, shown
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('public.gadget') IS NOT NULL")
    finally:
        await conn.close()


async def test_prompt_answered_no_applies_nothing(dsn: str) -> None:
    shown = await asyncio.to_thread(_run_in_terminal, dsn, b"n\n")
    assert "Apply these changes? [y/N]:" in shown, shown
    assert "RESULT False" in shown, shown
    conn = await asyncpg.connect(dsn)
    try:
        assert not await conn.fetchval("SELECT to_regclass('public.gadget') IS NOT NULL")
    finally:
        await conn.close()
