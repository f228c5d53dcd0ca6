"""Change tasks: store a changed closing, settle and read its orders, cancel them."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NONE

from models.change import ClosingChange
from models.tables import Placement, PlacementState, StatusSource
from offergrid.errors import NotCancellableError
from offergrid.models import Order
from preclose.rules.changes import StoredChange
from preclose.rules.placing import INTENT_KEY, closing_orders
from preclose.rules.tracking import updates_from_orders
from preclose.runtime import db_session, offergrid_client
from preclose.storage import repository
from tasks.orders import PLACEMENT_LEASE, record_placed
from tasks.policies import OFFERGRID_TASK_OPTIONS
from tasks.tracking import record_update

logger = logging.getLogger(__name__)

# How often a change looks again whether an order call in flight has finished.
_POLL_SECONDS = 0.05


@task(name="store change", cache_policy=NONE)
def store_change(crm_closing_id: str, change: ClosingChange, as_of: datetime) -> StoredChange:
    """Check a change against the stored closing and store it; bad input names its field.

    A fall-through marks the closing at once, so no placement starts after this returns; it is
    taken even once every service is live (the buyer then has services to stop). A corrected
    address is refused once any order went to Offergrid (checked and stored in one transaction).
    Any other change to a closing that is no longer live is refused, and repeating a
    fall-through changes nothing.
    """
    with db_session() as session:
        return repository.store_closing_change(
            session=session, crm_closing_id=crm_closing_id, change=change, as_of=as_of
        )


@task(name="settle placements", cache_policy=NONE)
def settle_placements(closing_id: uuid.UUID, withdraw: bool, wait: bool = True) -> list[str]:
    """With `wait`, wait for order calls in flight; with `withdraw`, call off unsent intents.

    Once this returns (waiting), every order of the closing is either at Offergrid (recorded, or
    findable by its key) or will be sent with the stored request as it is now. Returns the
    categories whose unsent intents were withdrawn (their lines are cancelled, for the new plan to
    order again).
    """
    deadline = time.monotonic() + PLACEMENT_LEASE.total_seconds()
    withdrawn: list[str] = []
    while True:
        with db_session() as session:
            held, called_off = repository.settle_closing_placements(
                session=session, closing_id=closing_id, withdraw=withdraw, now=datetime.now(UTC)
            )
        withdrawn.extend(called_off)
        if held == 0 or not wait:
            return withdrawn
        if time.monotonic() > deadline:
            # A placer that died mid-call: its lease is over, and the next placer looks it up.
            logger.warning("An order call of this closing did not finish in time; going on")
            return withdrawn
        time.sleep(_POLL_SECONDS)


def _categories(placement_id: uuid.UUID) -> list[str]:
    with db_session() as session:
        return repository.placement_categories(session=session, placement_id=placement_id)


def _record_statuses(orders: list[Order], source: StatusSource) -> None:
    """Apply what these orders say about our items (older news is ignored by the repository)."""
    item_ids = [item.item_id for order in orders for item in order.items if item.item_id]
    for update in updates_from_orders(orders, item_ids):
        record_update(update, source)


def _adopt(placement_id: uuid.UUID, order: Order) -> None:
    """Record an order found at Offergrid for a placement whose outcome we did not know."""
    try:
        record_placed(placement_id, order)
    except (repository.PlacementConflictError, ValueError):
        logger.warning("An order found for a placement does not match it; left as it is")


@dataclass(frozen=True)
class ClosingOrders:
    """A closing's orders at Offergrid, and the categories whose placements were called off."""

    orders: list[Order]
    withdrawn: list[str] = field(default_factory=list)


@task(name="read closing orders", cache_policy=NONE, **OFFERGRID_TASK_OPTIONS)
def read_closing_orders(closing_id: uuid.UUID, withdraw_unfound: bool) -> ClosingOrders:
    """The closing's orders as Offergrid has them now (one bulk read), our records brought up to
    date: placements with an unknown outcome are adopted when found, and with `withdraw_unfound`
    called off when not (so nothing of the old request is sent after this)."""
    with offergrid_client() as client:
        everything = client.list_orders()
    with db_session() as session:
        row = repository.get_closing(session=session, closing_id=closing_id)
        if row is None:
            raise LookupError(f"closing_id: no closing {closing_id}")
        crm_id = row.crm_closing_id
        placements = repository.list_placements(session=session, closing_id=closing_id)
    orders = closing_orders(
        everything,
        crm_closing_id=crm_id,
        order_ids={p.offergrid_order_id for p in placements if p.offergrid_order_id},
        intent_keys={p.intent_key for p in placements},
    )
    withdrawn = _settle_unknown(placements, orders, withdraw_unfound)
    _record_statuses(orders, StatusSource.sync)
    return ClosingOrders(orders, withdrawn)


def _settle_unknown(
    placements: list[Placement], orders: list[Order], withdraw_unfound: bool
) -> list[str]:
    """Adopt each unfinished placement's order when found; with `withdraw_unfound`, call off
    those not found. Returns the categories called off."""
    found_keys = {(order.metadata or {}).get(INTENT_KEY): order for order in orders}
    withdrawn: list[str] = []
    for placement in placements:
        if placement.state not in (PlacementState.intent, PlacementState.unknown):
            continue
        found = found_keys.get(placement.intent_key)
        if found is not None:
            _adopt(placement.id, found)
        elif withdraw_unfound:
            with db_session() as session:
                called_off = repository.withdraw_placement(
                    session=session,
                    placement_id=placement.id,
                    reason="withdrawn: the closing changed before the order reached Offergrid",
                    maybe_sent=True,
                )
            if called_off:
                withdrawn.extend(_categories(placement.id))
    return withdrawn


@dataclass(frozen=True)
class CancelResult:
    """One order cancel: done, or refused with Offergrid's reason and the order as it stands."""

    order_id: str
    cancelled: bool
    why: str | None = None
    order: Order | None = None


@task(name="cancel order", cache_policy=NONE, **OFFERGRID_TASK_OPTIONS)
def cancel_order(order_id: str, reason: str) -> CancelResult:
    """Cancel one Offergrid order (every item) and record it; a refusal is a result, not a failure.

    Offergrid refuses (409) once any item is past `scheduled`; the order is then read back, so the
    caller can say which service holds it up. Retried only on 429, 5xx and connection errors.
    """
    with offergrid_client() as client:
        try:
            order = client.cancel_order(order_id, reason=reason)
        except NotCancellableError as err:
            current = client.get_order(order_id)
            _record_statuses([current], StatusSource.sync)
            if current.items and all(str(item.status) == "cancelled" for item in current.items):
                return CancelResult(order_id, cancelled=True, order=current)
            detail = getattr(err.body, "detail", None) or str(err)
            return CancelResult(order_id, cancelled=False, why=str(detail), order=current)
    _record_statuses([order], StatusSource.cancel)
    return CancelResult(order_id, cancelled=True, order=order)


@task(name="cancel unordered lines", cache_policy=NONE)
def cancel_unordered_lines(closing_id: uuid.UUID) -> int:
    """Cancel the closing's lines never sent to Offergrid (it fell through); returns how many."""
    with db_session() as session:
        return repository.cancel_unplaced_lines(session=session, closing_id=closing_id)


@task(name="describe items", cache_policy=NONE)
def describe_items(item_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """Each Offergrid item's service as our records have it: (category, provider)."""
    described: dict[str, tuple[str, str | None]] = {}
    with db_session() as session:
        for item_id in item_ids:
            ours = repository.get_item_by_offergrid_id(session=session, offergrid_item_id=item_id)
            line = (
                repository.get_plan_line(session=session, plan_line_id=ours.plan_line_id)
                if ours is not None
                else None
            )
            if line is not None:
                described[item_id] = (line.category, line.provider_name)
    return described
