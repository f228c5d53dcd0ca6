"""Order tasks: place one intended order exactly once, and read every order back in bulk."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from prefect import task
from prefect.cache_policies import NONE
from prefect.context import TaskRunContext
from sqlmodel import Session

from models.tables import ClosingStatus, PlacementState, StatusSource
from offergrid.errors import (
    APIConnectionError,
    InternalServerError,
    NotCancellableError,
    OffergridError,
    RateLimitError,
)
from offergrid.models import Order
from preclose.app.runtime import db_session, endpoint_fingerprint, offergrid_client, policy
from preclose.rules.placing import (
    DueLine,
    LineWindow,
    find_order_for_intent,
    group_due_lines,
    item_windows,
    order_request,
)
from preclose.rules.tracking import updates_from_orders
from preclose.storage import repository
from tasks.policies import OFFERGRID_TASK_OPTIONS
from tasks.self_serve import record_buyer_customer
from tasks.tracking import record_update

logger = logging.getLogger(__name__)

# Long enough for one order call with its timeouts; a placer that dies frees the placement then.
PLACEMENT_LEASE = timedelta(minutes=2)
# What Offergrid (and the provider) read when we cancel an order because the deal is off.
FELL_THROUGH_REASON = "The closing fell through"
_CALLED_OFF = frozenset({ClosingStatus.fell_through})
# The request may have reached Offergrid and created the order before these errors came back.
_UNCLEAR = (InternalServerError, APIConnectionError)


def record_placed(placement_id: uuid.UUID, order: Order) -> str:
    """Record Offergrid's order for a placement (ID, items, creation time); returns its ID."""
    with db_session() as session:
        repository.mark_placement_placed(
            session=session,
            placement_id=placement_id,
            offergrid_order_id=order.order_id,
            # Offergrid's own creation time: the clock the provider's response is measured on.
            placed_at=order.created_at,
            items=[
                repository.PlacedItem(
                    offer_id=item.offer_id or "",
                    offergrid_item_id=item.item_id or "",
                    status=str(item.status or "pending"),
                )
                for item in order.items
            ],
        )
    return order.order_id


@task(name="place order", cache_policy=NONE, **OFFERGRID_TASK_OPTIONS)
def place_order(placement_id: uuid.UUID) -> str | None:
    """Place the order recorded as this intent, unless it exists; returns Offergrid's order ID.

    The intent (and its Idempotency-Key) was stored before this call. A placer first claims the
    placement for a short lease, so two runs never send it at once. After any unclear outcome
    (a 5xx, a timeout, a crash before our write) the next attempt looks the order up by the key in
    its metadata before placing again: the real Offergrid may ignore the Idempotency-Key.
    """
    with db_session() as session:
        placement = repository.claim_placement(
            session=session, placement_id=placement_id, lease=PLACEMENT_LEASE
        )
        if placement is None:
            current = repository.get_placement(session=session, placement_id=placement_id)
            # Placed already, failed for good, or another placer holds it right now.
            if current is None or current.offergrid_order_id is None:
                return None
            # A retry after a cancel that did not get through (below) tries that cancel again.
            return _unless_closing_ended(current.id, current.closing_id, current.offergrid_order_id)
        items = repository.list_placement_items(session=session, placement_id=placement_id)
        closing_row = repository.get_closing(session=session, closing_id=placement.closing_id)
        assert closing_row is not None  # the placement's foreign key guarantees it
        live = closing_row.status in repository.LIVE_CLOSING_STATUSES
        closing = closing_row.closing_request()
        lines = [_line_window(session, item.plan_line_id, item.offer_id) for item in items]
    if not live:
        # The deal fell through or was cancelled after the intent: never order for it.
        with db_session() as session:
            repository.mark_placement_failed(
                session=session, placement_id=placement_id, error="the closing is no longer live"
            )
        return None

    key = placement.intent_key
    with offergrid_client() as client:
        try:
            if placement.attempts > 1 or placement.state == PlacementState.unknown:
                existing = find_order_for_intent(client.list_orders(), key)
                if existing is not None:
                    logger.info("The order for this intent already exists; recording it")
                    order_id = record_placed(placement_id, existing)
                    return _unless_closing_ended(placement_id, placement.closing_id, order_id)
            request = order_request(
                closing,
                [item.offer_id for item in items],
                intent_key=key,
                windows=item_windows(closing, lines, policy()),
            )
            created = client.place_order(request, idempotency_key=key)
        except RateLimitError:
            # Offergrid refused before doing anything: nothing to look up on the next attempt.
            with db_session() as session:
                repository.release_placement(session=session, placement_id=placement_id)
            raise
        except OffergridError as err:
            with db_session() as session:
                if isinstance(err, _UNCLEAR):
                    repository.mark_placement_unknown(
                        session=session, placement_id=placement_id, error=type(err).__name__
                    )
                else:
                    repository.mark_placement_failed(
                        session=session, placement_id=placement_id, error=str(err)
                    )
            raise
        except BaseException:
            with db_session() as session:
                repository.release_placement(session=session, placement_id=placement_id)
            raise
    order_id = record_placed(placement_id, created)
    # The buyer becomes our Offergrid customer with their first order (once per buyer).
    record_buyer_customer(placement.closing_id)
    return _unless_closing_ended(placement_id, placement.closing_id, order_id)


def _unless_closing_ended(placement_id: uuid.UUID, closing_id: uuid.UUID, order_id: str) -> str:
    """Cancel an order just recorded if its closing fell through meanwhile; returns its ID.

    The live check before the order call cannot see a fall-through that lands while the call is
    out. Looking again after the order is recorded closes that gap: the fall-through flow cancels
    every order recorded before it changed the status, and this cancels every one recorded after.
    """
    with db_session() as session:
        closing = repository.get_closing(session=session, closing_id=closing_id)
        items = repository.list_placement_items(session=session, placement_id=placement_id)
    if closing is None or closing.status not in _CALLED_OFF:
        return order_id
    if all(item.status in repository.TERMINAL_ITEM_STATUSES for item in items):
        return order_id  # cancelled (or ended) already
    logger.warning("The closing is no longer live: cancelling the order just placed")
    with offergrid_client() as client:
        try:
            order = client.cancel_order(order_id, reason=FELL_THROUGH_REASON)
        except NotCancellableError:
            logger.warning("Offergrid would not cancel it; the buyer must call the provider")
            return order_id
    item_ids = [item.offergrid_item_id for item in items if item.offergrid_item_id]
    for update in updates_from_orders([order], item_ids):
        record_update(update, StatusSource.cancel)
    return order_id


def orders_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """One cache entry per Offergrid endpoint and status-cache period."""
    return f"offergrid-orders-{endpoint_fingerprint()}-{parameters['period']}"


@task(
    name="list orders",
    cache_key_fn=orders_cache_key,
    cache_expiration=timedelta(minutes=5),
    persist_result=True,
    **OFFERGRID_TASK_OPTIONS,
)
def list_orders(period: str) -> list[Order]:
    """Every order of our team in one call, without its customer; `period` names the
    status-cache window it belongs to.

    The result is cached in Prefect's result storage, so the orders' customer details (the
    buyer's name, email and phone) are dropped here and never leave this task.
    """
    with offergrid_client() as client:
        orders = client.list_orders()
    return [order.model_copy(update={"customer_info": None}) for order in orders]


@task(name="prepare placements", cache_policy=NONE)
def prepare_placements(closing_id: uuid.UUID | None, as_of: datetime) -> list[uuid.UUID]:
    """Placements to send now: unfinished ones, then one new intent per closing's due lines."""
    with db_session() as session:
        unfinished = repository.list_placements(
            session=session,
            states=[PlacementState.intent, PlacementState.unknown],
            closing_id=closing_id,
        )
        # The query widens "today" by a day; each closing's own zone decides below.
        candidates = repository.list_due_plan_lines(
            session=session, as_of_date=(as_of + timedelta(days=1)).date(), closing_id=closing_id
        )
        zones = {line.closing_id: _zone_of(session, line.closing_id) for line in candidates}
        batches = group_due_lines(
            [
                DueLine(line.id, line.closing_id, line.placement_date, line.service_date)
                for line in candidates
            ],
            time_zones=zones,
            as_of=as_of,
        )
        created = [
            repository.create_placement_intent(
                session=session,
                closing_id=batch.closing_id,
                plan_line_ids=list(batch.line_ids),
                due_date=batch.due_date,
            )
            for batch in batches
        ]
    ids = [placement.id for placement in unfinished]
    return ids + [placement.id for placement in created if placement.id not in ids]


def _line_window(session: Session, plan_line_id: uuid.UUID, offer_id: str) -> LineWindow:
    line = repository.get_plan_line(session=session, plan_line_id=plan_line_id)
    assert line is not None  # the item's foreign key guarantees it
    snapshot = line.offer_snapshot or {}
    return LineWindow(
        offer_id=offer_id,
        category=line.category,
        offer_name=line.offer_name,
        service_date=line.service_date,
        service_window_end=line.service_window_end,
        instant=bool(snapshot.get("instant_activation")),
    )


def _zone_of(session: Session, closing_id: uuid.UUID) -> str:
    closing = repository.get_closing(session=session, closing_id=closing_id)
    assert closing is not None
    return closing.time_zone
