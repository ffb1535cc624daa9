"""The confirmation prompt, as a person sees it in a real terminal (a pseudo-terminal here)."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import subprocess
import sys
import textwrap

import asyncpg

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
    """Run SCRIPT with a pseudo-terminal as stdin/stdout; type ``answer`` once the prompt shows."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, dsn],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "COLUMNS": "160", "TERM": "dumb"},
    )
    os.close(follower)
    seen = b""
    try:
        while True:  # until the child closes the terminal
            if not select.select([leader], [], [], 30)[0]:  # no prompt shown: nobody would answer
                proc.kill()
                break
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if b"[y/N]:" in seen and answer:
                os.write(leader, answer)
                answer = b""
    finally:
        proc.wait(timeout=60)
        os.close(leader)
    return seen.decode(errors="replace")


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
