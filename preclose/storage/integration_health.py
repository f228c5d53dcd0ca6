"""Offergrid integration health over a window, from what we already record: every API call
(`api_call`), every order placed (`placement`, `order_item`) and every status an item went through
(`item_status_history`). No Offergrid call is spent on it.

The figures are the ones the Offergrid guide recommends watching: success rate, response time
(p50, p95) and error rate by endpoint, order acceptance rate, and how long providers take to
answer an order.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from rich.table import Table
from sqlmodel import Session, col, select

from models.tables import ApiCall, ItemStatusHistory, OrderItem, Placement

__all__ = [
    "EndpointHealth",
    "IntegrationHealth",
    "health_markdown",
    "health_table",
    "integration_health",
]

ACCEPTED = frozenset({"accepted", "scheduled", "in_progress", "completed", "active"})
REJECTED = frozenset({"rejected"})
ANSWERED = ACCEPTED | REJECTED


def percentile(samples: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile of `samples` (share between 0 and 1), None when empty."""
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(share * len(ordered))) - 1]


class EndpointHealth(BaseModel):
    """One Offergrid endpoint's calls in the window."""

    endpoint: str = Field(description='Method and path template, e.g. "GET /reseller/orders".')
    calls: int
    succeeded: int
    success_rate: float | None = Field(description="Share of calls answered 2xx.")
    error_rate: float | None = Field(description="Share answered 4xx/5xx or not at all.")
    rate_limited: int = Field(description="429 answers.")
    no_answer: int = Field(description="Timeouts and connection errors.")
    p50_ms: float | None
    p95_ms: float | None


class IntegrationHealth(BaseModel):
    """Offergrid integration health over a window."""

    window_start: datetime
    window_end: datetime
    calls: int
    success_rate: float | None
    error_rate: float | None
    endpoints: list[EndpointHealth]
    orders_placed: int = Field(description="Order items sent to Offergrid in the window.")
    orders_answered: int = Field(description="Of those, items a provider accepted or rejected.")
    orders_accepted: int
    acceptance_rate: float | None = Field(description="Accepted share of the answered items.")
    provider_response_p50_hours: float | None = Field(
        description="Hours from placing an order to the provider's first answer (median)."
    )
    provider_response_p95_hours: float | None


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def integration_health(*, session: Session, since: datetime, until: datetime) -> IntegrationHealth:
    """The figures for calls made and orders placed between `since` and `until`."""
    calls = session.exec(
        select(ApiCall).where(col(ApiCall.at) >= since, col(ApiCall.at) < until)
    ).all()
    by_endpoint: dict[str, list[ApiCall]] = defaultdict(list)
    for call in calls:
        by_endpoint[f"{call.method} {call.endpoint}"].append(call)
    endpoints = []
    for name, group in sorted(by_endpoint.items()):
        ok = sum(1 for c in group if c.status_code is not None and 200 <= c.status_code < 300)
        latencies = [c.latency_ms for c in group]
        endpoints.append(
            EndpointHealth(
                endpoint=name,
                calls=len(group),
                succeeded=ok,
                success_rate=_rate(ok, len(group)),
                error_rate=_rate(len(group) - ok, len(group)),
                rate_limited=sum(1 for c in group if c.status_code == 429),
                no_answer=sum(1 for c in group if c.status_code is None),
                p50_ms=_round(percentile(latencies, 0.5)),
                p95_ms=_round(percentile(latencies, 0.95)),
            )
        )
    succeeded = sum(e.succeeded for e in endpoints)

    placed = session.exec(
        select(OrderItem, Placement)
        .join(Placement, col(Placement.id) == col(OrderItem.placement_id))
        .where(
            col(Placement.placed_at) >= since,
            col(Placement.placed_at) < until,
            col(OrderItem.offergrid_item_id).is_not(None),
        )
    ).all()
    first_answer: dict[object, tuple[datetime, str]] = {}
    if placed:
        history = session.exec(
            select(ItemStatusHistory)
            .where(
                col(ItemStatusHistory.order_item_id).in_([item.id for item, _ in placed]),
                col(ItemStatusHistory.status).in_(list(ANSWERED)),
            )
            .order_by(col(ItemStatusHistory.at))
        ).all()
        for entry in history:
            first_answer.setdefault(entry.order_item_id, (entry.at, entry.status))
    waits: list[float] = []
    accepted = 0
    for item, placement in placed:
        answer = first_answer.get(item.id)
        if answer is None or placement.placed_at is None:
            continue
        accepted += answer[1] in ACCEPTED
        waits.append(max((answer[0] - placement.placed_at) / timedelta(hours=1), 0.0))
    return IntegrationHealth(
        window_start=since,
        window_end=until,
        calls=len(calls),
        success_rate=_rate(succeeded, len(calls)),
        error_rate=_rate(len(calls) - succeeded, len(calls)),
        endpoints=endpoints,
        orders_placed=len(placed),
        orders_answered=len(waits),
        orders_accepted=accepted,
        acceptance_rate=_rate(accepted, len(waits)),
        provider_response_p50_hours=_round(percentile(waits, 0.5), 2),
        provider_response_p95_hours=_round(percentile(waits, 0.95), 2),
    )


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def _rows(health: IntegrationHealth) -> list[tuple[str, ...]]:
    return [
        (
            e.endpoint,
            str(e.calls),
            _pct(e.success_rate),
            _pct(e.error_rate),
            str(e.rate_limited),
            str(e.no_answer),
            _ms(e.p50_ms),
            _ms(e.p95_ms),
        )
        for e in health.endpoints
    ]


_HEADERS = ("Endpoint", "Calls", "Success", "Errors", "429s", "No answer", "p50", "p95")


def _summary(health: IntegrationHealth) -> str:
    hours = lambda v: "—" if v is None else f"{v:.1f} h"  # noqa: E731
    return (
        f"{health.calls} calls, {_pct(health.success_rate)} succeeded. Orders: "
        f"{health.orders_placed} placed, {health.orders_answered} answered, acceptance "
        f"{_pct(health.acceptance_rate)}; provider response p50 "
        f"{hours(health.provider_response_p50_hours)}, p95 "
        f"{hours(health.provider_response_p95_hours)}."
    )


def health_table(health: IntegrationHealth) -> Table:
    """The figures as a rich table for the terminal."""
    table = Table(
        title=f"Offergrid health {health.window_start:%Y-%m-%d %H:%M} to "
        f"{health.window_end:%Y-%m-%d %H:%M} UTC",
        caption=_summary(health),
        caption_justify="left",
    )
    for header in _HEADERS:
        table.add_column(header, justify="left" if header == "Endpoint" else "right")
    for row in _rows(health):
        table.add_row(*row)
    return table


def health_markdown(health: IntegrationHealth) -> str:
    """The figures as markdown, for a Prefect artifact."""
    out = [
        f"### Offergrid health, {health.window_start:%Y-%m-%d %H:%M} to "
        f"{health.window_end:%Y-%m-%d %H:%M} UTC",
        "",
        _summary(health),
        "",
        "| " + " | ".join(_HEADERS) + " |",
        "|" + "---|" * len(_HEADERS),
    ]
    out += ["| " + " | ".join(row) + " |" for row in _rows(health)]
    return "\n".join(out) + "\n"
