"""Rules for placing orders: which lines go together, what the order says, how to find it again."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from models.closing import ClosingRequest
from offergrid.models import Category, CreateOrderRequest, CustomerInfo, Order, OrderItemRequest
from offergrid.models import ServiceAddress as WireAddress
from preclose.rules.policy import Policy
from preclose.rules.timing import service_timing
from preclose.wording.services import service_name

# Metadata keys we write on every order, so an order can be found and traced back to its intent.
INTENT_KEY = "preclose_intent"
CLOSING_REF_KEY = "preclose_closing"
# Offergrid's order item has no date field (reference.md, CreateOrder: items carry only offerId),
# so each item's window goes in the order's metadata under this key, one entry per item, in the
# items' order and naming its offerId; `notes` says the same in words for the provider's staff.
WINDOWS_KEY = "serviceWindows"

# What the provider's staff do for each service, by the window's start.
_VERBS = {
    Category.ENERGY: "start service",
    Category.INSURANCE: "policy effective",
    Category.INTERNET: "install",
    Category.SECURITY: "install",
    Category.TELEVISION: "install",
    Category.OTHER: "on",
}


@dataclass(frozen=True)
class ItemWindow:
    """When one ordered service must start: not before `not_before`, from `start` to `needed_by`."""

    offer_id: str
    category: Category
    offer_name: str | None
    start: date  # the requested start: never earlier
    needed_by: date  # the last day that still serves the buyer
    not_before: date  # possession: the buyer has the keys
    bind_by: date | None = None  # insurance: accepted (bound) by this day, for the lender

    def to_metadata(self) -> dict[str, Any]:
        """The window as the order's metadata carries it (ISO dates, camelCase keys)."""
        data: dict[str, Any] = {
            "offerId": self.offer_id,
            "category": self.category.value,
            "startDate": self.start.isoformat(),
            "neededBy": self.needed_by.isoformat(),
            "notBefore": self.not_before.isoformat(),
        }
        if self.bind_by is not None:
            data["bindBy"] = self.bind_by.isoformat()
        return data

    def sentence(self) -> str:
        """The window in words for the provider's staff."""
        title, verb = service_name(self.category.value), _VERBS.get(self.category, "start")
        name = f" ({self.offer_name})" if self.offer_name else ""
        when = f"on {_day(self.start)}"
        if self.needed_by > self.start:
            when = f"between {_day(self.start)} and {_day(self.needed_by)}"
        text = f"{title}{name}: {verb} {when}, not earlier"
        if self.not_before < self.start:
            text += f" (the buyer has the keys from {_day(self.not_before)})"
        elif self.not_before == self.start:
            text += " (the day the buyer gets the keys)"
        if self.bind_by is not None:
            text += f"; bind the policy by {_day(self.bind_by)} for the lender"
        return text + "."


def _day(day: date) -> str:
    return f"{day:%a %b} {day.day}, {day.year}"


@dataclass(frozen=True)
class LineWindow:
    """The few facts of a plan line its order's window is made from."""

    offer_id: str
    category: str
    offer_name: str | None
    service_date: date
    service_window_end: date | None
    instant: bool = False


def item_windows(
    closing: ClosingRequest, lines: Sequence[LineWindow], policy: Policy
) -> list[ItemWindow]:
    """Each line's window: its planned dates, possession, and (insurance) the bind date."""
    windows = []
    for line in lines:
        category = Category(line.category)
        timing = service_timing(closing, category, policy, instant=line.instant)
        windows.append(
            ItemWindow(
                offer_id=line.offer_id,
                category=category,
                offer_name=line.offer_name,
                start=line.service_date,
                needed_by=max(line.service_window_end or line.service_date, line.service_date),
                not_before=closing.possession_date,
                bind_by=min(timing.bind_by, line.service_date) if timing.bind_by else None,
            )
        )
    return windows


# Offergrid's order notes hold at most 2,000 characters (CreateOrderDto).
MAX_NOTES = 2000


def order_notes(closing: ClosingRequest, windows: Sequence[ItemWindow]) -> str | None:
    """The order's notes: every item's window in words, then the buyer's installer notes."""
    text = _notes(closing, windows)
    if text is not None and len(text) > MAX_NOTES:
        # Offer names are the first to go: the provider knows what it sells.
        text = _notes(closing, [replace(window, offer_name=None) for window in windows])
    if text is not None and len(text) > MAX_NOTES:
        text = text[: MAX_NOTES - 1] + "…"
    return text


def _notes(closing: ClosingRequest, windows: Sequence[ItemWindow]) -> str | None:
    parts: list[str] = []
    if windows:
        keys = closing.possession_date
        head = f"Service dates (the buyer gets the keys on {_day(keys)}"
        if closing.closing_date != keys:
            head += f"; closing is {_day(closing.closing_date)}"
        if closing.effective_move_in != keys:
            head += f"; move-in is {_day(closing.effective_move_in)}"
        parts.append(head + "):")
        parts.extend(f"- {window.sentence()}" for window in windows)
    if closing.preferences.installer_notes:
        parts.append(f"Access notes: {closing.preferences.installer_notes}")
    return "\n".join(parts) if parts else None


@dataclass(frozen=True)
class DueBatch:
    """Lines of one closing that are due together: they go out as one multi-item order."""

    closing_id: uuid.UUID
    line_ids: tuple[uuid.UUID, ...]
    due_date: date


@dataclass(frozen=True)
class DueLine:
    """The few facts of a plan line the grouping needs."""

    line_id: uuid.UUID
    closing_id: uuid.UUID
    placement_date: date
    service_date: date | None = None  # the requested start: one order per start date


def group_due_lines(
    lines: Iterable[DueLine], *, time_zones: Mapping[uuid.UUID, str], as_of: datetime
) -> list[DueBatch]:
    """Group the lines whose placement date has come, in each closing's own zone, by window.

    The lines of a closing that are due at `as_of` and start on the same day go in one batch (one
    multi-item order per closing, due date and start date): one order then speaks of one start
    date, so no provider reads another item's date as its own. The batch's due date is its latest
    placement date, a fact of the lines, so a rerun on a later day rebuilds the same batch and so
    the same Idempotency-Key.
    """
    from zoneinfo import ZoneInfo

    due: dict[tuple[uuid.UUID, date | None], list[DueLine]] = defaultdict(list)
    for line in lines:
        today = as_of.astimezone(ZoneInfo(time_zones[line.closing_id])).date()
        if line.placement_date <= today:
            due[(line.closing_id, line.service_date)].append(line)
    return [
        DueBatch(
            closing_id=closing_id,
            line_ids=tuple(line.line_id for line in sorted(group, key=lambda item: item.line_id)),
            due_date=max(line.placement_date for line in group),
        )
        for (closing_id, _), group in sorted(
            due.items(), key=lambda pair: (str(pair[0][0]), pair[0][1] or date.min)
        )
    ]


def order_request(
    closing: ClosingRequest,
    offer_ids: Sequence[str],
    *,
    intent_key: str,
    windows: Sequence[ItemWindow] = (),
) -> CreateOrderRequest:
    """The Offergrid order for these offers at the closing's property, tagged with its intent.

    With `windows`, every item's window goes in `metadata.serviceWindows` and in words in `notes`;
    the closing, possession and move-in dates go in metadata too, so a rent-back or an early
    move-in reads right.
    """
    address = closing.property.address
    # Offergrid's service address has no unit field: the docs put the unit in the street line
    # and in metadata.unitNumber, so we do both.
    street = f"{address.street}, {address.unit}" if address.unit else address.street
    metadata: dict[str, Any] = {
        INTENT_KEY: intent_key,
        CLOSING_REF_KEY: closing.crm_closing_id,
        "moveInDate": closing.effective_move_in.isoformat(),
        "closingDate": closing.closing_date.isoformat(),
        "possessionDate": closing.possession_date.isoformat(),
        "referralSource": "preclose",
    }
    if windows:
        metadata[WINDOWS_KEY] = [window.to_metadata() for window in windows]
    if address.unit:
        metadata["unitNumber"] = address.unit
    if closing.test_mode:
        metadata["test"] = True
    return CreateOrderRequest(
        items=[OrderItemRequest(offer_id=offer_id) for offer_id in offer_ids],
        service_address=WireAddress(
            street=street,
            city=address.city,
            state=address.state,
            zip_code=address.zip_code,
            country=address.country,
        ),
        customer_info=CustomerInfo(
            full_name=closing.buyer.full_name, email=closing.buyer.email, phone=closing.buyer.phone
        ),
        notes=order_notes(closing, windows),
        metadata=metadata,
    )


def find_order_for_intent(orders: Iterable[Order], intent_key: str) -> Order | None:
    """The order Offergrid holds for this intent, found by the key we wrote in its metadata."""
    for order in orders:
        if (order.metadata or {}).get(INTENT_KEY) == intent_key:
            return order
    return None


def closing_orders(
    orders: Iterable[Order],
    *,
    crm_closing_id: str,
    order_ids: Collection[str],
    intent_keys: Collection[str],
) -> list[Order]:
    """The orders of one closing among many: recorded by us, tagged with the closing's CRM ID, or
    carrying one of its intents' keys (an order whose answer we never heard)."""
    return [
        order
        for order in orders
        if order.order_id in order_ids
        or (order.metadata or {}).get(CLOSING_REF_KEY) == crm_closing_id
        or (order.metadata or {}).get(INTENT_KEY) in intent_keys
    ]


def may_withdraw(*, unsent_intent: bool, attempts: int, held: bool) -> bool:
    """Whether a placement can be called off before a change: an intent never tried, not held."""
    return unsent_intent and attempts == 0 and not held
