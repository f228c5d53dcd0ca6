"""Changes to a coordinated closing, end to end on the local Offergrid (virtual clock) and SQLite.

Moved dates, a fall-through, rejections and failed installs, contact and address corrections, and
the races between a change and an order call in flight. After every test, Offergrid's orders and
our records agree line by line (`assert_records_agree`).
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from flows.change import change_closing
from flows.coordinate import coordinate_closing
from flows.follow_up import follow_up_closing
from flows.place import place_due_orders
from flows.sync import sync_orders
from models.change import ChangeOutcome, ClosingChange, ContactChange
from models.closing import ClosingInputError, ClosingRequest, PropertyAddress
from models.tables import (
    Closing,
    ClosingStatus,
    OrderItem,
    Placement,
    PlacementState,
    PlanLineRow,
    PlanLineState,
    StatusSource,
)
from offergrid import OffergridClient
from offergrid_sandbox.config import PROVIDER_KEY, SimulationConfig
from offergrid_sandbox.server import SandboxServer
from preclose.app import crm
from preclose.app.api.webhooks import handle_delivery
from preclose.app.samples import sample_closings
from preclose.names import COORDINATE
from preclose.runtime import db_session
from preclose.settings import get_settings
from preclose.storage import repository
from tasks.orders import place_order, prepare_placements
from tests import fixtures_db, fixtures_sandbox
from tests.fixtures_flows import (
    execute_created_run,
    preclose_on_local_offergrid,
    register_deployments,
)
from tests.test_storage import (
    CLOSING_DAY,
    T0,
    closing_request,
    in_two_threads,
    line,
    lines_by_category,
    new_closing,
    placed_closing,
    plan,
)

webhook_receiver = fixtures_sandbox.webhook_receiver

# Monday 1 March 2027. The Chicago sample closes Monday 22 March (move-in Thursday 25 March, a
# rent-back); its internet is ordered on 11 March, security on 12, insurance on 15 (to be bound by
# the 17th) and its instant-activation power on 17; power and insurance start on the 22nd.
START = datetime.fromisoformat("2027-03-01T15:00:00+00:00")
NEW_CLOSING = date(2027, 4, 5)
NEW_MOVE_IN = date(2027, 4, 8)
WEBHOOK_SECRET = "whsec_changes_test"
_ENDED = {"rejected", "cancelled", "failed"}
_LINE_STATE = {
    "completed": "fulfilled",
    "active": "fulfilled",
    "rejected": "rejected",
    "failed": "failed",
    "cancelled": "cancelled",
}


@pytest.fixture
def offergrid(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prefect_harness: None
) -> Iterator[SandboxServer]:
    """A virtual-clock local Offergrid on loopback, a fresh SQLite database, Prefect's test API."""
    with preclose_on_local_offergrid(
        monkeypatch, tmp_path, start=START, webhook_secret=WEBHOOK_SECRET
    ) as server:
        yield server
        # The check every test ends with: nothing it did left the two sides apart.
        assert_records_agree(server)


# Helpers ----------------------------------------------------------------------------------------


def assert_records_agree(server: SandboxServer) -> None:
    """Offergrid's orders and our records agree line by line.

    Every Offergrid item is exactly one of our order items (same order, intent key, offer and
    status) whose plan line orders that offer and is in the matching state; every placement we
    record as placed is an Offergrid order; no category of a closing has two live orders.
    """
    theirs = {item["itemId"]: (order, item) for order in _orders(server) for item in order["items"]}
    with db_session() as session:
        items = session.exec(select(OrderItem)).all()
        placements = {p.id: p for p in session.exec(select(Placement)).all()}
        lines = {line.id: line for line in session.exec(select(PlanLineRow)).all()}
    sent = [item for item in items if item.offergrid_item_id is not None]
    assert sorted(item.offergrid_item_id or "" for item in sent) == sorted(theirs)
    live: Counter[tuple[Any, str]] = Counter()
    for item in sent:
        order, wire = theirs[item.offergrid_item_id or ""]
        placement = placements[item.placement_id]
        line = lines[item.plan_line_id]
        assert placement.state == PlacementState.placed
        assert placement.offergrid_order_id == order["orderId"]
        assert order["metadata"]["preclose_intent"] == placement.intent_key
        assert item.offer_id == wire["offerId"] == line.offer_id
        assert item.status == wire["status"], (line.category, item.status, wire["status"])
        assert str(line.state) == _LINE_STATE.get(wire["status"], "placed"), line.category
        if wire["status"] not in _ENDED:
            live[(placement.closing_id, line.category)] += 1
    for item in items:
        if item.offergrid_item_id is None:
            assert placements[item.placement_id].state != PlacementState.placed
    placed_orders = {
        p.offergrid_order_id for p in placements.values() if p.state == PlacementState.placed
    }
    assert placed_orders == {order["orderId"] for order in _orders(server)}
    assert max(live.values(), default=0) <= 1, live


def _orders(server: SandboxServer) -> list[dict[str, Any]]:
    orders: list[dict[str, Any]] = httpx.get(f"{server.url}/sandbox/orders").json()
    return orders


def _chicago(server: SandboxServer) -> ClosingRequest:
    return sample_closings(server.sandbox.clock.now().date())[1]


def _now(server: SandboxServer) -> datetime:
    return server.sandbox.clock.now()


def _on(server: SandboxServer, day: date) -> datetime:
    """Move the sandbox clock to 15:00 UTC on `day`, place what is due and sync; returns now."""
    target = datetime.combine(day, time(15), tzinfo=UTC)
    server.sandbox.advance((target - _now(server)).total_seconds())
    place_due_orders(as_of=target)
    sync_orders(as_of=target)
    return target


def _later(server: SandboxServer, hours: float) -> datetime:
    """Let `hours` pass on the sandbox clock and sync; returns now."""
    server.sandbox.advance(hours * 3600)
    now = _now(server)
    sync_orders(as_of=now)
    return now


def _coordinated(server: SandboxServer) -> ClosingRequest:
    closing = _chicago(server)
    coordinate_closing(closing, as_of=_now(server))
    return closing


def _outbox() -> list[dict[str, Any]]:
    path = Path(os.environ["PRECLOSE_DATA_DIR"]) / "outbox.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _messages(milestone: str) -> list[dict[str, Any]]:
    return [message for message in _outbox() if message["milestone"] == milestone]


def _lines(crm_closing_id: str, category: str) -> list[PlanLineRow]:
    """Every attempt of one category of a closing, first first."""
    with db_session() as session:
        row = repository.get_closing_by_crm_id(session=session, crm_closing_id=crm_closing_id)
        assert row is not None
        return repository.list_attempts(session=session, closing_id=row.id, category=category)


def _order_of(server: SandboxServer, category: str, *, live: bool = True) -> dict[str, Any]:
    """The (live, or any) Offergrid order holding an item of `category`."""
    found = [
        order
        for order in _orders(server)
        for item in order["items"]
        if item["category"] == category and (not live or item["status"] not in _ENDED)
    ]
    assert len(found) == 1, found
    return found[0]


def _item_status(order: dict[str, Any], category: str) -> str:
    return str(next(item["status"] for item in order["items"] if item["category"] == category))


def _provider_sets(server: SandboxServer, item_id: str, status: str, notes: str) -> None:
    response = httpx.patch(
        f"{server.url}/provider/orders/{item_id}/status",
        headers={"x-api-key": PROVIDER_KEY},
        json={"status": status, "providerNotes": notes},
    )
    response.raise_for_status()


def _item_id(server: SandboxServer, category: str) -> str:
    order = _order_of(server, category)
    return str(next(i["itemId"] for i in order["items"] if i["category"] == category))


def _hold_first_post(monkeypatch: pytest.MonkeyPatch, until: Callable[[], bool]) -> threading.Event:
    """Make the first order call wait, request built, until `until()` holds; returns the event
    set when that call is about to go out (a placer that passed its checks and is mid-POST)."""
    posting = threading.Event()
    original = OffergridClient.place_order
    held = {"done": False}

    def held_post(self: OffergridClient, order: Any, *, idempotency_key: str) -> Any:
        if not held["done"]:
            held["done"] = True
            posting.set()
            deadline = datetime.now(UTC) + timedelta(seconds=30)
            while not until() and datetime.now(UTC) < deadline:
                threading.Event().wait(0.02)
        return original(self, order, idempotency_key=idempotency_key)

    monkeypatch.setattr(OffergridClient, "place_order", held_post)
    return posting


def _closing_row(crm_closing_id: str) -> Closing:
    with db_session() as session:
        row = repository.get_closing_by_crm_id(session=session, crm_closing_id=crm_closing_id)
        assert row is not None
        return row


# Dates move -------------------------------------------------------------------------------------


def test_moved_dates_move_unordered_lines_and_reorder_an_order_with_the_old_date(
    offergrid: SandboxServer,
) -> None:
    """Lines not ordered yet take their new dates; an unscheduled order carrying the old move-in
    is cancelled and ordered again (new attempt, new key) on its new date; one message each."""
    closing = _coordinated(offergrid)
    _on(offergrid, date(2027, 3, 8))
    now = _on(offergrid, date(2027, 3, 11))
    old_internet = _order_of(offergrid, "internet")
    assert _item_status(old_internet, "internet") in {
        "pending",
        "submitted_to_provider",
        "accepted",
    }

    summary = change_closing(
        closing.crm_closing_id,
        ClosingChange(closing_date=NEW_CLOSING, move_in_date=NEW_MOVE_IN),
        as_of=now,
    )
    assert_records_agree(offergrid)

    outcomes = {c.category: c.outcome for c in summary.consequences}
    assert outcomes == {
        "energy": ChangeOutcome.moved,  # an instant plan, not ordered yet
        "internet": ChangeOutcome.replaced,
        "insurance": ChangeOutcome.moved,
        "security": ChangeOutcome.moved,
    }
    assert summary.orders_cancelled == [old_internet["orderId"]]
    assert summary.orders_placed == []  # the new internet date is not due yet
    internet = _lines(closing.crm_closing_id, "internet")
    assert [(line.attempt, line.state) for line in internet] == [
        (1, PlanLineState.cancelled),
        (2, PlanLineState.planned),
    ]
    assert internet[1].placement_date == date(2027, 3, 25)  # 10 business days before move-in
    assert internet[1].service_date == NEW_MOVE_IN
    [security] = _lines(closing.crm_closing_id, "security")
    assert security.placement_date == date(2027, 3, 26) and security.state == PlanLineState.planned
    for audience, greeting in (("buyer", "Hi Priya"), ("agent", "Hi Dana")):
        [message] = [m for m in _messages("closing_changed") if m["audience"] == audience]
        assert message["body"].startswith(greeting)
        assert "Monday, April 5, 2027" in message["subject"]
        assert (
            "Internet with Metro 5G Home: the order carries the old move-in date"
            in (message["body"])
        )
        assert "Home security with HomeWatch DIY Security: not ordered yet" in message["body"]

    # On its new date the internet goes out again, under a new key, carrying the new move-in.
    _on(offergrid, date(2027, 3, 12))  # the old order date of insurance and security
    assert not any(i["category"] == "security" for o in _orders(offergrid) for i in o["items"])
    _on(offergrid, date(2027, 3, 25))
    new_internet = _order_of(offergrid, "internet")
    assert new_internet["orderId"] != old_internet["orderId"]
    assert new_internet["metadata"]["moveInDate"] == NEW_MOVE_IN.isoformat()
    assert (
        new_internet["metadata"]["preclose_intent"] != old_internet["metadata"]["preclose_intent"]
    )


def test_booked_orders_that_no_longer_fit_are_reordered_or_flagged_for_the_buyer(
    offergrid: SandboxServer,
) -> None:
    """A booked install outside the new window is cancelled and ordered again; one that cannot be
    cancelled (its order holds a live service) is flagged at risk with the buyer's call named."""
    closing = _coordinated(offergrid)
    # Skipping the 15th puts insurance (overdue) and power in one order on the 17th: both start
    # at possession on the 22nd.
    for day in (11, 12, 17):
        _on(offergrid, date(2027, 3, day))
    _later(offergrid, 72)
    internet_order = _order_of(offergrid, "internet")
    assert _item_status(internet_order, "internet") == "scheduled"
    security_order = _order_of(offergrid, "security")
    shared = _order_of(offergrid, "insurance")
    assert (_item_status(shared, "insurance"), _item_status(shared, "energy")) == (
        "accepted",
        "accepted",
    )
    # The utility switches the power on early by hand: that order now holds a live service.
    _provider_sets(offergrid, _item_id(offergrid, "energy"), "active", "Service is active")
    now = _later(offergrid, 1)

    summary = change_closing(
        closing.crm_closing_id,
        ClosingChange(closing_date=NEW_CLOSING, move_in_date=NEW_MOVE_IN),
        as_of=now,
    )
    assert_records_agree(offergrid)

    by_category = {c.category: c for c in summary.consequences}
    assert by_category["internet"].outcome == ChangeOutcome.replaced
    assert "which no longer fits" in by_category["internet"].detail
    assert by_category["security"].outcome == ChangeOutcome.replaced
    assert by_category["insurance"].outcome == ChangeOutcome.flagged
    assert by_category["insurance"].action_by == "buyer"
    assert "power in the same order is already in service" in by_category["insurance"].detail
    assert by_category["energy"].outcome == ChangeOutcome.kept
    assert sorted(summary.orders_cancelled) == sorted(
        [internet_order["orderId"], security_order["orderId"]]
    )
    assert len(summary.needs_action) == 1
    assert by_category["insurance"].detail in summary.needs_action[0]
    [insurance] = _lines(closing.crm_closing_id, "insurance")
    assert insurance.at_risk and insurance.risk_reason == summary.needs_action[0]
    assert insurance.service_date == NEW_CLOSING  # in force from the new possession
    [agent] = [m for m in _messages("closing_changed") if m["audience"] == "agent"]
    assert "the buyer needs to call" in agent["body"]


def test_date_change_while_an_order_call_is_in_flight_reorders_that_order(
    offergrid: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An order sent with the old dates while the change lands is waited for, then cancelled and
    ordered again with the new dates: no order with the old move-in survives."""
    closing = _coordinated(offergrid)
    _on(offergrid, date(2027, 3, 8))
    offergrid.sandbox.advance(3 * 86_400)
    now = _now(offergrid)
    [placement_id] = prepare_placements(None, now)
    version = _closing_row(closing.crm_closing_id).version
    posting = _hold_first_post(
        monkeypatch, lambda: _closing_row(closing.crm_closing_id).version > version
    )
    placed: list[str | None] = []
    placer = threading.Thread(target=lambda: placed.append(place_order.fn(placement_id)))
    placer.start()
    assert posting.wait(30)

    summary = change_closing(
        closing.crm_closing_id,
        ClosingChange(closing_date=NEW_CLOSING, move_in_date=NEW_MOVE_IN),
        as_of=now,
    )
    placer.join(30)
    assert_records_agree(offergrid)

    [raced] = placed
    assert raced is not None and summary.orders_cancelled == [raced]
    [order] = [o for o in _orders(offergrid) if o["orderId"] == raced]
    assert order["metadata"]["moveInDate"] == "2027-03-25"  # sent with the old dates
    assert _item_status(order, "internet") == "cancelled"
    internet = _lines(closing.crm_closing_id, "internet")
    assert [line.state for line in internet] == [PlanLineState.cancelled, PlanLineState.planned]
    assert internet[1].placement_date == date(2027, 3, 25)


# Fall-through -----------------------------------------------------------------------------------


def test_fall_through_cancels_what_it_can_and_names_what_the_buyer_must_stop(
    offergrid: SandboxServer,
) -> None:
    """The deal is off on closing day: booked installs are cancelled, power and the policy already
    in force are reported with the buyer's call to make, and nothing is ordered again."""
    closing = _coordinated(offergrid)
    for day in (11, 12, 15, 17):
        _on(offergrid, date(2027, 3, day))
    # Closing day, 9 am in Chicago: power and the policy started at midnight; the installs wait.
    now = _on(offergrid, date(2027, 3, 22))
    energy = _order_of(offergrid, "energy")
    assert _item_status(energy, "energy") == "active"
    internet = _order_of(offergrid, "internet")
    security = _order_of(offergrid, "security")

    summary = change_closing(
        closing.crm_closing_id,
        ClosingChange(fell_through=True, reason="Financing fell through"),
        as_of=now,
    )
    assert_records_agree(offergrid)

    assert summary.status == ClosingStatus.fell_through
    assert sorted(summary.orders_cancelled) == sorted([internet["orderId"], security["orderId"]])
    by_category = {c.category: c for c in summary.consequences}
    assert by_category["internet"].outcome == ChangeOutcome.cancelled
    assert by_category["security"].outcome == ChangeOutcome.cancelled
    for category in ("energy", "insurance"):
        assert by_category[category].outcome == ChangeOutcome.not_cancellable
        assert by_category[category].action_by == "buyer"
        assert "already in service" in by_category[category].detail
    assert any("Prairie Gas & Electric" in action for action in summary.needs_action)
    assert _item_status(_order_of(offergrid, "internet", live=False), "internet") == "cancelled"
    [buyer] = [m for m in _messages("closing_cancelled") if m["audience"] == "buyer"]
    assert "Power with Prairie Gas & Electric" in buyer["body"]
    assert "please call them" in buyer["body"]
    assert "Financing" not in buyer["body"]  # the CRM's reason is for the agent
    [agent] = [m for m in _messages("closing_cancelled") if m["audience"] == "agent"]
    assert "Priya needs to call them" in agent["body"]
    assert agent["body"].endswith("Reason given: Financing fell through.")

    before = len(_orders(offergrid))
    _on(offergrid, date(2027, 3, 23))
    assert len(_orders(offergrid)) == before
    # Said once: a repeated fall-through changes nothing and tells nobody again.
    again = change_closing(closing.crm_closing_id, ClosingChange(fell_through=True), as_of=now)
    assert again.orders_cancelled == [] and len(_messages("closing_cancelled")) == 2


def test_fall_through_while_an_order_is_being_placed_cancels_that_order(
    offergrid: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A placer past its live check and mid-POST when the deal falls through cancels the order
    it just placed as soon as it records it: nothing stays ordered for the closing."""
    closing = _coordinated(offergrid)
    offergrid.sandbox.advance(10 * 86_400)  # 11 March: the internet is due
    now = _now(offergrid)
    [placement_id] = prepare_placements(None, now)
    done = threading.Event()
    posting = _hold_first_post(monkeypatch, done.is_set)
    placed: list[str | None] = []
    placer = threading.Thread(target=lambda: placed.append(place_order.fn(placement_id)))
    placer.start()
    assert posting.wait(30)

    summary = change_closing(closing.crm_closing_id, ClosingChange(fell_through=True), as_of=now)
    done.set()
    placer.join(30)
    assert_records_agree(offergrid)

    assert summary.orders_cancelled == []  # the order did not exist yet when the flow looked
    [raced] = placed
    [order] = _orders(offergrid)
    assert order["orderId"] == raced
    assert {item["status"] for item in order["items"]} == {"cancelled"}
    with db_session() as session:
        placement = session.get(Placement, placement_id)
        assert placement is not None and placement.state == PlacementState.placed


# Rejections and failed installs -----------------------------------------------------------------


def test_rejection_seen_by_webhook_and_sync_repicks_the_next_offer_once(
    offergrid: SandboxServer, webhook_receiver: fixtures_sandbox.WebhookReceiver
) -> None:
    """A rejected order is re-picked once from the line's runners-up and ordered at once, though
    the webhook, a repeated follow-up and the sync all see the rejection; the agent hears why."""
    httpx.post(
        f"{offergrid.url}/sandbox/webhooks",
        json={"url": webhook_receiver.url, "secret": WEBHOOK_SECRET},
    ).raise_for_status()
    closing = _coordinated(offergrid)
    _on(offergrid, date(2027, 3, 8))
    now = _on(offergrid, date(2027, 3, 11))
    first = _lines(closing.crm_closing_id, "internet")[0]
    runner_up = first.runner_up_choices()[0]
    seen = len(webhook_receiver.received)
    _provider_sets(offergrid, _item_id(offergrid, "internet"), "rejected", "No capacity here")
    offergrid.sandbox.advance(1)  # a virtual clock delivers webhooks as it moves

    [delivery] = [
        d
        for d in webhook_receiver.wait_for(seen + 1)[seen:]
        if json.loads(d.body).get("event") == "order.rejected"
    ]
    receipt = handle_delivery(
        settings=get_settings(),
        body=delivery.body,
        signature=delivery.headers.get("x-offergrid-signature"),
        timestamp=delivery.headers.get("x-offergrid-timestamp"),
        now=_now(offergrid),
    )
    assert receipt.outcome == "applied"
    follow_up_closing(closing.crm_closing_id, as_of=now)
    follow_up_closing(closing.crm_closing_id, as_of=now)  # the trigger fired twice
    sync_orders(as_of=now + timedelta(minutes=10))

    internet = _lines(closing.crm_closing_id, "internet")
    assert [(line.attempt, line.state) for line in internet] == [
        (1, PlanLineState.rejected),
        (2, PlanLineState.placed),
    ]
    assert internet[1].offer_id == runner_up.offer_id
    assert internet[1].placement_date == date(2027, 3, 11)
    assert internet[1].runners_up == first.runners_up[1:]
    live = _order_of(offergrid, "internet")
    assert live["items"][0]["offerId"] == runner_up.offer_id
    [told] = _messages("order_repicked")
    assert told["audience"] == "agent"
    assert "No capacity here" in told["body"] and (runner_up.provider_name or "") in told["body"]


def test_rejections_stop_at_the_attempt_limit_and_flag_the_category_for_a_person(
    offergrid: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every order rejected: each category is tried at most the configured number of times, then
    flagged at risk for a person (the agent is told once); with no runner-up, at once."""
    monkeypatch.setenv("PRECLOSE_MAX_ATTEMPTS_PER_CATEGORY", "2")
    get_settings.cache_clear()
    httpx.put(
        f"{offergrid.url}/sandbox/simulation",
        json=SimulationConfig(rejection_rate=1, failure_rate=0).model_dump(),
    ).raise_for_status()
    closing = _coordinated(offergrid)
    _on(offergrid, date(2027, 3, 11))  # the internet
    _later(offergrid, 30)  # first rejection: internet re-picked
    _later(offergrid, 30)  # the re-pick rejected too: two tries, the limit

    internet = _lines(closing.crm_closing_id, "internet")
    assert [line.state for line in internet] == [
        PlanLineState.rejected,
        PlanLineState.rejected,
        PlanLineState.skipped,
    ]
    flag = internet[2]
    assert flag.offer_id is None and flag.at_risk
    assert flag.risk_reason is not None and "2 orders ended without service" in flag.risk_reason
    asked = _messages("needs_person")
    assert sorted(m["subject"] for m in asked) == ["Priya's internet needs a decision"]
    assert {m["audience"] for m in asked} == {"agent"}
    assert len(_orders(offergrid)) == 2  # the first order, and the one re-pick allowed

    # Power (its instant plan ordered on the 17th) has no runner-up: flagged at its first refusal.
    _on(offergrid, date(2027, 3, 17))
    _later(offergrid, 30)
    energy = _lines(closing.crm_closing_id, "energy")
    assert [line.state for line in energy] == [PlanLineState.rejected, PlanLineState.skipped]
    assert energy[1].at_risk and "no other offer" in (energy[1].risk_reason or "")
    assert "Priya's power needs a decision" in {m["subject"] for m in _messages("needs_person")}


def test_a_service_with_no_offer_left_needs_attention_and_a_retry_orders_it(
    offergrid: SandboxServer,
) -> None:
    """Power refused with no other offer to pick: the closing needs attention with that reason, its
    other services are still ordered and go live (it is never reported fulfilled), the agent is
    told once, and a retry orders Power again; the closing then ends fulfilled."""
    httpx.put(
        f"{offergrid.url}/sandbox/simulation",
        json=SimulationConfig(rejection_rate=0, failure_rate=0).model_dump(),
    ).raise_for_status()
    closing = _coordinated(offergrid)
    crm_id = closing.crm_closing_id
    _on(offergrid, date(2027, 3, 17))  # Power's instant plan is ordered
    _provider_sets(offergrid, _item_id(offergrid, "energy"), "rejected", "No service here")
    _later(offergrid, 1)
    energy = _lines(crm_id, "energy")
    assert [line.state for line in energy] == [PlanLineState.rejected, PlanLineState.skipped]
    assert energy[1].at_risk
    held = _closing_row(crm_id)
    assert held.status == ClosingStatus.needs_attention and held.attention_at is not None
    assert held.attention_reason == energy[1].risk_reason
    assert "Power: no other offer" in (held.attention_reason or "")

    # Move-in and after: the services on their way go on while the closing waits for a person.
    for day in (date(2027, 3, 24), date(2027, 4, 7), date(2027, 4, 30)):
        _on(offergrid, day)
    lines = {line.category: line.state for line in _lines_of(crm_id)}
    others = {category: state for category, state in lines.items() if category != "energy"}
    assert len(others) >= 3 and set(others.values()) == {PlanLineState.fulfilled}
    assert _closing_row(crm_id).status == ClosingStatus.needs_attention
    told = [m for m in _outbox() if m["milestone"] in ("needs_person", "needs_attention")]
    assert [(m["milestone"], m["audience"]) for m in told] == [("needs_person", "agent")]

    register_deployments(COORDINATE)
    run_id = crm.retry_closing(crm_id)
    assert crm.retry_closing(crm_id) == run_id  # a resend: the same run
    assert execute_created_run(run_id, offergrid).is_completed()
    energy = _lines(crm_id, "energy")
    assert [line.state for line in energy] == [PlanLineState.rejected, PlanLineState.placed]
    assert _closing_row(crm_id).attention_reason is None

    _later(offergrid, 24)
    assert _lines(crm_id, "energy")[-1].state == PlanLineState.fulfilled
    assert _closing_row(crm_id).status == ClosingStatus.fulfilled


def test_a_closing_waiting_for_a_person_still_orders_its_other_services_on_their_dates(
    offergrid: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One order per service allowed: the internet refused on 11 March puts the closing in needs
    attention at once, and security, insurance and power are still ordered on their own dates
    (12, 15 and 17 March) and followed to live; the reasons of two such services are both kept."""
    monkeypatch.setenv("PRECLOSE_MAX_ATTEMPTS_PER_CATEGORY", "1")
    get_settings.cache_clear()
    closing = _coordinated(offergrid)
    crm_id = closing.crm_closing_id
    _on(offergrid, date(2027, 3, 11))
    _provider_sets(offergrid, _item_id(offergrid, "internet"), "rejected", "No capacity")
    _later(offergrid, 1)
    held = _closing_row(crm_id)
    assert held.status == ClosingStatus.needs_attention
    assert (held.attention_reason or "").startswith("Internet: ")
    assert {o["items"][0]["category"] for o in _orders(offergrid)} == {"internet"}

    for day in (date(2027, 3, 12), date(2027, 3, 15), date(2027, 3, 17)):
        _on(offergrid, day)
    ordered = sorted({i["category"] for o in _orders(offergrid) for i in o["items"]})
    assert ordered == ["energy", "insurance", "internet", "security"]
    _provider_sets(offergrid, _item_id(offergrid, "security"), "rejected", "Not in this area")
    _later(offergrid, 1)
    reason = _closing_row(crm_id).attention_reason or ""
    assert reason.startswith("Internet: ") and " Home security: " in reason

    _on(offergrid, date(2027, 4, 30))
    lines = {line.category: line.state for line in _lines_of(crm_id)}
    assert lines["energy"] == lines["insurance"] == PlanLineState.fulfilled
    assert lines["internet"] == lines["security"] == PlanLineState.skipped
    assert _closing_row(crm_id).status == ClosingStatus.needs_attention


def _lines_of(crm_closing_id: str) -> list[PlanLineRow]:
    """The closing's current lines."""
    with db_session() as session:
        row = repository.get_closing_by_crm_id(session=session, crm_closing_id=crm_closing_id)
        assert row is not None
        return repository.list_plan_lines(session=session, closing_id=row.id)


def test_failed_install_is_told_and_repicked(offergrid: SandboxServer) -> None:
    """An installation that fails is told to buyer and agent and ordered from the next offer."""
    closing = _coordinated(offergrid)
    _on(offergrid, date(2027, 3, 8))
    _on(offergrid, date(2027, 3, 11))
    item_id = _item_id(offergrid, "internet")
    _provider_sets(offergrid, item_id, "in_progress", "Technician on site")
    _provider_sets(offergrid, item_id, "failed", "No usable line at the address")
    _later(offergrid, 1)

    internet = _lines(closing.crm_closing_id, "internet")
    assert [line.state for line in internet] == [PlanLineState.failed, PlanLineState.placed]
    assert internet[1].offer_id == internet[0].runner_up_choices()[0].offer_id
    assert {m["audience"] for m in _messages("order_at_risk")} == {"buyer", "agent"}
    [told] = _messages("order_repicked")
    assert "couldn't complete the installation" in told["body"]
    assert "No usable line at the address" in told["body"]


# Contact and address corrections ----------------------------------------------------------------


def test_contact_correction_reaches_later_orders_and_names_the_orders_with_old_details(
    offergrid: SandboxServer,
) -> None:
    """A new phone and email are stored; orders placed later carry them; the agent alone is told
    which orders already went out with the old ones."""
    closing = _coordinated(offergrid)
    _on(offergrid, date(2027, 3, 8))
    now = _on(offergrid, date(2027, 3, 11))

    summary = change_closing(
        closing.crm_closing_id,
        ClosingChange(
            contact=ContactChange(email="priya.new@example.com", phone="+1 312 555 0199")
        ),
        as_of=now,
    )
    assert_records_agree(offergrid)

    assert summary.changed == ["buyer email", "buyer phone"]
    stale = {c.category: c for c in summary.consequences}
    assert set(stale) == {"internet"}  # the only order out by 11 March
    assert {c.outcome for c in stale.values()} == {ChangeOutcome.old_contact}
    assert "old email and phone" in stale["internet"].detail
    stored = _closing_row(closing.crm_closing_id).closing_request()
    assert (stored.buyer.email, stored.buyer.phone) == ("priya.new@example.com", "+13125550199")
    [told] = _messages("contact_changed")
    assert told["audience"] == "agent"
    assert "Internet with Metro 5G Home" in told["body"]
    assert "priya.new" not in told["body"]

    _on(offergrid, date(2027, 3, 12))
    later = _order_of(offergrid, "security")
    assert later["customerInfo"]["email"] == "priya.new@example.com"
    assert later["customerInfo"]["phone"] == "+13125550199"


def test_address_correction_replans_before_any_order_and_is_refused_after(
    offergrid: SandboxServer,
) -> None:
    """Before any order, a corrected address re-plans from the new ZIP's catalog; once an order
    went out it is refused with a message naming the address and nothing changes."""
    closing = _coordinated(offergrid)
    austin = PropertyAddress(
        street="1208 Alta Vista Avenue", city="Austin", state="TX", zip_code="78704"
    )

    summary = change_closing(
        closing.crm_closing_id, ClosingChange(address=austin), as_of=_now(offergrid)
    )
    assert_records_agree(offergrid)

    assert summary.changed == ["address (Chicago 60614 -> Austin 78704)"]
    assert {c.outcome for c in summary.consequences} == {ChangeOutcome.replanned}
    stored = _closing_row(closing.crm_closing_id)
    assert stored.zip_code == "78704"
    [energy] = _lines(closing.crm_closing_id, "energy")
    assert energy.provider_name == "Capital City Utilities"  # the Austin utility
    [told] = [m for m in _messages("closing_changed") if m["audience"] == "agent"]
    assert "corrected from 2450 N Lakeview Avenue, Chicago" in told["body"]

    now = _on(offergrid, date(2027, 3, 8))
    assert _orders(offergrid)
    state = change_closing(
        closing.crm_closing_id,
        ClosingChange(address=_chicago(offergrid).property.address),
        as_of=now,
        return_state=True,
    )
    assert state.is_failed()
    with pytest.raises(ValueError, match=r"^address: .*already went to Offergrid"):
        state.result()
    assert _closing_row(closing.crm_closing_id).zip_code == "78704"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (ClosingChange(move_in_date=date(2027, 1, 4)), "move_in_date"),
        (ClosingChange(closing_date=date(2027, 2, 1)), "closing_date"),
    ],
    ids=["move-in too early", "closing in the past"],
)
def test_bad_change_fails_with_the_field_named_and_changes_nothing(
    offergrid: SandboxServer, change: ClosingChange, field: str
) -> None:
    """A change that makes the closing invalid is refused, naming the field; nothing is stored."""
    closing = _coordinated(offergrid)
    state = change_closing(closing.crm_closing_id, change, as_of=_now(offergrid), return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match=f"^{field}"):
        state.result()
    assert _closing_row(closing.crm_closing_id).closing_date == closing.closing_date
    missing = change_closing("NO-SUCH-CLOSING", change, return_state=True)
    assert missing.is_failed()
    with pytest.raises(ValueError, match=r"^crm_closing_id: no closing"):
        missing.result()


# Storage rules, on SQLite and PostgreSQL ---------------------------------------------------------

engine = fixtures_db.engine
session = fixtures_db.session


def test_next_attempt_is_started_once_when_two_runs_repick_at_once(engine: Engine) -> None:
    """Two runs re-picking the same rejected line at once store one next attempt and one intent."""
    with Session(engine, expire_on_commit=False) as own:
        closing, items = placed_closing(own, {"internet": "off-1"})
        repository.upsert_item_status(
            session=own,
            offergrid_item_id=items["internet"].offergrid_item_id or "",
            status="rejected",
            at=T0 + timedelta(hours=1),
            source=StatusSource.sync,
        )
        rejected = lines_by_category(own, closing)["internet"]
    results = in_two_threads(
        engine,
        lambda s: repository.start_next_attempt(
            session=s,
            previous_line_id=rejected.id,
            line=line("internet", "off-2"),
            place_on=date(2026, 6, 2),
        ),
    )
    assert len([result for result in results if result is not None]) == 1
    with Session(engine) as own:
        attempts = repository.list_attempts(session=own, closing_id=closing.id, category="internet")
        assert [(a.attempt, a.state, a.offer_id) for a in attempts] == [
            (1, PlanLineState.rejected, "off-1"),
            (2, PlanLineState.placing, "off-2"),
        ]
        [intent] = repository.list_placements(
            session=own, states=[PlacementState.intent], closing_id=closing.id
        )
        assert intent.intent_key == repository.intent_key_for(
            closing_id=closing.id, due_date=date(2026, 6, 2), lines=[("internet", 2)]
        )


def test_only_placements_not_sent_are_withdrawn(session: Session) -> None:
    """An unsent intent is called off and its line cancelled; one held by a placer is not, and
    one tried before only when the caller checked Offergrid does not have it."""
    closing = new_closing(session)
    rows = repository.save_plan(
        session=session,
        closing_id=closing.id,
        plan=plan("CL-1", line("internet", "off-1"), line("energy", "off-2")),
    )
    by_category = {row.category: row for row in rows}
    unsent, tried = (
        repository.create_placement_intent(
            session=session,
            closing_id=closing.id,
            plan_line_ids=[by_category[category].id],
            due_date=CLOSING_DAY,
        )
        for category in ("internet", "energy")
    )
    lease = timedelta(minutes=2)
    assert repository.claim_placement(session=session, placement_id=tried.id, lease=lease)
    assert not repository.withdraw_placement(session=session, placement_id=tried.id, reason="x")
    repository.release_placement(session=session, placement_id=tried.id)
    assert not repository.withdraw_placement(session=session, placement_id=tried.id, reason="x")
    assert repository.withdraw_placement(
        session=session, placement_id=tried.id, reason="x", maybe_sent=True
    )

    assert repository.withdraw_placement(
        session=session, placement_id=unsent.id, reason="withdrawn: dates moved"
    )
    assert repository.claim_placement(session=session, placement_id=unsent.id, lease=lease) is None
    stored = repository.get_placement(session=session, placement_id=unsent.id)
    assert stored is not None and stored.state == PlacementState.failed
    assert lines_by_category(session, closing)["internet"].state == PlanLineState.cancelled


def test_address_is_corrected_only_while_nothing_went_out(session: Session) -> None:
    """A corrected address withdraws unsent intents and is stored; after an order it is refused
    with a message naming the address, and the stored closing stays as it was."""
    closing = new_closing(session, "CL-2")
    [row] = repository.save_plan(
        session=session, closing_id=closing.id, plan=plan("CL-2", line("internet", "off-1"))
    )
    intent = repository.create_placement_intent(
        session=session, closing_id=closing.id, plan_line_ids=[row.id], due_date=CLOSING_DAY
    )
    corrected = repository.correct_address(
        session=session, closing_id=closing.id, closing_in=closing_request("CL-2", zip_code="78704")
    )
    assert corrected.zip_code == "78704"
    withdrawn = repository.get_placement(session=session, placement_id=intent.id)
    assert withdrawn is not None and withdrawn.state == PlacementState.failed

    ordered, _ = placed_closing(session, {"internet": "off-1"}, crm_id="CL-3")
    with pytest.raises(ClosingInputError, match=r"^address: 1 order\(s\) for this closing"):
        repository.correct_address(
            session=session,
            closing_id=ordered.id,
            closing_in=closing_request("CL-3", zip_code="78704"),
        )
    unchanged = repository.get_closing(session=session, closing_id=ordered.id)
    assert unchanged is not None and unchanged.zip_code == "78701"
