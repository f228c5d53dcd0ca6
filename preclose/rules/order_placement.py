"""Placing one intended order exactly once: the steps, and what to record after each outcome.

The steps read and write through two small protocols, `PlacementLedger` (where the placement's
state is kept: the repository) and `OrderDesk` (Offergrid's order calls: the client), so the state
machine is plain code that a test drives with the sandbox and no Prefect.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from models.closing import ClosingRequest
from offergrid.errors import (
    APIConnectionError,
    InternalServerError,
    NotCancellableError,
    OffergridError,
    RateLimitError,
)
from offergrid.models import CreateOrderRequest, Order
from preclose.rules.placing import LineWindow, find_order_for_intent, item_windows, order_request
from preclose.rules.policy import Policy

__all__ = [
    "FELL_THROUGH_REASON",
    "Claim",
    "OrderDesk",
    "PlacementLedger",
    "send_placement",
]

logger = logging.getLogger(__name__)

# What Offergrid (and the provider) read when we cancel an order because the deal is off.
FELL_THROUGH_REASON = "The closing fell through"
# The request may have reached Offergrid and created the order before these errors came back.
_UNCLEAR = (InternalServerError, APIConnectionError)


@dataclass(frozen=True)
class Claim:
    """A placement claimed for a short lease: what its order is made from."""

    closing_id: uuid.UUID
    intent_key: str
    # A previous attempt may have created the order: look it up by the key before placing again.
    look_up_first: bool
    # False once the deal fell through or was cancelled after the intent was stored.
    live: bool
    closing: ClosingRequest
    offer_ids: Sequence[str]
    lines: Sequence[LineWindow]


class PlacementLedger(Protocol):
    """One placement's stored state: claimed, recorded, released or failed."""

    def claim(self) -> Claim | None:
        """Claim the placement for a short lease; None if placed, failed or held by another."""
        ...

    def recorded_order_id(self) -> str | None:
        """The Offergrid order ID recorded for the placement, if any."""
        ...

    def record_placed(self, order: Order) -> str:
        """Record Offergrid's order (ID, items, creation time); returns its ID."""
        ...

    def release(self) -> None:
        """Give the lease back: nothing was sent, or nothing is known to have been."""
        ...

    def mark_unknown(self, error: str) -> None:
        """The order may exist: the next attempt looks it up first."""
        ...

    def mark_failed(self, error: str) -> None:
        """The placement failed for good."""
        ...

    def items_to_cancel(self) -> list[str] | None:
        """Offergrid item IDs to cancel when the closing fell through meanwhile, else None."""
        ...

    def record_cancelled(self, order: Order, item_ids: Sequence[str]) -> None:
        """Store the cancelled order's item statuses."""
        ...

    def first_order_placed(self) -> None:
        """The buyer's first order went through: make them our Offergrid customer (best effort)."""
        ...


class OrderDesk(Protocol):
    """The Offergrid order calls a placement makes."""

    def list_orders(self) -> list[Order]:
        """Every order of our team."""
        ...

    def place_order(self, order: CreateOrderRequest, *, idempotency_key: str) -> Order:
        """Place an order under the intent's Idempotency-Key."""
        ...

    def cancel_order(self, order_id: str, *, reason: str | None = None) -> Order:
        """Cancel an order while every item is cancellable."""
        ...


def send_placement(
    ledger: PlacementLedger,
    desk: Callable[[], AbstractContextManager[OrderDesk]],
    policy: Policy,
) -> str | None:
    """Place the order recorded as this intent, unless it exists; returns Offergrid's order ID.

    The intent (and its Idempotency-Key) was stored before this call. A placer first claims the
    placement for a short lease, so two runs never send it at once. After any unclear outcome
    (a 5xx, a timeout, a crash before our write) the next attempt looks the order up by the key in
    its metadata before placing again: the real Offergrid may ignore the Idempotency-Key.
    """
    claim = ledger.claim()
    if claim is None:
        order_id = ledger.recorded_order_id()
        # Placed already, failed for good, or another placer holds it right now. A retry after a
        # cancel that did not get through (below) tries that cancel again.
        return None if order_id is None else _unless_closing_ended(ledger, desk, order_id)
    if not claim.live:
        # The deal fell through or was cancelled after the intent: never order for it.
        ledger.mark_failed("the closing is no longer live")
        return None
    with desk() as client:
        try:
            if claim.look_up_first:
                existing = find_order_for_intent(client.list_orders(), claim.intent_key)
                if existing is not None:
                    logger.info("The order for this intent already exists; recording it")
                    order_id = ledger.record_placed(existing)
                    return _unless_closing_ended(ledger, desk, order_id)
            request = order_request(
                claim.closing,
                list(claim.offer_ids),
                intent_key=claim.intent_key,
                windows=item_windows(claim.closing, claim.lines, policy),
            )
            created = client.place_order(request, idempotency_key=claim.intent_key)
        except RateLimitError:
            # Offergrid refused before doing anything: nothing to look up on the next attempt.
            ledger.release()
            raise
        except OffergridError as err:
            if isinstance(err, _UNCLEAR):
                ledger.mark_unknown(type(err).__name__)
            else:
                ledger.mark_failed(str(err))
            raise
        except BaseException:
            ledger.release()
            raise
    order_id = ledger.record_placed(created)
    # The buyer becomes our Offergrid customer with their first order (once per buyer).
    ledger.first_order_placed()
    return _unless_closing_ended(ledger, desk, order_id)


def _unless_closing_ended(
    ledger: PlacementLedger, desk: Callable[[], AbstractContextManager[OrderDesk]], order_id: str
) -> str:
    """Cancel an order just recorded if its closing fell through meanwhile; returns its ID.

    The live check before the order call cannot see a fall-through that lands while the call is
    out. Looking again after the order is recorded closes that gap: the fall-through flow cancels
    every order recorded before it changed the status, and this cancels every one recorded after.
    """
    item_ids = ledger.items_to_cancel()
    if item_ids is None:
        return order_id
    logger.warning("The closing is no longer live: cancelling the order just placed")
    with desk() as client:
        try:
            order = client.cancel_order(order_id, reason=FELL_THROUGH_REASON)
        except NotCancellableError:
            logger.warning("Offergrid would not cancel it; the buyer must call the provider")
            return order_id
    ledger.record_cancelled(order, item_ids)
    return order_id
