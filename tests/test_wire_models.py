"""Offergrid wire models: documented samples and variants parse; requests validate strictly."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from offergrid.errors import OffergridError, RequestValidationError, WebhookPayloadError
from offergrid.models import (
    CANCELLABLE,
    FULFILLED,
    TERMINAL,
    Availability,
    AvailabilityRequest,
    CancelOrderRequest,
    Category,
    CreatedOrder,
    CreateOrderRequest,
    CustomerInfo,
    ErrorBody,
    InternetServiceData,
    Offer,
    OfferStatus,
    Order,
    OrderCancelled,
    OrderCompleted,
    OrderItemRequest,
    OrderRejected,
    OrderScheduled,
    OrderStatus,
    OrderStatusChanged,
    PricingType,
    SecurityServiceData,
    ServiceAddress,
    UnknownEvent,
    is_cancellable,
    is_fulfilled,
    is_terminal,
    parse_list,
    parse_list_page,
    parse_webhook_event,
    status_rank,
    validate_order,
)

# reference.md §2, CreateOfferDto as providers write it, with the typed internet DTO example.
SPEC_OFFER: dict[str, Any] = {
    "id": "123e4567-e89b-12d3-a456-426614174000",
    "name": "High-Speed Internet 1000 Mbps",
    "internalName": "HSI-1000-Q4-2024",
    "category": "internet",
    "status": "active",
    "sku": "INT-1000-001",
    "externalId": "ext-12345",
    "metadata": {"tags": ["fiber", "residential"], "priority": 1},
    "keyFeatures": ["1000 Mbps download", "Unlimited data", "No contract"],
    "serviceSpecificData": {
        "minBandwidth": 100,
        "maxBandwidth": 1000,
        "connectionType": "fiber",
        "dataCap": None,
    },
    "pricingType": "fixed",
    "monthlyPrice": 59.99,
    "complianceData": {
        "broadbandLabel": {
            "url": "https://example.com/label",
            "typicalDownload": 940,
            "typicalUpload": 880,
            "typicalLatency": 15,
            "dataCapGb": None,
        },
        "networkManagementUrl": "https://example.com/nm",
    },
    "complianceStatus": "unknown",
    "complianceNotes": "Waiting for updated EFL from legal team",
    "providerId": "prov-lone-star",
    "providerName": "Lone Star Fiber",
    "zipCodes": ["78701", "78702"],
}

# The guides' free-form internet shape, with fees and a promotion in metadata (P-CAT, P-PRICE).
GUIDE_OFFER: dict[str, Any] = {
    "id": "off-123-abc",
    "name": "Gigabit Fiber",
    "category": "internet",
    "serviceSpecificData": {
        "downloadSpeed": "1000 Mbps",
        "uploadSpeed": "1000 Mbps",
        "connectionType": "Fiber",
        "dataCapacity": "Unlimited",
        "contractLength": "12 months",
        "installationFee": "$99",
        "equipmentIncluded": "WiFi 6 router",
    },
    "monthlyPrice": 49.99,
    "metadata": {
        "equipmentFee": "10.00",
        "activationFee": "Free",
        "regularPrice": "$69.99",
        "promotionalPeriod": "12 months",
        "promoEndDate": "2026-12-31",
        "earlyTerminationFee": "$150",
        "depositRequired": False,
    },
}

SAMPLE_ADDRESS: dict[str, str] = {
    "street": "123 Main St",
    "city": "San Francisco",
    "state": "CA",
    "zipCode": "94102",
    "country": "US",
}
SAMPLE_CUSTOMER: dict[str, str] = {
    "fullName": "John Doe",
    "email": "john@example.com",
    "phone": "+1-555-123-4567",
}


def order_body(**changes: Any) -> dict[str, Any]:
    """A valid order body (the SPEC-P example values) with top-level keys replaced."""
    body: dict[str, Any] = {
        "items": [{"offerId": "off-789-ghi"}],
        "serviceAddress": dict(SAMPLE_ADDRESS),
        "customerInfo": dict(SAMPLE_CUSTOMER),
        "notes": "Gate code 1234",
        "metadata": {"moveInDate": "2026-03-01", "test": True},
    }
    body.update(changes)
    return body


# Offers ------------------------------------------------------------------------------------------


def test_spec_offer_parses_with_typed_service_data() -> None:
    """The documented provider offer parses, keeps enums, and reads the typed internet shape."""
    offer = Offer.model_validate(SPEC_OFFER)
    assert offer.category is Category.INTERNET
    assert offer.status is OfferStatus.ACTIVE
    assert offer.pricing_type is PricingType.FIXED
    assert isinstance(offer.service_specific_data, InternetServiceData)
    assert offer.download_mbps() == 1000
    assert offer.upload_mbps() == 880  # from the broadband label: the typed shape has no upload
    assert offer.connection_type() == "fiber"
    assert offer.provider_name == "Lone Star Fiber"
    assert offer.serves_zip("78701-1234") is True
    assert offer.serves_zip("10001") is False


def test_guide_offer_reads_free_form_speeds_fees_and_promo() -> None:
    """The guides' free-form offer gives speeds, fees, contract and promo through the accessors."""
    offer = Offer.model_validate(GUIDE_OFFER)
    assert isinstance(offer.service_specific_data, dict)
    assert offer.download_mbps() == 1000
    assert offer.upload_mbps() == 1000
    assert offer.connection_type() == "fiber"
    fees = offer.fees
    assert fees.installation_fee == 99.0  # found in the service data
    assert fees.equipment_fee == 10.0
    assert fees.activation_fee == 0.0
    assert fees.upfront_total == 109.0
    assert fees.contract_length == 12
    assert fees.early_termination_fee == 150.0
    assert fees.deposit_required is False
    assert fees.promo_end_date == date(2026, 12, 31)
    assert offer.promo_price == 49.99
    assert offer.regular_price == 69.99
    assert offer.promo_months == 12
    # 109 upfront + 12 x 49.99 + 12 x 69.99
    assert offer.cost_over(24) == pytest.approx(109 + 12 * 49.99 + 12 * 69.99)


def test_security_typed_shape_and_unknown_free_form_shape() -> None:
    """Security data reads as the typed DTO; other categories' keys stay a free-form dict."""
    security = Offer.model_validate(
        {
            "id": "off-sec",
            "category": "security",
            "serviceSpecificData": {
                "monitoringType": "professional_monitoring",
                "installationType": "diy",
                "equipmentIncluded": "Hub, 2 door sensors",
            },
        }
    )
    assert isinstance(security.service_specific_data, SecurityServiceData)
    assert security.service_specific_data.monitoring_type == "professional_monitoring"
    insurance = Offer.model_validate(
        {
            "id": "off-ins",
            "category": "insurance",
            "serviceSpecificData": {"insuranceType": "condo (HO-6)", "deductible": "$500"},
        }
    )
    assert insurance.service_data()["insuranceType"] == "condo (HO-6)"
    assert insurance.download_mbps() is None


@pytest.mark.parametrize(
    ("speed", "mbps"),
    [("1 Gbps", 1000), ("Up to 300 Mbps", 300), (940, 940), ("2.5 Gig", 2500), ("768 Kbps", 0)],
)
def test_download_speed_units(speed: Any, mbps: int) -> None:
    """Free-form speeds in Mbps, Gbps, Kbps or bare numbers convert to whole Mbps."""
    offer = Offer.model_validate({"id": "x", "serviceSpecificData": {"downloadSpeed": speed}})
    assert offer.download_mbps() == mbps


def test_minimal_offer_and_unknown_values_pass_through() -> None:
    """Only id is required; null price, unknown enums, numeric ZIPs and extra fields are kept."""
    offer = Offer.model_validate(
        {
            "id": 42,
            "category": "moving",
            "status": "paused",
            "pricingType": "auction",
            "monthlyPrice": None,
            "keyFeatures": None,
            "zipCodes": [78701, "78702"],
            "brandNewField": {"x": 1},
        }
    )
    assert offer.id == "42"
    assert offer.category == "moving" and not isinstance(offer.category, Category)
    assert offer.status == "paused"
    assert offer.pricing_type == "auction"
    assert offer.monthly_price is None
    assert offer.key_features == []
    assert offer.zip_codes == ["78701", "78702"]
    assert offer.model_extra == {"brandNewField": {"x": 1}}
    assert offer.fees.upfront_total == 0.0
    assert offer.cost_over(12) is None
    assert Offer.model_validate({"id": "bare"}).serves_zip("78701") is None


def test_offer_without_id_is_rejected() -> None:
    """An offer must at least carry its id."""
    with pytest.raises(ValueError, match="id"):
        Offer.model_validate({"name": "No id"})


def test_price_given_as_text_is_read() -> None:
    """A monthly price sent as "$59.99" is still read as 59.99."""
    assert Offer.model_validate({"id": "x", "monthlyPrice": "$59.99"}).monthly_price == 59.99


# Orders (read side) ------------------------------------------------------------------------------


def test_created_order_from_the_submission_guide() -> None:
    """The A-SUB creation answer parses, with the item status as an OrderStatus."""
    created = CreatedOrder.model_validate(
        {
            "orderId": "ord-123-abc",
            "items": [{"itemId": "item-456-def", "offerId": "off-789-ghi", "status": "pending"}],
            "createdAt": "2025-01-02T10:00:00Z",
        }
    )
    assert created.order_id == "ord-123-abc"
    assert created.items[0].item_id == "item-456-def"
    assert created.items[0].status is OrderStatus.PENDING
    assert created.created_at == datetime(2025, 1, 2, 10, tzinfo=UTC)


def test_order_accepts_id_alias_uuid_and_naive_timestamps() -> None:
    """`id` works as an alias of orderId and itemId; a timestamp without offset is taken as UTC."""
    order = Order.model_validate(
        {
            "id": "9b2f6a1e-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
            "items": [{"id": "item-1", "status": "on_hold"}],
            "createdAt": "2025-01-02T10:00:00",
        }
    )
    assert order.order_id.startswith("9b2f")
    assert order.items[0].item_id == "item-1"
    assert order.items[0].status == "on_hold"
    assert order.created_at is not None and order.created_at.tzinfo is UTC


def test_order_detail_contract_shape_and_tracking_history() -> None:
    """The contract's detail shape and the tracking guide's order-level history both parse."""
    order = Order.model_validate(
        {
            "orderId": "ord-1",
            "status": "scheduled",
            "items": [
                {
                    "itemId": "item-1",
                    "offerId": "off-1",
                    "offerName": "Fiber 1000",
                    "category": "internet",
                    "status": "scheduled",
                    "scheduledFor": "2025-01-10T15:00:00Z",
                    "providerNotes": "Tech arrives 8am-12pm",
                    "accountNumber": None,
                    "history": [
                        {"status": "pending", "timestamp": "2025-01-02T10:00:00Z"},
                        {
                            "status": "scheduled",
                            "timestamp": "2025-01-03T10:00:00Z",
                            "providerNotes": "Booked",
                            "scheduledFor": "2025-01-10T15:00:00Z",
                        },
                    ],
                }
            ],
            "customerInfo": {"fullName": "John Doe", "email": "j***@example.com"},
            "serviceAddress": {"street": "123 Main St", "zipCode": "94102"},
            "metadata": {"test": True},
            "history": [{"status": "pending", "timestamp": "2025-01-02T10:00:00Z", "notes": "ok"}],
        }
    )
    item = order.item("item-1")
    assert item is not None and item.category is Category.INTERNET
    assert [entry.status for entry in item.history] == ["pending", "scheduled"]
    assert item.history[1].scheduled_for == datetime(2025, 1, 10, 15, tzinfo=UTC)
    assert order.history[0].notes == "ok"
    assert order.item_for_offer("off-1") is item
    assert order.is_test is True
    assert order.service_address is not None and order.service_address.zip_code == "94102"


# Status groupings --------------------------------------------------------------------------------


def test_status_groups_match_the_contract() -> None:
    """Fulfilled, cancellable and terminal sets are exactly the contract's, and ranks only rise."""
    assert {s.value for s in FULFILLED} == {"completed", "active"}
    assert {s.value for s in CANCELLABLE} == {
        "pending",
        "submitted_to_provider",
        "accepted",
        "scheduled",
    }
    assert {s.value for s in TERMINAL} == {"completed", "active", "rejected", "cancelled", "failed"}
    assert len(OrderStatus) == 10
    path = ["pending", "submitted_to_provider", "accepted", "scheduled", "in_progress"]
    path += ["completed", "active"]
    ranks = [status_rank(s) or 0 for s in path]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)
    assert status_rank("cancelled") > status_rank("active")  # type: ignore[operator]
    assert status_rank("brand_new") is None
    assert is_fulfilled("active") and not is_fulfilled("failed") and not is_fulfilled("x")
    assert is_cancellable("scheduled") and not is_cancellable("in_progress")
    assert is_terminal("rejected") and not is_terminal("pending")


# Errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "detail", "field", "retry_after"),
    [
        (
            {
                "statusCode": 401,
                "message": "Unauthorized - invalid API key",
                "error": "Unauthorized",
            },
            "Unauthorized - invalid API key",
            None,
            None,
        ),
        (
            {
                "statusCode": 429,
                "message": "Too many requests",
                "error": "Too Many Requests",
                "retryAfter": 60,
            },
            "Too many requests",
            None,
            60.0,
        ),
        (
            {"error": "Invalid email format", "field": "customerInfo.email"},
            "Invalid email format",
            "customerInfo.email",
            None,
        ),
        (
            {"statusCode": 400, "message": ["email must be an email", "x"], "error": "Bad Request"},
            "email must be an email; x",
            None,
            None,
        ),
        ("plain text failure", "plain text failure", None, None),
    ],
)
def test_error_bodies_in_both_styles(
    payload: Any, detail: str, field: str | None, retry_after: float | None
) -> None:
    """Framework-style and guide-style error bodies give the same detail/field/retryAfter view."""
    body = ErrorBody.from_payload(payload)
    assert body.detail == detail
    assert body.field == field
    assert body.retry_after == retry_after


# Lists and availability --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [[{"id": "a"}], {"data": [{"id": "a"}]}, {"items": [{"id": "a"}]}, {"results": [{"id": "a"}]}],
)
def test_list_envelopes(payload: Any) -> None:
    """A bare array and the data/items/results envelopes all give the same items."""
    assert parse_list(payload) == [{"id": "a"}]


def test_list_next_pointer_and_bad_shapes() -> None:
    """A next/cursor field is found (also under pagination); a list-less answer is an error."""
    assert parse_list_page({"data": [], "next": "/reseller/orders?page=2"}).next == (
        "/reseller/orders?page=2"
    )
    assert parse_list_page({"items": [1], "pagination": {"nextCursor": "abc"}}).next == "abc"
    assert parse_list_page([1, 2]).next is None
    with pytest.raises(ValueError, match="data/items/results"):
        parse_list({"offers": "nope"})
    with pytest.raises(ValueError, match="array"):
        parse_list("nope")


def test_availability_both_forms_and_either_alone() -> None:
    """Availability fills the flat list and the grouping from whichever the answer carried."""
    offers = [{"id": "a", "category": "internet"}, {"id": "b", "category": "energy"}]
    both = Availability.model_validate(
        {"address": SAMPLE_ADDRESS, "offers": offers, "byCategory": {"internet": [offers[0]]}}
    )
    assert [o.id for o in both.offers] == ["a", "b"]
    assert [o.id for o in both.for_category("internet")] == ["a"]
    flat_only = Availability.model_validate({"offers": offers})
    assert sorted(flat_only.categories) == ["energy", "internet"]
    assert flat_only.count == 2
    grouped_only = Availability.model_validate({"byCategory": {"energy": [offers[1]]}})
    assert [o.id for o in grouped_only.offers] == ["b"]
    assert [o.id for o in Availability.model_validate(offers).offers] == ["a", "b"]


# Requests ----------------------------------------------------------------------------------------


def test_documented_order_body_validates_and_serialises_by_alias() -> None:
    """The SPEC-P example order is accepted and sent camelCase with absent fields left out."""
    request = CreateOrderRequest.model_validate(order_body(notes=None))
    wire = request.to_wire()
    assert wire == {
        "items": [{"offerId": "off-789-ghi"}],
        "serviceAddress": SAMPLE_ADDRESS,
        "customerInfo": SAMPLE_CUSTOMER,
        "metadata": {"moveInDate": "2026-03-01", "test": True},
    }
    assert request.is_test


def test_request_built_from_python_names_normalises_codes() -> None:
    """Python names work too; state, country and ZIP+4 are normalised on the way in."""
    address = ServiceAddress(
        street="1 Congress Ave, Unit 205",
        city="Austin",
        state="tx",
        zip_code="787011234",
        country="us",
    )
    assert (address.state, address.country, address.zip_code) == ("TX", "US", "78701-1234")
    request = CreateOrderRequest(
        items=[OrderItemRequest(offer_id="off-1"), OrderItemRequest(offer_id="off-2")],
        service_address=address,
        customer_info=CustomerInfo(
            full_name="  Ana   María O'Neil-Smith ", email="ana@example.co", phone="+1 555 123 4567"
        ),
    )
    assert request.customer_info.full_name == "Ana María O'Neil-Smith"
    assert CancelOrderRequest(reason="Closing moved").to_wire() == {"reason": "Closing moved"}
    availability = AvailabilityRequest(**SAMPLE_ADDRESS, unit="Unit 205", category="energy")
    assert availability.to_wire()["category"] == "energy"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"items": []}, "items"),
        ({"items": [{"offerId": "off-1"}, {"offerId": "off-1"}]}, "items[1].offerId"),
        ({"items": [{"offerId": "off-1"}, {"offerId": ""}]}, "items[1].offerId"),
        ({"items": [{"offer": "off-1"}]}, "items[0].offerId"),
        ({"serviceAddress": None}, "serviceAddress"),
        ({"serviceAddress": {**SAMPLE_ADDRESS, "zipCode": "9410"}}, "serviceAddress.zipCode"),
        ({"serviceAddress": {**SAMPLE_ADDRESS, "zipCode": "94102-12"}}, "serviceAddress.zipCode"),
        ({"serviceAddress": {**SAMPLE_ADDRESS, "state": "XX"}}, "serviceAddress.state"),
        ({"serviceAddress": {**SAMPLE_ADDRESS, "state": "California"}}, "serviceAddress.state"),
        ({"serviceAddress": {**SAMPLE_ADDRESS, "country": "USA"}}, "serviceAddress.country"),
        ({"serviceAddress": {**SAMPLE_ADDRESS, "street": "   "}}, "serviceAddress.street"),
        ({"serviceAddress": {**SAMPLE_ADDRESS, "city": "SF 94102"}}, "serviceAddress.city"),
        (
            {"serviceAddress": {k: v for k, v in SAMPLE_ADDRESS.items() if k != "city"}},
            "serviceAddress.city",
        ),
        ({"customerInfo": {**SAMPLE_CUSTOMER, "fullName": "John"}}, "customerInfo.fullName"),
        ({"customerInfo": {**SAMPLE_CUSTOMER, "fullName": "J0hn D0e"}}, "customerInfo.fullName"),
        ({"customerInfo": {**SAMPLE_CUSTOMER, "fullName": "x" * 101}}, "customerInfo.fullName"),
        ({"customerInfo": {**SAMPLE_CUSTOMER, "email": "john@"}}, "customerInfo.email"),
        ({"customerInfo": {**SAMPLE_CUSTOMER, "email": "john example.com"}}, "customerInfo.email"),
        ({"customerInfo": {**SAMPLE_CUSTOMER, "phone": "555-123-4567"}}, "customerInfo.phone"),
        ({"customerInfo": {**SAMPLE_CUSTOMER, "phone": "+1 555 123 456"}}, "customerInfo.phone"),
        ({"customerInfo": {**SAMPLE_CUSTOMER, "phone": "+44 20"}}, "customerInfo.phone"),
        ({"customerInfo": {**SAMPLE_CUSTOMER, "phone": 15551234567}}, "customerInfo.phone"),
        ({"notes": "n" * 2001}, "notes"),
        ({"metadata": {"when": datetime(2026, 1, 1)}}, "metadata"),
        ({"extraField": 1}, "extraField"),
    ],
)
def test_every_local_validation_error_names_its_wire_field(
    changes: dict[str, Any], field: str
) -> None:
    """Each bad order input raises RequestValidationError naming the field by its wire path."""
    with pytest.raises(RequestValidationError) as caught:
        CreateOrderRequest.model_validate(order_body(**changes))
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, OffergridError)


def test_validation_errors_never_echo_personal_data() -> None:
    """A rejected email or phone is named, but its value is not repeated in the error."""
    with pytest.raises(RequestValidationError) as caught:
        CustomerInfo(full_name="John Doe", email="john.doe@@secret-domain", phone="+1 555 0100")
    text = str(caught.value) + repr(caught.value.problems)
    assert "secret-domain" not in text and "0100" not in text
    assert [field for field, _ in caught.value.problems] == [
        "customerInfo.email",
        "customerInfo.phone",
    ]


def test_standalone_parts_name_their_wire_prefix() -> None:
    """A ServiceAddress or CustomerInfo built alone still names its serviceAddress./... path."""
    with pytest.raises(RequestValidationError, match=r"^serviceAddress\.zipCode"):
        ServiceAddress(street="1 Main St", city="Austin", state="TX", zip_code="7", country="US")
    with pytest.raises(RequestValidationError, match=r"^customerInfo\.email"):
        CustomerInfo(full_name="John Doe", email="nope", phone="+1 555 123 4567")
    with pytest.raises(RequestValidationError, match=r"^zipCode"):
        AvailabilityRequest(**{**SAMPLE_ADDRESS, "zipCode": "1"})
    with pytest.raises(RequestValidationError, match=r"^category"):
        AvailabilityRequest(**SAMPLE_ADDRESS, category="tv")


def test_validate_order_rechecks_an_unvalidated_request() -> None:
    """validate_order catches a request assembled with model_construct, which skips validation."""
    bad = CreateOrderRequest.model_construct(
        items=[],
        service_address=ServiceAddress.model_validate(SAMPLE_ADDRESS),
        customer_info=CustomerInfo.model_validate(SAMPLE_CUSTOMER),
    )
    with pytest.raises(RequestValidationError) as caught:
        validate_order(bad)
    assert caught.value.field == "items"
    validate_order(CreateOrderRequest.model_validate(order_body()))


def test_requests_are_immutable() -> None:
    """A request cannot be changed after validation, so a retry sends the very same body."""
    request = CreateOrderRequest.model_validate(order_body())
    with pytest.raises(ValueError, match="frozen"):
        request.notes = "changed"  # type: ignore[misc]


# Webhooks ----------------------------------------------------------------------------------------

FLAT_EVENTS: list[tuple[dict[str, Any], type, str | None]] = [
    (
        {
            "event": "order.status_changed",
            "orderId": "ord-1",
            "itemId": "item-1",
            "previousStatus": "pending",
            "newStatus": "accepted",
            "providerNotes": "Looks good",
            "timestamp": "2025-01-02T10:00:00Z",
        },
        OrderStatusChanged,
        "accepted",
    ),
    (
        {
            "event": "order.scheduled",
            "orderId": "ord-1",
            "itemId": "item-1",
            "scheduledFor": "2025-01-10T15:00:00Z",
            "providerNotes": "8am-12pm",
            "timestamp": "2025-01-03T10:00:00Z",
        },
        OrderScheduled,
        None,
    ),
    (
        {
            "event": "order.completed",
            "orderId": "ord-1",
            "itemId": "item-1",
            "accountNumber": "ACC-123",
            "providerNotes": "Installed",
            "timestamp": "2025-01-10T18:00:00Z",
        },
        OrderCompleted,
        None,
    ),
    (
        {
            "event": "order.rejected",
            "orderId": "ord-1",
            "itemId": "item-1",
            "reason": "Address outside current service area",
            "providerNotes": None,
            "timestamp": "2025-01-02T12:00:00Z",
        },
        OrderRejected,
        None,
    ),
    (
        {
            "event": "order.cancelled",
            "orderId": "ord-1",
            "itemId": "item-1",
            "reason": "Closing moved",
            "cancelledBy": "reseller",
            "timestamp": "2025-01-02T12:00:00Z",
        },
        OrderCancelled,
        None,
    ),
    (
        {"event": "order.status_changed", "orderId": "ord-1", "status": "scheduled"},
        OrderStatusChanged,
        "scheduled",
    ),
]


@pytest.mark.parametrize(("payload", "kind", "new_status"), FLAT_EVENTS)
def test_documented_webhook_payloads_parse(
    payload: dict[str, Any], kind: type, new_status: str | None
) -> None:
    """Each documented reseller event (and the `status` alias) parses to its typed event."""
    event = parse_webhook_event(json.dumps(payload).encode())
    assert type(event) is kind
    assert event.event == payload["event"]
    assert event.order_id == "ord-1"
    assert event.new_status == new_status
    assert event.raw == payload
    assert len(event.dedupe_key) == 64


def test_event_specific_fields_and_implied_status() -> None:
    """Scheduled/completed/rejected/cancelled events expose their own fields and implied status."""
    scheduled, completed, rejected, cancelled = (
        parse_webhook_event(payload) for payload, _, _ in FLAT_EVENTS[1:5]
    )
    assert isinstance(scheduled, OrderScheduled)
    assert scheduled.scheduled_for == datetime(2025, 1, 10, 15, tzinfo=UTC)
    assert scheduled.implied_status is OrderStatus.SCHEDULED
    assert isinstance(completed, OrderCompleted) and completed.account_number == "ACC-123"
    assert isinstance(rejected, OrderRejected) and rejected.reason.startswith("Address")  # type: ignore[union-attr]
    assert isinstance(cancelled, OrderCancelled) and cancelled.cancelled_by == "reseller"
    assert cancelled.implied_status is OrderStatus.CANCELLED


def test_provider_style_envelope_is_lifted() -> None:
    """The {id, event, timestamp, data} envelope parses; its id becomes the dedupe key."""
    event = parse_webhook_event(
        {
            "id": "evt_abc123",
            "event": "order.cancelled",
            "timestamp": "2025-01-02T12:00:00Z",
            "data": {
                "orderId": "ord-1",
                "itemId": "item-1",
                "reason": "x",
                "cancelledBy": "reseller",
            },
        }
    )
    assert isinstance(event, OrderCancelled)
    assert event.event_id == "evt_abc123" and event.dedupe_key == "evt_abc123"
    assert event.timestamp == datetime(2025, 1, 2, 12, tzinfo=UTC)
    assert event.item_id == "item-1"


def test_dedupe_key_is_stable_for_duplicates_and_differs_between_events() -> None:
    """The same payload delivered twice dedupes; a different status or time does not collide."""
    payload = FLAT_EVENTS[0][0]
    first = parse_webhook_event(json.dumps(payload))
    again = parse_webhook_event(json.dumps(payload, indent=2).encode())
    later = parse_webhook_event({**payload, "timestamp": "2025-01-02T11:00:00Z"})
    other = parse_webhook_event({**payload, "newStatus": "rejected"})
    assert first.dedupe_key == again.dedupe_key
    assert len({first.dedupe_key, later.dedupe_key, other.dedupe_key}) == 3


def test_unknown_events_are_carried_not_rejected() -> None:
    """An unknown or missing event name gives an UnknownEvent holding the raw payload."""
    future = parse_webhook_event({"event": "offer.ordered", "offerId": "off-1"})
    assert isinstance(future, UnknownEvent)
    assert future.raw == {"event": "offer.ordered", "offerId": "off-1"}
    assert future.new_status is None
    nameless = parse_webhook_event({"orderId": "ord-1"})
    assert isinstance(nameless, UnknownEvent) and nameless.event == ""


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_malformed_webhook_bodies_raise_a_clear_error(body: bytes) -> None:
    """A webhook body that is not a JSON object raises WebhookPayloadError (a ValueError)."""
    with pytest.raises(WebhookPayloadError):
        parse_webhook_event(body)


def test_webhook_with_unreadable_timestamp_names_the_field() -> None:
    """A known event with a garbage timestamp raises WebhookPayloadError naming timestamp."""
    with pytest.raises(WebhookPayloadError, match="timestamp"):
        parse_webhook_event({"event": "order.completed", "timestamp": "yesterday-ish"})
