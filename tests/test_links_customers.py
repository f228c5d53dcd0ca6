"""Shareable links and reseller customers: the client against the local Offergrid."""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

from offergrid import OffergridClient
from offergrid.errors import BadRequestError, NotFoundError, RequestValidationError
from offergrid.models import ServiceAddress
from offergrid.models.directory import (
    CreateCustomerRequest,
    CreateLinkRequest,
    UpdateCustomerRequest,
    UpdateLinkRequest,
)
from tests.fixtures_sandbox import *  # noqa: F403

ADDRESS = ServiceAddress(
    street="500 Congress Ave", city="Austin", state="TX", zip_code="78701", country="US"
)


def _link(client: OffergridClient, move_in: date = date(2027, 3, 1)) -> Any:
    return client.create_link(
        CreateLinkRequest(address=ADDRESS, property_name="500 Congress", move_in_date=move_in)
    )


def test_link_is_created_read_listed_and_moved(offergrid_client: OffergridClient) -> None:
    """A link is created active with a page URL, read back, listed, and its move-in date moved."""
    link = _link(offergrid_client)
    assert link.status == "active" and link.url and link.move_in_date == "2027-03-01"
    assert link.address is not None and link.address.zip_code == "78701"
    assert offergrid_client.get_link(link.id).url == link.url
    assert [each.id for each in offergrid_client.list_links()] == [link.id]
    moved = offergrid_client.update_link(link.id, UpdateLinkRequest(move_in_date=date(2027, 3, 9)))
    assert moved.move_in_date == "2027-03-09" and moved.property_name == "500 Congress"


def test_deactivated_link_page_refuses_orders(
    offergrid_client: OffergridClient, sandbox_http: TestClient
) -> None:
    """An inactive link's page answers 410 and takes no order; the active one lists offers."""
    link = _link(offergrid_client)
    path = urlsplit(link.url or "").path
    page = sandbox_http.get(path)
    assert page.status_code == 200 and "500 Congress Ave" in page.text and "checkbox" in page.text
    offergrid_client.update_link(link.id, UpdateLinkRequest(status="inactive"))
    assert sandbox_http.get(path).status_code == 410
    assert sandbox_http.post(path + "/orders", content=b"offerId=x").status_code == 410
    assert offergrid_client.list_links(status="active") == []


def test_order_through_link_page_carries_the_link(
    offergrid_client: OffergridClient, sandbox_http: TestClient
) -> None:
    """An order placed on the link page is the team's, at the link's address, with the link id."""
    link = _link(offergrid_client)
    offer = offergrid_client.list_offers(category="television", zip_code="78701")[0]
    form = (
        f"offerId={offer.id}&fullName=Dana+Buyer&email=dana%40example.com&phone=%2B1+512+555+0100"
    )
    answer = sandbox_http.post(
        urlsplit(link.url or "").path + "/orders",
        content=form.encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 201, answer.text
    [order] = offergrid_client.list_orders()
    assert order.metadata["linkId"] == link.id
    assert order.service_address is not None and order.service_address.street == ADDRESS.street
    assert [item.offer_id for item in order.items] == [offer.id]


def test_link_errors_name_the_field(offergrid_client: OffergridClient) -> None:
    """An unknown link is a 404; a bad status is refused before any call, naming the field."""
    with pytest.raises(NotFoundError):
        offergrid_client.get_link("lnk-missing")
    with pytest.raises(RequestValidationError, match="status"):
        UpdateLinkRequest(status="gone")  # type: ignore[arg-type]


def test_customer_is_created_found_by_email_and_corrected(
    offergrid_client: OffergridClient,
) -> None:
    """A customer record is created, found by email, and updated with corrected contact details."""
    created = offergrid_client.create_customer(
        CreateCustomerRequest(
            full_name="Dana Buyer",
            email="dana@example.com",
            phone="+1 512 555 0100",
            kind="customer",
            source="order",
            tags=["closing:CL-1"],
        )
    )
    assert (created.kind, created.source, created.status) == ("customer", "order", "active")
    found = offergrid_client.list_customers(email="DANA@example.com")
    assert [each.id for each in found] == [created.id]
    updated = offergrid_client.update_customer(
        created.id, UpdateCustomerRequest(email="dana.b@example.com", notes="Email corrected")
    )
    assert updated.email == "dana.b@example.com" and updated.full_name == "Dana Buyer"
    assert offergrid_client.get_customer(created.id).notes == "Email corrected"
    assert offergrid_client.list_customers(email="dana@example.com") == []


def test_customer_bad_input_is_a_400_naming_the_field(sandbox_http: TestClient) -> None:
    """The sandbox refuses a customer without a name or with an unknown kind, naming the field."""
    headers = {"x-api-key": "og_sandbox_reseller"}
    answer = sandbox_http.post("/reseller/customers", json={"email": "a@b.co"}, headers=headers)
    assert answer.status_code == 400 and answer.json()["field"] == "fullName"
    answer = sandbox_http.post(
        "/reseller/customers", json={"fullName": "A B", "kind": "vip"}, headers=headers
    )
    assert answer.status_code == 400 and answer.json()["field"] == "kind"


def test_client_rejects_bad_customer_before_calling(offergrid_client: OffergridClient) -> None:
    """A sandbox 400 reaches the caller as BadRequestError; a bad kind never leaves the client."""
    with pytest.raises(RequestValidationError, match="kind"):
        CreateCustomerRequest(full_name="Dana Buyer", kind="vip")  # type: ignore[arg-type]
    with pytest.raises(BadRequestError):
        offergrid_client.update_customer("cus-x", UpdateCustomerRequest(email="x"))


def test_catalog_carries_compliance_fields(offergrid_client: OffergridClient) -> None:
    """Every offer carries complianceNotes; energy offers carry their facts label as data."""
    offers = offergrid_client.list_offers(zip_code="78701")
    assert offers and all(offer.compliance_notes for offer in offers)
    energy = [offer for offer in offers if offer.category == "energy"]
    assert energy and all(
        (offer.compliance_data or {}).get("electricityFactsLabelUrl") for offer in energy
    )
