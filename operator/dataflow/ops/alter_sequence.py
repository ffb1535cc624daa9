"""ALTER_SEQUENCE: a declared sequence's START, INCREMENT or OWNED BY changes; catalog only.

``START WITH`` records where a later ``RESTART`` goes; it does not move the sequence's next value.
Runs after columns and indexes, so an ``OWNED BY`` column the same plan adds exists.
"""

from __future__ import annotations

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.ops.create_sequence import ALTER_SEQUENCE, sequence_options
from dataflow.safety import METADATA_MS, Facts
from dataflow.schema import Sequence, Table
from dataflow.sqlgen import Options, Rendered, tx
from dataflow.sqltext import qualified
from dataflow.sqltext import quote_ident as q


@register
class AlterSequence(Kind):
    name = ALTER_SEQUENCE
    order = 135  # after columns (an OWNED BY column may be new), before constraints
    reads_table = False  # a database object, not a table

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        return Assessment(Risk.SAFE, "sequence options, catalog only", "none on tables", METADATA_MS)

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        old, new = change.old, change.new
        return Rendered(
            tx(_alter(new, options.schema)),
            (_alter(old, options.schema),),
            f"{new.name}: {_describe(old)} → {_describe(new)}",
            strategy="catalog only",
        )


def _owned_by(seq: Sequence, schema: str) -> str:
    owner = seq.owner
    return "NONE" if owner is None else f"{qualified(schema, owner[0])}.{q(owner[1])}"


def _alter(seq: Sequence, schema: str) -> str:
    return f"ALTER SEQUENCE {qualified(schema, seq.name)} {sequence_options(seq)} OWNED BY {_owned_by(seq, schema)};"


def _describe(seq: Sequence) -> str:
    return f"{sequence_options(seq)}, owned by {seq.owned_by or 'none'}"
