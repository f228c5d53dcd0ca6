"""Storage for the buyer's own Offergrid records: link, customer record, self-serve orders."""

from __future__ import annotations

import hashlib
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.self_serve import BuyerCustomer, BuyerLink, SelfServeItem
from models.tables import Closing, ClosingStatus, utcnow
from preclose.storage.repository._base import _commit

__all__ = [
    "buyer_key",
    "claim_buyer_customer",
    "claim_buyer_link",
    "get_buyer_customer",
    "get_buyer_link",
    "list_live_links",
    "list_self_serve_items",
    "rekey_buyer_customer",
    "set_buyer_customer_id",
    "set_buyer_link",
    "upsert_self_serve_item",
]


def buyer_key(email: str) -> str:
    """The key one buyer's records share: a SHA-256 of their email, trimmed and lowercased."""
    return hashlib.sha256(email.strip().casefold().encode()).hexdigest()


def get_buyer_link(*, session: Session, closing_id: uuid.UUID) -> BuyerLink | None:
    """The closing's link row, if one was made or is being made."""
    return session.exec(select(BuyerLink).where(col(BuyerLink.closing_id) == closing_id)).first()


def claim_buyer_link(*, session: Session, closing_id: uuid.UUID) -> tuple[BuyerLink, bool]:
    """The closing's link row, made now (without a link ID) if there was none; True if new."""
    existing = get_buyer_link(session=session, closing_id=closing_id)
    if existing is not None:
        return existing, False
    row = BuyerLink(closing_id=closing_id)
    session.add(row)
    try:
        _commit(session)
    except IntegrityError:
        # Another run claimed it first: theirs is the one.
        found = get_buyer_link(session=session, closing_id=closing_id)
        assert found is not None
        return found, False
    session.refresh(row)
    return row, True


def set_buyer_link(
    *,
    session: Session,
    closing_id: uuid.UUID,
    offergrid_link_id: str,
    url: str | None,
    move_in_date: date | None,
    status: str,
) -> BuyerLink:
    """Record what Offergrid answered for the closing's link."""
    row = get_buyer_link(session=session, closing_id=closing_id)
    if row is None:
        row = BuyerLink(closing_id=closing_id)
    row.offergrid_link_id = offergrid_link_id
    row.url = url or row.url
    row.move_in_date = move_in_date
    row.status = status
    row.updated_at = utcnow()
    session.add(row)
    _commit(session)
    session.refresh(row)
    return row


def ended_statuses() -> list[ClosingStatus]:
    """The states in which a closing is over; every other state, old or new, is live."""
    return [s for s in ClosingStatus if s.value in ("fulfilled", "fell_through", "cancelled")]


def list_live_links(*, session: Session) -> list[BuyerLink]:
    """Every active link of a live closing, for finding the orders placed through it.

    A fulfilled closing's link stays open for the buyer, but the sync stops reading orders for
    it: a sync with nothing else to read would spend a call every interval on it.
    """
    statement = (
        select(BuyerLink)
        .join(Closing, col(Closing.id) == col(BuyerLink.closing_id))
        .where(
            col(BuyerLink.status) == "active",
            col(BuyerLink.offergrid_link_id).is_not(None),
            col(Closing.status).not_in(ended_statuses()),
        )
    )
    return list(session.exec(statement).all())


def get_buyer_customer(*, session: Session, key: str) -> BuyerCustomer | None:
    """The buyer's customer row by buyer key."""
    return session.exec(select(BuyerCustomer).where(col(BuyerCustomer.buyer_key) == key)).first()


def claim_buyer_customer(
    *, session: Session, key: str, closing_id: uuid.UUID
) -> tuple[BuyerCustomer, bool]:
    """The buyer's customer row, made now (no Offergrid ID yet) if there was none; True if new."""
    existing = get_buyer_customer(session=session, key=key)
    if existing is not None:
        return existing, False
    row = BuyerCustomer(buyer_key=key, closing_id=closing_id)
    session.add(row)
    try:
        _commit(session)
    except IntegrityError:
        found = get_buyer_customer(session=session, key=key)
        assert found is not None
        return found, False
    session.refresh(row)
    return row, True


def set_buyer_customer_id(*, session: Session, key: str, offergrid_customer_id: str) -> None:
    """Record Offergrid's ID for the buyer's customer record."""
    row = get_buyer_customer(session=session, key=key)
    assert row is not None, "claim the customer row first"
    row.offergrid_customer_id = offergrid_customer_id
    row.updated_at = utcnow()
    session.add(row)
    _commit(session)


def rekey_buyer_customer(*, session: Session, old_key: str, new_key: str) -> BuyerCustomer | None:
    """Move the buyer's row to their corrected email's key; None when there was no row."""
    row = get_buyer_customer(session=session, key=old_key)
    if row is None or old_key == new_key:
        return row
    row.buyer_key = new_key
    row.updated_at = utcnow()
    session.add(row)
    _commit(session)
    session.refresh(row)
    return row


def upsert_self_serve_item(
    *,
    session: Session,
    closing_id: uuid.UUID,
    offergrid_order_id: str,
    offergrid_item_id: str,
    values: dict[str, Any],
    ordered_at: datetime | None,
) -> bool:
    """Store or refresh one self-serve item; True when anything changed."""
    row = session.exec(
        select(SelfServeItem).where(col(SelfServeItem.offergrid_item_id) == offergrid_item_id)
    ).first()
    if row is None:
        row = SelfServeItem(
            closing_id=closing_id,
            offergrid_order_id=offergrid_order_id,
            offergrid_item_id=offergrid_item_id,
            ordered_at=ordered_at,
        )
    elif all(getattr(row, name) == value for name, value in values.items()):
        return False
    for name, value in values.items():
        setattr(row, name, value)
    row.updated_at = utcnow()
    session.add(row)
    _commit(session)
    return True


def list_self_serve_items(*, session: Session, closing_id: uuid.UUID) -> list[SelfServeItem]:
    """The items the buyer ordered through the closing's link, oldest first."""
    statement = (
        select(SelfServeItem)
        .where(col(SelfServeItem.closing_id) == closing_id)
        .order_by(col(SelfServeItem.ordered_at), col(SelfServeItem.offergrid_item_id))
    )
    return list(session.exec(statement).all())
