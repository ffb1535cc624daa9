"""SET_COMMENT: COMMENT ON a table or column, from the model's docstring or ``Field(comment=...)``.

A catalog write only (pg_description): SAFE, and undone by putting the previous comment back.
The text is a literal (quote_literal), never pasted SQL. An empty comment removes it (IS NULL).
"""

from __future__ import annotations

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import METADATA_MS, Facts
from dataflow.schema import Table
from dataflow.sqlgen import Options, Rendered, tx
from dataflow.sqltext import qualified, quote_literal
from dataflow.sqltext import quote_ident as q

SET_COMMENT = "SET_COMMENT"
LOCK = "SHARE UPDATE EXCLUSIVE (brief; reads and writes continue)"


@register
class SetComment(Kind):
    name = SET_COMMENT
    order = 143  # after the table and its columns exist
    undo_risk = Risk.SAFE
    reads_table = False  # documentation: no rows to measure

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        what = "column" if change.subject else "table"
        return Assessment(
            Risk.SAFE, f"documentation of the {what} only; no data is touched", LOCK, METADATA_MS
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        target = qualified(options.schema, change.table)
        if change.subject is not None:
            target = f"COLUMN {target}.{q(change.subject)}"
        else:
            target = f"TABLE {target}"
        details = f"{change.subject or change.table}: {_short(change.new)}"
        return Rendered(tx(comment_on(target, change.new)), (comment_on(target, change.old),), details)


def comment_on(target: str, text: str | None) -> str:
    return f"COMMENT ON {target} IS {quote_literal(text) if text else 'NULL'};"


def _short(text: str | None, limit: int = 60) -> str:
    if not text:
        return "(no comment)"
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
