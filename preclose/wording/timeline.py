"""A closing's timeline: dated entries, a markdown report, and a text chart of service windows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from preclose.wording.services import ITEM_STATUS_WORDS, service_name


@dataclass(frozen=True)
class LineDates:
    """One service's planned dates and where it stands."""

    category: str
    provider: str | None
    placement_date: date
    service_date: date
    state: str
    at_risk: bool = False
    risk_reason: str | None = None
    status: str | None = None
    scheduled_for: date | None = None


@dataclass(frozen=True)
class TimelineEntry:
    """Something that happened, or is planned, on a day of the closing."""

    day: date
    category: str | None
    text: str
    done: bool


def build_timeline(
    *,
    closing_date: date,
    move_in_date: date,
    lines: Sequence[LineDates],
    events: Sequence[tuple[str, str, datetime]],
    today: date,
) -> list[TimelineEntry]:
    """Every dated entry of a closing, oldest first: planned steps, what happened, the closing."""
    entries = [
        TimelineEntry(closing_date, None, "Closing", closing_date <= today),
    ]
    if move_in_date != closing_date:
        entries.append(TimelineEntry(move_in_date, None, "Move-in", move_in_date <= today))
    for line in lines:
        who = f" with {line.provider}" if line.provider else ""
        if line.state in ("planned", "skipped"):
            entries.append(
                TimelineEntry(line.placement_date, line.category, f"Order{who} due", False)
            )
        entries.append(TimelineEntry(line.service_date, line.category, "Service needed", False))
        if line.scheduled_for is not None:
            entries.append(
                TimelineEntry(
                    line.scheduled_for, line.category, f"Provider appointment{who}", False
                )
            )
    for category, status, at in events:
        words = ITEM_STATUS_WORDS.get(status, status.replace("_", " "))
        entries.append(TimelineEntry(at.date(), category, words[:1].upper() + words[1:], True))
    return sorted(entries, key=lambda entry: (entry.day, not entry.done, entry.category or ""))


def timeline_markdown(entries: Sequence[TimelineEntry], chart: str) -> str:
    """The timeline as markdown (no heading): a chart of the service windows, then a dated table."""
    rows = "\n".join(
        f"| {entry.day:%a %b %-d} | {service_name(entry.category) if entry.category else ''} | "
        f"{'✓ ' if entry.done else ''}{entry.text} |"
        for entry in entries
    )
    return f"```text\n{chart}\n```\n\n| Day | Service | What |\n|---|---|---|\n{rows}\n"


def window_chart(
    *, lines: Sequence[LineDates], closing_date: date, move_in_date: date, today: date
) -> str:
    """A text chart, one row per service: ordered ▲, window ━, service needed ●, closing │."""
    if not lines:
        return "(no services planned)"
    # A late re-pick is ordered after its service date: every date a line has must fit.
    dates = [d for line in lines for d in (line.placement_date, line.service_date)]
    start = min([today, *dates])
    end = max([closing_date, move_in_date, *dates])
    days = (end - start).days + 1
    names = [service_name(line.category) for line in lines]
    width = max(len(name) for name in names) + 2

    def column(day: date) -> int:
        return (day - start).days

    # Room past the last day, so the last week's label is never cut.
    header = [" "] * (days + 7)
    for day_offset in range(0, days, 7):
        label = f"{start + timedelta(days=day_offset):%b %-d}"
        for index, char in enumerate(label):
            header[day_offset + index] = char
    rows = [" " * width + "".join(header).rstrip()]
    for name, line in zip(names, lines, strict=True):
        cells = ["·"] * days
        first, last = sorted((column(line.placement_date), column(line.service_date)))
        for offset in range(first, last + 1):
            cells[offset] = "━"
        cells[column(line.placement_date)] = "▲"
        cells[column(line.service_date)] = "●"
        if start <= closing_date <= end and cells[column(closing_date)] == "·":
            cells[column(closing_date)] = "│"
        mark = " ⚠" if line.at_risk else (" ✓" if line.state == "fulfilled" else "")
        rows.append(f"{name:<{width}}{''.join(cells)}{mark}")
    # Not indented under the names: indented, it no longer fits 80 columns and wraps.
    rows.append(f"▲ order placed  ━ lead time  ● service needed  │ closing {closing_date:%b %-d}")
    return "\n".join(rows)
