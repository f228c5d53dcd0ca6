"""A closing's stored records as a report: plan rows, timeline and outcome, for people."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from rich.table import Table

from models.records import ClosingRecord
from models.tables import OrderItem, PlanLineRow
from preclose.wording.services import LINE_STATE_WORDS, service_name
from preclose.wording.timeline import (
    LineDates,
    TimelineEntry,
    build_timeline,
    timeline_markdown,
    window_chart,
)


@dataclass(frozen=True)
class ClosingReport:
    """Everything a person wants to see about one closing, read in one pass."""

    crm_closing_id: str
    status: str
    closing_date: date
    move_in_date: date
    rows: list[dict[str, str]]
    lines: list[LineDates]
    timeline: list[TimelineEntry]
    chart: str
    # Each line's status words and risk, by category (current lines have one per category).
    statuses: dict[str, str] = field(default_factory=dict)
    risks: dict[str, str] = field(default_factory=dict)


def _money(amount: float | None) -> str:
    return "—" if amount is None else f"${amount:,.2f}"


def closing_report(record: ClosingRecord, *, as_of: datetime) -> ClosingReport:
    """A closing's plan lines, orders and item histories (oldest first) as a report."""
    closing = record.closing
    zone = ZoneInfo(closing.time_zone)
    rows: list[dict[str, str]] = []
    dated: list[LineDates] = []
    events: list[tuple[str, str, datetime]] = []
    statuses: dict[str, str] = {}
    risks: dict[str, str] = {}
    for entry in record.lines:
        line, item = entry.line, entry.item
        status = _line_status(line, item)
        statuses[line.category] = status
        if line.at_risk and line.risk_reason:
            risks[line.category] = line.risk_reason
        rows.append(
            {
                "service": f"{service_name(line.category)} ({line.importance})",
                "provider": line.provider_name or "—",
                "offer": line.offer_name or (line.problem or "—"),
                "monthly": _money(line.monthly_price),
                "why": line.reason or (line.problem or ""),
                "service date": f"{line.service_date:%a %b %-d}",
                "order date": f"{line.placement_date:%a %b %-d}",
                "status": status,
                "risk": line.risk_reason if line.at_risk and line.risk_reason else "",
            }
        )
        scheduled = (
            item.scheduled_for.astimezone(zone).date() if item and item.scheduled_for else None
        )
        dated.append(
            LineDates(
                category=line.category,
                provider=line.provider_name,
                placement_date=line.placement_date,
                service_date=line.service_date,
                state=str(line.state),
                at_risk=line.at_risk,
                risk_reason=line.risk_reason,
                status=item.status if item else None,
                scheduled_for=scheduled,
            )
        )
        events.extend(
            (line.category, moment.status, moment.at.astimezone(zone)) for moment in entry.history
        )
    today = as_of.astimezone(zone).date()
    move_in = closing.move_in_date or closing.closing_date
    return ClosingReport(
        crm_closing_id=closing.crm_closing_id,
        status=str(closing.status),
        closing_date=closing.closing_date,
        move_in_date=move_in,
        rows=rows,
        lines=dated,
        timeline=build_timeline(
            closing_date=closing.closing_date,
            move_in_date=move_in,
            lines=[line for line in dated if line.state != "skipped"],
            events=events,
            today=today,
        ),
        chart=window_chart(
            lines=[line for line in dated if line.state != "skipped"],
            closing_date=closing.closing_date,
            move_in_date=move_in,
            today=today,
        ),
        statuses=statuses,
        risks=risks,
    )


# The plan's columns in the closing's markdown, in the order a person reads them.
# The long prose column last, so dates and status are seen without scrolling sideways.
_PLAN_COLUMNS = (
    "service",
    "provider",
    "offer",
    "monthly",
    "order date",
    "service date",
    "status",
    "risk",
    "why",
)


def _cell(text: str) -> str:
    # A pipe or a line break inside a cell would end it (or the row) in a markdown table.
    return " ".join(text.replace("|", "\\|").split())


def closing_markdown(report: ClosingReport, *, state: str) -> str:
    """The closing as one markdown document: its state, the plan table, then the timeline."""
    columns = [c for c in _PLAN_COLUMNS if c != "risk" or any(r.get(c) for r in report.rows)]
    if report.rows:
        plan = "\n".join(
            [
                "| " + " | ".join(c.capitalize() for c in columns) + " |",
                "|" + "---|" * len(columns),
                *(
                    "| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |"
                    for row in report.rows
                ),
            ]
        )
    else:
        plan = "No services planned."
    return (
        f"# Closing {report.crm_closing_id}\n\n**Status:** {_cell(state)}\n\n## Plan\n\n{plan}\n\n"
        f"## Timeline\n\n{timeline_markdown(report.timeline, report.chart)}"
    )


def _line_status(line: PlanLineRow, item: OrderItem | None) -> str:
    words = LINE_STATE_WORDS.get(str(line.state), str(line.state))
    if item is not None and item.status and str(line.state) == "placed":
        words = item.status.replace("_", " ")
    if line.at_risk:
        words += " ⚠"
    return words


def report_table(report: ClosingReport) -> Table:
    """The plan and where each service stands, as a rich table."""
    table = Table(
        title=f"{report.crm_closing_id}: closing {report.closing_date:%a %b %-d} ({report.status})",
        title_justify="left",
    )
    for column in ("service", "provider", "monthly", "order date", "service date", "status"):
        table.add_column(column.capitalize(), overflow="fold")
    risks = [f"⚠ {service_name(category)}: {reason}" for category, reason in report.risks.items()]
    if risks:
        table.caption = "\n".join(risks)
        table.caption_justify = "left"
    for row in report.rows:
        table.add_row(
            *(
                row[column]
                for column in (
                    "service",
                    "provider",
                    "monthly",
                    "order date",
                    "service date",
                    "status",
                )
            )
        )
    return table
