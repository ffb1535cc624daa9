"""CREATE_ENUM: an enum type a model's ``enum.Enum`` annotation (or ``spec.enums``) declares, created
before the tables that use it. The undo drops it again: nothing existed under that name before."""

from __future__ import annotations

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import METADATA_MS, Facts
from dataflow.schema import EnumType, Table
from dataflow.sqlgen import Options, Rendered, tx
from dataflow.sqltext import qualified, quote_literal

CREATE_ENUM = "CREATE_ENUM"


def labels(values: tuple[str, ...]) -> str:
    return ", ".join(quote_literal(v) for v in values)


def create_enum_sql(e: EnumType, schema: str) -> str:
    return f"CREATE TYPE {qualified(schema, e.name)} AS ENUM ({labels(e.values)});"


@register
class CreateEnum(Kind):
    name = CREATE_ENUM
    order = 46  # after extensions, before every kind that creates or alters a column of the type
    reads_table = False  # a type, not a table: no rows to measure

    def schema_wide(self, change: Change, include: set[str]) -> bool:
        return True  # a new type touches no table

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        e: EnumType = change.new
        return Assessment(
            Risk.SAFE,
            f"new enum type {e.name} ({len(e.values)} labels); no table is touched",
            "none",
            METADATA_MS,
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        e: EnumType = change.new
        return Rendered(
            tx(create_enum_sql(e, options.schema)),
            (f"DROP TYPE IF EXISTS {qualified(options.schema, e.name)};",),
            f"{e.name} ({', '.join(e.values)})",
        )
