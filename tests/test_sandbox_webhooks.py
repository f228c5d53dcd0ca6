"""The local Offergrid's webhook delivery: event shapes, signatures, retries and switches."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.testclient import TestClient

from offergrid_sandbox.app import create_app
from offergrid_sandbox.config import SandboxConfig, WebhookConfig
from offergrid_sandbox.providers import REJECTION_REASONS
from offergrid_sandbox.webhooks import WebhookDispatcher
from tests.fixtures_sandbox import free_port, run_asgi
from tests.fixtures_simulation import (
    DAY,
    RESELLER,
    START,
    advance,
    items_of,
    make_config,
    offer_id,
    offer_ids,
    place_order,
    provider_patch,
    sandbox_of,
)

SECRET = "whsec_test_7f3a9c"
HOOK_URL = "http://receiver.local/hooks/offergrid"
COMMON = ["event", "orderId", "itemId", "previousStatus", "newStatus"]
TAIL = ["providerNotes", "timestamp"]
SHAPES = {
    "order.status_changed": [*COMMON, *TAIL],
    "order.scheduled": [*COMMON, "scheduledFor", *TAIL],
    "order.completed": [*COMMON, "accountNumber", *TAIL],
    "order.rejected": [*COMMON, "reason", *TAIL],
    "order.cancelled": ["event", "orderId", "itemId", "reason", "cancelledBy", "timestamp"],
}


@dataclass
class Hit:
    """One POST the receiver got: exact body bytes and headers."""

    body: bytes
    headers: dict[str, str]

    @property
    def payload(self) -> dict[str, Any]:
        """The decoded event."""
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    """A webhook endpoint that records every POST and answers from a script, then `default`."""

    answers: list[int] = field(default_factory=list)
    default: int = 200
    sleeps: list[float] = field(default_factory=list)  # seconds to stall, per request in order
    hits: list[Hit] = field(default_factory=list)

    def app(self) -> FastAPI:
        """The receiver as an ASGI app."""
        app = FastAPI()

        @app.post("/hooks/offergrid")
        async def hook(request: Request) -> JSONResponse:
            self.hits.append(Hit(await request.body(), dict(request.headers)))
            if self.sleeps:
                await asyncio.sleep(self.sleeps.pop(0))
            status = self.answers.pop(0) if self.answers else self.default
            return JSONResponse({"received": True}, status_code=status)

        return app

    def events(self) -> list[dict[str, Any]]:
        """Every event received, in arrival order."""
        return [hit.payload for hit in self.hits]


def verifies(hit: Hit, secret: str) -> bool:
    """Check a delivery's signature with nothing but the standard library."""
    timestamp = hit.headers["x-offergrid-timestamp"]
    message = timestamp.encode() + b"." + hit.body
    expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, hit.headers["x-offergrid-signature"])


def wire(app: FastAPI, receiver: Receiver) -> WebhookDispatcher:
    """Swap in a dispatcher that delivers to `receiver` in process, and register it."""
    sandbox = sandbox_of(app)
    sandbox.listeners.remove(sandbox.webhooks.on_change)
    dispatcher = WebhookDispatcher(sandbox.config.webhooks, http_client=TestClient(receiver.app()))
    dispatcher.attach(sandbox)
    sandbox.webhooks = dispatcher
    dispatcher.register(HOOK_URL, SECRET)
    return dispatcher


@pytest.fixture
def config() -> SandboxConfig:
    """Seed 7, virtual clock, no rejections or failures, 60 s first backoff."""
    return make_config(webhooks={"backoff_seconds": 60})


def test_default_retry_schedule_spans_about_a_day() -> None:
    """The default backoff spreads the eight attempts over about a day, as the contract says."""
    defaults = WebhookConfig()
    span = sum(defaults.backoff_seconds * 2**n for n in range(defaults.max_attempts - 1))
    assert defaults.max_attempts == 8
    assert 20 * 3600 <= span <= 28 * 3600


@pytest.fixture
def app(config: SandboxConfig) -> FastAPI:
    """A fresh sandbox app for the test's config."""
    return create_app(config)


@pytest.fixture
def http(app: FastAPI) -> Iterator[TestClient]:
    """A TestClient over the sandbox app."""
    with TestClient(app) as client:
        yield client


@pytest.fixture
def receiver() -> Receiver:
    """A receiver that answers 200."""
    return Receiver()


@pytest.fixture
def manual(app: FastAPI, http: TestClient) -> None:
    """Simulation off, so only the test's own PATCHes make events."""
    assert http.put("/sandbox/simulation", json={"enabled": False}).status_code == 200


def _one_item(app: FastAPI, http: TestClient) -> tuple[str, str]:
    order = place_order(http, [offer_id(app, "internet")])
    return order["orderId"], order["items"][0]["itemId"]


def _epoch(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())


def test_lifecycle_events_have_the_contract_shapes(
    app: FastAPI, http: TestClient, receiver: Receiver
) -> None:
    """A full success path and an instant activation give exactly the documented flat events."""
    wire(app, receiver)
    order = place_order(http, [offer_id(app, "internet"), offer_id(app, "insurance")])
    advance(http, 21 * DAY)
    internet, insurance = items_of(http, order["orderId"])
    events = receiver.events()
    assert len(events) == 8  # creation sends nothing; every later change exactly one event
    for event in events:
        assert list(event) == SHAPES[event["event"]]
        assert event["orderId"] == order["orderId"]

    for item, expected in (
        (
            internet,
            [
                ("order.status_changed", "submitted_to_provider"),
                ("order.status_changed", "accepted"),
                ("order.scheduled", "scheduled"),
                ("order.status_changed", "in_progress"),
                ("order.completed", "completed"),
                ("order.status_changed", "active"),  # completed -> active is a plain change
            ],
        ),
        (insurance, [("order.status_changed", "accepted"), ("order.completed", "active")]),
    ):
        mine = [e for e in events if e["itemId"] == item["itemId"]]
        assert [(e["event"], e["newStatus"]) for e in mine] == expected
        for event, previous, entry in zip(
            mine, item["history"][:-1], item["history"][1:], strict=True
        ):
            assert event["previousStatus"] == previous["status"]
            assert event["timestamp"] == entry["timestamp"]
            assert event["providerNotes"] == entry["providerNotes"]
            if event["event"] == "order.scheduled":
                assert event["scheduledFor"] == item["scheduledFor"]
            if event["event"] == "order.completed":
                assert event["accountNumber"] == item["accountNumber"]


@pytest.mark.parametrize("config", [make_config(simulation={"rejection_rate": 1.0})])
def test_rejected_event_carries_the_reason(
    app: FastAPI, http: TestClient, receiver: Receiver
) -> None:
    """order.rejected carries the provider's plain reason."""
    wire(app, receiver)
    place_order(http, [offer_id(app, "internet")])
    advance(http, 2 * DAY)
    last = receiver.events()[-1]
    assert last["event"] == "order.rejected"
    assert list(last) == SHAPES["order.rejected"]
    assert last["reason"] in REJECTION_REASONS
    assert last["reason"] == last["providerNotes"]


def test_cancelled_events_name_who_cancelled(
    app: FastAPI, http: TestClient, receiver: Receiver, manual: None
) -> None:
    """Reseller and provider cancellations give order.cancelled with reason and cancelledBy."""
    wire(app, receiver)
    by_reseller = place_order(http, [offer_id(app, "internet")])
    cancel_url = f"/reseller/orders/{by_reseller['orderId']}/cancel"
    response = http.patch(cancel_url, json={"reason": "Closing fell through"}, headers=RESELLER)
    assert response.status_code == 200
    _, item_id = _one_item(app, http)
    provider_patch(http, item_id, status="cancelled", providerNotes="Customer unreachable")
    advance(http, 0)
    first, second = receiver.events()
    assert first == {
        "event": "order.cancelled",
        "orderId": by_reseller["orderId"],
        "itemId": by_reseller["items"][0]["itemId"],
        "reason": "Closing fell through",
        "cancelledBy": "reseller",
        "timestamp": "2026-03-02T14:00:00.000Z",
    }
    assert list(second) == SHAPES["order.cancelled"]
    assert (second["itemId"], second["cancelledBy"]) == (item_id, "provider")
    assert second["reason"] == "Customer unreachable"


def test_signature_verifies_with_plain_hmac_over_the_exact_body(
    app: FastAPI, http: TestClient, receiver: Receiver
) -> None:
    """Each delivery is signed hex HMAC-SHA256 over "{ts}.{body}", body being compact JSON."""
    wire(app, receiver)
    place_order(http, [offer_id(app, "internet")])
    advance(http, 21 * DAY)
    assert len(receiver.hits) == 6
    for hit in receiver.hits:
        assert verifies(hit, SECRET)
        assert not verifies(hit, SECRET + "x")
        assert hit.headers["content-type"] == "application/json"
        assert hit.body == json.dumps(hit.payload, separators=(",", ":")).encode()
        # Sent as soon as the change happened, so the signing time is the event's own second.
        assert int(hit.headers["x-offergrid-timestamp"]) == _epoch(hit.payload["timestamp"])


def test_failed_attempts_are_retried_with_backoff_then_delivered(
    app: FastAPI, http: TestClient, manual: None
) -> None:
    """500, 500, then 200: attempts at t, t+60 s, t+180 s on the sandbox clock, each re-signed."""
    receiver = Receiver(answers=[500, 500])
    dispatcher = wire(app, receiver)
    _, item_id = _one_item(app, http)
    provider_patch(http, item_id, status="accepted")
    advance(http, 59)
    assert len(receiver.hits) == 1
    advance(http, 1)
    assert len(receiver.hits) == 2
    advance(http, 120)
    assert len(receiver.hits) == 3
    advance(http, DAY)
    assert len(receiver.hits) == 3
    t0 = int(START.timestamp())
    stamps = [int(hit.headers["x-offergrid-timestamp"]) for hit in receiver.hits]
    assert stamps == [t0, t0 + 60, t0 + 180]
    assert all(verifies(hit, SECRET) for hit in receiver.hits)
    assert len({hit.headers["x-offergrid-signature"] for hit in receiver.hits}) == 3
    assert len({hit.body for hit in receiver.hits}) == 1  # the same event every time
    records = [(d["attempt"], d["outcome"], d["statusCode"]) for d in dispatcher.deliveries]
    assert records == [(1, "failed", 500), (2, "failed", 500), (3, "delivered", 200)]
    stats = dispatcher.stats()
    assert (stats["sent"], stats["delivered"], stats["failed"], stats["pending"]) == (3, 1, 2, 0)


def test_delivery_is_given_up_after_max_attempts(
    app: FastAPI, http: TestClient, manual: None
) -> None:
    """Always 503: eight attempts with doubling backoff, then given up, with no timer left."""
    receiver = Receiver(default=503)
    dispatcher = wire(app, receiver)
    _, item_id = _one_item(app, http)
    provider_patch(http, item_id, status="accepted")
    advance(http, 30 * DAY)
    assert len(receiver.hits) == 8
    t0 = int(START.timestamp())
    stamps = [int(hit.headers["x-offergrid-timestamp"]) - t0 for hit in receiver.hits]
    assert stamps == [0, 60, 180, 420, 900, 1860, 3780, 7620]
    assert [d["outcome"] for d in dispatcher.deliveries] == ["failed"] * 7 + ["given_up"]
    assert dispatcher.stats()["given_up"] == 1
    assert sandbox_of(app).clock.pending() == 0


def test_max_attempts_and_backoff_are_runtime_switches(
    app: FastAPI, http: TestClient, manual: None
) -> None:
    """PUT /sandbox/webhooks/switches changes the retry shape for deliveries that follow."""
    receiver = Receiver(default=500)
    wire(app, receiver)
    body = {"max_attempts": 3, "backoff_seconds": 10}
    response = http.put("/sandbox/webhooks/switches", json=body)
    assert response.status_code == 200, response.text
    assert "secret" not in response.json()
    _, item_id = _one_item(app, http)
    provider_patch(http, item_id, status="accepted")
    advance(http, DAY)
    t0 = int(START.timestamp())
    assert [int(h.headers["x-offergrid-timestamp"]) - t0 for h in receiver.hits] == [0, 10, 30]


def test_nothing_is_sent_or_queued_without_an_endpoint(
    app: FastAPI, http: TestClient, manual: None
) -> None:
    """Events raised while no endpoint is registered are counted as unrouted and never sent."""
    receiver = Receiver()
    dispatcher = wire(app, receiver)
    dispatcher.register(None)
    _, item_id = _one_item(app, http)
    provider_patch(http, item_id, status="accepted")
    advance(http, 60)
    dispatcher.register(HOOK_URL, SECRET)
    advance(http, DAY)
    assert receiver.hits == []
    assert dispatcher.stats()["unrouted"] == 1
    provider_patch(http, item_id, status="scheduled", scheduledFor="2026-03-10T15:00:00Z")
    advance(http, 0)
    assert [e["event"] for e in receiver.events()] == ["order.scheduled"]


def test_delivery_waits_for_the_clock_not_the_listener(
    app: FastAPI, http: TestClient, receiver: Receiver, manual: None
) -> None:
    """The API call that changes an item returns before any delivery; the clock sends it."""
    wire(app, receiver)
    _, item_id = _one_item(app, http)
    provider_patch(http, item_id, status="accepted")
    assert receiver.hits == []
    advance(http, 0)
    assert len(receiver.hits) == 1


def test_drop_rate_one_delivers_nothing(app: FastAPI, http: TestClient, receiver: Receiver) -> None:
    """A dropped event is never delivered, only recorded as dropped."""
    dispatcher = wire(app, receiver)
    dispatcher.set_switches(drop_rate=1.0)
    place_order(http, [offer_id(app, "internet")])
    advance(http, 21 * DAY)
    assert receiver.hits == []
    assert [d["outcome"] for d in dispatcher.deliveries] == ["dropped"] * 6
    assert dispatcher.stats()["dropped"] == 6


def test_partial_drops_are_the_same_for_the_same_seed() -> None:
    """drop_rate=0.5 drops some events, and the very same ones on a second identical run."""
    runs = []
    for _ in range(2):
        app = create_app(make_config())
        receiver = Receiver()
        with TestClient(app) as http:
            dispatcher = wire(app, receiver)
            dispatcher.set_switches(drop_rate=0.5)
            place_order(http, offer_ids(app, "internet")[:3])
            advance(http, 21 * DAY)
        runs.append(([e["timestamp"] for e in receiver.events()], dispatcher.stats()["dropped"]))
    assert runs[0] == runs[1]
    delivered, dropped = runs[0]
    assert delivered
    assert dropped > 0


def test_duplicate_rate_one_sends_every_event_twice(
    app: FastAPI, http: TestClient, receiver: Receiver
) -> None:
    """duplicate_rate=1 delivers each event twice with identical bodies."""
    dispatcher = wire(app, receiver)
    dispatcher.set_switches(duplicate_rate=1.0)
    place_order(http, [offer_id(app, "internet")])
    advance(http, 21 * DAY)
    bodies = [hit.body for hit in receiver.hits]
    assert len(bodies) == 12
    assert all(bodies.count(body) == 2 for body in bodies)
    assert dispatcher.stats()["duplicated"] == 6


def test_delay_holds_the_first_attempt(
    app: FastAPI, http: TestClient, receiver: Receiver, manual: None
) -> None:
    """delay_seconds=600 sends the event ten minutes of sandbox time after it happened."""
    dispatcher = wire(app, receiver)
    dispatcher.set_switches(delay_seconds=600)
    _, item_id = _one_item(app, http)
    provider_patch(http, item_id, status="accepted")
    advance(http, 599)
    assert receiver.hits == []
    advance(http, 1)
    (hit,) = receiver.hits
    assert int(hit.headers["x-offergrid-timestamp"]) == int(START.timestamp()) + 600
    assert hit.payload["timestamp"] == "2026-03-02T14:00:00.000Z"


@pytest.mark.parametrize(
    ("reorder", "expected"),
    [
        (False, ["submitted_to_provider", "accepted", "scheduled"]),
        (True, ["scheduled", "accepted", "submitted_to_provider"]),
    ],
)
def test_reorder_delivers_a_batch_back_to_front(
    app: FastAPI,
    http: TestClient,
    receiver: Receiver,
    manual: None,
    reorder: bool,
    expected: list[str],
) -> None:
    """With reorder on, events that fall due together arrive newest first."""
    dispatcher = wire(app, receiver)
    dispatcher.set_switches(reorder=reorder)
    _, item_id = _one_item(app, http)
    provider_patch(http, item_id, status="submitted_to_provider")
    provider_patch(http, item_id, status="accepted")
    provider_patch(http, item_id, status="scheduled", scheduledFor="2026-03-10T15:00:00Z")
    advance(http, 5)
    assert [e["newStatus"] for e in receiver.events()] == expected


def test_bad_switches_name_the_field(app: FastAPI, http: TestClient) -> None:
    """Unknown switches and out-of-range values are refused with the field named."""
    for body, name in (
        ({"drop_rate": 2}, "drop_rate"),
        ({"bogus": 1}, "bogus"),
        ({"secret": "x"}, "secret"),
        ({"max_attempts": 0}, "max_attempts"),
    ):
        response = http.put("/sandbox/webhooks/switches", json=body)
        assert response.status_code == 400, body
        assert response.json()["field"] == name
    with pytest.raises(ValueError, match=r"^reorder: "):
        sandbox_of(app).webhooks.set_switches(reorder="sometimes")
    with pytest.raises(ValueError, match=r"^url: "):
        sandbox_of(app).webhooks.register("ftp://example.com/hook")


def test_the_secret_never_shows(app: FastAPI, http: TestClient, manual: None) -> None:
    """The secret appears in no record, count, repr or sandbox route answer."""
    receiver = Receiver(answers=[500])
    dispatcher = wire(app, receiver)
    _, item_id = _one_item(app, http)
    provider_patch(http, item_id, status="accepted")
    advance(http, 600)
    assert len(receiver.hits) == 2
    seen = [
        repr(dispatcher.deliveries),
        repr(dispatcher.stats()),
        repr(dispatcher),
        repr(dispatcher.config),
        http.get("/sandbox/webhooks").text,
        http.get("/sandbox/webhooks/deliveries").text,
    ]
    assert all(SECRET not in text for text in seen)
    assert http.get("/sandbox/webhooks/deliveries").json()[0]["statusCode"] == 500


def test_reset_forgets_history_and_in_flight_retries(
    app: FastAPI, http: TestClient, manual: None
) -> None:
    """reset() clears records and counts, restores the starting config, cancels retries."""
    receiver = Receiver(default=500)
    dispatcher = wire(app, receiver)
    dispatcher.set_switches(delay_seconds=5)
    _, item_id = _one_item(app, http)
    provider_patch(http, item_id, status="accepted")
    advance(http, 5)
    assert len(receiver.hits) == 1
    dispatcher.reset()
    advance(http, DAY)
    assert len(receiver.hits) == 1
    assert dispatcher.deliveries == []
    assert dispatcher.stats()["sent"] == 0
    assert dispatcher.config.url is None
    assert dispatcher.config.delay_seconds == 0


def test_real_loopback_delivery_with_timeout_and_connection_error(
    app: FastAPI, http: TestClient, manual: None
) -> None:
    """Over real sockets: a stalled receiver times out and is retried; a closed port is an error."""
    receiver = Receiver(sleeps=[1.0])
    dispatcher = sandbox_of(app).webhooks  # the app's own, with its private httpx client
    dispatcher.set_switches(timeout_seconds=0.2, backoff_seconds=30)
    with run_asgi(receiver.app()) as base:
        http.post("/sandbox/webhooks", json={"url": f"{base}/hooks/offergrid", "secret": SECRET})
        _, item_id = _one_item(app, http)
        provider_patch(http, item_id, status="accepted")
        advance(http, 0)
        advance(http, 30)
    assert len(receiver.hits) == 2
    assert all(verifies(hit, SECRET) for hit in receiver.hits)
    outcomes = [(d["outcome"], d["statusCode"], d["error"]) for d in dispatcher.deliveries]
    assert outcomes == [("failed", None, "timeout"), ("delivered", 200, None)]

    http.post("/sandbox/webhooks", json={"url": f"http://127.0.0.1:{free_port()}/hooks"})
    provider_patch(http, item_id, status="scheduled", scheduledFor="2026-03-10T15:00:00Z")
    advance(http, 0)
    last = dispatcher.deliveries[-1]
    assert last["outcome"] == "failed"
    assert last["error"] is not None and last["error"].startswith("connection error")
    dispatcher.close()


def test_a_real_clock_delivers_on_its_own_thread() -> None:
    """On a real clock nobody advances time: the clock's thread sends the event by itself."""
    app = create_app(SandboxConfig(seed=7, clock="real"))
    receiver = Receiver()
    with TestClient(app) as http:  # the lifespan starts and stops the clock thread
        assert http.put("/sandbox/simulation", json={"enabled": False}).status_code == 200
        wire(app, receiver)
        _, item_id = _one_item(app, http)
        provider_patch(http, item_id, status="accepted")
        deadline = time.monotonic() + 5
        while not receiver.hits and time.monotonic() < deadline:
            time.sleep(0.02)
    assert [e["newStatus"] for e in receiver.events()] == ["accepted"]
    assert verifies(receiver.hits[0], SECRET)
