"""Render a migration for people: rich terminal preview, Markdown for pull requests, JSON."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table as RichTable

from dataflow.adoption import kept_line as kept_objects_line
from dataflow.operations import Risk
from dataflow.ops import kind_of
from dataflow.plan import Migration

RISK_STYLE = {Risk.SAFE: ("✅", "green"), Risk.MEDIUM: ("⚠️", "yellow"), Risk.HIGH: ("🚨", "red")}


def stdout_console(soft_wrap: bool = False) -> Console:
    """A console on stdout; 120 columns when stdout is not a terminal (logs, CI, pipes)."""
    return Console(width=None if sys.stdout.isatty() else 120, soft_wrap=soft_wrap)


def _duration(ms: int) -> str:
    if ms < 100:
        return "<100ms"
    if ms < 10_000:
        return f"~{ms / 1000:.1f}s"
    return f"~{ms / 60_000:.1f} min" if ms >= 60_000 else f"~{ms // 1000}s"


def assessment_lines(m: Migration) -> list[str]:
    """The bullet points of the safety assessment (shared by every format)."""
    breaking = [op for op in m.operations if op.risk > Risk.SAFE]
    lossy = [op for op in m.operations if op.assessment.data_loss or kind_of(op.kind).loses_data]
    irreversible = [op for op in m.operations if op.irreversible]
    steps = len(m.rollback_steps)
    strategies = [
        f"{op.table}.{op.change.subject or op.table}: {op.strategy}"
        for op in m.operations
        if op.strategy != "transactional"
    ]
    extra = [f"Strategies: {'; '.join(strategies)}"] if strategies else []
    return extra + [
        "All operations are backward compatible"
        if not breaking
        else f"{len(breaking)} operation(s) need attention: "
        + "; ".join(f"{op.kind} {op.details} ({op.risk.name}: {op.assessment.reason})" for op in breaking),
        "No data loss risk detected"
        if not lossy
        else "Data-loss risk: "
        + "; ".join(f"{op.kind} {op.table}.{op.details}: {op.assessment.reason}" for op in lossy),
        f"Estimated execution time: {_duration(m.estimated_duration_ms)}",
        f"Rollback plan: Available ({steps} steps)"
        if not irreversible
        else f"Rollback plan: {steps} steps, {len(irreversible)} cannot restore data",
    ]


def kept_line(m: Migration) -> str:
    """The tables DataFlow created that the models no longer mention: listed, never dropped implicitly."""
    return (
        f"Not in models (kept): {', '.join(m.kept_tables)} "
        "(drop them with DataFlow(..., drop_missing_tables=True) when the models are the complete set)"
    )


def sql_lines(m: Migration) -> list[str]:
    """The statements in order; online steps say that they run outside a transaction."""
    lines = []
    for op in m.operations:
        for step in op.steps:
            note = (
                ""
                if step.transactional
                else (
                    "  -- repeated in batches until no row changes"
                    if step.repeat
                    else "  -- outside a transaction"
                )
            )
            lines.append(step.sql + note)
    return lines


def render_console(
    m: Migration,
    console: Console,
    *,
    show_sql: bool = True,
    show_rollback_plan: bool = False,
    safety_analysis: bool = True,
) -> None:
    """Print the preview the product documentation shows."""
    console.print("🔄 [bold]DataFlow Auto-Migration Preview[/bold]\n")
    console.print("Schema Changes Detected:")
    table = RichTable(box=box.SQUARE, show_lines=False)
    for header in ("Table", "Operation", "Details", "Safety Level"):
        table.add_column(header)
    for op in m.operations:
        icon, colour = RISK_STYLE[op.risk]
        table.add_row(op.table, op.kind, op.details, f"[{colour}]{icon} {op.risk.name}[/{colour}]")
    console.print(table)
    if m.kept_tables:
        console.print(kept_line(m), markup=False, highlight=False)
    if m.kept_objects:
        console.print(kept_objects_line(m.kept_objects), markup=False, highlight=False)
    if show_sql:
        console.print("\nGenerated SQL:")
        for sql in sql_lines(m):
            console.print("  " + sql.replace("\n", "\n  "), markup=False, highlight=False)
    if show_rollback_plan:
        console.print("\nRollback Plan:")
        for step in m.rollback_steps:
            flag = " (data not restored)" if step.irreversible else ""
            console.print(f"  - {step.operation_type}: {step.sql}{flag}", markup=False, highlight=False)
    if safety_analysis:
        icon, colour = RISK_STYLE[m.risk]
        console.print(f"\n{icon} [bold]Migration Safety Assessment[/bold]:")  # as the docs show it
        if m.risk > Risk.SAFE:
            console.print(f"  • Overall risk: [{colour}]{m.safety_level}[/{colour}]")
        for line in assessment_lines(m):
            console.print(f"  • {line}", markup=False, highlight=False)


def render_markdown(m: Migration, title: str = "DataFlow plan") -> str:
    """A plan as Markdown, for a pull-request comment."""
    lines = [f"### {title}: {m.safety_level} (plan `{m.plan_hash}`)", ""]
    if m.kept_objects:
        lines += [kept_objects_line(m.kept_objects), ""]
    if not m.operations:
        return "\n".join(lines + ["No changes: the database matches the schema."])
    if m.kept_tables:
        lines += [kept_line(m), ""]
    lines += ["| Table | Operation | Details | Safety Level | Reason |", "|---|---|---|---|---|"]
    for op in m.operations:
        cells = (
            op.table,
            op.kind,
            op.details,
            f"{RISK_STYLE[op.risk][0]} {op.risk.name}",
            op.assessment.reason,
        )
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += ["", "```sql", *sql_lines(m), "```", "", "**Safety assessment**", ""]
    lines += [f"- {line}" for line in assessment_lines(m)]
    return "\n".join(lines)


def render_json(m: Migration) -> str:
    data: dict[str, Any] = m.to_dict()
    data["assessment"] = assessment_lines(m)
    return json.dumps(data, indent=2, sort_keys=True)
