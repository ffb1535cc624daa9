"""SET_ROW_SECURITY: ``ALTER TABLE ... ENABLE / DISABLE ROW LEVEL SECURITY``.

Enabling narrows access (roles other than the table's owner see only rows a policy allows: none
without one), so on a table with rows it is MEDIUM. Disabling is HIGH: every role with a grant sees
every row again. A catalog flag either way; the undo flips it back.
"""

from __future__ import annotations

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, Facts, rows_text
from dataflow.schema import Table
from dataflow.sqlgen import Options, Rendered, alter, tx

SET_ROW_SECURITY = "SET_ROW_SECURITY"


@register
class SetRowSecurity(Kind):
    name = SET_ROW_SECURITY
    order = 148  # after the policies it enables are created

    def undo_grade(self, change: Change, assessment: Assessment) -> Risk:
        """Undoing an enable disables it again (widens access); undoing a disable narrows it."""
        return Risk.HIGH if change.new else Risk.MEDIUM

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        lock = f"{ACCESS_EXCLUSIVE} (brief)"
        if not change.new:
            return Assessment(
                Risk.HIGH,
                "disables row-level security: every role with a grant sees every row, whatever the policies",
                lock,
                METADATA_MS,
            )
        if not facts.rows:
            return Assessment(Risk.SAFE, "enables row-level security on an empty table", lock, METADATA_MS)
        return Assessment(
            Risk.MEDIUM,
            f"enables row-level security: roles other than the owner see only the rows of "
            f"{rows_text(facts.rows)} a policy allows",
            lock,
            METADATA_MS,
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        on, off = ("ENABLE", "DISABLE") if change.new else ("DISABLE", "ENABLE")
        return Rendered(
            tx(alter(change.table, f"{on} ROW LEVEL SECURITY", options)),
            (alter(change.table, f"{off} ROW LEVEL SECURITY", options),),
            "enabled" if change.new else "disabled",
        )
