"""Bad input on every route gets a 4xx with a framework-style body naming the field, never a 5xx."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from offergrid_sandbox.catalog import seed_catalog
from offergrid_sandbox.config import PROVIDER_KEY
from offergrid_sandbox.state import Sandbox
from tests.fixtures_sandbox_core import (
    PROVIDER,
    RESELLER,
    address,
    order_body,
    quiet_config,
    sandbox_client,
)

MAX_BODY = 16_000
CATALOG = seed_catalog(7)
AUSTIN_OFFER = next(
    o["id"]
    for o in CATALOG.offers
    if o["providerId"] == "prv-lone-star-fiber"
    and o["status"] == "active"
    and o["visibility"] == "public"
)
SEATTLE_ONLY_OFFER = next(
    o["id"] for o in CATALOG.offers if o["providerId"] == "prv-evergreen-fiber"
)
DRAFT_OFFER = next(o["id"] for o in CATALOG.offers if o["status"] == "draft")


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[TestClient, Sandbox, dict[str, str]]]:
    """One sandbox for the whole table (the cases only ever fail): a client, state, and real ids."""
    config = quiet_config(max_body_bytes=MAX_BODY)
    with sandbox_client(config, raise_server_exceptions=False) as (client, sandbox):
        order = client.post(
            "/reseller/orders", json=order_body(AUSTIN_OFFER), headers=RESELLER
        ).json()
        ids = {
            "order": order["orderId"],
            "item": order["items"][0]["itemId"],
            "offer": AUSTIN_OFFER,
        }
        yield client, sandbox, ids


def assert_client_error(response: Any, status: int, field: str | None = None) -> None:
    """A 4xx with {statusCode, message, error} (and `field` when one is named)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["statusCode"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["error"], str) and body["error"]
    if field is not None:
        assert body.get("field") == field, body


# (method, path template, headers) for every route that reads a JSON body.
BODY_ROUTES: list[tuple[str, str, dict[str, str]]] = [
    ("POST", "/reseller/availability", RESELLER),
    ("POST", "/reseller/orders", RESELLER),
    ("PATCH", "/reseller/orders/{order}/cancel", RESELLER),
    ("POST", "/provider/offers", PROVIDER),
    ("PATCH", "/provider/offers/{offer}", PROVIDER),
    ("PATCH", "/provider/orders/{item}/status", PROVIDER),
    ("POST", "/sandbox/clock/advance", {}),
    ("PUT", "/sandbox/faults", {}),
    ("PUT", "/sandbox/rate-limit", {}),
    ("PUT", "/sandbox/simulation", {}),
    ("POST", "/sandbox/webhooks", {}),
    ("PUT", "/sandbox/webhooks/switches", {}),
]

MALFORMED: list[tuple[str, bytes]] = [
    ("truncated", b'{"items": ['),
    ("single quotes", b"{'a': 1}"),
    ("trailing comma", b'{"a": 1,}'),
    ("array", b"[1, 2, 3]"),
    ("string", b'"hello"'),
    ("number", b"42"),
    ("NaN", b'{"seconds": NaN}'),
    ("not utf-8", b'{"a": "\xff\xfe"}'),
    ("deep nesting", b"[" * 1_900 + b"]" * 1_900),
]


@pytest.mark.parametrize(("method", "template", "headers"), BODY_ROUTES)
@pytest.mark.parametrize(("label", "raw"), MALFORMED)
def test_malformed_json_is_a_400(
    env: tuple[TestClient, Sandbox, dict[str, str]],
    method: str,
    template: str,
    headers: dict[str, str],
    label: str,
    raw: bytes,
) -> None:
    """Bodies that are not JSON objects answer 400 on every body-reading route."""
    client, _, ids = env
    url = template.format(**ids)
    response = client.request(
        method, url, content=raw, headers={**headers, "content-type": "application/json"}
    )
    assert_client_error(response, 400, "body")


@pytest.mark.parametrize(("method", "template", "headers"), BODY_ROUTES)
def test_huge_bodies_are_a_413(
    env: tuple[TestClient, Sandbox, dict[str, str]],
    method: str,
    template: str,
    headers: dict[str, str],
) -> None:
    """A body over max_body_bytes answers 413, with or without a Content-Length."""
    client, _, ids = env
    url = template.format(**ids)
    huge = b'{"notes": "' + b"x" * (MAX_BODY * 2) + b'"}'
    declared = client.request(method, url, content=huge, headers=headers)
    assert_client_error(declared, 413)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(huge), 1000):
            yield huge[start : start + 1000]

    streamed = client.request(method, url, content=chunks(), headers=headers)
    assert_client_error(streamed, 413)


def _mutate(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set (or with `...` delete) the value at a dotted path like "serviceAddress.zipCode"."""

    def apply(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = body
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        key: Any = int(last) if last.isdigit() else last
        if value is ...:
            del target[key]
        else:
            target[key] = value

    return apply


ORDER_CASES: list[tuple[str, Any, str]] = [
    ("items", ..., "items"),
    ("items", "off-1", "items"),
    ("items", [], "items"),
    ("items", ["off-1"], "items[0]"),
    ("items", [{}], "items[0].offerId"),
    ("items", [{"offerId": 42}], "items[0].offerId"),
    ("items", [{"offerId": ""}], "items[0].offerId"),
    ("items", [{"offerId": AUSTIN_OFFER, "quantity": 2}], "items[0].quantity"),
    ("items", [{"offerId": AUSTIN_OFFER}, {"offerId": "off-nope"}], "items[1].offerId"),
    ("items", [{"offerId": AUSTIN_OFFER}, {"offerId": AUSTIN_OFFER}], "items[1].offerId"),
    ("items", [{"offerId": DRAFT_OFFER}], "items[0].offerId"),
    ("items", [{"offerId": SEATTLE_ONLY_OFFER}], "items[0].offerId"),
    ("items", [{"offerId": f"off-{i}"} for i in range(30)], "items"),
    ("serviceAddress", ..., "serviceAddress"),
    ("serviceAddress", "401 Congress Ave", "serviceAddress"),
    ("serviceAddress.street", ..., "serviceAddress.street"),
    ("serviceAddress.street", "   ", "serviceAddress.street"),
    ("serviceAddress.city", 7, "serviceAddress.city"),
    ("serviceAddress.state", "Texas", "serviceAddress.state"),
    ("serviceAddress.zipCode", 78701, "serviceAddress.zipCode"),
    ("serviceAddress.zipCode", "7870", "serviceAddress.zipCode"),
    ("serviceAddress.country", "USA", "serviceAddress.country"),
    ("serviceAddress.country", ..., "serviceAddress.country"),
    ("serviceAddress.unit", "4B", "serviceAddress.unit"),
    ("customerInfo", ..., "customerInfo"),
    ("customerInfo", ["Jane"], "customerInfo"),
    ("customerInfo.fullName", None, "customerInfo.fullName"),
    ("customerInfo.email", "jane-at-example.com", "customerInfo.email"),
    ("customerInfo.email", ..., "customerInfo.email"),
    ("customerInfo.phone", "555-0142", "customerInfo.phone"),
    ("customerInfo.phone", 5125550142, "customerInfo.phone"),
    ("notes", 12, "notes"),
    ("notes", "x" * 6000, "notes"),
    ("metadata", ["test"], "metadata"),
    ("metadata", {"test": "yes"}, "metadata.test"),
    ("surprise", True, "surprise"),
]


@pytest.mark.parametrize(("path", "value", "field"), ORDER_CASES)
def test_order_validation_names_the_first_bad_field(
    env: tuple[TestClient, Sandbox, dict[str, str]], path: str, value: Any, field: str
) -> None:
    """Each wrong type, missing or invalid order field is a 400 naming it, and no order is made."""
    client, sandbox, _ = env
    before = len(sandbox.all_orders())
    body = copy.deepcopy(order_body(AUSTIN_OFFER))
    _mutate(path, value)(body)
    response = client.post("/reseller/orders", json=body, headers=RESELLER)
    assert_client_error(response, 400, field)
    assert len(sandbox.all_orders()) == before


def test_first_bad_field_wins() -> None:
    """With several bad fields the error names the first in DTO order (items before customer)."""
    body = order_body("off-nope")
    body["customerInfo"]["email"] = "broken"
    with sandbox_client() as (client, _):
        response = client.post("/reseller/orders", json=body, headers=RESELLER)
    # Shape errors are all checked before offers are looked up.
    assert_client_error(response, 400, "customerInfo.email")


# (method, path template, body, field)
FIELD_CASES: list[tuple[str, str, dict[str, str], Any, str]] = [
    ("POST", "/reseller/availability", RESELLER, {}, "street"),
    ("POST", "/reseller/availability", RESELLER, address(zipCode="ABCDE"), "zipCode"),
    ("POST", "/reseller/availability", RESELLER, {**address(), "category": "tv"}, "category"),
    ("POST", "/reseller/availability", RESELLER, {**address(), "category": 3}, "category"),
    ("POST", "/reseller/availability", RESELLER, {**address(), "unit": 5}, "unit"),
    ("POST", "/reseller/availability", RESELLER, {**address(), "floor": 2}, "floor"),
    ("PATCH", "/reseller/orders/{order}/cancel", RESELLER, {"reason": 5}, "reason"),
    ("PATCH", "/reseller/orders/{order}/cancel", RESELLER, {"why": "moved"}, "why"),
    ("POST", "/provider/offers", PROVIDER, {}, "name"),
    ("POST", "/provider/offers", PROVIDER, {"name": 5}, "name"),
    ("POST", "/provider/offers", PROVIDER, {"name": "x", "category": "tv"}, "category"),
    ("POST", "/provider/offers", PROVIDER, {"name": "x", "category": None}, "category"),
    ("POST", "/provider/offers", PROVIDER, {"name": "x", "status": "live"}, "status"),
    ("POST", "/provider/offers", PROVIDER, {"name": "x", "pricingType": "free"}, "pricingType"),
    ("POST", "/provider/offers", PROVIDER, {"name": "x", "monthlyPrice": -1}, "monthlyPrice"),
    ("POST", "/provider/offers", PROVIDER, {"name": "x", "monthlyPrice": "10"}, "monthlyPrice"),
    ("POST", "/provider/offers", PROVIDER, {"name": "x", "monthlyPrice": True}, "monthlyPrice"),
    ("POST", "/provider/offers", PROVIDER, {"name": "x", "keyFeatures": "fast"}, "keyFeatures"),
    ("POST", "/provider/offers", PROVIDER, {"name": "x", "keyFeatures": [1]}, "keyFeatures[0]"),
    ("POST", "/provider/offers", PROVIDER, {"name": "x", "zipCodes": ["abc"]}, "zipCodes[0]"),
    ("POST", "/provider/offers", PROVIDER, {"name": "x", "metadata": "x"}, "metadata"),
    ("POST", "/provider/offers", PROVIDER, {"name": "x", "color": "red"}, "color"),
    (
        "POST",
        "/provider/offers",
        PROVIDER,
        {
            "name": "x",
            "category": "internet",
            "serviceSpecificData": {
                "minBandwidth": 10,
                "maxBandwidth": 100,
                "connectionType": "pigeon",
            },
        },
        "serviceSpecificData.connectionType",
    ),
    ("PATCH", "/provider/offers/{offer}", PROVIDER, {"name": ""}, "name"),
    ("PATCH", "/provider/offers/{offer}", PROVIDER, {"providerId": "prv-x"}, "providerId"),
    ("PATCH", "/provider/orders/{item}/status", PROVIDER, {}, "status"),
    ("PATCH", "/provider/orders/{item}/status", PROVIDER, {"status": 3}, "status"),
    ("PATCH", "/provider/orders/{item}/status", PROVIDER, {"status": "done"}, "status"),
    (
        "PATCH",
        "/provider/orders/{item}/status",
        PROVIDER,
        {"status": "scheduled", "scheduledFor": "next tuesday"},
        "scheduledFor",
    ),
    (
        "PATCH",
        "/provider/orders/{item}/status",
        PROVIDER,
        {"status": "scheduled", "scheduledFor": 1767225600},
        "scheduledFor",
    ),
    (
        "PATCH",
        "/provider/orders/{item}/status",
        PROVIDER,
        {"status": "accepted", "providerNotes": 1},
        "providerNotes",
    ),
    (
        "PATCH",
        "/provider/orders/{item}/status",
        PROVIDER,
        {"status": "accepted", "metadata": []},
        "metadata",
    ),
    (
        "PATCH",
        "/provider/orders/{item}/status",
        PROVIDER,
        {"status": "accepted", "eta": "soon"},
        "eta",
    ),
    ("POST", "/sandbox/clock/advance", {}, {}, "seconds"),
    ("POST", "/sandbox/clock/advance", {}, {"seconds": -5}, "seconds"),
    ("POST", "/sandbox/clock/advance", {}, {"seconds": "soon"}, "seconds"),
    ("POST", "/sandbox/clock/advance", {}, {"seconds": 10**12}, "seconds"),
    ("PUT", "/sandbox/faults", {}, {"error_rate": 2}, "error_rate"),
    (
        "PUT",
        "/sandbox/faults",
        {},
        {"committed_then_failed_mode": "explode"},
        "committed_then_failed_mode",
    ),
    ("PUT", "/sandbox/faults", {}, {"eror_rate": 0.5}, "eror_rate"),
    ("PUT", "/sandbox/rate-limit", {}, {"model": "leaky_bucket"}, "model"),
    ("PUT", "/sandbox/simulation", {}, {"rejection_rate": -1}, "rejection_rate"),
    ("PUT", "/sandbox/simulation", {}, {"review_hours": "soon"}, "review_hours"),
    ("POST", "/sandbox/webhooks", {}, {"url": "ftp://example.com/hook"}, "url"),
    ("POST", "/sandbox/webhooks", {}, {"secret": "s"}, "url"),
    ("POST", "/sandbox/webhooks", {}, {"url": "http://localhost/h", "secret": ""}, "secret"),
    ("PUT", "/sandbox/webhooks/switches", {}, {"drop_rate": 5}, "drop_rate"),
    ("PUT", "/sandbox/webhooks/switches", {}, {"teleport": True}, "teleport"),
]


@pytest.mark.parametrize(("method", "template", "headers", "body", "field"), FIELD_CASES)
def test_wrong_types_and_missing_fields_name_the_field(
    env: tuple[TestClient, Sandbox, dict[str, str]],
    method: str,
    template: str,
    headers: dict[str, str],
    body: Any,
    field: str,
) -> None:
    """Every route answers a 400 naming the bad or missing field."""
    client, _, ids = env
    response = client.request(method, template.format(**ids), json=body, headers=headers)
    assert_client_error(response, 400, field)


UNKNOWN_ID_CASES: list[tuple[str, str, dict[str, str], Any]] = [
    ("GET", "/reseller/catalog/off-does-not-exist", RESELLER, None),
    ("GET", "/reseller/orders/ord-does-not-exist", RESELLER, None),
    ("PATCH", "/reseller/orders/ord-does-not-exist/cancel", RESELLER, {"reason": "x"}),
    ("GET", "/provider/offers/off-does-not-exist", PROVIDER, None),
    ("PATCH", "/provider/offers/off-does-not-exist", PROVIDER, {"name": "x"}),
    ("DELETE", "/provider/offers/off-does-not-exist", PROVIDER, None),
    ("GET", "/provider/orders/item-does-not-exist", PROVIDER, None),
    ("PATCH", "/provider/orders/item-does-not-exist/status", PROVIDER, {"status": "accepted"}),
    ("GET", "/reseller/catalog/" + "x" * 3000, RESELLER, None),
    ("GET", "/reseller/orders/%00%ff", RESELLER, None),
    ("GET", "/reseller/nothing-here", RESELLER, None),
    ("GET", "/sandbox/nothing-here", {}, None),
    ("GET", "/nothing-here", {}, None),
]


@pytest.mark.parametrize(("method", "url", "headers", "body"), UNKNOWN_ID_CASES)
def test_unknown_ids_and_paths_are_404s(
    env: tuple[TestClient, Sandbox, dict[str, str]],
    method: str,
    url: str,
    headers: dict[str, str],
    body: Any,
) -> None:
    """Unknown ids and unknown paths answer 404 with a framework-style body."""
    client, _, _ = env
    response = client.request(method, url, json=body, headers=headers)
    assert_client_error(response, 404)


def test_wrong_method_is_a_405(env: tuple[TestClient, Sandbox, dict[str, str]]) -> None:
    """A known path with an unsupported method answers 405 with a body."""
    client, _, _ = env
    assert_client_error(client.put("/reseller/catalog", json={}, headers=RESELLER), 405)
    assert_client_error(client.delete("/sandbox/clock"), 405)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"status": "shipped"}, "status"), ({"status": "PENDING"}, "status")],
)
def test_bad_order_status_filter(
    env: tuple[TestClient, Sandbox, dict[str, str]], params: dict[str, str], field: str
) -> None:
    """An unknown `status` filter on the reseller order list answers 400 naming it."""
    client, _, _ = env
    assert_client_error(client.get("/reseller/orders", params=params, headers=RESELLER), 400, field)


@pytest.mark.parametrize("key", ["", " ", "k" * 256])
def test_bad_idempotency_key(env: tuple[TestClient, Sandbox, dict[str, str]], key: str) -> None:
    """An empty or over-long Idempotency-Key answers 400 naming the header."""
    client, _, _ = env
    response = client.post(
        "/reseller/orders",
        json=order_body(AUSTIN_OFFER),
        headers={**RESELLER, "Idempotency-Key": key},
    )
    assert_client_error(response, 400, "Idempotency-Key")


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-api-key": ""}, {"x-api-key": "og_sandbox_reseller "}, {"x-api-token": PROVIDER_KEY}],
)
def test_missing_or_wrong_keys_are_401(
    env: tuple[TestClient, Sandbox, dict[str, str]], headers: dict[str, str]
) -> None:
    """No key, an empty key, a near-miss key or the wrong header name all answer the 401 body."""
    client, _, _ = env
    response = client.get("/reseller/catalog", headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "statusCode": 401,
        "message": "Unauthorized - invalid API key",
        "error": "Unauthorized",
    }


def test_advancing_a_real_clock_is_a_409() -> None:
    """POST /sandbox/clock/advance on a real clock answers 409 with a body."""
    with sandbox_client(quiet_config(clock="real")) as (client, _):
        response = client.post("/sandbox/clock/advance", json={"seconds": 60})
    assert_client_error(response, 409)


def test_nothing_in_the_table_made_a_5xx(env: tuple[TestClient, Sandbox, dict[str, str]]) -> None:
    """Across every bad request above, the request log shows no 5xx answer at all."""
    _, sandbox, _ = env
    statuses = {
        status for counts in sandbox.request_stats()["byEndpoint"].values() for status in counts
    }
    assert statuses and not any(s.startswith("5") for s in statuses)
