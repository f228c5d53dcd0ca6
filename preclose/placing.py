"""Rules for placing orders: which lines go together, what the order says, how to find it again."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from models.closing import ClosingRequest
from offergrid.models import CreateOrderRequest, CustomerInfo, Order, OrderItemRequest
from offergrid.models import ServiceAddress as WireAddress

# Metadata keys we write on every order, so an order can be found and traced back to its intent.
INTENT_KEY = "preclose_intent"
CLOSING_REF_KEY = "preclose_closing"


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


def group_due_lines(
    lines: Iterable[DueLine], *, time_zones: Mapping[uuid.UUID, str], as_of: datetime
) -> list[DueBatch]:
    """Group the lines whose placement date has come, in each closing's own zone, by closing.

    Every line of a closing that is due at `as_of` goes in the same batch (one order per closing and
    due date); the batch's due date is its latest placement date, a fact of the lines, so a rerun
    on a later day rebuilds the same batch and so the same Idempotency-Key.
    """
    from zoneinfo import ZoneInfo

    due: dict[uuid.UUID, list[DueLine]] = defaultdict(list)
    for line in lines:
        today = as_of.astimezone(ZoneInfo(time_zones[line.closing_id])).date()
        if line.placement_date <= today:
            due[line.closing_id].append(line)
    return [
        DueBatch(
            closing_id=closing_id,
            line_ids=tuple(line.line_id for line in sorted(group, key=lambda item: item.line_id)),
            due_date=max(line.placement_date for line in group),
        )
        for closing_id, group in sorted(due.items(), key=lambda pair: str(pair[0]))
    ]


def order_request(
    closing: ClosingRequest, offer_ids: Sequence[str], *, intent_key: str
) -> CreateOrderRequest:
    """The Offergrid order for these offers at the closing's property, tagged with its intent."""
    address = closing.property.address
    # Offergrid's service address has no unit field: the docs put the unit in the street line
    # and in metadata.unitNumber, so we do both.
    street = f"{address.street}, {address.unit}" if address.unit else address.street
    metadata: dict[str, Any] = {
        INTENT_KEY: intent_key,
        CLOSING_REF_KEY: closing.crm_closing_id,
        "moveInDate": closing.effective_move_in.isoformat(),
        "referralSource": "preclose",
    }
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
        notes=closing.preferences.installer_notes,
        metadata=metadata,
    )


def find_order_for_intent(orders: Iterable[Order], intent_key: str) -> Order | None:
    """The order Offergrid holds for this intent, found by the key we wrote in its metadata."""
    for order in orders:
        if (order.metadata or {}).get(INTENT_KEY) == intent_key:
            return order
    return None
