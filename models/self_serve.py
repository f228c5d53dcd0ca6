"""Tables for what the buyer does through Offergrid: their shareable link, their customer record,
and the orders they placed themselves through the link."""

# No `from __future__ import annotations`: SQLModel reads the annotations at class creation.

import uuid
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.tables import JSON_TYPE, TZDateTime, utcnow

__all__ = ["BuyerCustomer", "BuyerLink", "SelfServeItem"]


def _tz(**kwargs: Any) -> Any:
    return Field(sa_type=TZDateTime, **kwargs)


class BuyerLink(SQLModel, table=True):
    """A closing's Offergrid shareable link for the optional services; one per closing.

    The row is stored before the create call (no link ID yet), so a retry after an unclear answer
    looks for the link before making a second one.
    """

    __tablename__ = "buyer_link"
    __table_args__ = (sa.UniqueConstraint("closing_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    closing_id: uuid.UUID = Field(foreign_key="closing.id", ondelete="CASCADE")
    offergrid_link_id: str | None = Field(default=None, max_length=100)
    url: str | None = Field(default=None, max_length=500)
    move_in_date: date | None = Field(default=None, description="As Offergrid last heard it.")
    status: str = Field(default="active", max_length=20)
    created_at: datetime = _tz(default_factory=utcnow)
    updated_at: datetime = _tz(default_factory=utcnow)


class BuyerCustomer(SQLModel, table=True):
    """The buyer's Offergrid customer record; one per buyer (their email, hashed), however many
    closings or retries there are."""

    __tablename__ = "buyer_customer"
    __table_args__ = (sa.UniqueConstraint("buyer_key"), sa.Index(None, "closing_id"))

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    buyer_key: str = Field(max_length=64, description="SHA-256 of the buyer's email, lowercased.")
    closing_id: uuid.UUID = Field(foreign_key="closing.id", ondelete="CASCADE")
    offergrid_customer_id: str | None = Field(default=None, max_length=100)
    created_at: datetime = _tz(default_factory=utcnow)
    updated_at: datetime = _tz(default_factory=utcnow)


class SelfServeItem(SQLModel, table=True):
    """One item of an order the buyer placed themselves through the closing's link."""

    __tablename__ = "self_serve_item"
    __table_args__ = (sa.UniqueConstraint("offergrid_item_id"), sa.Index(None, "closing_id"))

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    closing_id: uuid.UUID = Field(foreign_key="closing.id", ondelete="CASCADE")
    offergrid_order_id: str = Field(max_length=100)
    offergrid_item_id: str = Field(max_length=100)
    category: str | None = Field(default=None, max_length=32)
    offer_name: str | None = Field(default=None, max_length=200)
    provider_name: str | None = Field(default=None, max_length=200)
    status: str | None = Field(default=None, max_length=40)
    scheduled_for: datetime | None = _tz(default=None)
    account_number: str | None = Field(default=None, max_length=100)
    history: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON_TYPE)
    ordered_at: datetime | None = _tz(default=None)
    updated_at: datetime = _tz(default_factory=utcnow)
