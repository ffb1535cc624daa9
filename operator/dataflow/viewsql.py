"""A view's SQL body: exactly one SELECT statement, parsed by pglast and kept in deparsed (canonical) form.

The canonical form is what the schema holds, hashes and pastes into ``CREATE VIEW ... AS``: the text
that was parsed, never the raw input (a trailing comment cannot swallow what follows it). It is not
what PostgreSQL prints back (``pg_get_viewdef`` qualifies columns and adds casts): the plan compares
declared and live views by what PostgreSQL itself makes of the declared text (see
:func:`dataflow.introspect_views.align_views`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pglast
from pglast import ast
from pglast import parser as pg_parser
from pglast.stream import RawStream
from pglast.visitors import Visitor

from dataflow.sqltext import tree_depth

MAX_QUERY_BYTES = 65536
MAX_QUERY_DEPTH = 256


def _parse_select(text: str) -> Any:
    """``text`` as exactly one SELECT (or VALUES / set operation) statement; ValueError otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("must be a SELECT statement, not empty text")
    if "\x00" in text:
        raise ValueError("cannot contain NUL")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid UTF-8 text ({exc.reason} at position {exc.start})") from None
    if size > MAX_QUERY_BYTES:
        raise ValueError(f"is {size} bytes long; the limit is {MAX_QUERY_BYTES} bytes")
    try:
        stmts = pg_parser.parse_sql(text)
    except pglast.parser.ParseError as exc:
        raise ValueError(f"not valid SQL: {exc}") from None
    if len(stmts) != 1:
        raise ValueError(f"must be exactly one SELECT statement, not {len(stmts)} statements")
    stmt = stmts[0].stmt
    if not isinstance(stmt, ast.SelectStmt):
        raise ValueError(f"must be a SELECT statement, not {type(stmt).__name__}")
    if stmt.intoClause is not None:
        raise ValueError("must be a SELECT statement without INTO")
    depth = tree_depth(stmt)
    if depth > MAX_QUERY_DEPTH:
        raise ValueError(f"nests {depth} levels deep; the limit is {MAX_QUERY_DEPTH} levels")
    return stmt


@lru_cache(maxsize=4096)
def normalise_query(text: str) -> str:
    """The canonical text of a view's SELECT (whitespace, comments and a trailing ``;`` gone)."""
    return str(RawStream()(_parse_select(text)))


@lru_cache(maxsize=4096)
def referenced_relations(text: str, schema: str) -> frozenset[str]:
    """Names of the relations the query reads that may live in ``schema`` (unqualified, or qualified by it).

    Names bound by a ``WITH`` clause are included too: callers intersect with the names they know.
    """
    names: set[str] = set()

    class _Relations(Visitor):
        def visit_RangeVar(self, ancestors: Any, node: Any) -> None:  # noqa: N802 (pglast API)
            if node.schemaname is None or node.schemaname == schema:
                names.add(node.relname)

    _Relations()(_parse_select(text))
    return frozenset(names)


@lru_cache(maxsize=4096)
def query_function_names(text: str) -> frozenset[str]:
    """Lower-cased names (``schema.name`` when qualified) of every function the query calls.

    The same set the denied-function check reads for an expression: a view (and a materialized view's
    query, which the migration runs) may not reach outside the tables either.
    """
    names: set[str] = set()

    class _Calls(Visitor):
        def visit_FuncCall(self, ancestors: Any, node: Any) -> None:  # noqa: N802 (pglast API)
            names.add(".".join(part.sval for part in node.funcname).lower())

    _Calls()(_parse_select(text))
    return frozenset(names)
