"""DROP_POLICY: a policy the table no longer declares. HIGH: dropping a restrictive policy widens
access at once, and dropping a permissive one changes who sees what. Runs early: a policy depends on
the columns it names, which the same plan may drop. The undo creates it again."""

from __future__ import annotations

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.policy_sql import create_policy, drop_policy, policy_details
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, Facts
from dataflow.schema import Policy, Table
from dataflow.sqlgen import Options, Rendered, tx

DROP_POLICY = "DROP_POLICY"


@register
class DropPolicy(Kind):
    name = DROP_POLICY
    order = 34  # before columns are dropped or altered
    undo_risk = Risk.SAFE  # re-creating it restores the access rules it had
    reads_table = False

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        p: Policy = change.old
        return Assessment(
            Risk.HIGH,
            f"drops row-level security policy {p.name} ({p.command}): "
            + (
                "its restriction goes, access widens"
                if not p.permissive
                else "the access rules of its roles change"
            ),
            f"{ACCESS_EXCLUSIVE} (brief)",
            METADATA_MS,
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        p: Policy = change.old
        return Rendered(
            tx(drop_policy(p.name, change.table, options.schema)),
            (create_policy(p, change.table, options.schema),),
            policy_details(p),
        )
