"""Rules for tracking orders: what an answer changes, which moments to tell, what is at risk."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from offergrid.models import Order, OrderStatus
from offergrid.models.enums import FULFILLED, status_rank
from offergrid.models.orders import OrderItem as WireItem
from preclose.wording.notify import Milestone

# The docs: providers review within 24 h (0-48 h); follow up after 48 h without a response.
NO_RESPONSE_AFTER = timedelta(hours=48)
NO_RESPONSE_REASON = "No response from the provider within 48 hours of ordering."

_AWAITING_PROVIDER = frozenset({OrderStatus.PENDING.value, OrderStatus.SUBMITTED_TO_PROVIDER.value})

MILESTONE_FOR_STATUS: dict[str, Milestone] = {
    OrderStatus.ACCEPTED.value: Milestone.order_accepted,
    OrderStatus.SCHEDULED.value: Milestone.order_scheduled,
    OrderStatus.COMPLETED.value: Milestone.order_fulfilled,
    OrderStatus.ACTIVE.value: Milestone.order_fulfilled,
    OrderStatus.REJECTED.value: Milestone.order_rejected,
    OrderStatus.FAILED.value: Milestone.order_at_risk,
}


@dataclass(frozen=True)
class ItemUpdate:
    """Offergrid's latest word on one item, stamped with when it happened there."""

    offergrid_item_id: str
    status: str
    at: datetime
    scheduled_for: datetime | None = None
    account_number: str | None = None
    notes: str | None = None


@dataclass(frozen=True)
class HeldItem:
    """What we hold of one item: the last status applied, when it happened, its account number."""

    status: str | None
    status_at: datetime | None
    account_number: str | None


def supersedes(
    held_status: str | None, held_at: datetime | None, status: str, at: datetime
) -> bool:
    """Whether an event (status, at) is newer than what we hold of the item."""
    if held_at is None:
        return True
    if at != held_at:
        return at > held_at
    # Same instant: only a step further along the lifecycle wins, so a replay is a no-op.
    new_rank, old_rank = status_rank(status), status_rank(held_status)
    return new_rank is not None and old_rank is not None and new_rank > old_rank


def is_news(held: HeldItem, update: ItemUpdate) -> bool:
    """Whether applying `update` would change what we hold (a newer status, or a missing fact)."""
    if supersedes(held.status, held.status_at, update.status, update.at):
        return True
    return update.account_number is not None and held.account_number is None


def _event_time(order: Order, item: WireItem) -> datetime | None:
    """When the item reached its current status: its newest history entry with that status."""
    stamps = [
        entry.timestamp
        for entry in item.history
        if entry.timestamp is not None and str(entry.status) == str(item.status)
    ]
    if stamps:
        return max(stamps)
    # No item history (the contract allows order-level history only): fall back to the order.
    return order.updated_at or order.created_at


def updates_from_orders(orders: Iterable[Order], item_ids: Iterable[str]) -> list[ItemUpdate]:
    """The items among `item_ids` as the listed orders show them, one update per item."""
    wanted = set(item_ids)
    updates: list[ItemUpdate] = []
    for order in orders:
        for item in order.items:
            if item.item_id not in wanted or item.status is None:
                continue
            at = _event_time(order, item)
            if at is None:
                continue
            updates.append(
                ItemUpdate(
                    offergrid_item_id=item.item_id,
                    status=str(item.status),
                    at=at,
                    scheduled_for=item.scheduled_for,
                    account_number=item.account_number,
                    notes=item.provider_notes,
                )
            )
    return updates


def items_offergrid_lacks(orders: Iterable[Order], item_ids: Iterable[str]) -> list[str]:
    """The items among `item_ids` that no listed order holds: Offergrid no longer knows them."""
    listed = {item.item_id for order in orders for item in order.items}
    return sorted(set(item_ids) - listed)


def milestone_for(status: str) -> Milestone | None:
    """The milestone a person hears about when an item reaches `status`, if any."""
    return MILESTONE_FOR_STATUS.get(status)


@dataclass(frozen=True)
class ItemFacts:
    """What the risk rules look at for one placed item."""

    status: str | None
    placed_at: datetime | None
    status_at: datetime | None
    scheduled_for: datetime | None
    service_deadline: date
    time_zone: str
    service_start: date | None = None  # the requested start: a booking before it is wrong too


def risk_of(item: ItemFacts, *, as_of: datetime) -> str | None:
    """Why this item endangers its service date, in plain words, or None when it is on track."""
    status = item.status
    if status == OrderStatus.REJECTED.value:
        return "The provider rejected the order."
    if status == OrderStatus.FAILED.value:
        return "The installation failed."
    waited = as_of - item.placed_at if item.placed_at is not None else None
    if status in _AWAITING_PROVIDER and waited is not None and waited > NO_RESPONSE_AFTER:
        return NO_RESPONSE_REASON
    if item.scheduled_for is not None and status not in (
        OrderStatus.COMPLETED.value,
        OrderStatus.ACTIVE.value,
    ):
        local = item.scheduled_for.astimezone(ZoneInfo(item.time_zone)).date()
        if local > item.service_deadline:
            return (
                f"Scheduled for {local:%a %b %-d}, after the date it is needed "
                f"({item.service_deadline:%a %b %-d})."
            )
        if item.service_start is not None and local < item.service_start:
            return (
                f"Scheduled for {local:%a %b %-d}, before the requested start "
                f"({item.service_start:%a %b %-d}): ask the provider to move it."
            )
    return None


@dataclass(frozen=True)
class LineRisk:
    """A plan line's risk flag and its reason, as stored."""

    at_risk: bool
    reason: str | None


@dataclass(frozen=True)
class RiskFinding:
    """A plan line newly found at risk, and why."""

    closing_id: uuid.UUID
    plan_line_id: uuid.UUID
    category: str
    provider: str | None
    reason: str


def reassess(item: ItemFacts, stored: LineRisk, *, as_of: datetime) -> LineRisk | None:
    """A line's new risk flag and reason, or None when the stored ones stand.

    A risk is over once the service is live, or once the provider has answered after a silence;
    any other risk stays flagged until a new one replaces it.
    """
    reason = risk_of(item, as_of=as_of)
    if reason is None:
        resolved = item.status in FULFILLED or stored.reason == NO_RESPONSE_REASON
        return LineRisk(at_risk=False, reason=None) if stored.at_risk and resolved else None
    if stored.at_risk and stored.reason == reason:
        return None
    return LineRisk(at_risk=True, reason=reason)
