"""Mongo-style filters (``{"phone": {"$exists": True}}``) → a parameterised SQL condition over one table.

The operators are a closed list; field names must be the table's columns (quoted), and every value is
a bind parameter sent as text and cast to the column's type, so any type (citext, hstore, an
extension's) compares as PostgreSQL compares it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any

from dataflow.errors import SchemaError
from dataflow.schema import Column, Table
from dataflow.sqlgen import sql_type
from dataflow.sqltext import quote_ident
from dataflow.types import parse_type

COMPARISONS = {"$eq": "=", "$ne": "IS DISTINCT FROM", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
PATTERNS = {"$like": "LIKE", "$ilike": "ILIKE"}
OPERATORS = (*COMPARISONS, "$in", "$nin", "$exists", *PATTERNS)
LOGICAL = ("$and", "$or", "$not")


def as_text(value: Any, column: Column) -> str | None:
    """A Python value as the text PostgreSQL reads for ``column``'s type (None is NULL)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)) and parse_type(column.type).array:
        return "{" + ",".join(_array_element(v, column) for v in value) + "}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return str(value)


def _array_element(value: Any, column: Column) -> str:
    text = as_text(value, Column(column.name, "TEXT"))
    if text is None:
        return "NULL"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cast(param: int, column: Column) -> str:
    """``$n`` read as text, then cast to the column's type."""
    return f"${param}::text::{sql_type(column.type, column.name)}"


class Condition:
    """Builds one WHERE condition; ``params`` collects the bind values in order."""

    def __init__(self, table: Table, params: list[Any] | None = None) -> None:
        self.table = table
        self.params: list[Any] = params if params is not None else []

    def bind(self, value: Any, column: Column) -> str:
        self.params.append(as_text(value, column))
        return cast(len(self.params), column)

    def where(self, filter: Mapping[str, Any] | None) -> str:
        """The condition for ``filter`` (``TRUE`` when empty)."""
        if filter is None:
            return "TRUE"
        if not isinstance(filter, Mapping):
            raise SchemaError(
                "filter", f"must be a mapping of field to condition, not {type(filter).__name__}"
            )
        parts = [self._entry(key, value) for key, value in filter.items()]
        return " AND ".join(parts) if parts else "TRUE"

    def _entry(self, key: str, value: Any) -> str:
        if key in ("$and", "$or"):
            if not isinstance(value, (list, tuple)) or not value:
                raise SchemaError(f"filter.{key}", "must be a non-empty list of filters")
            joined = f" {key[1:].upper()} ".join(f"({self.where(v)})" for v in value)
            return f"({joined})"
        if key == "$not":
            return f"NOT ({self.where(value)})"
        column = self.table.column(key)
        if column is None:
            raise SchemaError(f"filter.{key}", f"unknown field of {self.table.name}")
        if not isinstance(value, Mapping):
            return self._compare(column, "$eq", value)
        if not value:
            raise SchemaError(f"filter.{key}", "needs at least one operator")
        return " AND ".join(self._compare(column, op, operand) for op, operand in value.items())

    def _compare(self, column: Column, op: str, operand: Any) -> str:
        name = quote_ident(column.name)
        if op == "$exists":
            return f"{name} IS {'NOT ' if operand else ''}NULL"
        if op in COMPARISONS:
            if operand is None:
                return f"{name} IS {'NOT ' if op == '$ne' else ''}NULL"
            return f"{name} {COMPARISONS[op]} {self.bind(operand, column)}"
        if op in PATTERNS:
            self.params.append(str(operand))
            return f"{name}::text {PATTERNS[op]} ${len(self.params)}::text"
        if op in ("$in", "$nin"):
            if not isinstance(operand, (list, tuple)):
                raise SchemaError(f"filter.{column.name}.{op}", "must be a list")
            array = Column(column.name, f"{column.type}[]")
            self.params.append([as_text(v, column) for v in operand])
            test = f"{name} = ANY(${len(self.params)}::text[]::{sql_type(array.type, column.name)})"
            return f"NOT coalesce({test}, false)" if op == "$nin" else f"coalesce({test}, false)"
        raise SchemaError(
            f"filter.{column.name}", f"unknown operator {op!r}; one of {', '.join(OPERATORS + LOGICAL)}"
        )
