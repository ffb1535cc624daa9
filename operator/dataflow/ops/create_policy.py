"""CREATE_POLICY: a row-level security policy the model declares. SAFE: it only decides which rows
roles see once row security is on (a permissive policy can widen what they see: the reason says so)."""

from __future__ import annotations

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.policy_sql import create_policy, drop_policy, policy_details
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, Facts
from dataflow.schema import Policy, Table
from dataflow.sqlgen import Options, Rendered, tx

CREATE_POLICY = "CREATE_POLICY"


@register
class CreatePolicy(Kind):
    name = CREATE_POLICY
    order = 146  # after columns and comments, before row security is enabled
    undo_risk = Risk.HIGH  # the undo drops it: access widens (permissive) or narrows (restrictive)
    reads_table = False

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        p: Policy = change.new
        effect = "lets the roles see the rows it allows" if p.permissive else "restricts what the roles see"
        return Assessment(
            Risk.SAFE,
            f"new {'permissive' if p.permissive else 'restrictive'} policy: {effect}",
            f"{ACCESS_EXCLUSIVE} (brief)",
            METADATA_MS,
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        p: Policy = change.new
        return Rendered(
            tx(create_policy(p, change.table, options.schema)),
            (drop_policy(p.name, change.table, options.schema),),
            policy_details(p),
        )
