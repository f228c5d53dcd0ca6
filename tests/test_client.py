"""OffergridClient against the real local Offergrid, in process and over a loopback port."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from offergrid import OffergridClient
from offergrid.client import CallRecord, RateLimitInfo
from offergrid.errors import (
    RETRYABLE_ERRORS,
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InternalServerError,
    NotCancellableError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestValidationError,
    make_status_error,
)
from offergrid.models import (
    Category,
    CreateOrderRequest,
    Offer,
    OrderStatus,
    ServiceAddress,
)
from offergrid_sandbox.config import (
    PROVIDER_KEY,
    RESELLER_KEY,
    FaultConfig,
    RateLimitConfig,
)
from tests.fixtures_sandbox import *  # noqa: F403
from tests.fixtures_sandbox import free_port

AUSTIN = {
    "street": "1 Congress Ave",
    "city": "Austin",
    "state": "TX",
    "zipCode": "78701",
    "country": "US",
}
BUYER = {"fullName": "Jane Buyer", "email": "jane@example.com", "phone": "+1 512 555 0100"}


def order_for(*offer_ids: str, **changes: Any) -> CreateOrderRequest:
    """A test-mode order for the Austin address and our sample buyer."""
    body: dict[str, Any] = {
        "items": [{"offerId": offer_id} for offer_id in offer_ids],
        "serviceAddress": AUSTIN,
        "customerInfo": BUYER,
        "metadata": {"test": True},
    }
    body.update(changes)
    return CreateOrderRequest.model_validate(body)


@pytest.fixture
def records() -> list[CallRecord]:
    """Where the recording client puts its CallRecords."""
    return []


@pytest.fixture
def client(sandbox_http: TestClient, records: list[CallRecord]) -> Iterator[OffergridClient]:
    """An in-process reseller client that records every call."""
    with OffergridClient(RESELLER_KEY, http_client=sandbox_http, on_call=records.append) as c:
        yield c


@pytest.fixture
def austin_offers(client: OffergridClient) -> list[Offer]:
    """The offers the sandbox serves at 78701, one per category where it has one."""
    return client.list_offers(zip_code="78701")


# Catalog -----------------------------------------------------------------------------------------


def test_catalog_lists_typed_visible_offers(client: OffergridClient) -> None:
    """The catalog answers typed offers, only active ones, covering every category."""
    offers = client.list_offers()
    assert len(offers) >= 40
    assert all(isinstance(o, Offer) and o.status == "active" for o in offers)
    assert {o.category for o in offers} >= set(Category)
    assert all(o.provider_name and o.zip_codes for o in offers)
    assert any(o.monthly_price is None for o in offers)  # variable pricing exists


@pytest.mark.parametrize(
    ("kwargs", "holds"),
    [
        ({"category": "energy"}, lambda o: o.category is Category.ENERGY),
        ({"category": Category.INSURANCE}, lambda o: o.category is Category.INSURANCE),
        ({"zip_code": "94102"}, lambda o: "94102" in o.zip_codes),
        ({"zip_code": "78701-1234"}, lambda o: "78701" in o.zip_codes),
        ({"min_price": 50}, lambda o: o.monthly_price is not None and o.monthly_price >= 50),
        ({"max_price": 40}, lambda o: o.monthly_price is not None and o.monthly_price <= 40),
        (
            {"min_price": 30, "max_price": 80},
            lambda o: o.monthly_price is not None and 30 <= o.monthly_price <= 80,
        ),
        (
            {"category": "internet", "zip_code": "78701"},
            lambda o: o.category is Category.INTERNET and "78701" in o.zip_codes,
        ),
    ],
)
def test_catalog_filters(client: OffergridClient, kwargs: dict[str, Any], holds: Any) -> None:
    """Each catalog filter returns a non-empty, strict subset in which every offer matches it."""
    everything = client.list_offers()
    filtered = client.list_offers(**kwargs)
    assert filtered and len(filtered) < len(everything)
    assert all(holds(offer) for offer in filtered)


def test_catalog_search_matches_name_provider_or_features(client: OffergridClient) -> None:
    """A search term finds offers mentioning it, whatever its case."""
    provider = client.list_offers(category="internet")[0].provider_name
    assert provider is not None
    word = provider.split()[0]
    found = client.list_offers(search=word.upper())
    assert found
    assert all(
        word.lower()
        in " ".join(
            [o.name or "", o.description or "", o.provider_name or "", *o.key_features]
        ).lower()
        for o in found
    )
    assert client.list_offers(search="zzzz-no-such-offer") == []


@pytest.mark.parametrize(
    ("sort_by", "sort_order", "key"),
    [
        ("price", "asc", lambda o: o.monthly_price),
        ("price", "desc", lambda o: o.monthly_price),
        ("name", "asc", lambda o: (o.name or "").casefold()),
        ("name", "desc", lambda o: (o.name or "").casefold()),
        ("provider", "asc", lambda o: (o.provider_name or "").casefold()),
        ("createdAt", "desc", lambda o: o.created_at),
    ],
)
def test_catalog_sorting(client: OffergridClient, sort_by: str, sort_order: str, key: Any) -> None:
    """Every sort field and direction comes back ordered by that field."""
    offers = client.list_offers(sort_by=sort_by, sort_order=sort_order, zip_code="78701")
    values = [key(o) for o in offers if key(o) is not None]
    assert len(values) >= 3
    assert values == sorted(values, reverse=sort_order == "desc")


def test_get_offer_matches_the_catalog_and_404s_for_unknown(client: OffergridClient) -> None:
    """get_offer returns the same offer as the list; an unknown id raises NotFoundError."""
    listed = client.list_offers(category="security")[0]
    assert client.get_offer(listed.id) == listed
    with pytest.raises(NotFoundError) as caught:
        client.get_offer("off-does-not-exist")
    assert caught.value.status_code == 404
    assert caught.value.endpoint == "/reseller/catalog/{id}"
    assert "not available to your team" in str(caught.value)


def test_availability_by_address_and_category(client: OffergridClient) -> None:
    """Availability lists offers serving the ZIP, grouped by category; a category narrows it."""
    address = ServiceAddress.model_validate(AUSTIN)
    everything = client.check_availability(address, unit="Unit 205")
    assert everything.count == len(everything.offers) > 0
    assert all(o.serves_zip("78701") for o in everything.offers)
    assert sum(len(group) for group in everything.by_category.values()) == everything.count
    assert "internet" in everything.categories
    energy = client.check_availability(address, category=Category.ENERGY)
    assert energy.offers and all(o.category is Category.ENERGY for o in energy.offers)
    assert energy.categories == ["energy"]
    elsewhere = client.check_availability(
        ServiceAddress.model_validate(
            {**AUSTIN, "zipCode": "98101", "city": "Seattle", "state": "WA"}
        )
    )
    assert {o.id for o in elsewhere.offers} != {o.id for o in everything.offers}


# Orders ------------------------------------------------------------------------------------------


def test_place_get_list_and_filter_orders(
    client: OffergridClient, austin_offers: list[Offer]
) -> None:
    """A placed order comes back pending, readable in detail and in the (filtered) list."""
    internet = next(o for o in austin_offers if o.category is Category.INTERNET)
    energy = next(o for o in austin_offers if o.category is Category.ENERGY)
    created = client.place_order(order_for(internet.id, energy.id), idempotency_key="k-1")
    assert created.order_id.startswith("ord-")
    assert [item.offer_id for item in created.items] == [internet.id, energy.id]
    assert all(item.status is OrderStatus.PENDING for item in created.items)

    order = client.get_order(created.order_id)
    assert order.status is OrderStatus.PENDING
    assert order.customer_info is not None and order.customer_info.full_name == "Jane Buyer"
    assert order.service_address is not None and order.service_address.zip_code == "78701"
    first = order.items[0]
    assert first.offer_name == internet.name and first.category is Category.INTERNET
    assert [entry.status for entry in first.history] == ["pending"]
    assert order.is_test

    assert [o.order_id for o in client.list_orders()] == [created.order_id]
    assert [o.order_id for o in client.list_orders(status=OrderStatus.PENDING)] == [
        created.order_id
    ]
    assert client.list_orders(status="completed") == []


def test_order_for_offer_not_served_there_gets_a_field_error(
    client: OffergridClient, austin_offers: list[Offer]
) -> None:
    """Offergrid's own 400 names the bad field (items[i].offerId) on BadRequestError.field."""
    seattle_only = next(
        o for o in client.list_offers(zip_code="98101") if "78701" not in o.zip_codes
    )
    with pytest.raises(BadRequestError) as caught:
        client.place_order(order_for(austin_offers[0].id, seattle_only.id), idempotency_key="k")
    assert caught.value.status_code == 400
    assert caught.value.field == "items[1].offerId"
    assert "items[1].offerId" in str(caught.value)
    with pytest.raises(BadRequestError) as unknown:
        client.place_order(order_for("off-nope"), idempotency_key="k2")
    assert unknown.value.field == "items[0].offerId"


def test_idempotency_key_reuse(client: OffergridClient, austin_offers: list[Offer]) -> None:
    """The same key and body give the first order back; a new body with that key is refused."""
    request = order_for(austin_offers[0].id)
    first = client.place_order(request, idempotency_key="closing-42:internet")
    again = client.place_order(request, idempotency_key="closing-42:internet")
    assert again.order_id == first.order_id
    assert len(client.list_orders()) == 1
    other = order_for(austin_offers[1].id)
    with pytest.raises(BadRequestError) as caught:
        client.place_order(other, idempotency_key="closing-42:internet")
    assert caught.value.status_code == 422 and caught.value.field == "Idempotency-Key"
    assert client.place_order(other, idempotency_key="closing-42:energy").order_id != first.order_id


def test_cancel_order_and_not_cancellable(
    client: OffergridClient, sandbox: Any, austin_offers: list[Offer]
) -> None:
    """Cancelling marks every item cancelled (twice is harmless); an in_progress item blocks it."""
    created = client.place_order(order_for(austin_offers[0].id), idempotency_key="c-1")
    cancelled = client.cancel_order(created.order_id, reason="Closing moved")
    assert cancelled.status is OrderStatus.CANCELLED
    assert all(item.status is OrderStatus.CANCELLED for item in cancelled.items)
    assert cancelled.items[0].history[-1].notes == "Closing moved"
    assert client.cancel_order(created.order_id).status is OrderStatus.CANCELLED

    busy = client.place_order(order_for(austin_offers[1].id), idempotency_key="c-2")
    item_id = busy.items[0].item_id
    sandbox.update_item_status(item_id, status="in_progress", provider_notes="Tech on site")
    with pytest.raises(NotCancellableError) as caught:
        client.cancel_order(busy.order_id)
    assert caught.value.status_code == 409
    assert "in_progress" in str(caught.value)
    assert client.get_order(busy.order_id).items[0].status is OrderStatus.IN_PROGRESS


def test_unknown_order_is_not_found(client: OffergridClient) -> None:
    """Reading or cancelling an order that does not exist raises NotFoundError."""
    with pytest.raises(NotFoundError):
        client.get_order("ord-missing")
    with pytest.raises(NotFoundError) as caught:
        client.cancel_order("ord-missing")
    assert caught.value.endpoint == "/reseller/orders/{id}/cancel"


# Errors ------------------------------------------------------------------------------------------


def test_bad_key_is_an_authentication_error_without_the_key(sandbox_http: TestClient) -> None:
    """A wrong key raises AuthenticationError pointing at OFFERGRID_API_KEY, never echoing it."""
    bad = "og_wrong_key_123456"
    with (
        OffergridClient(bad, http_client=sandbox_http) as client,
        pytest.raises(AuthenticationError) as caught,
    ):
        client.list_offers()
    error = caught.value
    assert error.status_code == 401
    assert "OFFERGRID_API_KEY" in str(error)
    assert error.body.message == "Unauthorized - invalid API key"
    assert bad not in str(error) and bad not in repr(error) and bad not in repr(error.body)


def test_wrong_role_is_permission_denied(sandbox_http: TestClient) -> None:
    """A provider key on reseller endpoints raises PermissionDeniedError (403)."""
    with (
        OffergridClient(PROVIDER_KEY, http_client=sandbox_http) as client,
        pytest.raises(PermissionDeniedError) as caught,
    ):
        client.list_offers()
    assert caught.value.status_code == 403
    assert "Reseller" in str(caught.value) or "reseller" in str(caught.value)


def test_rate_limit_error_carries_retry_after(
    client: OffergridClient, sandbox: Any, records: list[CallRecord]
) -> None:
    """Past the per-minute limit the client raises RateLimitError with Retry-After seconds."""
    sandbox.rate_limiter.configure(RateLimitConfig(per_minute=3))
    for _ in range(3):
        client.list_orders()
    assert client.rate_limit is not None and client.rate_limit.remaining == 0
    with pytest.raises(RateLimitError) as caught:
        client.list_orders()
    error = caught.value
    assert error.status_code == 429
    assert error.retry_after is not None and error.retry_after >= 1
    assert error.body.retry_after == error.retry_after
    assert f"retry after {error.retry_after:g} s" in str(error)
    assert isinstance(error, RETRYABLE_ERRORS)
    assert records[-1].error_type == "RateLimitError" and records[-1].status_code == 429


def test_rate_limit_headers_are_tracked(client: OffergridClient) -> None:
    """Every answer's X-RateLimit-* headers update client.rate_limit (remaining counts down)."""
    client.list_orders()
    first = client.rate_limit
    client.list_orders()
    second = client.rate_limit
    assert first is not None and second is not None
    assert first.limit == 100
    assert second.remaining == (first.remaining or 0) - 1
    assert second.reset_at is not None and second.reset_at > datetime.now(UTC)


def test_server_errors_are_internal_server_errors(client: OffergridClient, sandbox: Any) -> None:
    """With the 5xx fault on, calls raise InternalServerError, which is retryable."""
    sandbox.faults.configure(FaultConfig(error_rate=1.0))
    with pytest.raises(InternalServerError) as caught:
        client.list_offers()
    assert caught.value.status_code in (502, 503)
    assert isinstance(caught.value, RETRYABLE_ERRORS)
    sandbox.faults.configure(FaultConfig())
    assert client.list_offers()


def test_committed_then_dropped_order_is_a_connection_error_and_retry_is_safe(
    client: OffergridClient, sandbox: Any, austin_offers: list[Offer]
) -> None:
    """A dropped answer after the order was created raises APIConnectionError; reusing the key
    on retry returns that same order instead of a second one."""
    sandbox.faults.configure(
        FaultConfig(committed_then_failed_rate=1.0, committed_then_failed_mode="drop")
    )
    request = order_for(austin_offers[0].id)
    with pytest.raises(APIConnectionError) as caught:
        client.place_order(request, idempotency_key="drop-1")
    assert isinstance(caught.value, RETRYABLE_ERRORS)
    sandbox.faults.configure(FaultConfig())
    retried = client.place_order(request, idempotency_key="drop-1")
    assert [o.order_id for o in client.list_orders()] == [retried.order_id]


def test_connection_refused_is_a_connection_error(records: list[CallRecord]) -> None:
    """A closed port raises APIConnectionError (not a timeout), reported with no status code."""
    url = f"http://127.0.0.1:{free_port()}"
    with (
        OffergridClient(RESELLER_KEY, base_url=url, on_call=records.append) as client,
        pytest.raises(APIConnectionError) as caught,
    ):
        client.list_offers()
    assert not isinstance(caught.value, APITimeoutError)
    assert url in str(caught.value) and RESELLER_KEY not in str(caught.value)
    assert records[-1].status_code is None and records[-1].error_type == "APIConnectionError"


def test_local_validation_happens_before_any_call(
    client: OffergridClient, records: list[CallRecord]
) -> None:
    """Bad arguments raise RequestValidationError naming the parameter, and nothing is sent."""
    cases = [
        (lambda: client.list_offers(sort_order="upwards"), "sortOrder"),
        (lambda: client.list_offers(category="tv"), "category"),
        (lambda: client.list_offers(zip_code="787"), "zipCode"),
        (lambda: client.list_offers(min_price=-1), "minPrice"),
        (lambda: client.list_offers(min_price=50, max_price=10), "minPrice"),
        (lambda: client.get_offer(" "), "offerId"),
        (lambda: client.get_order(""), "orderId"),
        (lambda: client.place_order(order_for("off-1"), idempotency_key=""), "Idempotency-Key"),
        (lambda: client.cancel_order("ord-1", reason="x" * 501), "reason"),
    ]
    for call, field in cases:
        with pytest.raises(RequestValidationError) as caught:
            call()
        assert caught.value.field == field
    assert records == []


# Over a real socket ------------------------------------------------------------------------------


def test_full_round_trip_over_loopback(live_sandbox_url: str, records: list[CallRecord]) -> None:
    """Over a real port the client lists, places, reads and cancels with its own httpx client."""
    with OffergridClient(RESELLER_KEY, base_url=live_sandbox_url, on_call=records.append) as client:
        offer = client.list_offers(zip_code="78701", category="internet")[0]
        created = client.place_order(order_for(offer.id), idempotency_key="live-1")
        assert client.get_order(created.order_id).items[0].offer_id == offer.id
        assert client.cancel_order(created.order_id).status is OrderStatus.CANCELLED
        assert client.rate_limit is not None and client.rate_limit.limit == 100
    assert [r.endpoint for r in records] == [
        "/reseller/catalog",
        "/reseller/orders",
        "/reseller/orders/{id}",
        "/reseller/orders/{id}/cancel",
    ]
    assert [r.status_code for r in records] == [200, 201, 200, 200]


def test_hung_request_times_out(live_sandbox: Any) -> None:
    """A request the server sits on past the read timeout raises APITimeoutError (retryable)."""
    live_sandbox.sandbox.faults.configure(FaultConfig(timeout_rate=1.0, timeout_seconds=1.0))
    timeout = httpx.Timeout(0.2, connect=1.0)
    with (
        OffergridClient(RESELLER_KEY, base_url=live_sandbox.url, timeout=timeout) as client,
        pytest.raises(APITimeoutError) as caught,
    ):
        client.list_offers()
    assert isinstance(caught.value, RETRYABLE_ERRORS)
    assert caught.value.endpoint == "/reseller/catalog"


# Observability and secrets -----------------------------------------------------------------------


def test_call_records_for_success_and_failure(
    client: OffergridClient, records: list[CallRecord]
) -> None:
    """Every call, good or bad, produces one CallRecord with the templated endpoint."""
    client.list_offers()
    with pytest.raises(NotFoundError):
        client.get_order("ord-missing")
    ok, missing = records
    assert (ok.method, ok.endpoint, ok.status_code, ok.error_type) == (
        "GET",
        "/reseller/catalog",
        200,
        None,
    )
    assert ok.latency_s > 0 and isinstance(ok.rate_limit, RateLimitInfo)
    assert (missing.endpoint, missing.status_code, missing.error_type) == (
        "/reseller/orders/{id}",
        404,
        "NotFoundError",
    )


def test_a_failing_call_hook_does_not_fail_the_call(sandbox_http: TestClient) -> None:
    """An exception in on_call is logged, and the API result still comes back."""

    def broken(_: CallRecord) -> None:
        raise RuntimeError("metrics down")

    with OffergridClient(RESELLER_KEY, http_client=sandbox_http, on_call=broken) as client:
        assert client.list_orders() == []


def test_the_key_never_shows(
    sandbox_http: TestClient, caplog: pytest.LogCaptureFixture, records: list[CallRecord]
) -> None:
    """The API key is absent from the client's repr/str, logs, call records and error text."""
    caplog.set_level(logging.DEBUG)
    client = OffergridClient(RESELLER_KEY, http_client=sandbox_http, on_call=records.append)
    client.list_offers(category="energy")
    with pytest.raises(NotFoundError) as caught:
        client.get_order("ord-missing")
    texts = [repr(client), str(client), caplog.text, repr(records), str(caught.value)]
    texts.append(repr(caught.value.body))
    assert all(RESELLER_KEY not in text for text in texts)
    assert "offergrid GET /reseller/catalog -> 200" in caplog.text


def test_missing_key_names_argument_and_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No key anywhere raises ConfigurationError naming api_key and OFFERGRID_API_KEY."""
    with pytest.raises(ConfigurationError) as caught:
        OffergridClient()
    assert "api_key" in str(caught.value) and "OFFERGRID_API_KEY" in str(caught.value)
    monkeypatch.setenv("OFFERGRID_API_KEY", "  ")
    with pytest.raises(ConfigurationError):
        OffergridClient()


def test_environment_fallbacks(monkeypatch: pytest.MonkeyPatch, live_sandbox_url: str) -> None:
    """OFFERGRID_API_KEY and OFFERGRID_BASE_URL configure a client built with no arguments."""
    monkeypatch.setenv("OFFERGRID_API_KEY", RESELLER_KEY)
    monkeypatch.setenv("OFFERGRID_BASE_URL", live_sandbox_url + "/")
    with OffergridClient() as client:
        assert client.base_url == live_sandbox_url
        assert client.list_orders() == []
    monkeypatch.delenv("OFFERGRID_BASE_URL")
    with OffergridClient() as client:
        assert client.base_url == "https://api.offergrid.io"
    with pytest.raises(ConfigurationError, match="OFFERGRID_BASE_URL"):
        OffergridClient(RESELLER_KEY, base_url="api.offergrid.io")


def test_close_only_closes_an_owned_http_client(sandbox_http: TestClient) -> None:
    """Leaving the context closes the client's own pool but not an injected one."""
    with OffergridClient(RESELLER_KEY, http_client=sandbox_http) as client:
        client.list_orders()
    assert not sandbox_http.is_closed
    own = OffergridClient(RESELLER_KEY)
    own.close()
    assert own._http.is_closed


# Documented variants the sandbox does not emit (a recorded exchange stands in for the server) -----


def _replay(pages: dict[str, Any]) -> tuple[OffergridClient, list[httpx.Request]]:
    """A client whose transport answers each path+query from `pages` and records the requests."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        key = request.url.path + (f"?{request.url.query.decode()}" if request.url.query else "")
        body = pages[key]
        if isinstance(body, bytes):
            return httpx.Response(200, content=body)
        return httpx.Response(200, json=body)

    http = httpx.Client(transport=httpx.MockTransport(answer))
    return OffergridClient("k", base_url="https://api.example.test", http_client=http), seen


def test_enveloped_pages_are_followed_by_link_and_by_cursor() -> None:
    """A {data, next} envelope is followed by path and by cursor until no next remains."""
    client, seen = _replay(
        {
            "/reseller/orders": {"data": [{"orderId": "ord-1"}], "next": "/reseller/orders?page=2"},
            "/reseller/orders?page=2": {"items": [{"id": "ord-2"}], "nextCursor": "c3"},
            "/reseller/orders?cursor=c3": {"results": [{"orderId": "ord-3"}]},
        }
    )
    assert [o.order_id for o in client.list_orders()] == ["ord-1", "ord-2", "ord-3"]
    assert len(seen) == 3 and all(r.headers["x-api-key"] == "k" for r in seen)


def test_next_link_to_another_host_is_refused() -> None:
    """A next link to a foreign host is refused, so the API key never leaves for it."""
    client, seen = _replay(
        {"/reseller/catalog": {"data": [{"id": "a"}], "next": "https://evil.example/steal"}}
    )
    with pytest.raises(APIResponseValidationError, match="another host"):
        client.list_offers()
    assert len(seen) == 1


def test_unreadable_success_bodies_are_response_errors() -> None:
    """A 2xx body that is not JSON, or not the expected shape, raises APIResponseValidationError."""
    client, _ = _replay({"/reseller/orders/ord-1": b"<html>oops</html>", "/reseller/catalog": {}})
    with pytest.raises(APIResponseValidationError, match="not JSON"):
        client.get_order("ord-1")
    with pytest.raises(APIResponseValidationError, match="not a list"):
        client.list_offers()


@pytest.mark.parametrize(
    ("status", "endpoint", "body", "kind"),
    [
        (
            400,
            "/reseller/orders/{id}/cancel",
            {"error": "Order cannot be cancelled"},
            NotCancellableError,
        ),
        (
            400,
            "/reseller/orders",
            {"error": "Invalid email format", "field": "customerInfo.email"},
            BadRequestError,
        ),
        (422, "/reseller/orders", {"statusCode": 422, "message": ["bad"]}, BadRequestError),
        (500, "/reseller/orders", "not json at all", InternalServerError),
        (418, "/reseller/catalog", {}, APIStatusError),
    ],
)
def test_status_mapping_for_documented_variants(
    status: int, endpoint: str, body: Any, kind: type[APIStatusError]
) -> None:
    """make_status_error maps the guide's and framework's variants to the right class."""
    request = httpx.Request("PATCH", "https://api.example.test/x")
    if isinstance(body, str):
        response = httpx.Response(status, text=body, request=request)
    else:
        response = httpx.Response(status, json=body, request=request)
    error = make_status_error(response, endpoint)
    assert type(error) is kind
    assert error.status_code == status and error.endpoint == endpoint
    if kind is BadRequestError and status == 400:
        assert isinstance(error, BadRequestError) and error.field == "customerInfo.email"


def test_retry_after_header_wins_over_body() -> None:
    """A 429's Retry-After header gives retry_after; the body's retryAfter is the fallback."""
    request = httpx.Request("GET", "https://api.example.test/reseller/catalog")
    with_header = httpx.Response(
        429, headers={"Retry-After": "7"}, json={"retryAfter": 60}, request=request
    )
    body_only = httpx.Response(429, json={"retryAfter": 60}, request=request)
    neither = httpx.Response(429, json={}, request=request)
    assert make_status_error(with_header, "/x").retry_after == 7  # type: ignore[attr-defined]
    assert make_status_error(body_only, "/x").retry_after == 60  # type: ignore[attr-defined]
    assert make_status_error(neither, "/x").retry_after is None  # type: ignore[attr-defined]
