"""What a closing's page and the portfolio page show, shaped from the records the repository read.

Plain code: no database and no web framework. The page speaks to one audience: the agent
sees their notes (the reasons the CRM gave for changes, and what they should do about each risk),
the buyer does not.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from models.records import ClosingRecord, PortfolioEntry
from models.tables import Audience, Closing, ItemStatusHistory
from preclose.rules.tracking import NO_RESPONSE_REASON
from preclose.wording.services import CLOSING_STATUS_WORDS as STATUS_WORDS
from preclose.wording.services import service_name
from preclose.wording.timeline_svg import SvgRow, timeline_svg

__all__ = [
    "ClosingPage",
    "PortfolioRow",
    "build_closing_page",
    "build_portfolio",
    "what_to_do",
]


@dataclass(frozen=True)
class HistoryEntry:
    """One status an order went through, on the home's clock."""

    status: str
    at: str
    notes: str | None


@dataclass(frozen=True)
class ServiceRow:
    """One service of the plan with its order, status and proof of setup."""

    category: str
    name: str
    importance: str
    provider: str
    offer: str
    price: str
    why: str
    order_date: date
    service_date: date
    window_end: date | None
    status: str
    at_risk: bool
    order_id: str | None
    item_status: str | None
    appointment: str | None
    account_number: str | None
    history: list[HistoryEntry]
    appointment_day: date | None = None


@dataclass(frozen=True)
class Risk:
    """A service in danger, why, and what to do about it."""

    service: str
    reason: str
    to_do: str


@dataclass(frozen=True)
class ClosingPage:
    """Everything a closing's page shows, for one audience."""

    audience: Audience
    crm_closing_id: str
    status: str
    status_words: str
    status_reason: str
    address: str
    closing_date: date
    move_in_date: date
    time_zone: str
    buyer_name: str
    agent_name: str
    services: list[ServiceRow]
    risks: list[Risk]
    self_serve: list[ServiceRow]
    link_url: str | None
    link_status: str | None
    agent_notes: list[str] = field(default_factory=list)
    timeline_svg: str = ""
    today: date | None = None


def _money(amount: float | None) -> str:
    return "—" if amount is None else f"${amount:,.2f}/month"


def what_to_do(reason: str, audience: Audience) -> str:
    """The next step for a risk, in plain words, for the buyer or for the agent."""
    agent = audience is Audience.agent
    text = reason.lower()
    if "rejected" in text or "installation failed" in text:
        return (
            "preclose orders the next best offer by itself; if none is left, choose one with the "
            "buyer or have them arrange it directly."
            if agent
            else "We are ordering the next best option for you; nothing to do unless we ask."
        )
    if reason == NO_RESPONSE_REASON or "no response" in text:
        return (
            "Call the provider to confirm they received the order; preclose keeps checking."
            if agent
            else "We are chasing the provider; we will tell you as soon as they answer."
        )
    if "scheduled for" in text and "after the date" in text:
        return (
            "Ask the provider for an earlier appointment, or line up a stopgap for move-in."
            if agent
            else "Ask the provider for an earlier appointment if you can; your agent will help."
        )
    if "no " in text and "offer" in text:
        return (
            "Choose a provider with the buyer, or have them arrange it directly."
            if agent
            else "Your agent will help you choose how to get it set up."
        )
    return "Check the order with the provider." if agent else "Your agent is looking into it."


def stored_reason(closing: Closing) -> str | None:
    """The reason the lifecycle stored with the closing's state, when it keeps one."""
    for name in ("attention_reason", "status_reason"):
        value = getattr(closing, name, None)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _status_reason(closing: Closing, services: list[ServiceRow]) -> str:
    """Why the closing is where it is: the lifecycle's own reason when it stores one."""
    stored = stored_reason(closing)
    if stored:
        return stored
    ordered = [s for s in services if s.order_id]
    live = [s for s in services if s.item_status in ("completed", "active")]
    risky = [s for s in services if s.at_risk]
    status = str(closing.status)
    if status in ("received", "planning", "planned") and not ordered:
        return "The plan is made; nothing is due to order yet." if services else "Planning."
    if status == "fulfilled":
        return f"All {len(live)} ordered services are set up."
    if status in ("fell_through", "cancelled"):
        return "The deal is off; orders that could be cancelled were cancelled."
    words = f"{len(ordered)} of {len(services)} services ordered, {len(live)} set up"
    if risky:
        words += f"; {len(risky)} need attention"
    return words + "."


def _history(rows: Sequence[ItemStatusHistory], zone: ZoneInfo) -> list[HistoryEntry]:
    return [
        HistoryEntry(
            status=row.status.replace("_", " "),
            at=f"{row.at.astimezone(zone):%a %b %-d, %-I:%M %p}",
            notes=row.notes,
        )
        for row in rows
    ]


def build_closing_page(
    *, record: ClosingRecord, as_of: datetime, audience: Audience
) -> ClosingPage:
    """Shape one closing's records into what its page shows to `audience`."""
    closing = record.closing
    request = closing.closing_request()
    zone = ZoneInfo(closing.time_zone)
    today = as_of.astimezone(zone).date()
    services: list[ServiceRow] = []
    entries = record.lines
    for entry in entries:
        line, item, placement = entry.line, entry.item, entry.placement
        appointment = item.scheduled_for.astimezone(zone) if item and item.scheduled_for else None
        services.append(
            ServiceRow(
                category=line.category,
                name=service_name(line.category),
                importance=line.importance,
                provider=line.provider_name or "—",
                offer=line.offer_name or (line.problem or "Nothing to order"),
                price=_money(line.monthly_price),
                why=line.reason or (line.problem or ""),
                order_date=line.placement_date,
                service_date=line.service_date,
                window_end=line.service_window_end,
                status=(item.status or str(line.state)).replace("_", " ")
                if item
                else str(line.state).replace("_", " "),
                at_risk=line.at_risk,
                order_id=placement.offergrid_order_id if placement else None,
                item_status=item.status if item else None,
                appointment=f"{appointment:%a %b %-d, %-I:%M %p}" if appointment else None,
                account_number=item.account_number if item else None,
                history=_history(entry.history, zone) if item else [],
                appointment_day=appointment.date() if appointment else None,
            )
        )
    risks = [
        Risk(
            service=row.name,
            reason=line.risk_reason or line.problem or "At risk",
            to_do=what_to_do(line.risk_reason or line.problem or "", audience),
        )
        for row, line in zip(services, [e.line for e in entries], strict=True)
        if row.at_risk
    ]
    notes: list[str] = []
    if audience is Audience.agent:
        for crm in record.crm_requests:
            reason = (crm.body or {}).get("reason") if isinstance(crm.body, dict) else None
            if reason:
                when = crm.received_at.astimezone(zone)
                notes.append(f"{when:%b %-d}: change from the CRM: {reason}")
    link = record.buyer_link
    own = [
        ServiceRow(
            category=item.category or "other",
            name=service_name(item.category or "other"),
            importance="chosen by the buyer",
            provider=item.provider_name or "—",
            offer=item.offer_name or "—",
            price="—",
            why="Ordered by the buyer through their link",
            order_date=(item.ordered_at or as_of).astimezone(zone).date(),
            service_date=(item.scheduled_for or item.ordered_at or as_of).astimezone(zone).date(),
            window_end=None,
            status=(item.status or "pending").replace("_", " "),
            at_risk=item.status in ("rejected", "failed"),
            order_id=item.offergrid_order_id,
            item_status=item.status,
            appointment=(
                f"{item.scheduled_for.astimezone(zone):%a %b %-d, %-I:%M %p}"
                if item.scheduled_for
                else None
            ),
            account_number=item.account_number,
            history=[
                HistoryEntry(
                    status=str(h.get("status") or "").replace("_", " "),
                    at=_local_text(h.get("at"), zone),
                    notes=h.get("notes"),
                )
                for h in item.history
            ],
        )
        for item in record.self_serve
    ]
    address = request.property.address
    street = f"{address.street}, {address.unit}" if address.unit else address.street
    move_in = closing.move_in_date or closing.closing_date
    drawn = [s for s in services if s.status != "skipped"]
    svg = timeline_svg(
        [
            SvgRow(
                label=s.name,
                order_date=s.order_date,
                service_date=s.service_date,
                window_end=s.window_end,
                appointment=s.appointment_day,
                at_risk=s.at_risk,
            )
            for s in drawn
        ],
        closing_date=closing.closing_date,
        move_in_date=move_in,
        today=today,
    )
    return ClosingPage(
        audience=audience,
        crm_closing_id=closing.crm_closing_id,
        status=str(closing.status),
        status_words=STATUS_WORDS.get(str(closing.status), str(closing.status).replace("_", " ")),
        status_reason=_status_reason(closing, services),
        address=f"{street}, {address.city}, {address.state} {address.zip_code}",
        closing_date=closing.closing_date,
        move_in_date=move_in,
        time_zone=closing.time_zone,
        buyer_name=request.buyer.full_name,
        agent_name=request.agent.name,
        services=services,
        risks=risks,
        self_serve=own,
        link_url=link.url if link and link.status == "active" else None,
        link_status=link.status if link else None,
        agent_notes=notes,
        timeline_svg=svg,
        today=today,
    )


def _local_text(value: object, zone: ZoneInfo) -> str:
    if not isinstance(value, str):
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return f"{moment.astimezone(zone):%a %b %-d, %-I:%M %p}"


@dataclass(frozen=True)
class PortfolioRow:
    """One live closing on the portfolio page."""

    closing_id: uuid.UUID
    crm_closing_id: str
    address: str
    buyer_name: str
    closing_date: date
    status: str
    status_words: str
    at_risk: int
    needs_person: bool
    reason: str


def build_portfolio(entries: Iterable[PortfolioEntry]) -> list[PortfolioRow]:
    """Every live closing read, those that need a person first, then by closing date."""
    rows: list[PortfolioRow] = []
    for entry in entries:
        closing, count = entry.closing, entry.at_risk
        request = closing.closing_request()
        address = request.property.address
        status = str(closing.status)
        attention = "attention" in status or "person" in status
        reason = stored_reason(closing) or (
            f"{count} service{'' if count == 1 else 's'} at risk" if count else "On track"
        )
        rows.append(
            PortfolioRow(
                closing_id=closing.id,
                crm_closing_id=closing.crm_closing_id,
                address=f"{address.street}, {address.city}",
                buyer_name=request.buyer.full_name,
                closing_date=closing.closing_date,
                status=status,
                status_words=STATUS_WORDS.get(status, status.replace("_", " ").capitalize()),
                at_risk=count,
                needs_person=attention or count > 0,
                reason=reason,
            )
        )
    rows.sort(key=lambda r: (not r.needs_person, r.closing_date, r.crm_closing_id))
    return rows
