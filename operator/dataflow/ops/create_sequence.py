"""CREATE_SEQUENCE: a sequence the schema declares (``spec.sequences``) and the database lacks.

Created before tables, so a column default may call ``nextval`` on it; its ``OWNED BY`` column may not
exist yet, so the diff sets that afterwards (ALTER_SEQUENCE). The undo drops it, with its position.
A sequence the schema stops declaring is left alone: sequences are never dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import METADATA_MS, Facts
from dataflow.schema import Schema, Sequence, Table
from dataflow.sqlgen import Options, Rendered, tx
from dataflow.sqltext import qualified

CREATE_SEQUENCE = "CREATE_SEQUENCE"
ALTER_SEQUENCE = "ALTER_SEQUENCE"  # dataflow.ops.alter_sequence; named here for the diff below


def sequence_options(seq: Sequence) -> str:
    """``START WITH n INCREMENT BY m`` (1 where not given)."""
    start = int(seq.start if seq.start is not None else 1)
    increment = int(seq.increment if seq.increment is not None else 1)
    return f"START WITH {start} INCREMENT BY {increment}"


@register
class CreateSequence(Kind):
    name = CREATE_SEQUENCE
    order = 48  # after extensions (and enums), before the tables whose defaults may use it
    reads_table = False  # a database object, not a table
    undo_risk = Risk.MEDIUM  # dropping it loses its position

    def schema_wide(self, change: Change, include: set[str]) -> bool:
        owner = change.new.owner  # owned by a table outside the included ones: that table's change
        return owner is None or owner[0] in include

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        return Assessment(Risk.SAFE, "new sequence; no existing table is touched", "none", METADATA_MS)

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        seq: Sequence = change.new
        name = qualified(options.schema, seq.name)
        return Rendered(
            tx(f"CREATE SEQUENCE {name} {sequence_options(seq)};"),
            (f"DROP SEQUENCE IF EXISTS {name};",),
            f"{seq.name} ({sequence_options(seq)})",
        )


def compare_sequences(current: Schema, desired: Schema) -> Iterator[Change]:
    """Declared sequences that are missing (created, then owned) or whose options differ."""
    for seq in desired.sequences:
        existing = next((q for q in current.sequences if q.name == seq.name), None)
        if existing is None:
            existing = replace(seq, owned_by=None)
            yield Change(CREATE_SEQUENCE, seq.name, seq.name, new=existing)
        if existing != seq:
            yield Change(ALTER_SEQUENCE, seq.name, seq.name, old=existing, new=seq)
