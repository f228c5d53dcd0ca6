"""A closing's timeline drawn as SVG: a row per service with its order date, service window and
appointment, and the closing, move-in and today as vertical rules. Plain code, no assets.

The drawing is a picture for sighted readers; the page gives the same facts as a list, and the SVG
carries a title and a description for screen readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape

__all__ = ["SvgRow", "timeline_svg"]

WIDTH = 480
LEFT = 104  # room for the service names
RIGHT = 16
TOP = 34  # room for the rule labels
ROW = 30
# Colours chosen for at least 4.5:1 contrast on white (text) and 3:1 (shapes).
INK = "#1f2937"
MUTED = "#4b5563"
ORDER = "#1d4ed8"
WINDOW = "#15803d"
RISK = "#b91c1c"
APPOINTMENT = "#7c2d12"


@dataclass(frozen=True)
class SvgRow:
    """One service's dates as the timeline draws them."""

    label: str
    order_date: date | None
    service_date: date
    window_end: date | None = None
    appointment: date | None = None
    at_risk: bool = False


def timeline_svg(
    rows: Sequence[SvgRow], *, closing_date: date, move_in_date: date, today: date
) -> str:
    """The timeline as an inline SVG element, scaled to its container's width."""
    days = [closing_date, move_in_date, today]
    for row in rows:
        days += [
            d for d in (row.order_date, row.service_date, row.window_end, row.appointment) if d
        ]
    start, end = min(days) - timedelta(days=2), max(days) + timedelta(days=3)
    span = max((end - start).days, 1)
    height = TOP + ROW * max(len(rows), 1) + 24

    def x(day: date) -> float:
        return round(LEFT + (WIDTH - LEFT - RIGHT) * (day - start).days / span, 1)

    parts: list[str] = []
    # Week ticks along the bottom, every Monday, labelled with the day.
    tick = start + timedelta(days=(7 - start.weekday()) % 7)
    while tick <= end:
        parts.append(
            f'<line x1="{x(tick)}" y1="{TOP - 6}" x2="{x(tick)}" y2="{height - 20}" '
            f'stroke="#e5e7eb"/>'
            f'<text x="{x(tick)}" y="{height - 6}" font-size="10" fill="{MUTED}" '
            f'text-anchor="middle">{tick:%b %-d}</text>'
        )
        tick += timedelta(days=7)
    for index, row in enumerate(rows):
        y = TOP + ROW * index + ROW / 2
        colour = RISK if row.at_risk else WINDOW
        parts.append(
            f'<text x="4" y="{y + 4}" font-size="12" fill="{INK}">{escape(row.label)}</text>'
        )
        window_end = row.window_end or row.service_date
        left, right = x(row.service_date), x(window_end + timedelta(days=1))
        parts.append(
            f'<rect x="{left}" y="{y - 7}" width="{max(right - left, 4)}" height="14" rx="3" '
            f'fill="{colour}"/>'
        )
        if row.order_date is not None:
            parts.append(
                f'<line x1="{x(row.order_date)}" y1="{y}" x2="{left}" y2="{y}" '
                f'stroke="{ORDER}" stroke-dasharray="3 3"/>'
                f'<circle cx="{x(row.order_date)}" cy="{y}" r="5" fill="{ORDER}"/>'
            )
        if row.appointment is not None:
            ax = x(row.appointment)
            parts.append(
                f'<path d="M{ax} {y - 8} L{ax + 6} {y} L{ax} {y + 8} L{ax - 6} {y} Z" '
                f'fill="{APPOINTMENT}"/>'
            )
    for day, name, colour in (
        (closing_date, "Closing", INK),
        (move_in_date, "Move-in", INK),
        (today, "Today", MUTED),
    ):
        if name == "Move-in" and day == closing_date:
            continue
        dash = ' stroke-dasharray="2 3"' if name == "Today" else ""
        anchor = "end" if name == "Closing" and move_in_date != closing_date else "start"
        offset = -3 if anchor == "end" else 3
        parts.append(
            f'<line x1="{x(day)}" y1="{TOP - 8}" x2="{x(day)}" y2="{height - 20}" '
            f'stroke="{colour}" stroke-width="1.5"{dash}/>'
            f'<text x="{x(day) + offset}" y="{TOP - 12}" font-size="11" fill="{colour}" '
            f'text-anchor="{anchor}">{name} {day:%b %-d}</text>'
        )
    described = "; ".join(
        f"{row.label}: order {row.order_date:%b %-d}, needed {row.service_date:%b %-d}"
        if row.order_date
        else f"{row.label}: needed {row.service_date:%b %-d}"
        for row in rows
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="100%" style="min-width:{WIDTH}px" role="img" '
        f'aria-labelledby="tl-title tl-desc">'
        f'<title id="tl-title">Timeline: closing {closing_date:%b %-d}, move-in '
        f"{move_in_date:%b %-d}</title>"
        f'<desc id="tl-desc">{escape(described)}. Circles are order dates, bars the days each '
        f"service is needed, diamonds provider appointments.</desc>" + "".join(parts) + "</svg>"
    )
