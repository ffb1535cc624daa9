"""Index features and exclusion constraints read back from the catalog's own definitions.

The catalog queries of :mod:`dataflow.introspect` return ``pg_get_indexdef`` only for an index that
uses a feature beyond plain keys (INCLUDE, a sort order, a non-default operator class, NULLS NOT
DISTINCT), and ``pg_get_constraintdef`` for an exclusion constraint; both are parsed here with pglast,
so no extra round trip is made and the common index costs nothing more.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pglast import enums, parse_sql
from pglast.stream import RawStream

from dataflow.schema import Exclusion
from dataflow.sqltext import normalise_expression

# PostgreSQL 15 added NULLS NOT DISTINCT; older servers have no such column
NULLS_NOT_DISTINCT_SINCE = 150000


def index_flags(server_version: int) -> str:
    """SQL (aliases ``ix`` = pg_index) true when an index needs its full definition read."""
    nulls = " OR ix.indnullsnotdistinct" if server_version >= NULLS_NOT_DISTINCT_SINCE else ""
    return (
        "ix.indnatts > ix.indnkeyatts OR 0 < ANY(ix.indoption::int2[])"
        " OR NOT (ix.indclass::oid[] <@ (SELECT array_agg(oid) FROM pg_opclass WHERE opcdefault))" + nulls
    )


def index_features(definition: str | None) -> dict[str, Any]:
    """``Index`` keyword arguments (include, order, opclasses, nulls_not_distinct) of a CREATE INDEX text."""
    return {} if definition is None else dict(_index_features(definition))


@lru_cache(maxsize=16384)  # ~50 µs a parse; repeated plans of an unchanged database parse nothing again
def _index_features(definition: str) -> tuple[tuple[str, Any], ...]:
    stmt: Any = parse_sql(definition)[0].stmt
    order, opclasses = [], []
    for elem in stmt.indexParams:
        direction = "DESC" if elem.ordering == enums.SortByDir.SORTBY_DESC else "ASC"
        nulls = {
            enums.SortByNulls.SORTBY_NULLS_FIRST: " NULLS FIRST",
            enums.SortByNulls.SORTBY_NULLS_LAST: " NULLS LAST",
        }.get(elem.nulls_ordering, "")
        order.append(f"{direction}{nulls}")
        opclasses.append(".".join(s.sval for s in elem.opclass or ()))
    return (
        ("include", tuple(e.name for e in stmt.indexIncludingParams or ())),
        ("order", tuple(order)),
        ("opclasses", tuple(opclasses)),
        ("nulls_not_distinct", bool(getattr(stmt, "nulls_not_distinct", False))),
    )


@lru_cache(maxsize=4096)
def exclusion_from_definition(name: str, definition: str) -> Exclusion:
    """An :class:`Exclusion` from ``pg_get_constraintdef`` text (``EXCLUDE USING gist (...) WHERE (...)``)."""
    stmt: Any = parse_sql(f"ALTER TABLE t ADD {definition}")[0].stmt
    con = stmt.cmds[0].def_
    elements, operators = [], []
    for elem, ops in con.exclusions:
        if elem.name is not None:
            elements.append(elem.name)
        else:
            text = normalise_expression(RawStream()(elem.expr))
            elements.append(text)
        operators.append(".".join(o.sval for o in ops))
    where = normalise_expression(RawStream()(con.where_clause)) if con.where_clause is not None else None
    return Exclusion(name, tuple(elements), tuple(operators), con.access_method or "gist", where)
