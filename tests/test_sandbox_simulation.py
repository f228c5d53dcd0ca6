"""The local Offergrid's simulated providers, driven through the sandbox app on a virtual clock."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from offergrid_sandbox.app import create_app
from offergrid_sandbox.config import SandboxConfig
from offergrid_sandbox.providers import (
    FAILURE_REASONS,
    INSTALL_WINDOWS,
    REJECTION_REASONS,
    format_window,
    pick_install_slot,
    zone_for_zip,
)
from tests.fixtures_simulation import (
    DALLAS,
    DAY,
    FULFILLED,
    INSTANT_PATH,
    RESELLER,
    SUCCESS_PATH,
    advance,
    items_of,
    make_config,
    offer_id,
    offer_ids,
    place_order,
    provider_patch,
    sandbox_of,
    statuses,
)

CATEGORIES = ("internet", "television", "security", "energy", "insurance", "other")
CENTRAL = ZoneInfo("America/Chicago")


@pytest.fixture
def config() -> SandboxConfig:
    """Seed 7, virtual clock from Monday 2026-03-02, no rejections or failures."""
    return make_config()


@pytest.fixture
def app(config: SandboxConfig) -> FastAPI:
    """A fresh sandbox app for the test's config."""
    return create_app(config)


@pytest.fixture
def http(app: FastAPI) -> Iterator[TestClient]:
    """A TestClient over the sandbox app."""
    with TestClient(app) as client:
        yield client


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _one_of_each(app: FastAPI) -> list[str]:
    return [offer_id(app, c, instant=False if c == "energy" else None) for c in CATEGORIES]


def _histories(http: TestClient) -> list[list[tuple[Any, ...]]]:
    orders = http.get("/sandbox/orders").json()
    return [
        [
            (item["itemId"], entry["status"], entry["timestamp"], entry.get("providerNotes"))
            for item in order["items"]
            for entry in item["history"]
        ]
        for order in orders
    ]


def test_every_category_reaches_fulfilment_in_three_weeks(app: FastAPI, http: TestClient) -> None:
    """With no rejections or failures, every category's item ends active within 3 weeks."""
    order = place_order(http, _one_of_each(app))
    advance(http, 21 * DAY)
    items = items_of(http, order["orderId"])
    assert [i["status"] for i in items] == ["active"] * len(CATEGORIES)
    for item in items:
        expected = INSTANT_PATH if item["category"] == "insurance" else SUCCESS_PATH
        assert statuses(item) == expected, item["category"]
        assert item["accountNumber"]
    assert sandbox_of(app).simulator.tracked_items() == []


def test_installation_is_booked_in_a_business_hours_window(app: FastAPI, http: TestClient) -> None:
    """scheduledFor falls on a weekday window install_lead_days after acceptance; notes name it."""
    order = place_order(http, offer_ids(app, "internet")[:4])
    advance(http, 21 * DAY)
    for item in items_of(http, order["orderId"]):
        by_status = {entry["status"]: entry for entry in item["history"]}
        accepted = _parse(by_status["accepted"]["timestamp"])
        start = _parse(item["scheduledFor"])
        local = start.astimezone(CENTRAL)  # 78701 is Austin
        assert local.weekday() < 5
        window = next(w for w in INSTALL_WINDOWS if w[0] == local.hour)
        assert local.minute == 0
        # 5-10 days after acceptance, pushed to a window on or after that day.
        assert timedelta(days=4) < start - accepted < timedelta(days=13)
        notes = by_status["scheduled"]["providerNotes"]
        assert notes == f"Installation scheduled for {format_window(local, window[1])}"
        assert re.fullmatch(
            r"Installation scheduled for \w{3} \w{3} \d{1,2}, \d{1,2}[ap]m-\d{1,2}[ap]m", notes
        )
        # The appointment starts on time.
        assert by_status["in_progress"]["timestamp"] == item["scheduledFor"]


def test_the_same_seed_gives_the_same_history_whatever_else_happens() -> None:
    """Two sandboxes with one seed give an order the same history, whatever else happens."""
    runs = []
    for extra_activity in (False, True):
        app = create_app(make_config(simulation={"rejection_rate": 0.3, "failure_rate": 0.3}))
        with TestClient(app) as http:
            first = place_order(http, _one_of_each(app))
            if extra_activity:
                other = place_order(http, [offer_id(app, "internet")])
                advance(http, 3600)
                provider_patch(http, other["items"][0]["itemId"], status="rejected")
            advance(http, 21 * DAY)
            runs.append(items_of(http, first["orderId"]))
    assert runs[0] == runs[1]


def test_a_different_seed_gives_a_different_history() -> None:
    """The seed drives the draws: another seed moves the same order at other times."""
    timelines = []
    for seed in (7, 8):
        app = create_app(make_config(seed=seed))
        with TestClient(app) as http:
            order = place_order(http, [offer_id(app, "internet")])
            advance(http, 21 * DAY)
            timelines.append(
                [e["timestamp"] for e in items_of(http, order["orderId"])[0]["history"]]
            )
    assert timelines[0][0] == timelines[1][0]  # both created at START
    assert timelines[0][1:] != timelines[1][1:]


@pytest.mark.parametrize("config", [make_config(simulation={"rejection_rate": 1.0})])
def test_rejection_rate_one_rejects_everything(app: FastAPI, http: TestClient) -> None:
    """rejection_rate=1 rejects every item, from pending or submitted_to_provider, with a reason."""
    order = place_order(http, [o for c in CATEGORIES for o in offer_ids(app, c)[:2]])
    advance(http, 21 * DAY)
    items = items_of(http, order["orderId"])
    paths = {tuple(statuses(item)) for item in items}
    assert paths == {("pending", "rejected"), ("pending", "submitted_to_provider", "rejected")}
    for item in items:
        assert item["providerNotes"] in REJECTION_REASONS


@pytest.mark.parametrize("config", [make_config(simulation={"failure_rate": 1.0})])
def test_failure_rate_one_fails_every_installation(app: FastAPI, http: TestClient) -> None:
    """failure_rate=1 fails every installation from in_progress; instant offers still activate."""
    order = place_order(http, [offer_id(app, "internet"), offer_id(app, "insurance")])
    advance(http, 21 * DAY)
    internet, insurance = items_of(http, order["orderId"])
    assert statuses(internet) == [*SUCCESS_PATH[:5], "failed"]
    assert internet["providerNotes"] in FAILURE_REASONS
    assert statuses(insurance) == INSTANT_PATH


def test_instant_activation_skips_the_installation_steps(app: FastAPI, http: TestClient) -> None:
    """Insurance and instantActivation energy go pending → accepted → active within the hour."""
    dallas = "75201"
    instant = [
        offer_id(app, "insurance", zip_code=dallas),
        offer_id(app, "energy", zip_code=dallas, instant=True),
    ]
    plain = offer_id(app, "energy", zip_code=dallas, instant=False)
    order = place_order(http, [*instant, plain], address=DALLAS)
    advance(http, DAY)
    insurance, instant_energy, plain_energy = items_of(http, order["orderId"])
    assert statuses(insurance) == INSTANT_PATH
    assert statuses(instant_energy) == INSTANT_PATH
    assert statuses(plain_energy)[-1] not in FULFILLED


def test_configure_changes_instant_categories(app: FastAPI, http: TestClient) -> None:
    """PUT /sandbox/simulation with instant_activation_categories makes internet items instant."""
    body = {"instant_activation_categories": ["internet"], "rejection_rate": 0, "failure_rate": 0}
    assert http.put("/sandbox/simulation", json=body).status_code == 200
    order = place_order(http, [offer_id(app, "internet"), offer_id(app, "insurance")])
    advance(http, DAY)
    internet, insurance = items_of(http, order["orderId"])
    assert statuses(internet) == INSTANT_PATH
    assert statuses(insurance)[-1] != "active"  # no longer an instant category


def test_a_cancelled_item_is_never_touched_again(app: FastAPI, http: TestClient) -> None:
    """After a reseller cancel, the simulation leaves the item's history alone for good."""
    order = place_order(http, [offer_id(app, "internet"), offer_id(app, "security")])
    advance(http, 1800)
    response = http.patch(
        f"/reseller/orders/{order['orderId']}/cancel",
        json={"reason": "Buyer moved"},
        headers=RESELLER,
    )
    assert response.status_code == 200, response.text
    advance(http, 21 * DAY)
    for item in items_of(http, order["orderId"]):
        assert item["status"] == "cancelled"
        assert statuses(item)[-1] == "cancelled"
        assert "cancelled" not in statuses(item)[:-1]
    assert sandbox_of(app).simulator.tracked_items() == []


def test_disabled_simulation_leaves_items_pending(app: FastAPI, http: TestClient) -> None:
    """enabled=False: new items stay pending for weeks, and items in flight stop where they are."""
    moving = place_order(http, [offer_id(app, "internet")])
    advance(http, DAY)  # accepted or further by now
    reached = items_of(http, moving["orderId"])[0]["status"]
    assert reached not in ("pending", *FULFILLED)
    assert http.put("/sandbox/simulation", json={"enabled": False}).status_code == 200
    waiting = place_order(http, _one_of_each(app))
    advance(http, 21 * DAY)
    assert [i["status"] for i in items_of(http, waiting["orderId"])] == ["pending"] * len(
        CATEGORIES
    )
    assert items_of(http, moving["orderId"])[0]["status"] == reached


def test_a_human_provider_wins_over_the_simulation(app: FastAPI, http: TestClient) -> None:
    """Once a person moves an item by PATCH /provider/orders/{id}/status, the simulation lets go."""
    order = place_order(http, offer_ids(app, "internet")[:2])
    held = order["items"][0]["itemId"]
    provider_patch(http, held, status="accepted", providerNotes="Accepted by hand")
    advance(http, 21 * DAY)
    held_item, free_item = items_of(http, order["orderId"])
    assert statuses(held_item) == ["pending", "accepted"]
    assert held_item["providerNotes"] == "Accepted by hand"
    assert free_item["status"] == "active"


def test_a_human_reschedule_takes_the_item_over(app: FastAPI, http: TestClient) -> None:
    """A person re-sending `scheduled` with another date takes the item over for good."""
    order = place_order(http, [offer_id(app, "internet")])
    item_id = order["items"][0]["itemId"]
    for _ in range(48):
        if items_of(http, order["orderId"])[0]["status"] == "scheduled":
            break
        advance(http, 3600)
    later = "2026-04-20T15:00:00.000Z"
    provider_patch(http, item_id, status="scheduled", scheduledFor=later, providerNotes="Moved")
    advance(http, 30 * DAY)
    item = items_of(http, order["orderId"])[0]
    assert statuses(item) == [*SUCCESS_PATH[:4], "scheduled"]
    assert item["scheduledFor"] == later


def test_reset_turns_scheduled_steps_into_no_ops(app: FastAPI, http: TestClient) -> None:
    """simulator.reset() drops its items: steps already on the clock do nothing."""
    order = place_order(http, [offer_id(app, "internet")])
    sandbox = sandbox_of(app)
    assert sandbox.clock.pending() == 1
    sandbox.simulator.reset()
    advance(http, 21 * DAY)
    assert statuses(items_of(http, order["orderId"])[0]) == ["pending"]


def test_sandbox_reset_forgets_orders_and_restarts_simulation(
    app: FastAPI, http: TestClient
) -> None:
    """POST /sandbox/reset clears the simulator too; orders placed afterwards move again."""
    place_order(http, [offer_id(app, "internet")])
    assert http.post("/sandbox/reset").status_code == 200
    assert sandbox_of(app).simulator.tracked_items() == []
    order = place_order(http, [offer_id(app, "internet")])
    advance(http, 21 * DAY)
    assert items_of(http, order["orderId"])[0]["status"] == "active"


def test_test_mode_orders_are_fulfilled_by_simulated_providers(
    app: FastAPI, http: TestClient
) -> None:
    """metadata.test orders follow the same simulated path to fulfilment."""
    order = place_order(http, [offer_id(app, "internet")], test=True)
    advance(http, 21 * DAY)
    assert statuses(items_of(http, order["orderId"])[0]) == SUCCESS_PATH


@pytest.mark.parametrize(
    ("zip_code", "zone"),
    [
        ("78701", "America/Chicago"),
        ("10001", "America/New_York"),
        ("94110", "America/Los_Angeles"),
        ("80202", "America/Denver"),
        ("85004", "America/Phoenix"),
        ("96813", "Pacific/Honolulu"),
        (None, "America/New_York"),
        ("", "America/New_York"),
    ],
)
def test_zone_for_zip(zip_code: str | None, zone: str) -> None:
    """A ZIP's leading digits pick a plausible local time zone; unknown falls back to Eastern."""
    assert zone_for_zip(zip_code) == ZoneInfo(zone)


def test_install_slot_skips_weekends_and_past_windows() -> None:
    """A target Saturday books Monday; a window already started today is skipped."""
    rng = random.Random(0)
    saturday = date(2026, 3, 7)
    start, _ = pick_install_slot(datetime(2026, 3, 1, tzinfo=UTC), saturday, CENTRAL, rng)
    assert start.date() == date(2026, 3, 9)
    not_before = datetime(2026, 3, 10, 16, 30, tzinfo=CENTRAL)
    start, end = pick_install_slot(not_before, date(2026, 3, 10), CENTRAL, random.Random(0))
    assert start > not_before
    assert (start.hour, end) in INSTALL_WINDOWS


def test_format_window_reads_like_a_person_wrote_it() -> None:
    """Windows print as "Tue Mar 3, 8am-12pm"."""
    assert format_window(datetime(2026, 3, 3, 8, tzinfo=CENTRAL), 12) == "Tue Mar 3, 8am-12pm"
    assert format_window(datetime(2026, 3, 3, 13, tzinfo=CENTRAL), 17) == "Tue Mar 3, 1pm-5pm"


def test_a_real_clock_runs_the_simulation_on_its_own_thread() -> None:
    """On a real clock, short configured delays move items with nobody advancing time."""
    quick = (0.0001, 0.0002)  # hours: under a second per step
    app = create_app(
        SandboxConfig(
            seed=7,
            clock="real",
            simulation={"review_hours": quick, "schedule_hours": quick, "rejection_rate": 0},
        )
    )
    with TestClient(app) as http:  # the lifespan starts and stops the clock thread
        order = place_order(http, [offer_id(app, "internet")])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            item = items_of(http, order["orderId"])[0]
            if item["status"] == "scheduled":
                break
            time.sleep(0.05)
    assert statuses(item) == SUCCESS_PATH[:4]
    assert _parse(item["scheduledFor"]) > datetime.now(UTC)
