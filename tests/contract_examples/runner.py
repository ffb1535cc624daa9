"""Run the product documentation's code blocks, adapted as little as possible, against a test database.

An adapted block is the spec's block plus marked lines: a line ending ``# adapted: why`` is added,
a line ending ``# was: <the spec's line>`` stands in for that line (a long one: the comment
on a line of its own, followed by its replacement marked ``# adapted``). :func:`original` undoes both, and
the coverage test requires the result to equal the spec's block, so every block stays recognisable.

A block runs as the body of an ``async def`` (the docs use top-level ``await``), with the names the
docs use without importing them, ``DATABASE_URL`` pointing at the test database (so ``DataFlow()``
finds it, as in production) and stdout captured. A person's answers to the confirmation prompt are
typed into a real pseudo-terminal that stands in as stdin.
"""

from __future__ import annotations

import json
import os
import pty
import re
import sys
import textwrap
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from dataflow import DataFlow, Field, MigrationConflictError

SPEC = Path(__file__).with_name("dataflow-auto-migration.md.txt")  # .txt: formatters leave it verbatim
ADDED = re.compile(r"\s+# adapted: .*$")
REPLACED = re.compile(r"^(?P<indent>\s*)(?:.*?\s)?# was: (?P<line>.*)$")


@dataclass(frozen=True)
class SpecBlock:
    section: str  # the nearest heading above the block, without its '#' marks
    index: int  # 0 for the section's first python block, 1 for its second...
    code: str


def spec_blocks(text: str | None = None) -> list[SpecBlock]:
    """Every ```python block of the spec, anchored to its section title and its place in the section."""
    section, index, blocks = "", 0, []
    lines = iter((SPEC.read_text() if text is None else text).splitlines())
    for line in lines:
        if line.startswith("#"):
            section, index = line.lstrip("#").strip(), 0
        elif line.startswith("```"):
            body = []
            for inner in lines:
                if inner.startswith("```"):
                    break
                body.append(inner)
            if line.strip() == "```python":
                blocks.append(SpecBlock(section, index, "\n".join(body)))
                index += 1
    return blocks


def original(adapted: str) -> str:
    """The spec's block an adapted block came from: added lines removed, replaced lines put back."""
    lines = []
    for line in adapted.strip("\n").splitlines():
        if ADDED.search(line):
            continue
        if m := REPLACED.match(line):
            line = m["indent"] + m["line"]
        lines.append(line.rstrip())
    return "\n".join(lines)


Check = Callable[["Runner"], Awaitable[None]]


@dataclass
class Example:
    """One adapted block and the checks that run it and assert what its prose says."""

    section: str
    code: str
    index: int = 0
    checks: list[tuple[Check, str | None]] = field(default_factory=list)

    def check(self, missing: str | None = None) -> Callable[[Check], Check]:
        """Register a check; ``missing`` names what issue 10 still has to build (the check xfails)."""

        def register(fn: Check) -> Check:
            self.checks.append((fn, missing))
            return fn

        return register

    @property
    def anchor(self) -> str:
        return f"{self.section} #{self.index + 1}"


DOC_NAMES: dict[str, Any] = {  # names the docs use without showing their import
    "DataFlow": DataFlow,
    "Field": Field,
    "datetime": datetime,
    "Decimal": Decimal,
    "MigrationConflictError": MigrationConflictError,
}


class Exited(Exception):
    """``exit(code)`` called by a block (the CI/CD script ends that way)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _exit(code: int = 0) -> None:
    raise Exited(code)


@dataclass
class Runner:
    """What a check needs: the test database, the block runner, the captured output, a terminal."""

    dsn: str
    capsys: pytest.CaptureFixture[str]
    monkeypatch: pytest.MonkeyPatch
    tmp_path: Path
    second_database: Callable[[], Awaitable[str]]
    out: str = ""

    async def run(self, example: Example, typed: str | None = None, **names: Any) -> dict[str, Any]:
        """Run ``example`` as an async function body; returns its local names.

        ``typed``: what a person types at the prompts (stdin becomes a terminal holding it);
        ``names``: extra globals the block refers to (``updated_schema``, ``STAGING_URL``...).
        Everything the block printed is in ``self.out`` afterwards.
        """
        source = "async def __block__():\n" + textwrap.indent(example.code.strip("\n"), "    ")
        source += "\n    return locals()\n"
        scope: dict[str, Any] = {**DOC_NAMES, "__name__": "__main__", "exit": _exit, **names}
        exec(compile(source, f"<spec: {example.anchor}>", "exec", dont_inherit=True), scope)
        self.capsys.readouterr()
        try:
            with self.terminal(typed):
                result: dict[str, Any] = await scope["__block__"]()
        finally:
            self.out += self.capsys.readouterr().out
        return result

    @contextmanager
    def terminal(self, typed: str | None) -> Iterator[None]:
        """stdin as a real pseudo-terminal with ``typed`` already typed (None: leave stdin alone)."""
        if typed is None:
            yield
            return
        leader, follower = pty.openpty()
        os.write(leader, typed.encode())
        stdin = os.fdopen(follower, "r")
        try:
            with self.monkeypatch.context() as m:
                m.setattr(sys, "stdin", stdin)
                yield
        finally:
            stdin.close()
            os.close(leader)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def execute(self, *statements: str) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    async def columns(self, table: str) -> dict[str, str]:
        """``{column: type}`` of ``public.<table>`` ({} when it does not exist)."""
        rows = await self.fetch(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
            " WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            f'public."{table}"',
        )
        return {r[0]: r[1] for r in rows}

    async def backup_values(self, table: str, column: str) -> list[Any]:
        """The values of ``table.column`` kept in the ``dataflow_backup`` schema, sorted."""
        [name] = await self.fetch(
            "SELECT relname FROM pg_class WHERE relnamespace = 'dataflow_backup'::regnamespace"
            " AND starts_with(relname, $1)",
            f"{table}_{column}_",
        )
        rows = await self.fetch(f'SELECT "{column}" FROM dataflow_backup."{name[0]}" ORDER BY 1')
        return [r[0] for r in rows]

    async def quiet_db(self, **config: Any) -> DataFlow:
        """A DataFlow on the test database for a check's own setup (its output is not the block's)."""
        import io

        from rich.console import Console

        return DataFlow(self.dsn, migration_config=config, console=Console(file=io.StringIO()))


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@contextmanager
def http_server() -> Iterator[tuple[str, list[Received]]]:
    """A real local HTTP server that answers 200 to every POST; yields its URL and what it received."""
    received: list[Received] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append(Received(self.path, dict(self.headers), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
