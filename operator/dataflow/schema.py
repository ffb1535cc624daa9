"""Immutable schema model with a canonical JSON form and a stable hash.

The canonical form (docs/canonical-schema.md) is what manifests carry in
``spec.tables`` and what :func:`schema_hash` digests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from dataflow.errors import SchemaError
from dataflow.jsonfields import json_field, to_json
from dataflow.sqltext import MAX_IDENTIFIER_BYTES, check_identifier, normalise_default, normalise_expression
from dataflow.types import KNOWN_BASE_TYPES, canonical_type

DEFAULT_FK_ACTION = "NO ACTION"
FK_ACTIONS = ("NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT")
INDEX_METHODS = ("btree", "hash", "gin", "gist", "brin", "spgist")
IDENTITY_KINDS = ("ALWAYS", "BY DEFAULT")

# The JSON-schema form of the format's strings (dataflow.crdgen publishes them in the CRD).
# maxLength counts characters; the 63-byte limit itself is checked by dataflow.sqltext.check_identifier.
IDENTIFIER_DOC = "PostgreSQL identifier (quoted by the engine; any character but NUL)."
IDENTIFIER = {"minLength": 1, "maxLength": MAX_IDENTIFIER_BYTES, "pattern": "^[^\\x00]+$"}
IDENTIFIER_ITEM = {"type": "string", "description": IDENTIFIER_DOC, **IDENTIFIER}
SQL_TEXT = {"minLength": 1}
# Type modifiers a manifest may write, by canonical base type; other known types take none.
_LENGTH = r"\([1-9][0-9]*\)"
TYPE_MODIFIERS = {"VARCHAR": _LENGTH, "CHAR": _LENGTH, "NUMERIC": rf"({_LENGTH[:-2]}(,[0-9]+)?\))?"}


def column_type_pattern() -> str:
    """The canonical column types (dataflow.types.KNOWN_BASE_TYPES) as one anchored regular expression."""
    # base names are upper-case words (no regex metacharacters): RE2, the API server's engine, reads them as is
    alternatives = [base + TYPE_MODIFIERS.get(base, "") for base in sorted(KNOWN_BASE_TYPES)]
    return f"^({'|'.join(alternatives)})(\\[\\])?$"


def column_type_doc() -> str:
    spelled = [base + {"VARCHAR": "(n)", "CHAR": "(n)"}.get(base, "") for base in sorted(KNOWN_BASE_TYPES)]
    return (
        "Canonical upper-case PostgreSQL type: "
        + ", ".join(spelled)
        + "; NUMERIC may be NUMERIC(p) or NUMERIC(p,s); any of these followed by [] for an array."
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
        def by_name(items: Iterable[Any]) -> tuple[Any, ...]:
            return tuple(sorted(items, key=lambda i: i.name))

        return replace(
            self,
            indexes=by_name(self.indexes),
            uniques=by_name(self.uniques),
            foreign_keys=by_name(self.foreign_keys),
            checks=by_name(self.checks),
            policies=by_name(self.policies),
        )


@dataclass(frozen=True)
class Schema:
    """A set of tables in one PostgreSQL schema (namespace)."""

    tables: tuple[Table, ...] = field(default_factory=tuple)
    name: str = "public"
    # PostgreSQL extensions the tables need (created first, IF NOT EXISTS); sorted, each once
    extensions: tuple[str, ...] = ()

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
        )

    # canonical form -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        normalised = self.normalised()
        data: dict[str, Any] = {"tables": [to_json(t) for t in normalised.tables]}
        if normalised.extensions:  # only when asked for: the hash of every other schema stays as it was
            data["extensions"] = list(normalised.extensions)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], name: str = "public") -> Schema:
        tables = data.get("tables")
        if not isinstance(tables, list):
            raise SchemaError("tables", "must be a list of tables")
        parsed = tuple(_table_from_dict(t, f"tables[{i}]") for i, t in enumerate(tables))
        return cls(tables=parsed, name=name).normalised()

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
            Index(
                name=_name(x, "name", f"{path}.indexes[{i}]"),
                columns=tuple(
                    e if e in column_names else _sql_text(e, f"{path}.indexes[{i}].columns")
                    for e in _names(x, "columns", f"{path}.indexes[{i}]", identifiers=False)
                ),
                unique=bool(x.get("unique", False)),
                method=_choice(x, "method", f"{path}.indexes[{i}]", INDEX_METHODS, "btree") or "btree",
                where=_sql(x.get("where"), f"{path}.indexes[{i}].where"),
            )
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
        comment=_comment(d, path),
        row_level_security=_optional_bool(d, "rowLevelSecurity", path),
        policies=tuple(
            _policy_from_dict(x, f"{path}.policies[{i}]") for i, x in enumerate(d.get("policies") or ())
        ),
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
    return Column(
        name=_name(c, "name", path),
        type=column_type,
        nullable=bool(c.get("nullable", True)),
        default=_sql(c.get("default"), f"{path}.default", lambda text: normalise_default(text, column_type)),
        identity=_choice(c, "identity", path, IDENTITY_KINDS, None),
        renamed_from=_optional_name(c, "renamedFrom", path),
        comment=_comment(c, path),
        collation=collation_name(c.get("collation"), f"{path}.collation"),
    )
