"""The sandbox core through its API: orders, idempotency, cancel, provider path, auth, faults."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from offergrid_sandbox.catalog import seed_catalog
from offergrid_sandbox.clock import RealClock
from offergrid_sandbox.config import (
    HYBRID_KEY,
    PROVIDER_KEY,
    RESELLER_KEY,
    RESELLER_TEAM,
    ApiKeyConfig,
    FaultConfig,
    SandboxConfig,
    SimulationConfig,
)
from offergrid_sandbox.events import ItemChange
from offergrid_sandbox.faults import ConnectionDropped
from offergrid_sandbox.schemas import SandboxError
from offergrid_sandbox.server import running_sandbox
from offergrid_sandbox.state import Sandbox, derive_order_status
from tests.fixtures_sandbox_core import (
    HYBRID,
    PROVIDER,
    RESELLER,
    START,
    order_body,
    place_order,
    quiet_config,
    sandbox_client,
)

CATALOG = seed_catalog(7)


def _offer(provider_id: str, category: str | None = None) -> str:
    return next(
        o["id"]
        for o in CATALOG.offers
        if o["providerId"] == provider_id
        and o["status"] == "active"
        and o["visibility"] == "public"
        and (category is None or o["category"] == category)
    )


FIBER = _offer("prv-lone-star-fiber", "internet")
POWER = _offer("prv-capital-city-utilities")
INSURANCE = _offer("prv-keystone-insurance")
OTHER_TEAM = "team-other-reseller"
OTHER_RESELLER = {"x-api-key": "og_test_other_reseller"}


def _with_other_reseller(**overrides: Any) -> SandboxConfig:
    key = ApiKeyConfig(key="og_test_other_reseller", team_id=OTHER_TEAM, role="reseller")
    return quiet_config(extra_keys=[key], **overrides)


def _move(client: Any, item_id: str, status: str, **extra: Any) -> Any:
    response = client.patch(
        f"/provider/orders/{item_id}/status", json={"status": status, **extra}, headers=PROVIDER
    )
    assert response.status_code == 200, response.text
    return response.json()


# --- orders ------------------------------------------------------------------------------


def test_create_answers_the_contract_shape() -> None:
    """Placing an order answers 201: orderId, status, items (itemId, offerId, status), createdAt."""
    with sandbox_client() as (client, _):
        response = client.post("/reseller/orders", json=order_body(FIBER, POWER), headers=RESELLER)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"orderId", "status", "items", "createdAt"}
    assert body["orderId"].startswith("ord-") and body["status"] == "pending"
    assert [i["offerId"] for i in body["items"]] == [FIBER, POWER]
    assert all(i["itemId"].startswith("item-") and i["status"] == "pending" for i in body["items"])
    assert body["createdAt"] == "2026-03-02T14:00:00.000Z"


def test_detail_has_items_with_history() -> None:
    """An order's detail has every contract field and an item history starting at pending."""
    with sandbox_client() as (client, _):
        created = place_order(
            client, FIBER, notes="Lockbox on the porch", metadata={"closingId": "c-1"}
        )
        detail = client.get(f"/reseller/orders/{created['orderId']}", headers=RESELLER).json()
    expected = {"orderId", "status", "items", "customerInfo", "serviceAddress", "notes", "metadata"}
    assert expected | {"createdAt", "updatedAt"} <= set(detail)
    item = detail["items"][0]
    item_keys = {"itemId", "offerId", "offerName", "category", "status", "scheduledFor"}
    assert item_keys | {"providerNotes", "accountNumber", "history"} <= set(item)
    assert item["offerName"] == "Lone Star Fiber 300" and item["category"] == "internet"
    assert item["history"] == [
        {
            "status": "pending",
            "timestamp": "2026-03-02T14:00:00.000Z",
            "notes": "Order validated and created",
        }
    ]
    assert detail["notes"] == "Lockbox on the porch" and detail["metadata"] == {"closingId": "c-1"}


def test_orders_are_scoped_to_the_reseller_team() -> None:
    """Another reseller team neither lists nor reads nor cancels our order."""
    with sandbox_client(_with_other_reseller()) as (client, _):
        ours = place_order(client, FIBER)
        assert client.get("/reseller/orders", headers=OTHER_RESELLER).json() == []
        peek = client.get(f"/reseller/orders/{ours['orderId']}", headers=OTHER_RESELLER)
        cancel = client.patch(f"/reseller/orders/{ours['orderId']}/cancel", headers=OTHER_RESELLER)
        listed = client.get("/reseller/orders", headers=RESELLER).json()
        hybrid_listed = client.get("/reseller/orders", headers=HYBRID).json()
    assert peek.status_code == 404 and cancel.status_code == 404
    assert [o["orderId"] for o in listed] == [ours["orderId"]]
    assert hybrid_listed == listed  # the hybrid key belongs to the same reseller team


def test_list_filters_on_the_derived_order_status() -> None:
    """GET /reseller/orders?status=... filters on the order-level status, newest first."""
    with sandbox_client() as (client, sandbox):
        first = place_order(client, FIBER)
        sandbox.advance(60)
        second = place_order(client, INSURANCE)
        _move(client, second["items"][0]["itemId"], "accepted")
        everything = client.get("/reseller/orders", headers=RESELLER).json()
        accepted = client.get(
            "/reseller/orders", params={"status": "accepted"}, headers=RESELLER
        ).json()
        pending = client.get(
            "/reseller/orders", params={"status": "pending"}, headers=RESELLER
        ).json()
    assert [o["orderId"] for o in everything] == [second["orderId"], first["orderId"]]
    assert [o["orderId"] for o in accepted] == [second["orderId"]]
    assert [o["orderId"] for o in pending] == [first["orderId"]]


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["pending"], "pending"),
        (["scheduled", "accepted"], "accepted"),
        (["active", "completed"], "completed"),
        (["active", "rejected"], "active"),
        (["cancelled", "in_progress"], "in_progress"),
        (["cancelled", "rejected"], "rejected"),
        (["failed", "cancelled"], "cancelled"),
        (["cancelled", "cancelled"], "cancelled"),
        ([], "pending"),
    ],
)
def test_order_status_derivation(statuses: list[str], expected: str) -> None:
    """An order is as far as its least advanced live item; once all ended, its first ended one."""
    assert derive_order_status(statuses) == expected


# --- idempotency -------------------------------------------------------------------------


def test_same_idempotency_key_returns_the_first_order() -> None:
    """A repeated key with the same body returns the first 201 body and creates nothing new."""
    headers = {**RESELLER, "Idempotency-Key": "closing-42:place"}
    with sandbox_client() as (client, sandbox):
        first = client.post("/reseller/orders", json=order_body(FIBER), headers=headers)
        again = client.post("/reseller/orders", json=order_body(FIBER), headers=headers)
        orders = sandbox.all_orders()
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(orders) == 1


def test_the_ignore_idempotency_key_switch_creates_an_order_per_post() -> None:
    """With the fault switch on, a resent key is read but not honoured, as a real service may."""
    headers = {**RESELLER, "Idempotency-Key": "closing-43:place"}
    with sandbox_client() as (client, sandbox):
        switched = client.put("/sandbox/faults", json={"ignore_idempotency_key": True})
        first = client.post("/reseller/orders", json=order_body(FIBER), headers=headers)
        again = client.post("/reseller/orders", json=order_body(FIBER), headers=headers)
        orders = sandbox.all_orders()
    assert switched.status_code == 200
    assert first.status_code == again.status_code == 201
    assert first.json()["orderId"] != again.json()["orderId"]
    assert "Idempotent-Replayed" not in again.headers
    assert len(orders) == 2


def test_same_key_with_another_body_is_422() -> None:
    """Reusing a key with a different body answers 422 naming the header (IETF draft semantics)."""
    headers = {**RESELLER, "Idempotency-Key": "k-1"}
    with sandbox_client() as (client, sandbox):
        client.post("/reseller/orders", json=order_body(FIBER), headers=headers)
        other = client.post("/reseller/orders", json=order_body(POWER), headers=headers)
        count = len(sandbox.all_orders())
    assert other.status_code == 422
    assert other.json()["field"] == "Idempotency-Key"
    assert count == 1


def test_idempotency_keys_are_per_team_and_expire() -> None:
    """Another team's identical key is its own; after idempotency_hours the key is fresh again."""
    config = _with_other_reseller(idempotency_hours=1.0)
    with sandbox_client(config) as (client, sandbox):
        ours = client.post(
            "/reseller/orders", json=order_body(FIBER), headers={**RESELLER, "Idempotency-Key": "k"}
        )
        theirs = client.post(
            "/reseller/orders",
            json=order_body(FIBER),
            headers={**OTHER_RESELLER, "Idempotency-Key": "k"},
        )
        sandbox.advance(3601)
        later = client.post(
            "/reseller/orders", json=order_body(FIBER), headers={**RESELLER, "Idempotency-Key": "k"}
        )
    assert theirs.json()["orderId"] != ours.json()["orderId"]
    assert later.status_code == 201 and later.json()["orderId"] != ours.json()["orderId"]
    assert "Idempotent-Replayed" not in later.headers


# --- cancellation ------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["submitted_to_provider", "accepted", "scheduled"])
def test_cancel_while_cancellable(status: str) -> None:
    """Cancel with a reason cancels every item, records it, and tells listeners who cancelled."""
    with sandbox_client() as (client, sandbox):
        seen: list[ItemChange] = []
        sandbox.listeners.append(seen.append)
        order = place_order(client, FIBER, POWER)
        _move(client, order["items"][0]["itemId"], status)
        response = client.patch(
            f"/reseller/orders/{order['orderId']}/cancel",
            json={"reason": "Closing fell through"},
            headers=RESELLER,
        )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "cancelled"
    assert all(i["status"] == "cancelled" for i in body["items"])
    assert body["items"][0]["history"][-1]["notes"] == "Closing fell through"
    cancels = [c for c in seen if c.new_status == "cancelled"]
    assert len(cancels) == 2
    assert all(c.cancelled_by == "reseller" and c.reason == "Closing fell through" for c in cancels)


def test_cancel_without_a_body() -> None:
    """The reference's bodiless PATCH cancels too."""
    with sandbox_client() as (client, _):
        order = place_order(client, FIBER)
        response = client.patch(f"/reseller/orders/{order['orderId']}/cancel", headers=RESELLER)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"


@pytest.mark.parametrize("status", ["in_progress", "completed", "active"])
def test_cancel_refused_once_work_started(status: str) -> None:
    """An item in progress or done blocks cancellation with the documented 409 body."""
    with sandbox_client() as (client, _):
        order = place_order(client, FIBER, POWER)
        item_id = order["items"][1]["itemId"]
        _move(client, item_id, status)
        response = client.patch(
            f"/reseller/orders/{order['orderId']}/cancel", json={}, headers=RESELLER
        )
        after = client.get(f"/reseller/orders/{order['orderId']}", headers=RESELLER).json()
    assert response.status_code == 409
    assert response.json() == {
        "statusCode": 409,
        "message": f"Order cannot be cancelled: item {item_id} is {status}",
        "error": "Conflict",
    }
    assert after["items"][0]["status"] == "pending"  # nothing was cancelled


def test_cancel_skips_items_that_already_ended() -> None:
    """A rejected item stays rejected while the rest of the order is cancelled."""
    with sandbox_client() as (client, _):
        order = place_order(client, FIBER, POWER)
        _move(client, order["items"][0]["itemId"], "rejected", providerNotes="No capacity")
        response = client.patch(f"/reseller/orders/{order['orderId']}/cancel", headers=RESELLER)
    statuses = [i["status"] for i in response.json()["items"]]
    assert response.status_code == 200 and statuses == ["rejected", "cancelled"]


def test_cancel_is_idempotent_but_not_for_ended_orders() -> None:
    """Cancelling a cancelled order answers it again; an all-rejected order answers 409."""
    with sandbox_client() as (client, _):
        order = place_order(client, FIBER)
        url = f"/reseller/orders/{order['orderId']}/cancel"
        first = client.patch(url, headers=RESELLER)
        second = client.patch(url, headers=RESELLER)
        rejected = place_order(client, POWER)
        _move(client, rejected["items"][0]["itemId"], "rejected")
        refused = client.patch(f"/reseller/orders/{rejected['orderId']}/cancel", headers=RESELLER)
    assert second.status_code == 200 and second.json() == first.json()
    assert refused.status_code == 409 and "is rejected" in refused.json()["message"]


# --- the provider path -------------------------------------------------------------------


def test_provider_update_records_history_and_account_number() -> None:
    """Each update appends history with notes and schedule; completion assigns an account number."""
    with sandbox_client() as (client, _):
        order = place_order(client, FIBER)
        item_id = order["items"][0]["itemId"]
        _move(client, item_id, "accepted", providerNotes="We can serve this address")
        _move(
            client,
            item_id,
            "scheduled",
            providerNotes="Install Tue 8am-12pm",
            scheduledFor="2026-03-10T13:00:00Z",
        )
        done = _move(client, item_id, "completed")
        detail = client.get(f"/reseller/orders/{order['orderId']}", headers=RESELLER).json()
    item = detail["items"][0]
    assert [h["status"] for h in item["history"]] == [
        "pending",
        "accepted",
        "scheduled",
        "completed",
    ]
    assert item["history"][2]["scheduledFor"] == "2026-03-10T13:00:00.000Z"
    assert item["history"][2]["providerNotes"] == "Install Tue 8am-12pm"
    assert item["scheduledFor"] == "2026-03-10T13:00:00.000Z"
    assert item["providerNotes"] == "Install Tue 8am-12pm"  # kept until a new note arrives
    assert item["accountNumber"] == done["accountNumber"] and item["accountNumber"].startswith(
        "LSF-"
    )
    assert detail["status"] == "completed"


def test_any_documented_jump_is_allowed_but_cancelled_is_final() -> None:
    """A provider may jump pending → active, but nothing leaves cancelled (409)."""
    with sandbox_client() as (client, _):
        order = place_order(client, FIBER, POWER)
        first, second = (i["itemId"] for i in order["items"])
        jumped = _move(client, first, "active")
        _move(client, second, "cancelled", providerNotes="Customer called us")
        revived = client.patch(
            f"/provider/orders/{second}/status", json={"status": "accepted"}, headers=PROVIDER
        )
        again = client.patch(
            f"/provider/orders/{second}/status", json={"status": "cancelled"}, headers=PROVIDER
        )
    assert jumped["status"] == "active" and jumped["accountNumber"]
    assert revived.status_code == 409 and revived.json()["error"] == "Conflict"
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_update_item_status_is_the_one_path_for_code_and_http() -> None:
    """Operator calls in code and team-scoped calls share one rule: unknown or foreign items 404."""
    with sandbox_client() as (client, sandbox):
        order = place_order(client, FIBER)
        item_id = order["items"][0]["itemId"]
        moved = sandbox.update_item_status(
            item_id, status="submitted_to_provider", provider_notes="Routed"
        )
        with pytest.raises(SandboxError) as foreign:
            sandbox.update_item_status(item_id, status="accepted", team_id="prv-metro-5g-home")
        with pytest.raises(SandboxError) as unknown:
            sandbox.update_item_status("item-nope", status="accepted")
        owned = sandbox.update_item_status(
            item_id, status="accepted", team_id="prv-lone-star-fiber"
        )
    assert moved["status"] == "submitted_to_provider" and owned["status"] == "accepted"
    assert foreign.value.status_code == unknown.value.status_code == 404
    assert foreign.value.message == "Order item not found or does not belong to your team"


def test_listeners_hear_every_change_in_order_outside_the_lock() -> None:
    """Creation, provider moves and cancels reach listeners in order, with the state lock free."""
    with sandbox_client() as (client, sandbox):
        seen: list[tuple[str | None, str]] = []
        lock_free: list[bool] = []

        def listener(change: ItemChange) -> None:
            seen.append((change.previous_status, change.new_status))
            # Another thread must be able to read state while we run.
            worker = threading.Thread(target=lambda: sandbox.all_orders())
            worker.start()
            worker.join(timeout=2)
            lock_free.append(not worker.is_alive())

        sandbox.listeners.append(listener)
        order = place_order(client, FIBER)
        item_id = order["items"][0]["itemId"]
        _move(client, item_id, "accepted")
        _move(client, item_id, "scheduled", scheduledFor="2026-03-09T15:00:00Z")
        client.patch(f"/reseller/orders/{order['orderId']}/cancel", headers=RESELLER)
    assert seen == [
        (None, "pending"),
        ("pending", "accepted"),
        ("accepted", "scheduled"),
        ("scheduled", "cancelled"),
    ]
    assert all(lock_free)


def test_listener_changes_are_delivered_after_the_current_one() -> None:
    """A listener that moves an item itself sees that change next, never nested or lost."""
    with sandbox_client() as (client, sandbox):
        seen: list[str] = []

        def auto_accept(change: ItemChange) -> None:
            seen.append(change.new_status)
            if change.new_status == "pending":
                sandbox.update_item_status(change.item_id, status="accepted")
                seen.append("returned")

        sandbox.listeners.append(auto_accept)
        place_order(client, FIBER)
    assert seen == ["pending", "returned", "accepted"]


def test_a_failing_listener_does_not_break_the_api() -> None:
    """A listener raising an exception leaves the order created and later listeners called."""
    with sandbox_client() as (client, sandbox):
        later: list[ItemChange] = []

        def broken(change: ItemChange) -> None:
            raise RuntimeError("listener bug")

        sandbox.listeners[:0] = [broken]
        sandbox.listeners.append(later.append)
        response = client.post("/reseller/orders", json=order_body(FIBER), headers=RESELLER)
    assert response.status_code == 201 and len(later) == 1


def test_test_mode_orders_are_marked_and_hidden_from_real_provider_keys() -> None:
    """metadata.test marks the order; only the operator (simulated providers) sees its items."""
    lone_star = {"x-api-key": "og_provider_prv-lone-star-fiber"}
    with sandbox_client() as (client, sandbox):
        seen: list[ItemChange] = []
        sandbox.listeners.append(seen.append)
        created = place_order(client, FIBER, metadata={"test": True})
        item_id = created["items"][0]["itemId"]
        detail = client.get(f"/reseller/orders/{created['orderId']}", headers=RESELLER).json()
        team_view = client.get(f"/provider/orders/{item_id}", headers=lone_star)
        operator_view = client.get(f"/provider/orders/{item_id}", headers=PROVIDER)
    assert created["test"] is True and detail["test"] is True
    assert team_view.status_code == 404 and operator_view.status_code == 200
    assert seen[0].test is True


# --- simulated providers through the sandbox -----------------------------------------------


def test_simulated_providers_fulfil_orders_over_virtual_weeks() -> None:
    """With simulation on, advancing three weeks takes a fibre order from pending to active."""
    config = quiet_config(simulation=SimulationConfig(rejection_rate=0, failure_rate=0))
    with sandbox_client(config) as (client, _):
        order = place_order(client, FIBER, INSURANCE)
        client.post("/sandbox/clock/advance", json={"seconds": 21 * 86_400})
        detail = client.get(f"/reseller/orders/{order['orderId']}", headers=RESELLER).json()
    assert [i["status"] for i in detail["items"]] == ["active", "active"]
    assert detail["items"][0]["scheduledFor"] and detail["items"][0]["accountNumber"]


def test_put_simulation_switches_the_providers_off() -> None:
    """PUT /sandbox/simulation {enabled: false} leaves new orders pending however long we wait."""
    config = quiet_config(simulation=SimulationConfig())
    with sandbox_client(config) as (client, _):
        response = client.put("/sandbox/simulation", json={"enabled": False})
        order = place_order(client, FIBER)
        client.post("/sandbox/clock/advance", json={"seconds": 30 * 86_400})
        detail = client.get(f"/reseller/orders/{order['orderId']}", headers=RESELLER).json()
        shown = client.get("/sandbox/simulation").json()
    assert response.status_code == 200 and shown["enabled"] is False
    assert detail["status"] == "pending"


# --- auth --------------------------------------------------------------------------------


def test_roles_open_their_own_routes() -> None:
    """Reseller keys use reseller routes, provider keys provider routes, hybrid both."""
    with sandbox_client() as (client, _):
        answers = {
            "reseller on reseller": client.get("/reseller/catalog", headers=RESELLER).status_code,
            "provider on provider": client.get("/provider/offers", headers=PROVIDER).status_code,
            "hybrid on reseller": client.get("/reseller/catalog", headers=HYBRID).status_code,
            "hybrid on provider": client.get("/provider/orders", headers=HYBRID).status_code,
        }
        refused = client.get("/reseller/catalog", headers=PROVIDER)
    assert set(answers.values()) == {200}
    assert refused.status_code == 403
    assert refused.json() == {
        "statusCode": 403,
        "message": "Forbidden - Reseller role required",
        "error": "Forbidden",
    }


def test_header_name_is_case_insensitive_on_the_wire() -> None:
    """X-API-KEY is the same header as x-api-key, as HTTP says."""
    with sandbox_client() as (client, _):
        response = client.get("/reseller/catalog", headers={"X-API-KEY": RESELLER_KEY})
    assert response.status_code == 200


def test_keys_route_lists_the_local_keys_but_not_configured_extras() -> None:
    """GET /sandbox/keys shows the three documented keys and one per provider, never extra keys."""
    with sandbox_client(_with_other_reseller()) as (client, _):
        keys = client.get("/sandbox/keys").json()
    shown = {k["key"] for k in keys}
    assert {RESELLER_KEY, PROVIDER_KEY, HYBRID_KEY} <= shown
    assert "og_provider_prv-lone-star-fiber" in shown
    assert len(keys) == 3 + len(CATALOG.providers)
    assert "og_test_other_reseller" not in shown


def test_keys_never_appear_in_reprs() -> None:
    """The key ring and the sandbox print without any key material."""
    sandbox = Sandbox(_with_other_reseller())
    text = repr(sandbox) + repr(sandbox.keys)
    assert RESELLER_KEY not in text and "og_test_other_reseller" not in text


# --- sandbox-only routes -----------------------------------------------------------------


def test_clock_routes() -> None:
    """GET /sandbox/clock shows virtual time; advancing moves it and runs due timers."""
    with sandbox_client() as (client, sandbox):
        ran: list[str] = []
        sandbox.clock.call_later(timedelta(hours=1), lambda: ran.append("tick"))
        before = client.get("/sandbox/clock").json()
        advanced = client.post("/sandbox/clock/advance", json={"seconds": 7200}).json()
    assert before == {
        "now": "2026-03-02T14:00:00.000Z",
        "virtual": True,
        "pendingTimers": 1,
        "nextDue": "2026-03-02T15:00:00.000Z",
    }
    assert advanced["ran"] == 1 and advanced["now"] == "2026-03-02T16:00:00.000Z"
    assert ran == ["tick"]


def test_sandbox_orders_shows_every_team() -> None:
    """GET /sandbox/orders lists all teams' orders with their reseller team."""
    with sandbox_client(_with_other_reseller()) as (client, _):
        place_order(client, FIBER)
        client.post("/reseller/orders", json=order_body(POWER), headers=OTHER_RESELLER)
        everything = client.get("/sandbox/orders").json()
    assert sorted(o["resellerTeamId"] for o in everything) == sorted([RESELLER_TEAM, OTHER_TEAM])


def test_request_counts_by_endpoint_template() -> None:
    """GET /sandbox/requests counts API calls by method, path template and status."""
    with sandbox_client() as (client, _):
        order = place_order(client, FIBER)
        client.get(f"/reseller/orders/{order['orderId']}", headers=RESELLER)
        client.get("/reseller/orders/ord-missing", headers=RESELLER)
        client.get("/reseller/catalog", headers={"x-api-key": "bad"})
        client.get("/sandbox/clock")
        stats = client.get("/sandbox/requests").json()
    assert stats["byEndpoint"] == {
        "POST /reseller/orders": {"201": 1},
        "GET /reseller/orders/{order_id}": {"200": 1, "404": 1},
        "GET /reseller/catalog": {"401": 1},
    }
    assert stats["total"] == 4


def test_reset_starts_over() -> None:
    """POST /sandbox/reset forgets orders, counts, faults and offers created since start."""
    with sandbox_client() as (client, sandbox):
        place_order(client, FIBER)
        created = client.post("/provider/offers", json={"name": "Temp"}, headers=PROVIDER).json()
        client.put("/sandbox/faults", json={"latency_ms": 5})
        response = client.post("/sandbox/reset")
        assert response.status_code == 200
        assert client.get("/sandbox/orders").json() == []
        assert client.get("/sandbox/requests").json() == {"total": 0, "byEndpoint": {}}
        assert client.get("/sandbox/faults").json()["latency_ms"] == 0
        gone = client.get(f"/provider/offers/{created['id']}", headers=PROVIDER)
    assert gone.status_code == 404
    assert sandbox.clock.pending() == 0


def test_webhook_routes_delegate_to_the_dispatcher() -> None:
    """Registering, switching and listing deliveries go through the dispatcher; no secret shows."""
    with sandbox_client() as (client, _):
        registered = client.post(
            "/sandbox/webhooks",
            json={"url": "http://127.0.0.1:9/hooks", "secret": "whsec_topsecret"},
        )
        switches = client.put("/sandbox/webhooks/switches", json={"max_attempts": 1})
        order = place_order(client, FIBER)
        _move(client, order["items"][0]["itemId"], "accepted")
        client.post("/sandbox/clock/advance", json={"seconds": 5})
        deliveries = client.get("/sandbox/webhooks/deliveries")
        state = client.get("/sandbox/webhooks").json()
    assert registered.json() == {"url": "http://127.0.0.1:9/hooks", "registered": True}
    assert switches.json()["max_attempts"] == 1
    records = deliveries.json()
    assert [r["event"] for r in records] == ["order.status_changed"]
    assert records[0]["orderId"] == order["orderId"] and records[0]["outcome"] == "given_up"
    assert state["stats"]["given_up"] == 1
    for text in (registered.text, switches.text, deliveries.text, str(state)):
        assert "whsec_topsecret" not in text


# --- faults ------------------------------------------------------------------------------


def _statuses(fault: FaultConfig, count: int) -> list[int]:
    with sandbox_client(quiet_config(faults=fault)) as (client, _):
        return [client.get("/reseller/catalog", headers=RESELLER).status_code for _ in range(count)]


def test_error_rate_gives_5xx_with_a_body() -> None:
    """error_rate=1 answers every API call 502 or 503 with a framework-style body."""
    with sandbox_client(quiet_config(faults=FaultConfig(error_rate=1.0))) as (client, _):
        responses = [client.get("/reseller/catalog", headers=RESELLER) for _ in range(20)]
        open_route = client.get("/health")
    assert {r.status_code for r in responses} == {502, 503}
    assert all(r.json()["statusCode"] == r.status_code for r in responses)
    assert all("X-RateLimit-Remaining" in r.headers for r in responses)
    assert open_route.status_code == 200


def test_faults_are_deterministic_for_a_seed() -> None:
    """Two sandboxes with one seed and a 50% error rate fail the same requests."""
    fault = FaultConfig(error_rate=0.5)
    first = _statuses(fault, 30)
    assert first == _statuses(fault, 30)
    assert 200 in first and (502 in first or 503 in first)


def test_latency_and_hangs() -> None:
    """latency_ms delays every answer; a timeout hangs timeout_seconds, then answers 504."""
    with sandbox_client() as (client, _):
        client.put("/sandbox/faults", json={"latency_ms": 80})
        started = time.monotonic()
        slow = client.get("/reseller/catalog", headers=RESELLER)
        slow_took = time.monotonic() - started
        client.put("/sandbox/faults", json={"timeout_rate": 1.0, "timeout_seconds": 0.2})
        started = time.monotonic()
        hung = client.get("/reseller/catalog", headers=RESELLER)
        hung_took = time.monotonic() - started
    assert slow.status_code == 200 and slow_took >= 0.08
    assert hung.status_code == 504 and hung_took >= 0.2


def test_committed_then_failed_answers_500_but_keeps_the_order() -> None:
    """The order is created, the answer is a 500, and a retry with the same key finds the order."""
    headers = {**RESELLER, "Idempotency-Key": "retry-me"}
    with sandbox_client() as (client, _):
        client.put("/sandbox/faults", json={"committed_then_failed_rate": 1.0})
        failed = client.post("/reseller/orders", json=order_body(FIBER), headers=headers)
        stored = client.get("/sandbox/orders").json()
        client.put("/sandbox/faults", json={})
        retried = client.post("/reseller/orders", json=order_body(FIBER), headers=headers)
    assert failed.status_code == 500 and failed.json()["statusCode"] == 500
    assert len(stored) == 1
    assert retried.status_code == 201 and retried.json()["orderId"] == stored[0]["orderId"]


def test_committed_then_dropped_in_process_raises_a_transport_error() -> None:
    """In drop mode an in-process client gets httpx.RemoteProtocolError, and the order exists."""
    with sandbox_client() as (client, sandbox):
        client.put(
            "/sandbox/faults",
            json={"committed_then_failed_rate": 1.0, "committed_then_failed_mode": "drop"},
        )
        with pytest.raises(httpx.RemoteProtocolError) as raised:
            client.post("/reseller/orders", json=order_body(FIBER), headers=RESELLER)
        stats = sandbox.request_stats()
    assert isinstance(raised.value, ConnectionDropped)
    assert len(sandbox.all_orders()) == 1
    assert stats["byEndpoint"]["POST /reseller/orders"] == {"dropped": 1}


def test_other_routes_are_not_committed_then_failed() -> None:
    """The committed-then-failed switch only touches order placement."""
    with sandbox_client() as (client, _):
        client.put("/sandbox/faults", json={"committed_then_failed_rate": 1.0})
        offer = client.post("/provider/offers", json={"name": "Unaffected"}, headers=PROVIDER)
    assert offer.status_code == 201


# --- real sockets --------------------------------------------------------------------------


@pytest.mark.slow
def test_real_server_drops_the_connection_and_hangs() -> None:
    """Over a loopback port, drop mode hangs up without an answer and a hang outlasts a timeout."""
    with running_sandbox(quiet_config()) as server, httpx.Client(base_url=server.url) as http:
        assert http.get("/health").json()["status"] == "ok"
        http.put(
            "/sandbox/faults",
            json={"committed_then_failed_rate": 1.0, "committed_then_failed_mode": "drop"},
        )
        with pytest.raises(httpx.TransportError):
            http.post("/reseller/orders", json=order_body(FIBER), headers=RESELLER)
        assert len(http.get("/sandbox/orders").json()) == 1
        http.put("/sandbox/faults", json={"timeout_rate": 1.0, "timeout_seconds": 0.6})
        with pytest.raises(httpx.ReadTimeout):
            http.get("/reseller/catalog", headers=RESELLER, timeout=0.15)
        http.put("/sandbox/faults", json={})
        assert http.get("/reseller/catalog", headers=RESELLER).status_code == 200
        assert server.sandbox is server.app.state.sandbox


def test_real_clock_runs_timers_without_a_lifespan() -> None:
    """A real-clock app used without its lifespan still runs due timers after the first request."""
    from starlette.testclient import TestClient

    from offergrid_sandbox.app import create_app

    app = create_app(quiet_config(clock="real"))
    sandbox: Sandbox = app.state.sandbox
    fired = threading.Event()
    sandbox.clock.call_later(timedelta(milliseconds=20), fired.set)
    client = TestClient(app)  # no `with`: the lifespan never runs
    try:
        assert client.get("/health").json()["clock"] == "real"
        assert fired.wait(timeout=2)
    finally:
        assert isinstance(sandbox.clock, RealClock)
        sandbox.clock.stop()


def test_start_time_pins_the_virtual_clock() -> None:
    """A virtual sandbox starts at config.start_time."""
    with sandbox_client() as (_, sandbox):
        assert sandbox.now() == START
