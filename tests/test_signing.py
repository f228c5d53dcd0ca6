"""Webhook signing: our verifier agrees with plain HMAC and with what the sandbox really sends."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from offergrid import OffergridClient
from offergrid.errors import InvalidSignatureError, StaleTimestampError, WebhookVerificationError
from offergrid.models import (
    CreateOrderRequest,
    OrderCancelled,
    OrderStatusChanged,
    WebhookEvent,
    parse_webhook_event,
)
from offergrid.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_webhook, verify_webhook
from offergrid_sandbox.config import SandboxConfig, SimulationConfig
from tests.fixtures_sandbox import *  # noqa: F403
from tests.fixtures_sandbox import SANDBOX_START, WebhookReceiver

SECRET = "whsec_test_signing"
NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
TS = int(NOW.timestamp())
BODY = (
    b'{"event":"order.status_changed","orderId":"ord-1","itemId":"item-1","newStatus":"accepted"}'
)


def plain_hmac(secret: str, timestamp: str, body: bytes) -> str:
    """The documented signature computed by hand: hex HMAC-SHA256 over "{timestamp}.{body}"."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def test_sign_matches_the_documented_construction() -> None:
    """sign_webhook equals a hand-made HMAC of "{timestamp}.{body}" for str, bytes, SecretStr."""
    expected = plain_hmac(SECRET, str(TS), BODY)
    assert sign_webhook(SECRET, TS, BODY) == expected
    assert sign_webhook(SECRET.encode(), TS, BODY) == expected
    assert sign_webhook(SecretStr(SECRET), TS, BODY) == expected
    assert sign_webhook(SECRET, TS + 1, BODY) != expected


def test_verify_accepts_a_good_signature_in_every_accepted_form() -> None:
    """A correct signature passes, also with a sha256= prefix, upper case, or among several."""
    good = sign_webhook(SECRET, TS, BODY)
    for form in (good, f"sha256={good}", good.upper(), f"deadbeef, {good}"):
        verify_webhook(SECRET, body=BODY, signature=form, timestamp=str(TS), now=NOW)


@pytest.mark.parametrize(
    ("body", "signature", "timestamp", "secret"),
    [
        (BODY + b" ", None, str(TS), SECRET),  # body changed after signing
        (BODY, None, str(TS), "whsec_other"),  # wrong secret
        (BODY, None, str(TS + 1), SECRET),  # timestamp swapped
        (BODY, "", str(TS), SECRET),  # signature missing
        (BODY, "zz", str(TS), SECRET),  # signature malformed
        (BODY, None, "", SECRET),  # timestamp missing
        (BODY, None, "2026-03-02T14:00:00Z", SECRET),  # timestamp not Unix seconds
    ],
)
def test_verify_rejects_bad_signatures(
    body: bytes, signature: str | None, timestamp: str, secret: str
) -> None:
    """A changed body, wrong secret, swapped or missing timestamp, or bad signature is refused."""
    sent = sign_webhook(SECRET, TS, BODY) if signature is None else signature
    with pytest.raises(InvalidSignatureError) as caught:
        verify_webhook(secret, body=body, signature=sent, timestamp=timestamp, now=NOW)
    assert SECRET not in str(caught.value) and "whsec_other" not in str(caught.value)


@pytest.mark.parametrize(
    ("offset", "ok"), [(-300, True), (300, True), (-301, False), (301, False), (-86400, False)]
)
def test_timestamp_tolerance_is_five_minutes_either_way(offset: int, ok: bool) -> None:
    """A signed delivery up to 300 s old or early passes; beyond that it is stale."""
    sent_at = TS + offset
    signature = sign_webhook(SECRET, sent_at, BODY)
    if ok:
        verify_webhook(SECRET, body=BODY, signature=signature, timestamp=str(sent_at), now=NOW)
    else:
        with pytest.raises(StaleTimestampError, match="tolerance 300 s"):
            verify_webhook(SECRET, body=BODY, signature=signature, timestamp=str(sent_at), now=NOW)


def test_stale_check_uses_the_given_tolerance() -> None:
    """A caller may widen or narrow the replay window."""
    old = TS - 600
    signature = sign_webhook(SECRET, old, BODY)
    verify_webhook(
        SECRET, body=BODY, signature=signature, timestamp=str(old), now=NOW, tolerance_s=900
    )
    with pytest.raises(WebhookVerificationError):
        verify_webhook(
            SECRET, body=BODY, signature=signature, timestamp=str(old), now=NOW, tolerance_s=60
        )


def test_empty_secret_is_refused() -> None:
    """Signing with an empty secret is a programming error, not a valid signature."""
    with pytest.raises(ValueError, match="secret"):
        sign_webhook("", TS, BODY)


# Deliveries made by the real sandbox --------------------------------------------------------------


@pytest.fixture  # type: ignore[no-redef]
def sandbox_config() -> SandboxConfig:
    """Simulated providers off, so only the changes a test makes produce webhooks."""
    return SandboxConfig(
        seed=7,
        clock="virtual",
        start_time=SANDBOX_START,
        simulation=SimulationConfig(enabled=False),
    )


def _order(offer_id: str) -> CreateOrderRequest:
    return CreateOrderRequest.model_validate(
        {
            "items": [{"offerId": offer_id}],
            "serviceAddress": {
                "street": "1 Congress Ave",
                "city": "Austin",
                "state": "TX",
                "zipCode": "78701",
                "country": "US",
            },
            "customerInfo": {
                "fullName": "Jane Buyer",
                "email": "jane@example.com",
                "phone": "+1 512 555 0100",
            },
            "metadata": {"test": True},
        }
    )


def _verified_events(sandbox: Any, receiver: WebhookReceiver, count: int) -> list[WebhookEvent]:
    """Check every received delivery with our verifier AND plain hmac, then parse it."""
    deliveries = receiver.wait_for(count)
    assert len(deliveries) >= count
    events = []
    now = sandbox.clock.now()  # the sandbox stamps deliveries with its own (virtual) clock
    for delivery in deliveries:
        signature = delivery.headers[SIGNATURE_HEADER]
        timestamp = delivery.headers[TIMESTAMP_HEADER]
        verify_webhook(
            SECRET, body=delivery.body, signature=signature, timestamp=timestamp, now=now
        )
        assert hmac.compare_digest(signature, plain_hmac(SECRET, timestamp, delivery.body))
        with pytest.raises(InvalidSignatureError):
            verify_webhook(
                "whsec_wrong", body=delivery.body, signature=signature, timestamp=timestamp, now=now
            )
        assert json.loads(delivery.body)  # compact JSON object, exactly the bytes signed
        events.append(parse_webhook_event(delivery.body))
    return events


def test_sandbox_deliveries_verify_and_parse(
    sandbox: Any, offergrid_client: OffergridClient, webhook_receiver: WebhookReceiver
) -> None:
    """Webhooks the sandbox really sends verify (ours and plain hmac) and parse to typed events."""
    sandbox.webhooks.register(webhook_receiver.url, SECRET)
    offer = offergrid_client.list_offers(zip_code="78701", category="internet")[0]
    created = offergrid_client.place_order(_order(offer.id), idempotency_key="sig-test-1")
    item_id = created.items[0].item_id
    assert item_id is not None

    sandbox.update_item_status(item_id, status="accepted", provider_notes="Looks good")
    sandbox.advance(60)
    events = _verified_events(sandbox, webhook_receiver, 1)
    assert isinstance(events[0], OrderStatusChanged)
    assert (events[0].order_id, events[0].item_id) == (created.order_id, item_id)
    assert events[0].previous_status == "pending" and events[0].new_status == "accepted"

    offergrid_client.cancel_order(created.order_id, reason="Closing moved")
    sandbox.advance(60)
    events = _verified_events(sandbox, webhook_receiver, 2)
    cancelled = events[-1]
    assert isinstance(cancelled, OrderCancelled)
    assert cancelled.cancelled_by == "reseller" and cancelled.reason == "Closing moved"
    assert len({event.dedupe_key for event in events}) == 2


def test_sandbox_delivery_is_stale_against_a_far_clock(
    sandbox: Any, offergrid_client: OffergridClient, webhook_receiver: WebhookReceiver
) -> None:
    """A genuine sandbox delivery checked an hour after it was signed is refused as stale."""
    sandbox.webhooks.register(webhook_receiver.url, SECRET)
    offer = offergrid_client.list_offers(zip_code="78701")[0]
    created = offergrid_client.place_order(_order(offer.id), idempotency_key="sig-test-2")
    offergrid_client.cancel_order(created.order_id)
    sandbox.advance(60)
    delivery = webhook_receiver.wait_for(1)[0]
    later = sandbox.clock.now() + timedelta(hours=1)
    with pytest.raises(StaleTimestampError):
        verify_webhook(
            SECRET,
            body=delivery.body,
            signature=delivery.headers[SIGNATURE_HEADER],
            timestamp=delivery.headers[TIMESTAMP_HEADER],
            now=later,
        )
