"""ALTER_POLICY: new roles or expressions for a policy (same command and kind). MEDIUM: it changes
which rows the roles see or may write; the undo puts the previous roles and expressions back."""

from __future__ import annotations

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.policy_sql import alter_policy, policy_details
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, Facts
from dataflow.schema import Policy, Table
from dataflow.sqlgen import Options, Rendered, tx

ALTER_POLICY = "ALTER_POLICY"


@register
class AlterPolicy(Kind):
    name = ALTER_POLICY
    order = 144
    reads_table = False

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        return Assessment(
            Risk.MEDIUM,
            "changes which rows the policy's roles see or may write",
            f"{ACCESS_EXCLUSIVE} (brief)",
            METADATA_MS,
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        old: Policy = change.old
        new: Policy = change.new
        return Rendered(
            tx(alter_policy(new, change.table, options.schema)),
            (alter_policy(old, change.table, options.schema),),
            policy_details(new),
        )
