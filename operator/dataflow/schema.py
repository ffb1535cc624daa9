"""Immutable schema model with a canonical JSON form and a stable hash.

The canonical form (docs/canonical-schema.md) is what manifests carry in
``spec.tables`` and what :func:`schema_hash` digests.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from dataflow.errors import SchemaError
from dataflow.jsonfields import json_field, to_json
from dataflow.sqltext import MAX_IDENTIFIER_BYTES, check_identifier, normalise_default, normalise_expression
from dataflow.types import MANIFEST_BASE_TYPES, canonical_type, is_manifest_type
from dataflow.viewsql import normalise_query

DEFAULT_FK_ACTION = "NO ACTION"
FK_ACTIONS = ("NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT")
INDEX_METHODS = ("btree", "hash", "gin", "gist", "brin", "spgist")
IDENTITY_KINDS = ("ALWAYS", "BY DEFAULT")
INDEX_ORDERS = ("ASC", "DESC", "ASC NULLS FIRST", "DESC NULLS LAST")
# a PostgreSQL operator: symbols only (pasted into SQL as is, so nothing else may pass)
EXCLUSION_OPERATOR = "^[-+*/<>=~!@#%^&|`?]{1,63}$"

# The JSON-schema form of the format's strings (dataflow.crdgen publishes them in the CRD).
# maxLength counts characters; the 63-byte limit itself is checked by dataflow.sqltext.check_identifier.
IDENTIFIER_DOC = "PostgreSQL identifier (quoted by the engine; any character but NUL)."
IDENTIFIER = {"minLength": 1, "maxLength": MAX_IDENTIFIER_BYTES, "pattern": "^[^\\x00]+$"}
IDENTIFIER_ITEM = {"type": "string", "description": IDENTIFIER_DOC, **IDENTIFIER}
SQL_TEXT = {"minLength": 1}
# Type modifiers a manifest may write, by canonical base type; other known types take none.
_LENGTH = r"\([1-9][0-9]*\)"
_PRECISION = r"(\([0-6]\))?"  # fractional seconds of a time type
_INTERVAL_FIELDS = (
    "YEAR|MONTH|DAY|HOUR|MINUTE|SECOND|YEAR TO MONTH|DAY TO HOUR|DAY TO MINUTE|DAY TO SECOND"
    "|HOUR TO MINUTE|HOUR TO SECOND|MINUTE TO SECOND"
)
TYPE_MODIFIERS = {
    "VARCHAR": _LENGTH,
    "CHAR": _LENGTH,
    "NUMERIC": rf"({_LENGTH[:-2]}(,[0-9]+)?\))?",
    "TIMESTAMP": _PRECISION,
    "TIMESTAMPTZ": _PRECISION,
    "TIME": _PRECISION,
    "TIMETZ": _PRECISION,
    "INTERVAL": f"( ({_INTERVAL_FIELDS}))?{_PRECISION}",
    "BIT": _LENGTH,
    "BIT VARYING": f"({_LENGTH})?",
}


# A type that is not built in (an extension's, or an enum of spec.enums), in the engine's canonical spelling:
# a lower-case bare name or a double-quoted one, optionally schema-qualified, with up to four modifiers
# that are integers or names (geometry(Point,4326), vector(3)). Nothing else gets through: no spaces,
# no semicolons, no parentheses but the modifiers' (dataflow.types.is_manifest_type is the engine's check).
_BARE = "[a-z_][a-z0-9_]*"
_QUOTED = '"([^"\\x00]|"")+"'
_TYPE_NAME = f"({_BARE}|{_QUOTED})"
_TYPE_MODIFIER = f"([0-9]+|[A-Za-z_][A-Za-z0-9_]*|{_QUOTED})"  # a bare name folds to lower case: Point
OTHER_TYPE = f"{_TYPE_NAME}(\\.{_TYPE_NAME})?(\\({_TYPE_MODIFIER}(,{_TYPE_MODIFIER}){{0,3}}\\))?"


def column_type_pattern() -> str:
    """The canonical column types as one anchored regular expression: the built-in ones
    (:data:`MANIFEST_BASE_TYPES`) and any other type's name (:data:`OTHER_TYPE`: an enum, a domain, an
    extension's type), each maybe an array."""
    # base names are upper-case words (no regex metacharacters): RE2, the API server's engine, reads them as is
    alternatives = [base + TYPE_MODIFIERS.get(base, "") for base in sorted(MANIFEST_BASE_TYPES)]
    return f"^({'|'.join([*alternatives, OTHER_TYPE])})(\\[\\])?$"


def column_type_doc() -> str:
    spelled = [
        base + {"VARCHAR": "(n)", "CHAR": "(n)", "BIT": "(n)", "BIT VARYING": "[(n)]"}.get(base, "")
        for base in sorted(MANIFEST_BASE_TYPES)
    ]
    return (
        "Canonical upper-case PostgreSQL type: "
        + ", ".join(spelled)
        + "; NUMERIC may be NUMERIC(p) or NUMERIC(p,s), a time type TIME(p), an interval INTERVAL DAY TO SECOND;"
        " or another type by its lower-case (or quoted) name, maybe schema-qualified, with up to four integer"
        " or name modifiers: an enum of spec.enums, a domain, an extension's (citext, geometry(Point,4326),"
        " vector(3)); any of these followed by [] for an array."
    )


def _names_field(name: str, description: str) -> Any:
    """A required, non-empty list of column names."""
    return json_field(name, description, schema={"minItems": 1}, items=IDENTIFIER_ITEM)


@dataclass(frozen=True)
class Column:
    """A table column; ``type`` is a canonical PostgreSQL type (see :mod:`dataflow.types`)."""

    name: str = json_field("name", IDENTIFIER_DOC, schema=IDENTIFIER)
    type: str = json_field("type", column_type_doc(), schema={"pattern": column_type_pattern()})
    nullable: bool = json_field("nullable", "Whether NULL is allowed.", default=True)
    default: str | None = json_field(
        "default",
        "SQL default expression as PostgreSQL prints it, without casts.",
        default=None,
        schema=SQL_TEXT,
    )
    identity: str | None = json_field(
        "identity", "Identity column generation.", default=None, schema={"enum": list(IDENTITY_KINDS)}
    )
    renamed_from: str | None = json_field(
        "renamedFrom", "The column's previous name; the engine renames it.", default=None, schema=IDENTIFIER
    )
    generated: str | None = json_field(
        "generated",
        "Stored generated column: the SQL expression (GENERATED ALWAYS AS (...) STORED).",
        default=None,
        schema=SQL_TEXT,
    )
    # identity sequence options; None is PostgreSQL's 1 (omitted, so other schemas' hashes stay as they were)
    identity_start: int | None = json_field(
        "identityStart", "Identity column: START WITH (omitted: 1).", default=None
    )
    identity_increment: int | None = json_field(
        "identityIncrement",
        "Identity column: INCREMENT BY, not 0 (omitted: 1).",
        default=None,
    )
    comment: str | None = json_field(
        "comment", "COMMENT ON the column; omitted: the database's comment is left alone.", default=None
    )
    collation: str | None = json_field(
        "collation",
        "The column's collation, such as C; omitted: its type's default.",
        default=None,
        schema=IDENTIFIER,
    )


@dataclass(frozen=True)
class Index:
    """An index over column names or SQL expressions, optionally partial."""

    name: str = json_field("name", IDENTIFIER_DOC, schema=IDENTIFIER)
    columns: tuple[str, ...] = json_field(
        "columns",
        "Column names or SQL expressions such as lower(email).",
        schema={"minItems": 1},
        items={"type": "string", **SQL_TEXT},
    )
    unique: bool = json_field("unique", "Unique index.", default=False)
    method: str = json_field(
        "method", "Index access method.", default="btree", schema={"enum": list(INDEX_METHODS)}
    )
    where: str | None = json_field(
        "where", "Partial-index predicate (one SQL expression).", default=None, schema=SQL_TEXT
    )
    # False: a failed concurrent build left it unusable; the diff rebuilds it (introspection only)
    valid: bool = json_field(None, default=True)
    include: tuple[str, ...] = json_field(
        "include", "Non-key columns stored in the index (INCLUDE).", default=(), items=IDENTIFIER_ITEM
    )
    order: tuple[str, ...] = json_field(
        "order",
        "Sort order per key column, in the order of columns (empty: all ASC).",
        default=(),
        items={"type": "string", "enum": list(INDEX_ORDERS)},
    )
    opclasses: tuple[str, ...] = json_field(
        "opclasses",
        "Operator class per key column, in the order of columns; an empty string keeps the default.",
        default=(),
        items={"type": "string", "maxLength": MAX_IDENTIFIER_BYTES, "pattern": "^[^\\x00]*$"},
    )
    nulls_not_distinct: bool = json_field(
        "nullsNotDistinct", "Unique index treating NULLs as equal (PostgreSQL 15+).", default=False
    )

    def __post_init__(self) -> None:
        # one spelling per definition: all-default per-column options are stored as none at all
        order = tuple(index_order(o) for o in self.order)
        object.__setattr__(self, "order", () if all(o == "ASC" for o in order) else order)
        if not any(self.opclasses):
            object.__setattr__(self, "opclasses", ())


def index_order(text: str) -> str:
    """A key column's sort order in canonical spelling (``DESC NULLS FIRST`` → ``DESC``), or ValueError."""
    words = " ".join(str(text).upper().split()) or "ASC"
    if words.startswith("NULLS"):
        words = f"ASC {words}"
    canonical = {"ASC NULLS LAST": "ASC", "DESC NULLS FIRST": "DESC"}.get(words, words)
    if canonical not in INDEX_ORDERS:
        raise ValueError(f"sort order must be one of {', '.join(INDEX_ORDERS)}, not {text!r}")
    return canonical


@dataclass(frozen=True)
class Unique:
    name: str = json_field("name", IDENTIFIER_DOC, schema=IDENTIFIER)
    columns: tuple[str, ...] = _names_field("columns", "Column names.")


_FK_ACTION = {"enum": list(FK_ACTIONS)}


@dataclass(frozen=True)
class ForeignKey:
    name: str = json_field("name", IDENTIFIER_DOC, schema=IDENTIFIER)
    columns: tuple[str, ...] = _names_field("columns", "Referencing column names.")
    ref_table: str = json_field("refTable", "Referenced table.", schema=IDENTIFIER)
    ref_columns: tuple[str, ...] = _names_field("refColumns", "Referenced column names.")
    on_delete: str = json_field(
        "onDelete", "Referential action.", default=DEFAULT_FK_ACTION, schema=_FK_ACTION
    )
    on_update: str = json_field(
        "onUpdate", "Referential action.", default=DEFAULT_FK_ACTION, schema=_FK_ACTION
    )
    # False: added NOT VALID and never validated (an interrupted apply; introspection only)
    validated: bool = json_field(None, default=True)


@dataclass(frozen=True)
class PrimaryKey:
    """A primary key as a named constraint (the table holds only its columns)."""

    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Check:
    name: str = json_field("name", IDENTIFIER_DOC, schema=IDENTIFIER)
    expression: str = json_field("expression", "Boolean SQL expression.", schema=SQL_TEXT)
    validated: bool = json_field(None, default=True)


POLICY_COMMANDS = ("ALL", "SELECT", "INSERT", "UPDATE", "DELETE")
PUBLIC_ROLE = "public"


@dataclass(frozen=True)
class Policy:
    """A row-level security policy; ``roles`` sorted, ``public`` for every role."""

    name: str = json_field("name", IDENTIFIER_DOC, schema=IDENTIFIER)
    command: str = json_field(
        "command", "The command it applies to.", default="ALL", schema={"enum": list(POLICY_COMMANDS)}
    )
    roles: tuple[str, ...] = json_field(
        "roles",
        "Role names it applies to (public: every role).",
        default=(PUBLIC_ROLE,),
        items=IDENTIFIER_ITEM,
    )
    using: str | None = json_field(
        "using", "USING expression: the rows visible or affected.", default=None, schema=SQL_TEXT
    )
    with_check: str | None = json_field(
        "withCheck", "WITH CHECK expression: the rows it lets be written.", default=None, schema=SQL_TEXT
    )
    permissive: bool = json_field("permissive", "PERMISSIVE (true) or RESTRICTIVE (false).", default=True)


@dataclass(frozen=True)
class Exclusion:
    """``EXCLUDE USING method (element WITH operator, ...)``: no two rows whose elements all match by the operators."""

    name: str = json_field("name", IDENTIFIER_DOC, schema=IDENTIFIER)
    elements: tuple[str, ...] = json_field(
        "elements",
        "Column names or SQL expressions such as tstzrange(starts, ends).",
        schema={"minItems": 1},
        items={"type": "string", **SQL_TEXT},
    )
    operators: tuple[str, ...] = json_field(
        "operators",
        "Operator per element, in the order of elements, such as = or &&.",
        schema={"minItems": 1},
        items={"type": "string", "pattern": EXCLUSION_OPERATOR},
    )
    method: str = json_field(
        "method", "Index access method.", default="gist", schema={"enum": list(INDEX_METHODS)}
    )
    where: str | None = json_field(
        "where", "Predicate limiting the rows compared (one SQL expression).", default=None, schema=SQL_TEXT
    )


FUNCTION_LANGUAGES = ("sql", "plpgsql")
VOLATILITIES = ("volatile", "stable", "immutable")
TRIGGER_TIMINGS = ("BEFORE", "AFTER", "INSTEAD OF")
TRIGGER_EVENTS = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")  # canonical order
TRIGGER_LEVELS = ("ROW", "STATEMENT")


@dataclass(frozen=True)
class Trigger:
    """A trigger on its table: when it fires and the function (of the same schema) it executes."""

    name: str = json_field("name", IDENTIFIER_DOC, schema=IDENTIFIER)
    function: str = json_field(
        "function", "The trigger function (of the same schema, declared in functions).", schema=IDENTIFIER
    )
    timing: str = json_field("timing", "When it fires.", schema={"enum": list(TRIGGER_TIMINGS)})
    events: tuple[str, ...] = json_field(
        "events",
        "The events it fires on, in the order INSERT, UPDATE, DELETE, TRUNCATE.",
        schema={"minItems": 1},
        items={"type": "string", "enum": list(TRIGGER_EVENTS)},
    )
    level: str = json_field(
        "level", "FOR EACH ROW or FOR EACH STATEMENT.", default="ROW", schema={"enum": list(TRIGGER_LEVELS)}
    )
    columns: tuple[str, ...] = json_field(
        "columns", "UPDATE OF these columns only (empty: any update).", default=(), items=IDENTIFIER_ITEM
    )
    when: str | None = json_field(
        "when", "WHEN condition (one SQL expression over OLD and NEW).", default=None, schema=SQL_TEXT
    )


# the parts of a table kept sorted by name in the canonical form
_NAMED_PARTS = ("indexes", "uniques", "foreign_keys", "checks", "exclusions", "policies", "triggers")


@dataclass(frozen=True)
class Table:
    """A table with its columns (in order) and its constraints and indexes (sorted by name)."""

    name: str = json_field("name", IDENTIFIER_DOC, schema=IDENTIFIER)
    columns: tuple[Column, ...] = json_field(
        "columns", "Columns in declaration order.", schema={"minItems": 1}
    )
    primary_key: tuple[str, ...] = json_field(
        "primaryKey", "Primary-key column names.", default=(), schema={"minItems": 1}, items=IDENTIFIER_ITEM
    )
    indexes: tuple[Index, ...] = json_field("indexes", "Indexes, sorted by name.", default=())
    uniques: tuple[Unique, ...] = json_field("uniques", "Unique constraints, sorted by name.", default=())
    foreign_keys: tuple[ForeignKey, ...] = json_field(
        "foreignKeys", "Foreign keys, sorted by name.", default=()
    )
    checks: tuple[Check, ...] = json_field("checks", "Check constraints, sorted by name.", default=())
    renamed_from: str | None = json_field(
        "renamedFrom",
        "The table's previous name; the engine renames instead of drop and create.",
        default=None,
        schema=IDENTIFIER,
    )
    # the primary key constraint's name in the database (introspection only); not part of the
    # canonical form nor of equality: the diff drops the key by it, e.g. after a table rename
    primary_key_name: str | None = json_field(None, default=None, compare=False)
    exclusions: tuple[Exclusion, ...] = json_field(
        "exclusions", "Exclusion constraints, sorted by name.", default=()
    )
    comment: str | None = json_field(
        "comment", "COMMENT ON the table; omitted: the database's comment is left alone.", default=None
    )
    row_level_security: bool | None = json_field(
        "rowLevelSecurity",
        "Row-level security on (true) or off (false); given, the policies list is the table's complete set. "
        "Omitted: row security and policies are left alone.",
        default=None,
    )
    policies: tuple[Policy, ...] = json_field(
        "policies", "Row-level security policies, sorted by name.", default=()
    )
    triggers: tuple[Trigger, ...] = json_field(
        "triggers",
        "Triggers, sorted by name; one the table does not list is dropped only when the owner's set is "
        "complete (drop missing).",
        default=(),
    )

    def column(self, name: str) -> Column | None:
        return self._columns_by_name.get(name)

    @cached_property
    def _columns_by_name(self) -> dict[str, Column]:
        """Columns by name, built once: the diff and renderers look columns up in loops."""
        by_name: dict[str, Column] = {}
        for c in self.columns:
            by_name.setdefault(c.name, c)  # the first of a repeated name, as a scan would find
        return by_name

    def with_sorted_parts(self) -> Table:
        """This table with its named parts sorted by name: itself when they already are (introspection
        reads them in order), so normalising 1,000 read tables builds no new ones."""
        unsorted: dict[str, Any] = {}
        for part in _NAMED_PARTS:
            items: tuple[Any, ...] = getattr(self, part)
            if any(a.name > b.name for a, b in zip(items, items[1:], strict=False)):
                unsorted[part] = tuple(sorted(items, key=lambda i: i.name))
        return replace(self, **unsorted) if unsorted else self


ENUM_LABEL = {"type": "string", "minLength": 1, "maxLength": MAX_IDENTIFIER_BYTES}


@dataclass(frozen=True)
class EnumRename:
    """One label of an enum type renamed in place (rows keep their value under the new label)."""

    old: str = json_field("from", "The label in the database.", schema=ENUM_LABEL)
    new: str = json_field("to", "Its new label (one of values).", schema=ENUM_LABEL)


@dataclass(frozen=True)
class EnumType:
    """A PostgreSQL enum type: its labels in sort order."""

    name: str = json_field("name", IDENTIFIER_DOC, schema=IDENTIFIER)
    values: tuple[str, ...] = json_field(
        "values", "Labels in sort order, each once.", schema={"minItems": 1}, items=ENUM_LABEL
    )
    renamed_values: tuple[EnumRename, ...] = json_field(
        "renamedValues", "Labels to rename instead of removing one and adding another.", default=()
    )
    # the columns of the schema that use the type, as (table, column, default): introspection only
    usages: tuple[tuple[str, str, str | None], ...] = json_field(None, default=(), compare=False)


@dataclass(frozen=True)
class Sequence:
    """A sequence of its own (not an identity column's): START, INCREMENT and the column that owns it."""

    name: str = json_field("name", IDENTIFIER_DOC, schema=IDENTIFIER)
    start: int | None = json_field("start", "START WITH (omitted: 1).", default=None)
    increment: int | None = json_field("increment", "INCREMENT BY, not 0 (omitted: 1).", default=None)
    owned_by: str | None = json_field(
        "ownedBy",
        'OWNED BY "table.column": dropping the column drops the sequence (omitted: none).',
        default=None,
        schema={"minLength": 3},
    )

    @property
    def owner(self) -> tuple[str, str] | None:
        """``owned_by`` as (table, column)."""
        if self.owned_by is None:
            return None
        table, _, column = self.owned_by.partition(".")
        return table, column


@dataclass(frozen=True)
class View:
    """A view (or materialized view) over the schema's tables: its name and exactly one SELECT statement."""

    name: str = json_field("name", IDENTIFIER_DOC, schema=IDENTIFIER)
    query: str = json_field(
        "query",
        "Exactly one SELECT statement (parsed; kept in canonical form). Unqualified names are the schema's.",
        schema=SQL_TEXT,
    )
    materialized: bool = json_field(
        "materialized",
        "A materialized view (its rows stored; refreshing them is not a migration).",
        default=False,
    )
    # introspection only: its columns as (name, type), the relations of the schema it reads as
    # (relation, column or ""), and a materialized view's size and whether it holds rows
    columns: tuple[tuple[str, str], ...] | None = json_field(None, default=None, compare=False)
    depends_on: tuple[tuple[str, str], ...] = json_field(None, default=(), compare=False)
    size_bytes: int = json_field(None, default=0, compare=False)
    populated: bool = json_field(None, default=True, compare=False)


@dataclass(frozen=True)
class Function:
    """A function of the schema: its signature, language and body (dataflow.functions normalises them)."""

    name: str = json_field("name", IDENTIFIER_DOC, schema=IDENTIFIER)
    returns: str = json_field(
        "returns", "Return type, such as INTEGER, SETOF TEXT, TABLE(a INTEGER) or trigger.", schema=SQL_TEXT
    )
    body: str = json_field(
        "body", "The body: SQL statements (language sql) or a PL/pgSQL block.", schema=SQL_TEXT
    )
    arguments: str = json_field(
        "arguments", 'Argument list, such as "a INTEGER, b INTEGER" (empty: none).', default=""
    )
    language: str = json_field(
        "language", "The body's language.", default="plpgsql", schema={"enum": list(FUNCTION_LANGUAGES)}
    )
    volatility: str = json_field(
        "volatility",
        "VOLATILE, STABLE or IMMUTABLE.",
        default="volatile",
        schema={"enum": list(VOLATILITIES)},
    )
    security_definer: bool = json_field(
        "securityDefiner", "Runs with its owner's privileges (SECURITY DEFINER).", default=False
    )
    # the owner whose mark it carries (COMMENT ON FUNCTION; "" marked without an owner, None: not marked,
    # a DBA's): only the owner's own may be dropped. Not part of the canonical form nor of equality.
    owner: str | None = json_field(None, default=None, compare=False)


@dataclass(frozen=True)
class Schema:
    """A set of tables in one PostgreSQL schema (namespace)."""

    tables: tuple[Table, ...] = field(default_factory=tuple)
    name: str = "public"
    # PostgreSQL extensions the tables need (created first, IF NOT EXISTS); sorted, each once
    extensions: tuple[str, ...] = ()
    # enum types the tables use (created before them), sorted by name
    enums: tuple[EnumType, ...] = ()

    def enum(self, name: str) -> EnumType | None:
        return next((e for e in self.enums if e.name == name), None)

    # sequences of their own (``spec.sequences``), sorted by name; never dropped when left out
    sequences: tuple[Sequence, ...] = ()
    # views and materialized views, sorted by name; one the owner never declared is never touched
    views: tuple[View, ...] = ()

    def view(self, name: str) -> View | None:
        return next((v for v in self.views if v.name == name), None)

    # functions (``spec.functions``), sorted by name; one left out is dropped only with drop missing
    functions: tuple[Function, ...] = ()

    def function(self, name: str) -> Function | None:
        return next((f for f in self.functions if f.name == name), None)

    def table(self, name: str) -> Table | None:
        return self._tables_by_name.get(name)

    @cached_property
    def _tables_by_name(self) -> dict[str, Table]:
        """Tables by name, built once: a lookup per desired table must not scan them all (O(n²))."""
        by_name: dict[str, Table] = {}
        for t in self.tables:
            by_name.setdefault(t.name, t)
        return by_name

    @property
    def table_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tables)

    def normalised(self) -> Schema:
        return replace(
            self,
            tables=tuple(sorted((t.with_sorted_parts() for t in self.tables), key=lambda t: t.name)),
            extensions=tuple(sorted(set(self.extensions))),
            enums=tuple(sorted(self.enums, key=lambda e: e.name)),
            sequences=tuple(sorted(self.sequences, key=lambda q: q.name)),
            views=tuple(sorted(self.views, key=lambda v: v.name)),
            functions=tuple(sorted(self.functions, key=lambda f: f.name)),
        )

    # canonical form -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        normalised = self.normalised()
        data: dict[str, Any] = {"tables": [to_json(t) for t in normalised.tables]}
        if normalised.extensions:  # only when asked for: the hash of every other schema stays as it was
            data["extensions"] = list(normalised.extensions)
        if normalised.enums:  # likewise
            data["enums"] = [to_json(e) for e in normalised.enums]
        if normalised.sequences:  # likewise
            data["sequences"] = [to_json(q) for q in normalised.sequences]
        if normalised.views:  # likewise
            data["views"] = [to_json(v) for v in normalised.views]
        if normalised.functions:  # likewise
            data["functions"] = [to_json(f) for f in normalised.functions]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], name: str = "public") -> Schema:
        tables = data.get("tables")
        if not isinstance(tables, list):
            raise SchemaError("tables", "must be a list of tables")
        parsed = tuple(_table_from_dict(t, f"tables[{i}]") for i, t in enumerate(tables))
        enums = data.get("enums") or []
        if not isinstance(enums, list):
            raise SchemaError("enums", "must be a list of enum types")
        parsed_enums = tuple(_enum_from_dict(e, f"enums[{i}]") for i, e in enumerate(enums))
        extensions = extension_names(data.get("extensions") or [], "extensions")
        sequences = data.get("sequences") or []
        if not isinstance(sequences, list):
            raise SchemaError("sequences", "must be a list of sequences")
        seqs = tuple(sequence_from_dict(q, f"sequences[{i}]") for i, q in enumerate(sequences))
        if len({q.name for q in seqs}) != len(seqs):
            raise SchemaError("sequences", "names a sequence twice")
        views = data.get("views") or []
        if not isinstance(views, list):
            raise SchemaError("views", "must be a list of views")
        parsed_views = checked_views(
            tuple(view_from_dict(v, "views", i) for i, v in enumerate(views)), parsed, "views"
        )
        functions = data.get("functions") or []
        if not isinstance(functions, list):
            raise SchemaError("functions", "must be a list of functions")
        from dataflow.functions import function_from_dict, unique_functions

        funcs = unique_functions(function_from_dict(f, f"functions[{i}]") for i, f in enumerate(functions))
        return cls(
            tables=parsed,
            name=name,
            extensions=extensions,
            enums=parsed_enums,
            sequences=seqs,
            views=parsed_views,
            functions=funcs,
        ).normalised()

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def hash(self) -> str:
        """sha256 of the canonical JSON (hex)."""
        return self._hash

    @cached_property
    def _hash(self) -> str:
        """Computed once per (immutable) schema: every plan of a cached desired schema reuses it."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def _req(d: Mapping[str, Any], key: str, path: str, kind: type = str) -> Any:
    if not isinstance(d, Mapping):
        raise SchemaError(path, "must be a mapping")
    if key not in d:
        raise SchemaError(f"{path}.{key}", "is required")
    value = d[key]
    if not isinstance(value, kind) or (kind is str and not value):
        raise SchemaError(f"{path}.{key}", f"must be a non-empty {kind.__name__}")
    return value


def _name(d: Mapping[str, Any], key: str, path: str) -> str:
    """A required identifier: non-empty, no NUL, at most 63 bytes."""
    return check_identifier(_req(d, key, path), f"{path}.{key}")


def _optional_name(d: Mapping[str, Any], key: str, path: str) -> str | None:
    return None if d.get(key) is None else check_identifier(d[key], f"{path}.{key}")


def _names(d: Mapping[str, Any], key: str, path: str, identifiers: bool = True) -> tuple[str, ...]:
    """A non-empty list of column names (``identifiers`` False: index elements, which may be expressions)."""
    values = _req(d, key, path, list)
    if not values or not all(isinstance(v, str) and v for v in values):
        raise SchemaError(f"{path}.{key}", "must be a non-empty list of names")
    return tuple(check_identifier(v, f"{path}.{key}") if identifiers else v for v in values)


def keyword_choice(value: object, field: str, choices: tuple[str, ...]) -> str:
    """``value`` as the one spelling in ``choices`` it names, ignoring case and spacing (``set  null`` → ``SET NULL``).

    Keywords are pasted into SQL, so anything outside the closed list is a SchemaError.
    """
    if isinstance(value, str):
        words = " ".join(value.split())
        for choice in choices:
            if words.casefold() == choice.casefold():
                return choice
    raise SchemaError(field, f"must be one of {', '.join(choices)}, not {value!r}")


def _choice(
    d: Mapping[str, Any], key: str, path: str, choices: tuple[str, ...], default: str | None
) -> str | None:
    value = d.get(key, default)
    return None if value is None else keyword_choice(value, f"{path}.{key}", choices)


def _sql(text: str | None, path: str, normalise: Any = normalise_expression) -> str | None:
    """Hand-written SQL in a manifest, parsed as one expression and put in canonical form (None stays None)."""
    return None if text is None else _sql_text(text, path, normalise)


def _sql_text(text: Any, path: str, normalise: Any = normalise_expression) -> Any:
    """What :func:`_sql` returns for text: ``normalise``'s result (a default may normalise to None: NULL)."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise SchemaError(path, f"must be SQL text, not {type(text).__name__}")
    try:
        return normalise(str(text))
    except ValueError as exc:
        raise SchemaError(path, str(exc)) from None


def _type(text: str, path: str) -> str:
    try:
        return canonical_type(text)
    except ValueError as exc:
        raise SchemaError(path, str(exc)) from None


def check_manifest_types(tables: Any, path: str) -> None:
    """Every column type of a manifest's ``tables`` in the spelling its CRD admits and the engine agrees on
    (:func:`dataflow.types.is_manifest_type`); :meth:`Schema.from_dict` itself also reads other spellings."""
    for i, t in enumerate(tables if isinstance(tables, list) else ()):
        columns = t.get("columns") if isinstance(t, Mapping) else None
        for j, c in enumerate(columns if isinstance(columns, list) else ()):
            text = c.get("type") if isinstance(c, Mapping) else None
            if isinstance(text, str) and not is_manifest_type(text):
                raise SchemaError(
                    f"{path}[{i}].columns[{j}].type",
                    f"{text!r} is not a column type in canonical spelling (such as INTEGER, VARCHAR(20), "
                    "citext, geometry(Point,4326))",
                )


def _table_from_dict(d: Mapping[str, Any], path: str) -> Table:
    name = _name(d, "name", path)
    column_names = {c.get("name") for c in _req(d, "columns", path, list) if isinstance(c, Mapping)}
    columns = tuple(
        _column_from_dict(c, f"{path}.columns[{i}]") for i, c in enumerate(_req(d, "columns", path, list))
    )
    return Table(
        name=name,
        columns=columns,
        primary_key=_names(d, "primaryKey", path) if d.get("primaryKey") else (),
        indexes=tuple(
            _index_from_dict(x, f"{path}.indexes[{i}]", column_names)
            for i, x in enumerate(d.get("indexes") or ())
        ),
        uniques=tuple(
            Unique(
                name=_name(x, "name", f"{path}.uniques[{i}]"),
                columns=_names(x, "columns", f"{path}.uniques[{i}]"),
            )
            for i, x in enumerate(d.get("uniques") or ())
        ),
        foreign_keys=tuple(
            ForeignKey(
                name=_name(x, "name", f"{path}.foreignKeys[{i}]"),
                columns=_names(x, "columns", f"{path}.foreignKeys[{i}]"),
                ref_table=_name(x, "refTable", f"{path}.foreignKeys[{i}]"),
                ref_columns=_names(x, "refColumns", f"{path}.foreignKeys[{i}]"),
                on_delete=_choice(x, "onDelete", f"{path}.foreignKeys[{i}]", FK_ACTIONS, DEFAULT_FK_ACTION)
                or DEFAULT_FK_ACTION,
                on_update=_choice(x, "onUpdate", f"{path}.foreignKeys[{i}]", FK_ACTIONS, DEFAULT_FK_ACTION)
                or DEFAULT_FK_ACTION,
            )
            for i, x in enumerate(d.get("foreignKeys") or ())
        ),
        checks=tuple(
            Check(
                name=_name(x, "name", f"{path}.checks[{i}]"),
                expression=_sql_text(
                    _req(x, "expression", f"{path}.checks[{i}]"), f"{path}.checks[{i}].expression"
                ),
            )
            for i, x in enumerate(d.get("checks") or ())
        ),
        renamed_from=_optional_name(d, "renamedFrom", path),
        exclusions=tuple(
            _exclusion_from_dict(x, f"{path}.exclusions[{i}]", column_names)
            for i, x in enumerate(d.get("exclusions") or ())
        ),
        comment=_comment(d, path),
        row_level_security=_optional_bool(d, "rowLevelSecurity", path),
        policies=tuple(
            _policy_from_dict(x, f"{path}.policies[{i}]") for i, x in enumerate(d.get("policies") or ())
        ),
        triggers=_triggers(d.get("triggers"), f"{path}.triggers", column_names),
    )


def _triggers(value: Any, path: str, column_names: set[Any]) -> tuple[Trigger, ...]:
    """A table's triggers; UPDATE OF names columns of the table."""
    from dataflow.functions import trigger_from_dict

    if value is None:
        return ()
    if not isinstance(value, list):
        raise SchemaError(path, "must be a list of triggers")
    triggers = tuple(trigger_from_dict(x, f"{path}[{i}]") for i, x in enumerate(value))
    for i, t in enumerate(triggers):
        unknown = [c for c in t.columns if c not in column_names]
        if unknown:
            raise SchemaError(f"{path}[{i}].columns", f"{unknown[0]!r} is not a column of the table")
    if len({t.name for t in triggers}) != len(triggers):
        raise SchemaError(path, "names a trigger twice")
    return triggers


def _elements(x: Mapping[str, Any], key: str, path: str, column_names: set[Any]) -> tuple[str, ...]:
    """Index or exclusion elements: column names as they are, anything else a normalised expression."""
    return tuple(
        e if e in column_names else _sql_text(e, f"{path}.{key}")
        for e in _names(x, key, path, identifiers=False)
    )


def _per_element(x: Mapping[str, Any], key: str, path: str, count: int) -> tuple[str, ...]:
    """An optional list of strings with one entry per key element."""
    values = x.get(key) or []
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise SchemaError(f"{path}.{key}", "must be a list of strings")
    if values and len(values) != count:
        raise SchemaError(f"{path}.{key}", f"needs one entry per element ({count}), not {len(values)}")
    return tuple(values)


def _index_from_dict(x: Mapping[str, Any], path: str, column_names: set[Any]) -> Index:
    columns = _elements(x, "columns", path, column_names)
    order = _per_element(x, "order", path, len(columns))
    for o in order:
        try:
            index_order(o)
        except ValueError as exc:
            raise SchemaError(f"{path}.order", str(exc)) from None
    opclasses = _per_element(x, "opclasses", path, len(columns))
    for o in opclasses:
        if o:
            check_identifier(o, f"{path}.opclasses")
    include = tuple(x.get("include") or ())
    if include:
        include = _names(x, "include", path)
    return Index(
        name=_name(x, "name", path),
        columns=columns,
        unique=bool(x.get("unique", False)),
        method=_choice(x, "method", path, INDEX_METHODS, "btree") or "btree",
        where=_sql(x.get("where"), f"{path}.where"),
        include=include,
        order=order,
        opclasses=opclasses,
        nulls_not_distinct=bool(x.get("nullsNotDistinct", False)),
    )


def _exclusion_from_dict(x: Mapping[str, Any], path: str, column_names: set[Any]) -> Exclusion:
    elements = _elements(x, "elements", path, column_names)
    operators = _per_element(x, "operators", path, len(elements))
    if not operators:
        raise SchemaError(f"{path}.operators", "is required: one operator per element")
    for op in operators:
        if not re.fullmatch(EXCLUSION_OPERATOR, op):
            raise SchemaError(f"{path}.operators", f"must be an operator such as = or &&, not {op!r}")
    return Exclusion(
        name=_name(x, "name", path),
        elements=elements,
        operators=operators,
        method=_choice(x, "method", path, INDEX_METHODS, "gist") or "gist",
        where=_sql(x.get("where"), f"{path}.where"),
    )


def _comment(d: Mapping[str, Any], path: str) -> str | None:
    value = d.get("comment")
    if value is not None and not isinstance(value, str):
        raise SchemaError(f"{path}.comment", f"must be text, not {type(value).__name__}")
    return value


def _optional_bool(d: Mapping[str, Any], key: str, path: str) -> bool | None:
    value = d.get(key)
    if value is not None and not isinstance(value, bool):
        raise SchemaError(f"{path}.{key}", f"must be true or false, not {value!r}")
    return value


def policy_roles(value: Any, path: str) -> tuple[str, ...]:
    """Role names, sorted and each once (``public``: every role); a string is one role."""
    roles = (value,) if isinstance(value, str) else value
    if not isinstance(roles, (list, tuple)) or not roles:
        raise SchemaError(path, "must be a non-empty list of role names")
    return tuple(sorted({check_identifier(r, path) for r in roles}))


def _policy_from_dict(x: Mapping[str, Any], path: str) -> Policy:
    permissive = x.get("permissive", True)
    if not isinstance(permissive, bool):
        raise SchemaError(f"{path}.permissive", f"must be true or false, not {permissive!r}")
    policy = Policy(
        name=_name(x, "name", path),
        command=_choice(x, "command", path, POLICY_COMMANDS, "ALL") or "ALL",
        roles=policy_roles(x.get("roles", [PUBLIC_ROLE]), f"{path}.roles"),
        using=_sql(x.get("using"), f"{path}.using"),
        with_check=_sql(x.get("withCheck"), f"{path}.withCheck"),
        permissive=permissive,
    )
    return check_policy(policy, path)


def check_policy(p: Policy, path: str) -> Policy:
    """What PostgreSQL refuses: SELECT and DELETE take no WITH CHECK, INSERT no USING; one of them is needed."""
    if p.with_check is not None and p.command in ("SELECT", "DELETE"):
        raise SchemaError(f"{path}.withCheck", f"a {p.command} policy takes only USING")
    if p.using is not None and p.command == "INSERT":
        raise SchemaError(f"{path}.using", "an INSERT policy takes only WITH CHECK")
    if p.using is None and p.with_check is None:
        raise SchemaError(path, "needs a USING or a WITH CHECK expression")
    return p


def collation_name(value: Any, path: str) -> str | None:
    """A column's collation; ``default`` (the type's own) is the same as none, as introspection reads it."""
    if value is None:
        return None
    name = check_identifier(value, path)
    return None if name == "default" else name


def _column_from_dict(c: Mapping[str, Any], path: str) -> Column:
    """One manifest column; its default is normalised for its own type (a NULL default is none)."""
    column_type = _type(_req(c, "type", path), f"{path}.type")
    if c.get("generated") is not None and (c.get("default") is not None or c.get("identity")):
        raise SchemaError(f"{path}.generated", "a generated column has no default nor identity")
    return Column(
        name=_name(c, "name", path),
        type=column_type,
        nullable=bool(c.get("nullable", True)),
        default=_sql(c.get("default"), f"{path}.default", lambda text: normalise_default(text, column_type)),
        identity=_choice(c, "identity", path, IDENTITY_KINDS, None),
        renamed_from=_optional_name(c, "renamedFrom", path),
        generated=_sql(c.get("generated"), f"{path}.generated"),
        identity_start=_identity_option(c, "identityStart", path),
        identity_increment=_identity_option(c, "identityIncrement", path),
        comment=_comment(c, path),
        collation=collation_name(c.get("collation"), f"{path}.collation"),
    )


def extension_names(value: Any, path: str) -> tuple[str, ...]:
    """A list of extension names (``spec.extensions``, a model's ``extensions``), each a checked identifier."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise SchemaError(path, 'must be a list of extension names, such as ["citext"]')
    for i, name in enumerate(value):
        if not isinstance(name, str):
            raise SchemaError(f"{path}[{i}]", f"must be an extension name, not {type(name).__name__}")
        check_identifier(name, f"{path}[{i}]")
    return tuple(value)


def _enum_from_dict(d: Mapping[str, Any], path: str) -> EnumType:
    values = _req(d, "values", path, list)
    renames = d.get("renamedValues") or []
    if not isinstance(renames, list):
        raise SchemaError(f"{path}.renamedValues", "must be a list of {from, to}")
    return checked_enum(
        EnumType(
            _name(d, "name", path),
            tuple(values),
            tuple(
                EnumRename(
                    _req(r, "from", f"{path}.renamedValues[{i}]"), _req(r, "to", f"{path}.renamedValues[{i}]")
                )
                for i, r in enumerate(renames)
            ),
        ),
        path,
    )


def checked_enum(e: EnumType, path: str) -> EnumType:
    """``e`` if its labels are non-empty strings of at most 63 bytes, each once, and each rename names a label."""
    if not e.values:
        raise SchemaError(f"{path}.values", "needs at least one label")
    for i, v in enumerate(e.values):
        if not isinstance(v, str) or not v or len(v.encode()) > MAX_IDENTIFIER_BYTES or "\x00" in v:
            raise SchemaError(f"{path}.values[{i}]", f"must be a label of 1 to 63 bytes, not {v!r}")
    if len(set(e.values)) != len(e.values):
        raise SchemaError(f"{path}.values", "each label must appear once")
    for i, r in enumerate(e.renamed_values):
        if r.new not in e.values:
            raise SchemaError(f"{path}.renamedValues[{i}].to", f"{r.new!r} is not one of the values")
        if r.old in e.values:
            raise SchemaError(f"{path}.renamedValues[{i}].from", f"{r.old!r} is still one of the values")
    return e


def _identity_option(c: Mapping[str, Any], key: str, path: str) -> int | None:
    """An identity START/INCREMENT: an integer, only on an identity column; 1 is PostgreSQL's own (None)."""
    value = c.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaError(f"{path}.{key}", f"must be an integer, not {type(value).__name__}")
    if not c.get("identity"):
        raise SchemaError(f"{path}.{key}", "needs identity")
    if key == "identityIncrement" and value == 0:
        raise SchemaError(f"{path}.{key}", "cannot be 0")
    return None if value == 1 else value


def sequence_from_dict(d: Mapping[str, Any], path: str) -> Sequence:
    """One sequence of ``spec.sequences`` (or of a model's ``__dataflow__``), its options checked."""
    name = _name(d, "name", path)
    unknown = set(d) - {"name", "start", "increment", "ownedBy", "owned_by"}
    if unknown:
        raise SchemaError(f"{path}.{sorted(unknown)[0]}", "is not a sequence option")
    values: dict[str, int | None] = {}
    for key in ("start", "increment"):
        value = d.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise SchemaError(f"{path}.{key}", f"must be an integer, not {type(value).__name__}")
        if key == "increment" and value == 0:
            raise SchemaError(f"{path}.{key}", "cannot be 0")
        values[key] = None if value == 1 else value
    owned_by = d.get("ownedBy", d.get("owned_by"))
    if owned_by is not None:
        table, dot, column = owned_by.partition(".") if isinstance(owned_by, str) else ("", "", "")
        if not dot:
            raise SchemaError(f"{path}.ownedBy", 'must be "table.column"')
        check_identifier(table, f"{path}.ownedBy")
        check_identifier(column, f"{path}.ownedBy")
    return Sequence(name, values["start"], values["increment"], owned_by)


def view_query(text: Any, path: str) -> str:
    """A view's SQL body in canonical form: exactly one SELECT statement, else a SchemaError naming ``path``."""
    if not isinstance(text, str):
        raise SchemaError(path, f"must be SQL text, not {type(text).__name__}")
    try:
        return normalise_query(text)
    except ValueError as exc:
        raise SchemaError(path, str(exc)) from None


def view_from_dict(d: Mapping[str, Any], base: str, i: int) -> View:
    """One view of ``spec.views`` (or of a model's ``__dataflow__``): name, query, materialized.

    ``base`` is the list's path; errors name the view by its name once it has one (``views.active.query``).
    """
    name = _name(d, "name", f"{base}[{i}]")
    path = f"{base}.{name}"
    unknown = set(d) - {"name", "query", "materialized"}
    if unknown:
        raise SchemaError(f"{path}.{sorted(unknown)[0]}", "is not a view option")
    materialized = d.get("materialized", False)
    if not isinstance(materialized, bool):
        raise SchemaError(f"{path}.materialized", f"must be true or false, not {materialized!r}")
    return View(name, view_query(_req(d, "query", path), f"{path}.query"), materialized)


def checked_views(views: tuple[View, ...], tables: Iterable[Table], path: str) -> tuple[View, ...]:
    """``views`` if each name appears once and names no table (tables and views share one namespace)."""
    names = [v.name for v in views]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SchemaError(f"{path}.{twice[0]}", "is declared twice")
    clash = sorted(set(names) & {t.name for t in tables})
    if clash:
        raise SchemaError(f"{path}.{clash[0]}", "is also a table's name")
    return views
