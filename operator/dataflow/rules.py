"""Semantic rules shared by manifests and models: one set of checks a JSON schema cannot express."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from pglast import ast
from pglast.visitors import Visitor

from dataflow.sqltext import MAX_IDENTIFIER_BYTES, parse_expression
from dataflow.types import canonical_type, is_manifest_type

TablePath = Callable[[int, Mapping[str, Any]], str]


@lru_cache(maxsize=1)
def _column_type() -> re.Pattern[str]:
    from dataflow.schema import column_type_pattern

    return re.compile(column_type_pattern())


def _type_problem(text: Any) -> str | None:
    """A column type that is not in canonical form (``int`` for INTEGER), or that is no type at all."""
    if not isinstance(text, str) or not _column_type().fullmatch(text):
        return None  # the CRD schema's finding
    try:
        canonical = canonical_type(text)
    except ValueError as exc:
        return str(exc)
    if canonical == text or is_manifest_type(text):  # a modifier's case is the server's (geometry(Point))
        return None
    return f"write {canonical!r}, the canonical spelling of {text!r}"


def manifest_path(index: int, table: Mapping[str, Any]) -> str:
    return f"spec.tables[{index}]"


def semantic_problems(tables: list[Mapping[str, Any]], table_path: TablePath = manifest_path) -> list[str]:
    """Checks a JSON schema cannot express: duplicates, references, expressions, identifier bytes.

    Everything the CRD's schema (generated from the types in dataflow.schema) can say, such as the
    closed list of column types, enums and lengths in characters, is left to it.

    ``tables`` is the canonical form (``Schema.to_dict()["tables"]``, or a manifest's
    ``spec.tables`` that passed the CRD schema); ``table_path`` names a table in messages.
    """
    problems: list[str] = []
    names = [t["name"] for t in tables]
    columns_of = {t["name"]: {c["name"] for c in t.get("columns", [])} for t in tables}
    relation_names: dict[str, str] = {}

    def claim(name: str, where: str) -> None:
        # tables, indexes and constraints share one namespace per schema in PostgreSQL
        if name in relation_names:
            problems.append(f"{where}: name {name!r} is already used by {relation_names[name]}")
        relation_names.setdefault(name, where)

    for i, t in enumerate(tables):
        p = table_path(i, t)
        if t["name"] in names[:i]:
            problems.append(f"{p}.name: duplicate table {t['name']!r}")
        cols = [c["name"] for c in t["columns"]]
        for j, c in enumerate(t["columns"]):
            cp = f"{p}.columns[{j}]"
            if c["name"] in cols[:j]:
                problems.append(f"{cp}.name: duplicate column {c['name']!r}")
            if len(c["name"].encode()) > MAX_IDENTIFIER_BYTES:
                problems.append(f"{cp}.name: longer than {MAX_IDENTIFIER_BYTES} bytes")
            if problem := _type_problem(c.get("type")):
                problems.append(f"{cp}.type: {problem}")
            if c.get("default") is not None:
                _expression(
                    c["default"],
                    f"{cp}.default",
                    problems,
                    columns=set(),
                    unknown="a default cannot refer to a column",
                )
        for col in t.get("primaryKey", []):
            if col not in columns_of[t["name"]]:
                problems.append(f"{p}.primaryKey: unknown column {col!r}")
        for j, ix in enumerate(t.get("indexes", [])):
            ip = f"{p}.indexes[{j}]"
            claim(ix["name"], ip)
            for element in ix["columns"]:
                if element not in columns_of[t["name"]]:
                    _expression(
                        element,
                        f"{ip}.columns",
                        problems,
                        f"is neither a column of {t['name']!r} nor an expression",
                        columns=columns_of[t["name"]],
                    )
            if ix.get("where"):
                _expression(ix["where"], f"{ip}.where", problems, columns=columns_of[t["name"]])
        for kind in ("uniques", "foreignKeys", "checks"):
            for j, con in enumerate(t.get(kind, [])):
                cp = f"{p}.{kind}[{j}]"
                claim(con["name"], cp)
                for col in con.get("columns", []):
                    if col not in columns_of[t["name"]]:
                        problems.append(f"{cp}.columns: unknown column {col!r}")
                if kind == "checks":
                    _expression(
                        con["expression"], f"{cp}.expression", problems, columns=columns_of[t["name"]]
                    )
                if kind == "foreignKeys":
                    ref = con["refTable"]
                    if ref not in columns_of:
                        problems.append(
                            f"{cp}.refTable: dangling foreign key: no table {ref!r} in this schema"
                        )
                    else:
                        for col in con["refColumns"]:
                            if col not in columns_of[ref]:
                                problems.append(f"{cp}.refColumns: table {ref!r} has no column {col!r}")
                    if len(con["refColumns"]) != len(con["columns"]):
                        problems.append(
                            f"{cp}.refColumns: {len(con['columns'])} columns "
                            f"refer to {len(con['refColumns'])}"
                        )
    return problems


def _expression(
    text: str,
    where: str,
    problems: list[str],
    message: str | None = None,
    *,
    columns: set[str] | None = None,
    unknown: str = "unknown column",
) -> None:
    """Parse ``text`` as one expression; with ``columns``, every column it names must be one of them."""
    try:
        node = parse_expression(text)
    except ValueError as exc:
        problems.append(f"{where}: {message or 'bad SQL expression'} ({exc})")
        return
    if columns is not None:
        missing = sorted(column_refs(node) - columns)
        if missing:
            problems.append(f"{where}: {unknown} {missing[0]!r}")


def column_refs(node: Any) -> set[str]:
    """The column names a parsed expression refers to (the last part of ``t.col``)."""
    names: set[str] = set()

    class _Columns(Visitor):
        def visit_ColumnRef(self, ancestors: Any, ref: Any) -> None:  # noqa: N802 (pglast API)
            last = ref.fields[-1]
            if isinstance(last, ast.String) and last.sval:
                names.add(last.sval)

    _Columns()(node)
    return names
