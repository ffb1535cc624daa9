"""What an applied migration leaves outside the database: SQL files, schema docs, a registry entry.

``auto_migrate(version_control=True)`` writes ``<version>_<slug>.up.sql`` and ``.down.sql`` into the
``version_control_dir`` (default ``migrations``) for a repository to track; ``generate_documentation=True``
writes a Markdown description of the desired schema to ``documentation_path`` (default ``SCHEMA.md``);
``schema_registry_url`` receives the canonical schema JSON by POST. All run after the commit; a
registry that is down is logged, never an error (the database already changed).
"""

from __future__ import annotations

import re
from pathlib import Path

from dataflow.monitoring import post_json
from dataflow.plan import Migration
from dataflow.schema import Schema, Table


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60] or "migration"


def write_sql_files(migration: Migration, directory: str | Path) -> tuple[Path, Path]:
    """The migration's up and down SQL, one statement per line group, as two files; their paths."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{migration.version}_{_slug(migration.description)}"
    header = f"-- {migration.version}: {migration.description}\n-- risk: {migration.safety_level}\n\n"
    up, down = folder / f"{stem}.up.sql", folder / f"{stem}.down.sql"
    up.write_text(header + "".join(f"{sql};\n\n" for sql in migration.sql_up), encoding="utf-8")
    down.write_text(header + "".join(f"{sql};\n\n" for sql in migration.sql_down), encoding="utf-8")
    return up, down


def _cell(text: str | None) -> str:
    return "" if text is None else text.replace("|", "\\|").replace("\n", " ")


def _table_markdown(table: Table) -> list[str]:
    lines = [f"## {table.name}", ""]
    if table.primary_key:
        lines += [f"Primary key: {', '.join(table.primary_key)}", ""]
    lines += ["| Column | Type | Nullable | Default |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {_cell(c.name)} | {_cell(c.type)} | {'yes' if c.nullable else 'no'} | {_cell(c.default)} |"
        for c in table.columns
    ]
    extras = [
        *(f"- index {i.name} ({', '.join(i.columns)}){' unique' if i.unique else ''}" for i in table.indexes),
        *(f"- unique {u.name} ({', '.join(u.columns)})" for u in table.uniques),
        *(
            f"- foreign key {f.name} ({', '.join(f.columns)}) -> {f.ref_table} ({', '.join(f.ref_columns)})"
            for f in table.foreign_keys
        ),
        *(f"- check {c.name}: {_cell(c.expression)}" for c in table.checks),
    ]
    return [*lines, "", *([*extras, ""] if extras else [])]


def schema_markdown(schema: Schema, version: str | None = None) -> str:
    """A Markdown description of ``schema``: one section per table, its columns and constraints."""
    lines = [f"# Schema {schema.name}", ""]
    if version:
        lines += [f"Last applied migration: {version}", ""]
    for table in schema.normalised().tables:
        lines += _table_markdown(table)
    return "\n".join(lines)


def write_documentation(schema: Schema, path: str | Path, version: str | None = None) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(schema_markdown(schema, version), encoding="utf-8")
    return target


async def register_schema(url: str, schema: Schema, version: str | None) -> bool:
    """POST the canonical schema JSON to a schema registry; whether it was accepted."""
    body = {"schema": schema.name, "version": version, "hash": schema.hash(), "definition": schema.to_dict()}
    return await post_json(url, body, "schema registration")
