"""Shareable links and reseller customers: strict request writers and tolerant readers."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from offergrid.models._base import NullableList, ReadModel, UtcDatetime
from offergrid.models.orders import OrderAddress, ServiceAddress, WriteModel

__all__ = [
    "CreateCustomerRequest",
    "CreateLinkRequest",
    "Customer",
    "CustomerKind",
    "CustomerSource",
    "CustomerStatus",
    "Link",
    "LinkStatus",
    "UpdateCustomerRequest",
    "UpdateLinkRequest",
]

LinkStatus = Literal["active", "inactive"]
CustomerKind = Literal["lead", "customer"]
CustomerSource = Literal["order", "link", "api_import", "manual", "event"]
CustomerStatus = Literal["active", "churned", "unsubscribed"]


class CreateLinkRequest(WriteModel):
    """POST /reseller/links: the service address, a property name and the move-in date."""

    address: ServiceAddress
    property_name: str | None = Field(None, max_length=200)
    move_in_date: date | None = None


class UpdateLinkRequest(WriteModel):
    """PATCH /reseller/links/{id}: only the fields given change; `inactive` disables the link."""

    property_name: str | None = Field(None, max_length=200)
    move_in_date: date | None = None
    status: LinkStatus | None = None


class Link(ReadModel):
    """A shareable link as Offergrid returns it; `url` is the page a person orders from."""

    id: str
    url: str | None = None
    token: str | None = None
    address: OrderAddress | None = None
    property_name: str | None = None
    move_in_date: str | None = None
    status: str = "active"
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None


class CreateCustomerRequest(WriteModel):
    """POST /reseller/customers: a customer or lead of the reseller's own."""

    wire_prefix: ClassVar[str] = ""

    full_name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(None, max_length=254)
    phone: str | None = Field(None, max_length=40)
    address_line1: str | None = Field(None, max_length=200)
    address_line2: str | None = Field(None, max_length=200)
    city: str | None = Field(None, max_length=100)
    state: str | None = Field(None, max_length=50)
    postal_code: str | None = Field(None, max_length=10)
    country: str | None = Field(None, max_length=2)
    kind: CustomerKind = "lead"
    source: CustomerSource = "manual"
    notes: str | None = Field(None, max_length=5_000)
    tags: list[str] | None = None
    custom_fields: dict[str, Any] | None = None


class UpdateCustomerRequest(WriteModel):
    """PATCH /reseller/customers/{id}: kind, status, notes, tags, and corrected contact details."""

    full_name: str | None = Field(None, min_length=1, max_length=200)
    email: str | None = Field(None, max_length=254)
    phone: str | None = Field(None, max_length=40)
    kind: CustomerKind | None = None
    status: CustomerStatus | None = None
    notes: str | None = Field(None, max_length=5_000)
    tags: list[str] | None = None


class Customer(ReadModel):
    """A reseller customer record as Offergrid returns it."""

    id: str
    full_name: str | None = None
    email: str | None = None
    phone: str | None = None
    kind: str | None = None
    source: str | None = None
    status: str | None = None
    notes: str | None = None
    tags: Annotated[list[str], NullableList] = Field(default_factory=list)
    custom_fields: dict[str, Any] | None = None
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None
