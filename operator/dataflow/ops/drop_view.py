"""DROP_VIEW: a view dropped, either for good or to be created again in the same transaction.

- re-created (its query changed incompatibly, it reads a column whose type changes or that is dropped,
  or it reads a view being re-created): a plain view is SAFE (readers see no gap: one transaction);
  a populated materialized view is MEDIUM: its query runs again to refill it under ACCESS EXCLUSIVE;
- dropped for good (this owner declared it before, no longer does, and the declared set is complete):
  a plain view is MEDIUM (its readers break), a materialized view HIGH (its rows go with it).

A view nobody declared is never dropped (see :func:`dataflow.ops.create_view.compare_views`).
Runs after renames and before every other change, dependants first; the undo creates it again from
the text PostgreSQL kept (``pg_get_viewdef``).
"""

from __future__ import annotations

from dataflow.operations import Assessment, Change, Risk
from dataflow.ops.base import Context, Kind, register
from dataflow.ops.create_view import DROP_VIEW, DroppedView, create_view_sql, drop_view_sql
from dataflow.safety import ACCESS_EXCLUSIVE, METADATA_MS, Facts
from dataflow.schema import Table
from dataflow.sqlgen import Options, Rendered, tx


def _size(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.0f} {unit}"
        n //= 1024
    return f"{n} TB"  # pragma: no cover


@register
class DropView(Kind):
    name = DROP_VIEW
    order = 25  # after renames (a view follows them), before any column or table it reads changes
    reads_table = False
    undo_risk = Risk.SAFE  # CREATE VIEW again

    def released_tables(self, change: Change) -> tuple[str, ...]:
        dropped: DroppedView = change.old
        return () if dropped.recreated else (dropped.view.name,)

    def assess(self, change: Change, facts: Facts, context: Context) -> Assessment:
        dropped: DroppedView = change.old
        view = dropped.view
        lock = f"{ACCESS_EXCLUSIVE} on the view"
        if dropped.blocked_by:
            return Assessment(
                Risk.HIGH,
                f"{dropped.reason}, but view(s) {', '.join(dropped.blocked_by)}, which no model declares, "
                "read it: PostgreSQL refuses to drop it until they are dropped or declared",
                lock,
                METADATA_MS,
            )
        if dropped.recreated and not view.materialized:
            return Assessment(
                Risk.SAFE,
                f"view re-created in the same transaction ({dropped.reason}); readers see no gap",
                lock,
                METADATA_MS,
            )
        if dropped.recreated:
            if not view.populated or not view.size_bytes:
                return Assessment(
                    Risk.SAFE, f"empty materialized view re-created ({dropped.reason})", lock, METADATA_MS
                )
            return Assessment(
                Risk.MEDIUM,
                f"materialized view re-created ({dropped.reason}): its query runs again to refill "
                f"{_size(view.size_bytes)} while readers wait ({ACCESS_EXCLUSIVE})",
                lock,
                METADATA_MS,
            )
        if view.materialized:
            return Assessment(
                Risk.HIGH,
                f"drops materialized view {view.name} ({dropped.reason}) and its {_size(view.size_bytes)} of rows",
                lock,
                METADATA_MS,
            )
        return Assessment(
            Risk.MEDIUM, f"drops view {view.name} ({dropped.reason}): its readers break", lock, METADATA_MS
        )

    def render(self, change: Change, options: Options, table: Table | None) -> Rendered:
        dropped: DroppedView = change.old
        view = dropped.view
        what = "materialized view" if view.materialized else "view"
        verb = "re-created" if dropped.recreated else "dropped"
        return Rendered(
            tx(drop_view_sql(view, options.schema)),
            (create_view_sql(view, options.schema),),
            f"{what} {view.name} {verb}: {dropped.reason}",
        )
