"""One home per operation kind: the registry, execution order, no kind names outside ``dataflow.ops``,
constraints dispatched on their class, and a new kind that takes part in plans without touching other modules."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

import dataflow
import dataflow.diff
import dataflow.ops
from dataflow.errors import SchemaError
from dataflow.operations import Assessment, Change, Risk
from dataflow.ops import Context, Kind, all_kinds, kind_names, kind_of, register, sort_changes, unregister
from dataflow.ops.add_column import ADD_COLUMN
from dataflow.ops.add_constraint import ADD_CONSTRAINT
from dataflow.ops.create_table import CREATE_TABLE
from dataflow.ops.drop_constraint import DROP_CONSTRAINT
from dataflow.ops.drop_table import DROP_TABLE
from dataflow.ops.rename_table import RENAME_TABLE
from dataflow.options import MigrationOptions
from dataflow.reconcile import Outcome, reconcile
from dataflow.safety import METADATA_MS, Facts
from dataflow.schema import Column, Schema, Table, Unique
from dataflow.sqlgen import Options, Rendered, render, tx
from dataflow.sqltext import qualified, quote_literal

PACKAGE = Path(dataflow.__file__).parent
KIND_MODULES = sorted(m.name for m in pkgutil.iter_modules(dataflow.ops.__path__) if m.name != "base")


def test_every_kind_module_registers_exactly_one_kind_named_after_the_module() -> None:
    assert len(KIND_MODULES) == 38 and len(all_kinds()) == 38
    assert sorted(kind_names()) == sorted(m.upper() for m in KIND_MODULES)
    for module_name in KIND_MODULES:
        module = importlib.import_module(f"dataflow.ops.{module_name}")
        kind = kind_of(module_name.upper())
        assert getattr(module, module_name.upper()) == kind.name
        assert type(kind).__module__ == module.__name__
        assert [k for k in all_kinds() if type(k).__module__ == module.__name__] == [kind]


def test_a_kind_name_or_position_registers_once() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(type("Again", (type(kind_of(ADD_COLUMN)),), {}))
    with pytest.raises(ValueError, match="position 60"):
        register(type("SamePlace", (type(kind_of(ADD_COLUMN)),), {"name": "SAME_PLACE"}))
    assert "SAME_PLACE" not in kind_names()
    with pytest.raises(ValueError, match="unknown change kind NOPE"):
        kind_of("NOPE")


def test_execution_order_covers_every_kind_and_is_the_registry() -> None:
    from dataflow.operations import EXECUTION_ORDER, OPERATION_KINDS

    assert set(OPERATION_KINDS) == set(EXECUTION_ORDER) == set(kind_names())
    assert sorted(EXECUTION_ORDER.values()) == list(range(len(kind_names())))
    # a type goes only after the tables that use it
    # and an extension only after every type, table, function and index that could use it
    assert OPERATION_KINDS[0] == RENAME_TABLE and tuple(OPERATION_KINDS[-4:]) == (
        DROP_TABLE,
        "DROP_FUNCTION",
        "DROP_ENUM",
        "DROP_EXTENSION",
    )
    assert EXECUTION_ORDER[DROP_CONSTRAINT] < EXECUTION_ORDER[CREATE_TABLE] < EXECUTION_ORDER[ADD_CONSTRAINT]


def _string_constants(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_no_module_outside_ops_spells_a_kind_name() -> None:
    """Behaviour per kind lives in its module: elsewhere a kind is asked, never compared with a literal."""
    names = set(kind_names())
    found = [
        f"{path.relative_to(PACKAGE)}:{line}: {value}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "ops" not in path.relative_to(PACKAGE).parts
        for line, value in _string_constants(path)
        if value in names
    ]
    assert found == []


@dataclass(frozen=True)
class Exclude:
    """A constraint class no renderer knows (EXCLUDE USING gist ...)."""

    name: str
    columns: tuple[str, ...]


EXCLUDE = Exclude("no_overlap", ("a",))


@pytest.mark.parametrize(
    "change, options",
    [
        (Change(ADD_CONSTRAINT, "t", "no_overlap", new=EXCLUDE), Options()),
        (Change(ADD_CONSTRAINT, "t", "no_overlap", new=EXCLUDE), Options(populated=True, online=True)),
        (Change(DROP_CONSTRAINT, "t", "no_overlap", old=EXCLUDE), Options()),
    ],
)
def test_an_unknown_constraint_class_is_refused_not_rendered_as_unique(
    change: Change, options: Options
) -> None:
    with pytest.raises(SchemaError, match="no_overlap: no SQL for constraint class Exclude"):
        render(change, options)


def test_known_constraint_classes_keep_their_own_sql() -> None:
    online = render(
        Change(ADD_CONSTRAINT, "t", "u", new=Unique("u", ("a",))), Options(populated=True, online=True)
    )
    assert online.up == (
        'CREATE UNIQUE INDEX CONCURRENTLY "u" ON "public"."t" ("a");',
        'ALTER TABLE "public"."t" ADD CONSTRAINT "u" UNIQUE USING INDEX "u";',
    )


# a toy kind, registered for one test and forgotten after --------------------------------------
COMMENT_TABLE = "COMMENT_TABLE"


class CommentTable(Kind):
    """Sets the table's comment; runs after CREATE_TABLE (50) and before ADD_COLUMN (60)."""

    name = COMMENT_TABLE
    order = 55

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        return Assessment(
            Risk.SAFE, f"comment only, {facts.rows} rows untouched", "SHARE UPDATE EXCLUSIVE", METADATA_MS
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        name = qualified(options.schema, change.table)
        return Rendered(
            tx(f"COMMENT ON TABLE {name} IS {quote_literal(change.new)};"),
            (f"COMMENT ON TABLE {name} IS NULL;",),
            change.new,
        )


def compare_comment(old: Table, new: Table) -> Iterator[Change]:
    yield Change(COMMENT_TABLE, new.name, new="managed by dataflow")


@pytest.fixture
def toy_kind(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The toy kind registered, and emitted by the diff for every existing table."""
    register(CommentTable)
    monkeypatch.setattr(
        dataflow.diff, "TABLE_COMPARATORS", (*dataflow.diff.TABLE_COMPARATORS, compare_comment)
    )
    yield
    unregister(COMMENT_TABLE)


def test_the_toy_kind_is_gone_after_its_fixture() -> None:
    assert COMMENT_TABLE not in kind_names()


async def test_a_new_kind_takes_part_in_ordering_grading_rendering_and_applying(
    toy_kind, dsn: str, conn: asyncpg.Connection
) -> None:
    from dataflow.operations import OPERATION_KINDS

    assert OPERATION_KINDS.index(COMMENT_TABLE) == OPERATION_KINDS.index(ADD_COLUMN) - 1
    add = Change(ADD_COLUMN, "item", "b", new=Column("b", "TEXT"))
    comment = Change(COMMENT_TABLE, "item", new="x")
    assert sort_changes([add, comment]) == [comment, add]

    await conn.execute("CREATE TABLE item (id bigint PRIMARY KEY, a text)")
    await conn.execute("INSERT INTO item SELECT g, 'v' FROM generate_series(1, 3) g")
    desired = Schema(
        (
            Table(
                "item",
                (Column("id", "BIGINT", nullable=False), Column("a", "TEXT"), Column("b", "TEXT")),
                primary_key=("id",),
            ),
        )
    )
    result = await reconcile(conn, dsn, desired, "toy-owner", MigrationOptions())
    assert result.outcome is Outcome.APPLIED, result.reason
    ops = result.migration.operations
    assert [op.kind for op in ops] == [COMMENT_TABLE, ADD_COLUMN]
    assert ops[0].assessment.reason == "comment only, 3 rows untouched"
    assert ops[0].sql_down == ('COMMENT ON TABLE "public"."item" IS NULL;',)
    assert (
        await conn.fetchval("SELECT obj_description('public.item'::regclass, 'pg_class')")
        == "managed by dataflow"
    )
    assert (
        await conn.fetchval("SELECT count(*) FROM information_schema.columns WHERE table_name = 'item'") == 3
    )


async def test_a_new_kind_can_be_excluded_by_name(toy_kind, dsn: str, conn: asyncpg.Connection) -> None:
    await conn.execute("CREATE TABLE item (id bigint PRIMARY KEY)")
    desired = Schema(
        (Table("item", (Column("id", "BIGINT", nullable=False), Column("b", "TEXT")), primary_key=("id",)),)
    )
    result = await reconcile(
        conn, dsn, desired, "toy-owner", MigrationOptions(exclude_operations=(COMMENT_TABLE,))
    )
    assert result.outcome is Outcome.APPLIED, result.reason
    assert [op.kind for op in result.migration.operations] == [ADD_COLUMN]
    assert await conn.fetchval("SELECT obj_description('public.item'::regclass, 'pg_class')") is None
