"""The sandbox's provider side checked against Offergrid's own provider-openapi.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from offergrid_sandbox.catalog import seed_catalog
from offergrid_sandbox.schemas import ORDER_STATUSES
from offergrid_sandbox.state import Sandbox
from tests.fixtures_sandbox_core import (
    PROVIDER,
    RESELLER,
    offer_ids_at,
    place_order,
    sandbox_client,
)

# A verbatim copy of Offergrid's provider spec (MIT), in the repo so a clean clone has it.
SPEC_PATH = Path(__file__).parent / "data" / "provider-openapi.json"
SPEC: dict[str, Any] = json.loads(SPEC_PATH.read_text())
OPERATIONS = [
    (path, method)
    for path, item in SPEC["paths"].items()
    for method in item
    if method in ("get", "post", "patch", "delete", "put")
]
SCHEMAS = SPEC["components"]["schemas"]


def _example(schema_name: str) -> dict[str, Any]:
    """A request body made of every example value the spec gives for `schema_name`."""
    properties = SCHEMAS[schema_name]["properties"]
    return {name: prop["example"] for name, prop in properties.items() if "example" in prop}


def _concrete(client: TestClient, sandbox: Sandbox, path: str) -> str:
    """`path` with its {id}/{itemId} filled by a real offer or order item."""
    if "{id}" in path:
        created = client.post("/provider/offers", json={"name": "Spec offer"}, headers=PROVIDER)
        return path.replace("{id}", created.json()["id"])
    if "{itemId}" in path:
        offer_id = offer_ids_at(client)[0]
        order = place_order(client, offer_id)
        return path.replace("{itemId}", order["items"][0]["itemId"])
    return path


def _body_for(path: str, method: str) -> dict[str, Any] | None:
    content = SPEC["paths"][path][method].get("requestBody", {}).get("content", {})
    ref = content.get("application/json", {}).get("schema", {}).get("$ref")
    if ref is None:
        return None
    name = ref.rsplit("/", 1)[-1]
    # UpdateOfferDto documents no properties; "same fields as create" per the live reference.
    return _example("CreateOfferDto" if name == "UpdateOfferDto" else name)


def test_spec_has_the_expected_operations() -> None:
    """The spec file read is the provider spec: ten operations including the status update."""
    assert ("/provider/orders/{itemId}/status", "patch") in OPERATIONS
    assert len(OPERATIONS) == 10


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_every_documented_operation_is_served(path: str, method: str) -> None:
    """Each path+method of the spec answers one of its documented success codes."""
    with sandbox_client() as (client, sandbox):
        url = _concrete(client, sandbox, path)
        body = _body_for(path, method)
        if body is not None and "sku" in body:
            body["sku"] = f"SPEC-{method}-{len(url)}"  # SKUs must be unique
        headers = {} if path in ("/", "/health") else PROVIDER
        response = client.request(method.upper(), url, json=body, headers=headers)
    documented = SPEC["paths"][path][method]["responses"]
    successes = {int(code) for code in documented if code.startswith("2")}
    assert response.status_code in successes, (path, method, response.text)


def test_create_offer_dto_example_round_trips() -> None:
    """The CreateOfferDto example is accepted (201) and read back field for field."""
    example = _example("CreateOfferDto")
    with sandbox_client() as (client, _):
        created = client.post("/provider/offers", json=example, headers=PROVIDER)
        assert created.status_code == 201, created.text
        offer = created.json()
        fetched = client.get(f"/provider/offers/{offer['id']}", headers=PROVIDER).json()
    for key, value in example.items():
        assert fetched[key] == value, key
    assert offer["id"].startswith("off-")


def test_create_offer_defaults_to_draft() -> None:
    """An offer created with only a name is a draft, invisible in the reseller catalog."""
    with sandbox_client() as (client, _):
        created = client.post("/provider/offers", json={"name": "Only a name"}, headers=PROVIDER)
        assert created.json()["status"] == "draft"
        seen = client.get(f"/reseller/catalog/{created.json()['id']}", headers=RESELLER)
    assert seen.status_code == 404


def test_update_changes_only_the_fields_sent() -> None:
    """PATCH /provider/offers/{id} changes the fields sent and keeps the rest."""
    with sandbox_client() as (client, _):
        offer = client.post(
            "/provider/offers",
            json={"name": "Fiber 300", "category": "internet", "monthlyPrice": 50},
            headers=PROVIDER,
        ).json()
        updated = client.patch(
            f"/provider/offers/{offer['id']}", json={"monthlyPrice": 45.5}, headers=PROVIDER
        )
    assert updated.status_code == 200
    assert updated.json()["monthlyPrice"] == 45.5
    assert updated.json()["name"] == "Fiber 300" and updated.json()["category"] == "internet"


def test_published_offer_becomes_orderable() -> None:
    """A provider offer made active appears in the reseller catalog at its ZIPs."""
    with sandbox_client() as (client, _):
        offer = client.post(
            "/provider/offers",
            json={
                "name": "Pop-up Fiber",
                "category": "internet",
                "status": "active",
                "zipCodes": ["78701"],
            },
            headers=PROVIDER,
        ).json()
        assert offer["id"] in offer_ids_at(client, "78701", "internet")
        assert offer["id"] not in offer_ids_at(client, "98103", "internet")
        order = place_order(client, offer["id"])
    assert order["status"] == "pending"


def test_delete_then_get_answers_404() -> None:
    """A deleted offer is gone: GET, PATCH and DELETE answer the documented 404."""
    with sandbox_client() as (client, _):
        offer = client.post(
            "/provider/offers", json={"name": "Short-lived"}, headers=PROVIDER
        ).json()
        assert client.delete(f"/provider/offers/{offer['id']}", headers=PROVIDER).status_code == 200
        answers = [
            client.get(f"/provider/offers/{offer['id']}", headers=PROVIDER),
            client.patch(f"/provider/offers/{offer['id']}", json={"name": "x"}, headers=PROVIDER),
            client.delete(f"/provider/offers/{offer['id']}", headers=PROVIDER),
        ]
    for answer in answers:
        assert answer.status_code == 404
        assert answer.json()["message"] == "Offer not found or does not belong to your team"


@pytest.mark.parametrize(
    ("path", "method"),
    [op for op in OPERATIONS if op[0].startswith("/provider")],
)
def test_reseller_key_is_forbidden_on_provider_routes(path: str, method: str) -> None:
    """A reseller-only key gets the documented 403 on every provider operation."""
    with sandbox_client() as (client, _):
        url = path.replace("{id}", "off-x").replace("{itemId}", "item-x")
        response = client.request(method.upper(), url, json={}, headers=RESELLER)
    assert response.status_code == 403
    assert response.json() == {
        "statusCode": 403,
        "message": "Forbidden - Provider role required",
        "error": "Forbidden",
    }


@pytest.mark.parametrize(
    ("path", "method"),
    [op for op in OPERATIONS if "{" in op[0]],
)
def test_unknown_ids_answer_the_documented_404(path: str, method: str) -> None:
    """Unknown ids get 404 with the spec's "not found or does not belong to your team" text."""
    with sandbox_client() as (client, _):
        url = path.replace("{id}", "off-unknown").replace("{itemId}", "item-unknown")
        body = {"status": "accepted"} if url.endswith("/status") else {"name": "x"}
        response = client.request(method.upper(), url, json=body, headers=PROVIDER)
    assert response.status_code == 404
    assert (
        SPEC["paths"][path][method]["responses"]["404"]["description"] == response.json()["message"]
    )


def test_status_enum_is_the_specs() -> None:
    """The sandbox's ten order statuses are exactly UpdateItemStatusDto's enum, in order."""
    spec_enum = SCHEMAS["UpdateItemStatusDto"]["properties"]["status"]["enum"]
    filter_enum = SPEC["paths"]["/provider/orders"]["get"]["parameters"][0]["schema"]["enum"]
    assert list(ORDER_STATUSES) == spec_enum == filter_enum


@pytest.mark.parametrize("status", SCHEMAS["UpdateItemStatusDto"]["properties"]["status"]["enum"])
def test_every_spec_status_is_accepted(status: str) -> None:
    """PATCH .../status accepts each enum value with the DTO's example notes, date and metadata."""
    body = _example("UpdateItemStatusDto") | {"status": status}
    with sandbox_client() as (client, _):
        order = place_order(client, offer_ids_at(client)[0])
        item_id = order["items"][0]["itemId"]
        response = client.patch(f"/provider/orders/{item_id}/status", json=body, headers=PROVIDER)
        assert response.status_code == 200, response.text
        item = response.json()
        listed = client.get("/provider/orders", params={"status": status}, headers=PROVIDER).json()
    assert item["status"] == status
    assert item["providerNotes"] == body["providerNotes"]
    assert item["scheduledFor"] == "2025-01-15T10:00:00.000Z"
    assert item["history"][-1]["metadata"] == body["metadata"]
    assert [i["itemId"] for i in listed] == [item_id]


def test_unknown_status_is_refused_with_the_field() -> None:
    """A status outside the enum answers 400 naming `status`, both in the body and the filter."""
    with sandbox_client() as (client, _):
        order = place_order(client, offer_ids_at(client)[0])
        item_id = order["items"][0]["itemId"]
        patched = client.patch(
            f"/provider/orders/{item_id}/status", json={"status": "shipped"}, headers=PROVIDER
        )
        listed = client.get("/provider/orders", params={"status": "shipped"}, headers=PROVIDER)
    assert patched.status_code == 400 and patched.json()["field"] == "status"
    assert listed.status_code == 400 and listed.json()["field"] == "status"


def test_provider_item_view_matches_the_receiving_guide() -> None:
    """An order item shows id, orderId, offerId, offerName, status, customer, address and offer."""
    with sandbox_client() as (client, _):
        order = place_order(client, offer_ids_at(client)[0], notes="Gate code 1234")
        item_id = order["items"][0]["itemId"]
        item = client.get(f"/provider/orders/{item_id}", headers=PROVIDER).json()
    assert item["id"] == item["itemId"] == item_id
    assert item["orderId"] == order["orderId"]
    assert item["offer"]["id"] == item["offerId"] and item["offer"]["category"] == item["category"]
    assert item["customerInfo"]["fullName"] == "Jane Doe"
    assert item["serviceAddress"]["zipCode"] == "78701"
    assert item["notes"] == "Gate code 1234"
    assert item["status"] == "pending" and item["createdAt"]


def test_health_and_root_need_no_key() -> None:
    """GET / and GET /health answer 200 without an API key."""
    with sandbox_client() as (client, _):
        assert client.get("/").status_code == 200
        health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_provider_team_keys_see_only_their_own_offers_and_items() -> None:
    """A seeded provider's key lists its own offers and items and gets 404 for another's."""
    catalog = seed_catalog(7)
    lone_star = {"x-api-key": "og_provider_prv-lone-star-fiber"}
    with sandbox_client() as (client, _):
        offers = client.get("/provider/offers", headers=lone_star).json()
        assert offers and {o["providerId"] for o in offers} == {"prv-lone-star-fiber"}
        assert len(offers) == sum(o["providerId"] == "prv-lone-star-fiber" for o in catalog.offers)
        mine = next(
            o["id"] for o in offers if o["status"] == "active" and o["category"] == "internet"
        )
        theirs = next(o for o in catalog.offers if o["providerId"] == "prv-metro-5g-home")["id"]
        assert client.get(f"/provider/offers/{theirs}", headers=lone_star).status_code == 404
        order = place_order(client, mine, theirs)
        items = client.get("/provider/orders", headers=lone_star).json()
        assert [i["offerId"] for i in items] == [mine]
        other_item = next(i["itemId"] for i in order["items"] if i["offerId"] == theirs)
        refused = client.patch(
            f"/provider/orders/{other_item}/status", json={"status": "accepted"}, headers=lone_star
        )
    assert refused.status_code == 404
    assert refused.json()["message"] == "Order item not found or does not belong to your team"


def test_provider_team_key_cannot_create_for_another_team() -> None:
    """A provider team naming another providerId on create gets 400 naming providerId."""
    lone_star = {"x-api-key": "og_provider_prv-lone-star-fiber"}
    with sandbox_client() as (client, _):
        response = client.post(
            "/provider/offers",
            json={"name": "Sneaky", "providerId": "prv-metro-5g-home"},
            headers=lone_star,
        )
        own = client.post("/provider/offers", json={"name": "Mine"}, headers=lone_star)
    assert response.status_code == 400 and response.json()["field"] == "providerId"
    assert own.status_code == 201 and own.json()["providerId"] == "prv-lone-star-fiber"
    assert own.json()["providerName"] == "Lone Star Fiber"


def test_duplicate_sku_is_a_conflict() -> None:
    """Creating a second offer with an existing SKU answers 409 naming `sku`."""
    with sandbox_client() as (client, _):
        first = client.post(
            "/provider/offers", json={"name": "A", "sku": "DUP-1"}, headers=PROVIDER
        )
        second = client.post(
            "/provider/offers", json={"name": "B", "sku": "DUP-1"}, headers=PROVIDER
        )
    assert first.status_code == 201
    assert second.status_code == 409 and second.json()["field"] == "sku"
