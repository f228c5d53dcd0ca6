"""The buyer's own Offergrid records: a shareable link for the optional services, the reseller
customer record, and the orders the buyer placed through the link.

Each Offergrid call here is one the job needs and no more: a link is created once per closing
(its row is stored first, so a retry after an unclear answer finds it in `GET /reseller/links`
instead of making a second), moved only when the move-in date changed, deactivated once; a customer
is created once per buyer and patched only when the contact details changed. Orders placed through
a link are found in the sync's own bulk `GET /reseller/orders`: no extra call.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from prefect import task
from prefect.cache_policies import NONE

from models.closing import ClosingRequest
from offergrid.errors import OffergridError
from offergrid.models import Order
from offergrid.models.directory import (
    CreateCustomerRequest,
    UpdateCustomerRequest,
    UpdateLinkRequest,
)
from preclose.rules.self_serve import find_link, new_link_request
from preclose.runtime import db_session, offergrid_client
from preclose.storage import repository
from preclose.storage.repository import self_serve as store
from tasks.policies import OFFERGRID_TASK_OPTIONS

logger = logging.getLogger(__name__)

# The categories a buyer chooses for themselves through the link, rather than us ordering them.
SELF_SERVE_CATEGORIES = ("television", "security", "other")
# How often the sync reads orders when only buyers' links, no order of ours, are open.
LINK_ONLY_READ_MINUTES = 60


def _load(closing_id: uuid.UUID) -> ClosingRequest:
    with db_session() as session:
        row = repository.get_closing(session=session, closing_id=closing_id)
    if row is None:
        raise LookupError(f"closing_id: no closing {closing_id}")
    return row.closing_request()


@task(name="open buyer link", cache_policy=NONE, **OFFERGRID_TASK_OPTIONS)
def open_buyer_link(closing_id: uuid.UUID) -> str | None:
    """The closing's shareable link for the buyer's own choices, created once; returns its URL."""
    closing = _load(closing_id)
    with db_session() as session:
        row, new = store.claim_buyer_link(session=session, closing_id=closing_id)
    if row.offergrid_link_id is not None:
        return row.url
    with offergrid_client() as client:
        found = None if new else find_link(client.list_links(), closing)
        link = found or client.create_link(new_link_request(closing))
    with db_session() as session:
        stored = store.set_buyer_link(
            session=session,
            closing_id=closing_id,
            offergrid_link_id=link.id,
            url=link.url,
            move_in_date=closing.effective_move_in,
            status=link.status,
        )
    return stored.url


def move_buyer_link(closing_id: uuid.UUID) -> bool:
    """Tell Offergrid the closing's new move-in date, if it has a link and the date moved."""
    closing = _load(closing_id)
    with db_session() as session:
        row = store.get_buyer_link(session=session, closing_id=closing_id)
    if row is None or row.offergrid_link_id is None or row.status != "active":
        return False
    if row.move_in_date == closing.effective_move_in:
        return False
    return _update_link(closing_id, row.offergrid_link_id, closing, status=None)


def close_buyer_link(closing_id: uuid.UUID) -> bool:
    """Deactivate the closing's link (the deal fell through); False when there is none open."""
    with db_session() as session:
        row = store.get_buyer_link(session=session, closing_id=closing_id)
    if row is None or row.offergrid_link_id is None or row.status != "active":
        return False
    return _update_link(closing_id, row.offergrid_link_id, _load(closing_id), status="inactive")


def _update_link(
    closing_id: uuid.UUID, link_id: str, closing: ClosingRequest, *, status: str | None
) -> bool:
    changes = (
        UpdateLinkRequest(status="inactive")
        if status == "inactive"
        else UpdateLinkRequest(move_in_date=closing.effective_move_in)
    )
    try:
        with offergrid_client() as client:
            link = client.update_link(link_id, changes)
    except OffergridError as err:
        # The closing's own change went through; the link is a convenience and can lag.
        logger.warning("Could not update the buyer's Offergrid link: %s", type(err).__name__)
        return False
    with db_session() as session:
        store.set_buyer_link(
            session=session,
            closing_id=closing_id,
            offergrid_link_id=link.id,
            url=link.url,
            move_in_date=closing.effective_move_in,
            status=link.status,
        )
    return True


def record_buyer_customer(closing_id: uuid.UUID) -> str | None:
    """Make the buyer a reseller customer (kind customer, source order) once; returns its ID.

    Best effort: the order it follows is placed whatever happens here, and the next order (or
    the next call) tries again. A row stored before the call means one record per buyer, and
    after an unclear answer the record is looked up by email before another is made.
    """
    closing = _load(closing_id)
    key = store.buyer_key(closing.buyer.email)
    with db_session() as session:
        row, new = store.claim_buyer_customer(session=session, key=key, closing_id=closing_id)
    if row.offergrid_customer_id is not None:
        return row.offergrid_customer_id
    buyer, address = closing.buyer, closing.property.address
    try:
        with offergrid_client() as client:
            found = [] if new else client.list_customers(email=buyer.email)
            customer = (
                found[0]
                if found
                else client.create_customer(
                    CreateCustomerRequest(
                        full_name=buyer.full_name,
                        email=buyer.email,
                        phone=buyer.phone,
                        address_line1=address.street,
                        address_line2=address.unit,
                        city=address.city,
                        state=address.state,
                        postal_code=address.zip_code,
                        country=address.country,
                        kind="customer",
                        source="order",
                        tags=[f"closing:{closing.crm_closing_id}"],
                    )
                )
            )
    except OffergridError as err:
        logger.warning(
            "Could not record the buyer as an Offergrid customer: %s", type(err).__name__
        )
        return None
    with db_session() as session:
        store.set_buyer_customer_id(session=session, key=key, offergrid_customer_id=customer.id)
    return customer.id


def correct_buyer_customer(closing_id: uuid.UUID, previous: ClosingRequest) -> bool:
    """Bring the buyer's customer record in step with corrected contact details."""
    closing = _load(closing_id)
    before, after = previous.buyer, closing.buyer
    if (before.full_name, before.email, before.phone) == (
        after.full_name,
        after.email,
        after.phone,
    ):
        return False
    old_key, new_key = store.buyer_key(before.email), store.buyer_key(after.email)
    with db_session() as session:
        row = store.get_buyer_customer(session=session, key=old_key)
    if row is None or row.offergrid_customer_id is None:
        return False  # no record yet: the first order makes it with the new details
    try:
        with offergrid_client() as client:
            client.update_customer(
                row.offergrid_customer_id,
                UpdateCustomerRequest(
                    full_name=after.full_name,
                    email=after.email,
                    phone=after.phone,
                    notes=f"Contact details corrected by the CRM for {closing.crm_closing_id}",
                ),
            )
    except OffergridError as err:
        logger.warning("Could not correct the buyer's Offergrid customer: %s", type(err).__name__)
        return False
    with db_session() as session:
        store.rekey_buyer_customer(session=session, old_key=old_key, new_key=new_key)
    return True


def record_link_orders(orders: Iterable[Order]) -> int:
    """Store the items of orders placed through our buyers' links; returns how many changed."""
    with db_session() as session:
        links = {
            row.offergrid_link_id: row.closing_id for row in store.list_live_links(session=session)
        }
    changed = 0
    for order in orders:
        link_id = (order.metadata or {}).get("linkId")
        closing_id = links.get(link_id) if isinstance(link_id, str) else None
        if closing_id is None:
            continue
        with db_session() as session:
            for item in order.items:
                if item.item_id is None:
                    continue
                history = [
                    {
                        "status": str(entry.status) if entry.status else None,
                        "at": entry.timestamp.isoformat() if entry.timestamp else None,
                        "notes": entry.provider_notes or entry.notes,
                    }
                    for entry in item.history
                ]
                changed += store.upsert_self_serve_item(
                    session=session,
                    closing_id=closing_id,
                    offergrid_order_id=order.order_id,
                    offergrid_item_id=item.item_id,
                    ordered_at=order.created_at,
                    values={
                        "category": str(item.category) if item.category else None,
                        "offer_name": item.offer_name,
                        "provider_name": (item.model_extra or {}).get("providerName"),
                        "status": str(item.status) if item.status else None,
                        "scheduled_for": item.scheduled_for,
                        "account_number": item.account_number,
                        "history": history,
                    },
                )
    return changed


def follow_change(closing_id: uuid.UUID, previous: ClosingRequest, *, fell_through: bool) -> None:
    """After a stored change: deactivate the link, move its date, or correct the customer."""
    if fell_through:
        close_buyer_link(closing_id)
        return
    move_buyer_link(closing_id)
    correct_buyer_customer(closing_id, previous)


def live_link_count() -> int:
    """How many buyer links are active, so the sync reads orders for them too."""
    with db_session() as session:
        return len(store.list_live_links(session=session))
