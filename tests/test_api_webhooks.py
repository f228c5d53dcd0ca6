"""Offergrid's webhooks into the API: signatures, replays, strays, the sandbox's own deliveries
(duplicated, out of order), the health figures, and a closing driven to fulfilled by webhooks."""

from __future__ import annotations

import asyncio
import hmac
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prefect.events.clients import AssertingEventsClient
from prefect.events.schemas.events import Event
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from sqlmodel import col, select
from starlette.testclient import TestClient

from models.closing import ClosingRequest
from models.tables import (
    ItemStatusHistory,
    OrderItem,
    StatusSource,
    WebhookEvent,
    WebhookRefusal,
)
from offergrid.models.enums import status_rank
from offergrid.signing import sign_webhook
from offergrid_sandbox.server import SandboxServer
from offergrid_sandbox.webhooks import WebhookDispatcher
from preclose.app.api import create_api
from preclose.app.api.app import MAX_BODY_BYTES
from preclose.app.api.auth import issue_api_key
from preclose.app.samples import sample_closings
from preclose.names import (
    CLOSING_RESOURCE_PREFIX,
    COORDINATE,
    CRM_ID_LABEL,
    STATUS_CHANGED_EVENT,
)
from preclose.runtime import db_session
from preclose.settings import get_settings
from preclose.storage import repository
from preclose.storage.db import dispose_engines
from tasks.catalog import fetch_offers
from tasks.closings import store_closing
from tasks.orders import place_order, prepare_placements
from tasks.planning import plan_and_store
from tests.fixtures_db import BACKENDS, PostgresUnreachable, postgres_unavailable
from tests.fixtures_db import temporary_postgres_database as postgres_database
from tests.fixtures_flows import preclose_on_local_offergrid

SECRET = "whsec_preclose_test_3f9a"
START = datetime(2027, 3, 1, 15, 0, tzinfo=UTC)
HOOK_URL = "http://preclose.test/webhooks/offergrid"
DAY = 86_400

# Fixtures --------------------------------------------------------------------------------------


@pytest.fixture(params=[BACKENDS[0]])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite database (tests that also want PostgreSQL parametrize this)."""
    if request.param != "postgresql":
        yield f"sqlite:///{tmp_path / 'preclose.db'}"
        return
    try:
        with postgres_database() as url:
            yield url
            dispose_engines()
    except PostgresUnreachable as err:
        postgres_unavailable(str(err))


@pytest.fixture
def offergrid(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> Iterator[SandboxServer]:
    """A virtual-clock local Offergrid on loopback, and preclose configured against it."""
    with preclose_on_local_offergrid(
        monkeypatch, tmp_path, start=START, database_url=database_url, webhook_secret=SECRET
    ) as server:
        yield server


class Receiver:
    """The API as Offergrid's webhook target, with a client, a read key, and the clock it uses."""

    def __init__(self, app: FastAPI, server: SandboxServer) -> None:
        self.app = app
        self.server = server
        self.http = TestClient(app, raise_server_exceptions=False)
        with db_session() as session:
            key, _ = issue_api_key(session=session, name="monitor", read_only=True)
        self.reader = {"x-api-key": key}

    def deliver(
        self, payload: Any, *, at: datetime | None = None, secret: str = SECRET
    ) -> httpx.Response:
        """POST a body signed as Offergrid signs it, stamped `at` (default: the sandbox's now)."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        stamp = int((at or self.server.sandbox.clock.now()).timestamp())
        return self.post(body, sign_webhook(secret, stamp, body), str(stamp))

    def post(self, body: bytes, signature: str | None, timestamp: str | None) -> httpx.Response:
        """POST raw bytes with the given signature headers (None leaves a header out)."""
        headers = {"content-type": "application/json"}
        if signature is not None:
            headers["x-offergrid-signature"] = signature
        if timestamp is not None:
            headers["x-offergrid-timestamp"] = timestamp
        return self.http.post("/webhooks/offergrid", content=body, headers=headers)

    def health(self) -> dict[str, Any]:
        """The webhook health figures."""
        response = self.http.get("/health/webhooks", headers=self.reader)
        assert response.status_code == 200, response.text
        figures: dict[str, Any] = response.json()
        return figures


@pytest.fixture
def receiver(offergrid: SandboxServer) -> Receiver:
    """The API, judging webhook timestamps by the sandbox's virtual clock."""
    app = create_api()
    app.state.now = offergrid.sandbox.clock.now
    return Receiver(app, offergrid)


@pytest.fixture
def wired(receiver: Receiver) -> WebhookDispatcher:
    """The sandbox delivering its webhooks to the API in process (over an httpx client)."""
    sandbox = receiver.server.sandbox
    sandbox.listeners.remove(sandbox.webhooks.on_change)
    dispatcher = WebhookDispatcher(sandbox.config.webhooks, http_client=receiver.http)
    dispatcher.attach(sandbox)
    sandbox.webhooks = dispatcher
    dispatcher.register(HOOK_URL, SECRET)
    return dispatcher


@pytest.fixture
def prefect_events(
    monkeypatch: pytest.MonkeyPatch, prefect_harness: None
) -> Iterator[EventsWorker]:
    """Prefect's own asserting events client, which keeps every event emit_event sends.

    The events worker opens a Prefect API client as it starts (to name the run an event came
    from), and with no API configured that starts a temporary server: hence the test harness.
    """
    AssertingEventsClient.reset()
    worker = EventsWorker.instance(AssertingEventsClient)
    monkeypatch.setattr(EventsWorker, "instance", lambda *_, **__: worker)
    yield worker
    worker.drain()
    AssertingEventsClient.reset()


def emitted(worker: EventsWorker) -> list[Event]:
    """The status-changed events emitted so far (none if the worker never had one to send)."""
    worker.wait_until_empty()
    client = AssertingEventsClient.last
    events: list[Event] = getattr(client, "events", [])
    return [event for event in events if event.event == STATUS_CHANGED_EVENT]


# Helpers ---------------------------------------------------------------------------------------


def place_closing(server: SandboxServer, index: int = 1) -> ClosingRequest:
    """Store, plan and order a sample closing with preclose's own steps (no Prefect server)."""
    now = server.sandbox.clock.now()
    closing = sample_closings(now.date())[index]
    closing_id, _ = store_closing(closing, now)
    offers = fetch_offers.fn(zip_code=closing.property.address.zip5)
    plan_and_store.fn(closing_id, offers, now)
    # Everything is due 60 days on: one order with every planned line.
    for placement_id in prepare_placements(closing_id, now + timedelta(days=60)):
        place_order.fn(placement_id)
    return closing


def our_items() -> list[OrderItem]:
    """Every placed order item we hold."""
    with db_session() as session:
        return list(
            session.exec(select(OrderItem).where(col(OrderItem.offergrid_item_id).is_not(None)))
        )


def history(item_id: uuid.UUID) -> list[ItemStatusHistory]:
    """An item's recorded statuses, in the order they were recorded."""
    with db_session() as session:
        return list(
            session.exec(
                select(ItemStatusHistory)
                .where(col(ItemStatusHistory.order_item_id) == item_id)
                .order_by(col(ItemStatusHistory.recorded_at))
            )
        )


def stored_events() -> list[WebhookEvent]:
    """Every stored delivery, oldest first."""
    with db_session() as session:
        return list(session.exec(select(WebhookEvent).order_by(col(WebhookEvent.received_at))))


def refusals() -> dict[str, int]:
    """Refused deliveries counted so far, by reason."""
    with db_session() as session:
        return repository.webhook_refusals(session=session, since=START - timedelta(days=365))


def sandbox_items(server: SandboxServer) -> dict[str, str]:
    """Offergrid's own status of every item, by item ID."""
    orders = httpx.get(f"{server.url}/sandbox/orders").json()
    return {item["itemId"]: item["status"] for order in orders for item in order["items"]}


def status_event(item: OrderItem, status: str, at: datetime, **extra: Any) -> dict[str, Any]:
    """A flat order.status_changed event for one of our items."""
    return {
        "event": "order.status_changed",
        "orderId": "ord-unknown",
        "itemId": item.offergrid_item_id,
        "previousStatus": item.status,
        "newStatus": status,
        "providerNotes": "Looks good",
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        **extra,
    }


# Verification and storage ----------------------------------------------------------------------


def test_signed_event_is_stored_applied_and_announced(
    receiver: Receiver, prefect_events: EventsWorker
) -> None:
    """A correctly signed event moves the item, is stored first, and emits one Prefect event."""
    closing = place_closing(receiver.server)
    item = our_items()[0]
    at = receiver.server.sandbox.clock.now()
    response = receiver.deliver(status_event(item, "accepted", at))

    assert response.status_code == 200 and response.json() == {"outcome": "applied"}
    [stored] = stored_events()
    assert stored.signature_ok and stored.dedupe_key and stored.outcome == "applied"
    assert stored.processed_at is not None and stored.processed_at >= stored.received_at
    assert json.loads(stored.raw_body)["newStatus"] == "accepted"
    [after] = [i for i in our_items() if i.id == item.id]
    assert after.status == "accepted" and after.status_at == at
    assert [(h.status, h.source) for h in history(item.id)][-1] == (
        "accepted",
        StatusSource.webhook,
    )
    [event] = emitted(prefect_events)
    assert event.resource.id == f"{CLOSING_RESOURCE_PREFIX}{closing.crm_closing_id}"
    assert event.resource[CRM_ID_LABEL] == closing.crm_closing_id
    with db_session() as session:
        context = repository.get_item_context(
            session=session, offergrid_item_id=str(item.offergrid_item_id)
        )
    assert context is not None
    assert event.payload == {
        "item": item.offergrid_item_id,
        "status": "accepted",
        "category": context.category,
    }


def test_replay_is_a_duplicate_that_changes_nothing(
    receiver: Receiver, prefect_events: EventsWorker
) -> None:
    """The same signed delivery again answers 200, changes nothing and announces nothing."""
    place_closing(receiver.server)
    item = our_items()[0]
    body = json.dumps(status_event(item, "accepted", receiver.server.sandbox.clock.now())).encode()
    stamp = str(int(receiver.server.sandbox.clock.now().timestamp()))
    signature = sign_webhook(SECRET, int(stamp), body)
    first = receiver.post(body, signature, stamp)
    replay = receiver.post(body, signature, stamp)

    assert first.json() == {"outcome": "applied"}
    assert replay.status_code == 200 and replay.json() == {"outcome": "duplicate"}
    assert [h.status for h in history(item.id)].count("accepted") == 1
    assert len(emitted(prefect_events)) == 1
    assert [e.outcome for e in stored_events()] == ["applied", "duplicate"]


def test_older_event_never_moves_an_item_back(
    receiver: Receiver, prefect_events: EventsWorker
) -> None:
    """An event older than the item's status is stored as not newer and leaves the item be."""
    place_closing(receiver.server)
    item = our_items()[0]
    now = receiver.server.sandbox.clock.now()
    assert receiver.deliver(status_event(item, "scheduled", now)).json()["outcome"] == "applied"
    late = status_event(item, "accepted", now - timedelta(hours=3))
    assert receiver.deliver(late).json() == {"outcome": "not newer"}
    [after] = [i for i in our_items() if i.id == item.id]
    assert after.status == "scheduled"
    assert len(emitted(prefect_events)) == 1


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ("body", 401),
        ("secret", 401),
        ("timestamp", 401),
        ("no signature", 401),
        ("no timestamp", 401),
    ],
)
def test_bad_signature_is_401_and_only_counted(
    receiver: Receiver, change: str, status: int
) -> None:
    """A signature that does not match the exact body, secret and time is refused and counted."""
    body = json.dumps({"event": "order.status_changed", "itemId": "item-1"}).encode()
    stamp = int(receiver.server.sandbox.clock.now().timestamp())
    signature = sign_webhook("whsec_other" if change == "secret" else SECRET, stamp, body)
    sent_body = body.replace(b"item-1", b"item-2") if change == "body" else body
    sent_stamp = str(stamp + 1) if change == "timestamp" else str(stamp)
    response = receiver.post(
        sent_body,
        None if change == "no signature" else signature,
        None if change == "no timestamp" else sent_stamp,
    )
    assert response.status_code == status
    assert SECRET not in response.text
    assert stored_events() == []
    assert refusals() == {"bad signature": 1}
    assert receiver.health()["rejected_signatures"] == 1


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
def test_unsigned_binary_junk_is_refused_and_counted(receiver: Receiver) -> None:
    """Unsigned non-text bytes (NUL included) get 401 and only a count, on either database."""
    response = receiver.post(b"\x00\xff{junk\x00", "0" * 64, "1")
    assert response.status_code == 401
    assert stored_events() == [] and refusals() == {"bad signature": 1}


def test_a_flood_of_forgeries_grows_one_counter(receiver: Receiver) -> None:
    """Two hundred unsigned 60 KiB posts store no body: one counter row says how many came."""
    body = json.dumps({"event": "order.status_changed", "pad": "x" * 60_000}).encode()
    for _ in range(200):
        assert receiver.post(body, "0" * 64, "1").status_code == 401
    assert stored_events() == []
    with db_session() as session:
        [row] = session.exec(select(WebhookRefusal)).all()
    assert (row.reason, row.count) == ("bad signature", 200)


@pytest.mark.parametrize(
    "timestamp",
    ["\u00b2", "\u0661\u0662", "1" * 400, "-5", "12.5", " ", "1e9", "0x10"],
    ids=["superscript", "arabic-indic", "400-digits", "negative", "decimal", "blank", "exp", "hex"],
)
def test_a_timestamp_that_is_not_ascii_unix_seconds_is_401(
    receiver: Receiver, timestamp: str
) -> None:
    """Unicode digits, 400 digits, signs or decimals in the timestamp answer 401, never a 500."""
    body = b'{"event": "order.created"}'
    # Signed over the text as sent, so only the timestamp's form is wrong.
    signature = hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, "sha256").hexdigest()
    headers = {"x-offergrid-signature": signature, "content-type": "application/json"}
    response = receiver.http.post(
        "/webhooks/offergrid",
        content=body,
        headers=[*headers.items(), ("x-offergrid-timestamp", timestamp.encode())],  # type: ignore[list-item]
    )
    assert response.status_code == 401, response.text
    assert "x-offergrid-timestamp" in response.json()["detail"]


def test_too_many_signatures_is_401(receiver: Receiver) -> None:
    """A signature header holding hundreds of candidates is refused without comparing them all."""
    stamp = str(int(receiver.server.sandbox.clock.now().timestamp()))
    assert receiver.post(b"{}", ",".join(["ab" * 32] * 500), stamp).status_code == 401


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"[" * 30_000 + b"]" * 30_000, "nested deeper"),
        (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "nested deeper"),
        (b'{"event": "order.created", "n": ' + b"9" * 400 + b"}", "digits"),
        (b'{"event": "order.created", "n": NaN}', "not valid JSON"),
        (b'{"event": "order.created", "itemId": "a\\u0000b"}', "NUL"),
        (b'{"event": "order.created", "itemId": "\\ud800"}', "surrogate"),
        (b'{"event": "order.created", "\\udfff": 1}', "surrogate"),
    ],
    ids=["deep-array", "deep-object", "huge-int", "nan", "nul", "lone-surrogate", "surrogate-key"],
)
def test_hostile_json_with_a_good_signature_is_400(
    receiver: Receiver, body: bytes, why: str
) -> None:
    """Deep nesting, huge integers, NaN, NUL and lone surrogates in a signed body are a 400."""
    response = receiver.deliver(body)
    assert response.status_code == 400, response.text
    assert why in response.json()["detail"]
    assert stored_events() == [] and refusals() == {"malformed": 1}


@pytest.mark.parametrize("minutes", [-6, 6], ids=["old", "future"])
def test_stale_timestamp_is_400(receiver: Receiver, minutes: int) -> None:
    """A correctly signed delivery stamped more than 5 minutes off the clock is refused with 400."""
    at = receiver.server.sandbox.clock.now() + timedelta(minutes=minutes)
    response = receiver.deliver({"event": "order.status_changed", "itemId": "item-1"}, at=at)
    assert response.status_code == 400
    assert "x-offergrid-timestamp" in response.json()["detail"]
    assert stored_events() == [] and refusals() == {"stale timestamp": 1}
    assert receiver.health()["stale"] == 1


def test_tolerance_follows_the_injected_clock(receiver: Receiver) -> None:
    """The 5-minute window is held to app.state.now: a real-time stamp is stale on virtual time."""
    response = receiver.deliver({"event": "order.created"}, at=datetime.now(UTC))
    assert response.status_code == 400
    receiver.app.state.now = lambda: datetime.now(UTC)
    assert receiver.deliver({"event": "order.created"}, at=datetime.now(UTC)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [b'{"event": "order.status_changed", "itemId": ', b"[1, 2]", b"\xff\xfe", b""],
    ids=["truncated", "array", "not-utf8", "empty"],
)
def test_malformed_json_is_400(receiver: Receiver, body: bytes) -> None:
    """A signed body that is not a JSON object is refused with 400 and counted as malformed."""
    response = receiver.deliver(body)
    assert response.status_code == 400
    assert stored_events() == [] and refusals() == {"malformed": 1}
    assert receiver.health()["malformed"] == 1


def test_unknown_event_is_stored_and_acknowledged(
    receiver: Receiver, prefect_events: EventsWorker
) -> None:
    """An event we do not know is stored and answered 200, and changes nothing."""
    payload = {"event": "order.teleported", "orderId": "ord-1", "destination": "Mars"}
    response = receiver.deliver(payload)
    assert response.status_code == 200 and response.json() == {"outcome": "unknown event"}
    [stored] = stored_events()
    assert stored.event_type == "order.teleported" and json.loads(stored.raw_body) == payload
    assert emitted(prefect_events) == []


def test_event_for_an_item_not_ours_is_acknowledged(receiver: Receiver) -> None:
    """A known event for an item we never ordered is stored and answered 200 as unknown item."""
    event = {
        "event": "order.status_changed",
        "orderId": "ord-x",
        "itemId": "item-not-ours",
        "previousStatus": "pending",
        "newStatus": "accepted",
        "timestamp": receiver.server.sandbox.clock.now().isoformat(),
    }
    assert receiver.deliver(event).json() == {"outcome": "unknown item"}
    assert receiver.deliver({**event, "itemId": None}).json() == {"outcome": "incomplete"}


def test_without_a_secret_nothing_is_accepted(
    offergrid: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no webhook secret configured every delivery gets 503 and nothing is stored."""
    monkeypatch.delenv("PRECLOSE_OFFERGRID_WEBHOOK_SECRET")
    get_settings.cache_clear()
    http = TestClient(create_api())
    response = http.post("/webhooks/offergrid", content=b"{}")
    assert response.status_code == 503
    assert "PRECLOSE_OFFERGRID_WEBHOOK_SECRET" in response.json()["detail"]
    assert stored_events() == []


def test_oversize_webhook_is_413(receiver: Receiver) -> None:
    """A webhook body over the limit is refused with 413 before it is read into the app."""
    body = json.dumps({"event": "order.status_changed", "pad": "x" * MAX_BODY_BYTES}).encode()
    assert receiver.deliver(body).status_code == 413
    assert stored_events() == []


@pytest.mark.parametrize("applied", [False, True], ids=["before-applying", "after-applying"])
def test_a_stored_but_unfinished_event_is_finished_by_its_next_delivery(
    receiver: Receiver, prefect_events: EventsWorker, applied: bool
) -> None:
    """An event a crashed receiver stored (and maybe applied) but never finished is applied and
    announced when Offergrid delivers it again, once."""
    from offergrid.models.webhooks import parse_webhook_event

    place_closing(receiver.server)
    item = our_items()[0]
    at = receiver.server.sandbox.clock.now()
    payload = status_event(item, "accepted", at)
    with db_session() as session:  # what the receiver that died left behind
        repository.record_webhook_event(
            session=session,
            dedupe_key=parse_webhook_event(payload).dedupe_key,
            raw_body=json.dumps(payload),
            signature_ok=True,
        )
        if applied:
            repository.upsert_item_status(
                session=session,
                offergrid_item_id=str(item.offergrid_item_id),
                status="accepted",
                at=at,
                source=StatusSource.webhook,
            )
    assert receiver.deliver(payload).json() == {"outcome": "applied"}
    assert receiver.deliver(payload).json() == {"outcome": "duplicate"}
    assert [e.outcome for e in stored_events()] == ["applied", "duplicate"]
    assert [h.status for h in history(item.id)].count("accepted") == 1
    assert len(emitted(prefect_events)) == 1


# The sandbox's own deliveries ------------------------------------------------------------------


@pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
def test_duplicated_and_reordered_deliveries_end_in_offergrids_state(
    receiver: Receiver, wired: WebhookDispatcher, prefect_events: EventsWorker
) -> None:
    """With every event duplicated and batches delivered newest first, each item still ends in
    Offergrid's state, never steps back, and every change is applied and announced once."""
    place_closing(receiver.server)
    wired.set_switches(duplicate_rate=1.0, reorder=True, delay_seconds=6 * 3600)
    # Ordered early, each service still starts on its own day: closing 22 March, move-in 25th
    # (a rent-back), security up to 3 business days later.
    for _ in range(35):
        receiver.server.sandbox.advance(DAY)

    stats = wired.stats()
    assert stats["duplicated"] > 0 and stats["pending"] == 0 and stats["failed"] == 0
    truth = sandbox_items(receiver.server)
    items = our_items()
    assert {str(i.offergrid_item_id): i.status for i in items} == truth
    assert set(truth.values()) <= {"active", "completed"}
    for item in items:
        ranks = [status_rank(h.status) or 0 for h in history(item.id)]
        assert ranks == sorted(ranks), f"{item.offergrid_item_id} stepped back: {ranks}"

    figures = receiver.health()
    assert figures["duplicates"] == stats["duplicated"]
    assert figures["not_newer"] > 0  # late arrivals of older events, held back
    assert figures["received"] == stats["delivered"]
    assert figures["rejected_signatures"] == figures["stale"] == figures["unprocessed"] == 0
    assert figures["processing_ms"]["samples"] == figures["received"] - figures["duplicates"]
    # Timed per delivery and reported; how long is a benchmark's question, not a test's.
    assert 0 < figures["processing_ms"]["p50"] <= figures["processing_ms"]["p95"]
    assert len(emitted(prefect_events)) == figures["applied"]


@pytest.mark.slow  # places the closing through the flows: Prefect starts a temporary server
def test_deliveries_refused_while_unconfigured_are_retried_and_applied(
    receiver: Receiver, wired: WebhookDispatcher
) -> None:
    """Deliveries answered 503 while no secret is set are retried by Offergrid and then applied."""
    place_closing(receiver.server)
    configured = receiver.app.state.settings
    receiver.app.state.settings = configured.model_copy(update={"offergrid_webhook_secret": None})
    wired.set_switches(backoff_seconds=600)
    receiver.server.sandbox.advance(12 * 3600)
    assert wired.stats()["failed"] > 0 and wired.stats()["delivered"] == 0
    assert stored_events() == []

    receiver.app.state.settings = configured
    for _ in range(20):
        receiver.server.sandbox.advance(DAY)
    stats = wired.stats()
    assert stats["given_up"] == 0 and stats["pending"] == 0
    truth = sandbox_items(receiver.server)
    assert {str(i.offergrid_item_id): i.status for i in our_items()} == truth


# End to end ------------------------------------------------------------------------------------


async def _register_coordinate() -> None:
    from prefect.client.orchestration import get_client

    flow_name, deployment = COORDINATE.split("/")
    async with get_client() as client:
        flow_id = await client.create_flow_from_name(flow_name)
        await client.create_deployment(flow_id=flow_id, name=deployment)


def test_closing_started_over_http_is_driven_to_fulfilled_by_webhooks(
    receiver: Receiver,
    wired: WebhookDispatcher,
    prefect_events: EventsWorker,
    prefect_harness: None,
) -> None:
    """A closing POSTed over HTTP reaches fulfilled on webhooks alone: no polling of orders."""
    from flows.coordinate import coordinate_closing
    from flows.follow_up import follow_up_closing
    from flows.place import place_due_orders

    asyncio.run(_register_coordinate())
    server = receiver.server
    with db_session() as session:
        key, _ = issue_api_key(session=session, name="crm", read_only=False)
    closing = sample_closings(server.sandbox.clock.now().date())[1]
    posted = receiver.http.post(
        "/closings", json=closing.model_dump(mode="json"), headers={"x-api-key": key}
    )
    assert posted.status_code == 202, posted.text
    crm_id = closing.crm_closing_id

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        # The deployment's run would do this on a worker; the test runs the flow itself.
        coordinate_closing(closing, as_of=server.sandbox.clock.now())
        announced = 0
        for _ in range(40):
            server.sandbox.advance(DAY)
            now = server.sandbox.clock.now()
            with db_session() as session:
                row = repository.get_closing_by_crm_id(session=session, crm_closing_id=crm_id)
                assert row is not None
                due = repository.list_due_plan_lines(
                    session=session, as_of_date=now.date() + timedelta(days=1), closing_id=row.id
                )
            if due:
                place_due_orders(crm_closing_id=crm_id, as_of=now)
            events = emitted(prefect_events)
            if len(events) > announced:
                # What the FOLLOW_UP deployment's trigger runs for the closing in each event.
                assert {e.resource[CRM_ID_LABEL] for e in events[announced:]} == {crm_id}
                announced = len(events)
                if follow_up_closing(crm_closing_id=crm_id, as_of=now).fulfilled_closings:
                    break

    detail = receiver.http.get(f"/closings/{crm_id}", headers=receiver.reader).json()
    assert detail["closing"]["status"] == "fulfilled", detail
    ordered = [line for line in detail["lines"] if line["order"] is not None]
    assert ordered and all(line["state"] == "fulfilled" for line in ordered)
    assert all(line["order"]["status"] in ("completed", "active") for line in ordered)
    assert any(entry["done"] and entry["text"] == "Live" for entry in detail["timeline"])
    assert detail["requests"][0]["flow_run_id"] == posted.json()["flow_run_id"]

    requests = httpx.get(f"{server.url}/sandbox/requests").json()["byEndpoint"]
    # Webhooks, not polling, moved the items: the bulk order list was never read.
    assert "GET /reseller/orders" not in requests
    assert "GET /reseller/orders/{order_id}" not in requests
    figures = receiver.health()
    assert figures["applied"] == announced > 0
