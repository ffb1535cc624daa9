"""Pure parts of the engine: quoting, types, expressions, the canonical schema form, model mapping."""

from datetime import date, datetime
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflow import DataFlow, Field, SchemaError
from dataflow.models import model_to_table, snake_case
from dataflow.redact import Redactor
from dataflow.schema import Column, ForeignKey, Index, Schema, Table
from dataflow.sqltext import (
    normalise_default,
    normalise_expression,
    parse_expression,
    quote_ident,
    quote_literal,
)
from dataflow.types import Conversion, canonical_type, classify_conversion


@pytest.mark.parametrize(
    "name, quoted", [("user", '"user"'), ("order", '"order"'), ('a"b', '"a""b"'), ("Mixed", '"Mixed"')]
)
def test_quote_ident(name: str, quoted: str) -> None:
    assert quote_ident(name) == quoted


def test_quote_ident_refuses_bad_names() -> None:
    with pytest.raises(ValueError, match="longer than 63 bytes"):
        quote_ident("x" * 64)
    with pytest.raises(ValueError):
        quote_ident("a\x00b")


@given(
    st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40)
)
def test_quote_literal_round_trips_through_the_parser(text: str) -> None:
    # a literal parses as exactly one constant expression, whatever quotes or backslashes it holds
    node = parse_expression(quote_literal(text))
    assert type(node).__name__ == "A_Const"


def test_text_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(ValueError, match="not valid UTF-8"):
        quote_literal("\ud800")
    with pytest.raises(ValueError, match="not valid UTF-8"):
        parse_expression("'\ud800'")


@pytest.mark.parametrize("bad", ["1; DROP TABLE x", "a FROM b", "", "x) OR (1=1"])
def test_parse_expression_refuses_anything_but_one_expression(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_expression(bad)


@pytest.mark.parametrize(
    "catalog, model",
    [
        ("(price > (0)::numeric)", "price > 0"),
        (
            "to_tsvector('english'::regconfig, COALESCE(name, ''::text))",
            "to_tsvector('english', coalesce(name, ''))",
        ),
    ],
)
def test_catalog_and_model_expressions_normalise_alike(catalog: str, model: str) -> None:
    assert normalise_expression(catalog) == normalise_expression(model)


@pytest.mark.parametrize(
    "catalog, model",
    [
        ("'pending'::character varying", "'pending'"),
        ("'-1'::integer", "-1"),
        ("now()", "CURRENT_TIMESTAMP"),
        ("true", "TRUE"),
    ],
)
def test_defaults_normalise_alike(catalog: str, model: str) -> None:
    assert normalise_default(catalog) == normalise_default(model)


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("character varying(20)", "VARCHAR(20)"),
        ("timestamp with time zone", "TIMESTAMPTZ"),
        ("int4", "INTEGER"),
        ("numeric(10,2)", "NUMERIC(10,2)"),
        ("text[]", "TEXT[]"),
        ("double precision", "DOUBLE PRECISION"),
    ],
)
def test_canonical_type(text: str, canonical: str) -> None:
    assert canonical_type(text) == canonical


@pytest.mark.parametrize(
    "old, new, conversion",
    [
        ("VARCHAR(10)", "VARCHAR(20)", Conversion.IN_PLACE),
        ("VARCHAR(10)", "TEXT", Conversion.IN_PLACE),
        ("VARCHAR(20)", "VARCHAR(10)", Conversion.NARROWING),
        ("INTEGER", "BIGINT", Conversion.WIDENING),
        ("TEXT", "BIGINT", Conversion.NARROWING),
        ("BIGINT", "INTEGER", Conversion.NARROWING),
        ("NUMERIC(10,2)", "NUMERIC(12,2)", Conversion.IN_PLACE),
    ],
)
def test_classify_conversion(old: str, new: str, conversion: Conversion) -> None:
    assert classify_conversion(old, new) is conversion


@pytest.mark.parametrize(
    "cls, table", [("User", "user"), ("OrderItem", "order_item"), ("HTTPLog", "http_log")]
)
def test_snake_case(cls: str, table: str) -> None:
    assert snake_case(cls) == table


def test_type_map_and_nullability() -> None:
    class Everything:
        a: str
        b: int
        c: float
        d: bool
        e: datetime
        f: date
        g: Decimal
        h: dict
        i: list
        j: bytes
        k: UUID
        l: str | None  # noqa: E741 - the fields are named a to n
        m: str = None
        n: str = Field(max_length=20, default="x")
        o: int = 5

    t = model_to_table(Everything)
    got = {c.name: (c.type, c.nullable, c.default) for c in t.columns}
    assert got == {
        "id": ("BIGINT", False, None),
        "a": ("TEXT", False, None),
        "b": ("BIGINT", False, None),
        "c": ("DOUBLE PRECISION", False, None),
        "d": ("BOOLEAN", False, None),
        "e": ("TIMESTAMPTZ", False, None),
        "f": ("DATE", False, None),
        "g": ("NUMERIC(10,2)", False, None),
        "h": ("JSONB", False, None),
        "i": ("JSONB", False, None),
        "j": ("BYTEA", False, None),
        "k": ("UUID", False, None),
        "l": ("TEXT", True, None),
        "m": ("TEXT", True, None),
        "n": ("VARCHAR(20)", False, "'x'"),
        "o": ("BIGINT", False, "5"),
    }
    assert t.primary_key == ("id",) and t.column("id").identity == "BY DEFAULT"


def test_bad_model_input_names_the_field() -> None:
    db = DataFlow("postgresql://unused")
    with pytest.raises(SchemaError, match=r"Broken\.when: unsupported field type"):

        @db.model
        class Broken:
            when: complex

    with pytest.raises(SchemaError, match=r"Idx\.__dataflow__\.indexes\[0\]\.fields: unknown field 'nope'"):

        @db.model
        class Idx:
            name: str
            __dataflow__ = {"indexes": [{"fields": ["nope"]}]}


names = st.text(alphabet="abcdefghij_", min_size=1, max_size=8)
types = st.sampled_from(["TEXT", "BIGINT", "BOOLEAN", "VARCHAR(20)", "NUMERIC(10,2)", "JSONB", "TIMESTAMPTZ"])
columns = st.builds(
    Column,
    name=names,
    type=types,
    nullable=st.booleans(),
    default=st.sampled_from([None, "0", "'x'", "CURRENT_TIMESTAMP"]),
)


@st.composite
def schemas(draw: st.DrawFn) -> Schema:
    tables = []
    for tname in draw(st.lists(names, min_size=1, max_size=4, unique=True)):
        cols = draw(st.lists(columns, min_size=1, max_size=5, unique_by=lambda c: c.name))
        first = cols[0].name
        indexes = (
            Index(
                f"{tname}_{first}_idx", (first,), where=draw(st.sampled_from([None, f"{first} IS NOT NULL"]))
            ),
        )
        tables.append(Table(tname, tuple(cols), primary_key=(first,), indexes=indexes))
    target = tables[0]
    fks = (
        ForeignKey(
            f"{target.name}_self_fkey", (target.columns[0].name,), target.name, (target.columns[0].name,)
        ),
    )
    tables[0] = Table(target.name, target.columns, target.primary_key, target.indexes, foreign_keys=fks)
    return Schema(tuple(tables)).normalised()


@given(schemas())
def test_canonical_form_round_trips_and_hash_is_stable(schema: Schema) -> None:
    again = Schema.from_dict(schema.to_dict())
    assert again == schema
    assert again.hash() == schema.hash()
    reordered = Schema(tuple(reversed(schema.tables))).normalised()
    assert reordered.hash() == schema.hash()


def test_redactor_hides_dsn_and_password() -> None:
    r = Redactor("postgresql://app:p%40ss@db:5432/shop")
    assert r("failed: postgresql://app:p%40ss@db:5432/shop (p@ss)") == "failed: *** (***)"
