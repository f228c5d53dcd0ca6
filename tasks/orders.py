"""Order tasks: place one intended order exactly once, and read every order back in bulk."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from prefect import task
from prefect.cache_policies import NONE
from prefect.context import TaskRunContext

from models.tables import StatusSource
from offergrid.models import Order
from preclose.rules.order_placement import Claim, send_placement
from preclose.rules.tracking import updates_from_orders
from preclose.runtime import db_session, endpoint_fingerprint, offergrid_client, policy
from preclose.storage import repository
from tasks.policies import OFFERGRID_TASK_OPTIONS
from tasks.self_serve import record_buyer_customer
from tasks.tracking import record_update

# Long enough for one order call with its timeouts; a placer that dies frees the placement then.
PLACEMENT_LEASE = timedelta(minutes=2)


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


class StoredPlacement:
    """The placement ledger over our database: each step one repository unit of work."""

    def __init__(self, placement_id: uuid.UUID) -> None:
        """The ledger of one placement."""
        self.placement_id = placement_id
        self.closing_id: uuid.UUID | None = None

    def claim(self) -> Claim | None:
        """Claim the placement for a lease and read what its order is made from."""
        with db_session() as session:
            claim = repository.claim_placement_to_send(
                session=session, placement_id=self.placement_id, lease=PLACEMENT_LEASE
            )
        self.closing_id = claim.closing_id if claim is not None else None
        return claim

    def recorded_order_id(self) -> str | None:
        """The Offergrid order ID recorded for the placement, if any."""
        with db_session() as session:
            current = repository.get_placement(session=session, placement_id=self.placement_id)
            return current.offergrid_order_id if current is not None else None

    def record_placed(self, order: Order) -> str:
        """Record Offergrid's order (looked up at call time, so a test can stop here)."""
        return record_placed(self.placement_id, order)

    def release(self) -> None:
        """Give the lease back."""
        with db_session() as session:
            repository.release_placement(session=session, placement_id=self.placement_id)

    def mark_unknown(self, error: str) -> None:
        """The order may exist: look it up first next time."""
        with db_session() as session:
            repository.mark_placement_unknown(
                session=session, placement_id=self.placement_id, error=error
            )

    def mark_failed(self, error: str) -> None:
        """The placement failed for good."""
        with db_session() as session:
            repository.mark_placement_failed(
                session=session, placement_id=self.placement_id, error=error
            )

    def items_to_cancel(self) -> list[str] | None:
        """Item IDs to cancel if the closing fell through and an item is still open."""
        with db_session() as session:
            return repository.items_to_cancel(session=session, placement_id=self.placement_id)

    def record_cancelled(self, order: Order, item_ids: Sequence[str]) -> None:
        """Store the cancelled order's item statuses."""
        for update in updates_from_orders([order], list(item_ids)):
            record_update(update, StatusSource.cancel)

    def first_order_placed(self) -> None:
        """Make the buyer our Offergrid customer (once per buyer, best effort)."""
        assert self.closing_id is not None  # only a claimed placement places an order
        record_buyer_customer(self.closing_id)


@task(name="place order", cache_policy=NONE, **OFFERGRID_TASK_OPTIONS)
def place_order(placement_id: uuid.UUID) -> str | None:
    """Place the order recorded as this intent exactly once (rules.order_placement decides)."""
    return send_placement(StoredPlacement(placement_id), offergrid_client, policy())


def orders_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """One cache entry per Offergrid endpoint and status-cache period."""
    return f"offergrid-orders-{endpoint_fingerprint()}-{parameters['period']}"


@task(name="list orders", persist_result=False, **OFFERGRID_TASK_OPTIONS)
def list_orders(period: str) -> list[Order]:
    """Every order of our team in one call, without its customer; `period` names the
    status-cache window it belongs to.

    The customer details (the buyer's name, email and phone) are dropped here, so they never
    leave this task, nor reach the cached copy (`cached_list_orders`).
    """
    with offergrid_client() as client:
        orders = client.list_orders()
    return [order.model_copy(update={"customer_info": None}) for order in orders]


def cached_list_orders(minutes: float) -> Any:
    """`list_orders` with its answer kept in Prefect's result storage for `minutes`, so every
    read in the same period shares one call."""
    return list_orders.with_options(
        cache_key_fn=orders_cache_key,
        cache_expiration=timedelta(minutes=minutes),
        persist_result=True,
    )


def prepare_placements(closing_id: uuid.UUID | None, as_of: datetime) -> list[uuid.UUID]:
    """Placements to send now: unfinished ones, then one new intent per closing's due lines.

    A plain step of the placement flow: the orders it prepares are the task runs to look at.
    """
    with db_session() as session:
        return repository.prepare_placements(session=session, as_of=as_of, closing_id=closing_id)
