"""``dataflow import`` and ``dataflow manifest import``: connect, import, write the code, report to stderr."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from dataflow.connect import connect
from dataflow.embedded import resolve_dsn
from dataflow.errors import DataFlowError, SchemaError
from dataflow.import_models import render_models
from dataflow.importer import Imported, LeftAlone, import_schema, unquoted, with_extensions
from dataflow.manifest import dump, generate, validate
from dataflow.sqltext import identifier_problem


def add_arguments(sp: argparse.ArgumentParser, manifest: bool) -> None:
    """The options both import commands take (and the manifest's metadata for ``manifest import``)."""
    sp.add_argument(
        "--database-url", help="PostgreSQL URL (default: $DATABASE_URL, else the embedded server)"
    )
    sp.add_argument("--schema", default="public", help="the schema to import (default: public)")
    sp.add_argument("--tables", help="comma-separated table names to import (default: every table)")
    if manifest:
        sp.add_argument("--name", default="imported", help="metadata.name of the DataFlowSchema")
        sp.add_argument("--namespace", default="default")
        sp.add_argument("--secret", default="database", help="name of the Secret holding the DSN")
        sp.add_argument("--secret-key", default="dsn")
        sp.add_argument("--max-risk", default="MEDIUM", choices=["SAFE", "MEDIUM", "HIGH"])
    sp.add_argument("-o", "--output", help="file to write (default: stdout)")


async def run(args: argparse.Namespace, manifest: bool) -> int:
    """Import, write models (or the manifest) to ``-o`` or stdout, and print the report on stderr."""
    if problem := identifier_problem(args.schema):
        raise SchemaError("--schema", problem)
    tables = None
    if args.tables is not None:
        tables = [t.strip() for t in args.tables.split(",") if t.strip()]
        if not tables:
            raise SchemaError("--tables", "names no table")
    conn = await connect(resolve_dsn(args.database_url), args.schema)
    try:
        imported = await import_schema(conn, args.schema, tables)
    finally:
        await conn.close()
    if manifest:
        doc, extra = manifest_document(imported, args)
        text = dump(doc)
    else:
        note = "" if args.schema == "public" else f" (schema {args.schema})"
        text, extra = render_models(imported, note)
        if args.schema != "public":
            text = text.replace(
                "db = DataFlow()", f"db = DataFlow(migration_config={{'schema': {args.schema!r}}})"
            )
        text = formatted(text)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    report(imported, extra, args.output)
    return 0


def manifest_document(imported: Imported, args: argparse.Namespace) -> tuple[dict[str, Any], list[LeftAlone]]:
    """The DataFlowSchema of ``imported``; a table the manifest format cannot hold is left out, with why."""
    schema, out = with_extensions(imported), list[LeftAlone]()  # spec.extensions: the installed ones
    while True:
        doc = generate(
            schema,
            name=args.name,
            namespace=args.namespace,
            secret=args.secret,
            secret_key=args.secret_key,
            max_risk=args.max_risk,
        )
        problems = validate(doc)
        if not problems:
            return doc, out
        bad: dict[str, str] = {}
        for problem in problems:
            found = re.match(r"spec\.tables\[(\d+)\]", problem)
            if found is None:
                raise DataFlowError("imported manifest is invalid: " + "; ".join(problems))
            why = re.sub(
                r" does not match '.*",
                " is not a column type a manifest can hold",
                problem.split(": ", 1)[-1],
            )
            bad.setdefault(schema.tables[int(found.group(1))].name, why)
        out += [LeftAlone("table", t, f"the manifest format cannot hold it: {why}") for t, why in bad.items()]
        tables = tuple(t for t in schema.tables if t.name not in bad)
        used = {unquoted(c.type.removesuffix("[]")) for t in tables for c in t.columns}
        schema = replace(schema, tables=tables, enums=tuple(e for e in schema.enums if e.name in used))


def formatted(code: str) -> str:
    """``code`` as ``ruff format`` writes it, when ruff is installed (else as rendered)."""
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        return code
    done = subprocess.run(  # noqa: S603 - a fixed program on our own generated text
        [ruff, "format", "--quiet", "--line-length", "110", "-"],
        input=code,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return done.stdout if done.returncode == 0 and done.stdout else code


def report(imported: Imported, extra: list[LeftAlone], output: str | None) -> None:
    """What was imported, and every object left alone with why, on stderr."""
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    schema = imported.schema
    console.print(
        f"imported {len(schema.tables) - sum(x.kind == 'table' for x in extra)} tables"
        + (f" into {output}" if output else ""),
        markup=False,
    )
    left = [*imported.left_alone, *extra]
    if not left:
        return
    table = RichTable(title="not managed (left alone)", title_justify="left")
    for column in ("kind", "name", "why"):
        table.add_column(column)
    for item in left:
        table.add_row(item.kind, item.name, item.reason)
    console.print(table)
