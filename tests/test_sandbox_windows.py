"""The local Offergrid's simulated providers honour each item's window from the order's metadata."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from offergrid_sandbox.app import create_app
from preclose.rules.tracking import ItemFacts, risk_of
from tests.fixtures_simulation import (
    DALLAS,
    DAY,
    FULFILLED,
    INSTANT_PATH,
    SUCCESS_PATH,
    advance,
    items_of,
    make_config,
    offer_id,
    place_order,
    statuses,
)

AUSTIN = ZoneInfo("America/Chicago")  # the orders go to 78701; the sandbox starts Mon 2 March
D = date.fromisoformat


@pytest.fixture
def app() -> FastAPI:
    """A fresh sandbox: virtual clock from Monday 2026-03-02 08:00 in Austin, no rejections."""
    return create_app(make_config())


@pytest.fixture
def http(app: FastAPI) -> Iterator[TestClient]:
    """A TestClient over the sandbox app."""
    with TestClient(app) as client:
        yield client


def _window(offer: str, start: str, needed_by: str | None = None, **extra: str) -> dict[str, Any]:
    return {
        "offerId": offer,
        "startDate": start,
        "neededBy": needed_by or start,
        "notBefore": extra.get("not_before", start),
    }


def _local(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(AUSTIN)


def _first(item: dict[str, Any], wanted: tuple[str, ...]) -> dict[str, Any]:
    return next(entry for entry in item["history"] if entry["status"] in wanted)


def _order(
    http: TestClient, windows: list[dict[str, Any]], address: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    order = place_order(
        http, [w["offerId"] for w in windows], metadata={"serviceWindows": windows}, address=address
    )
    advance(http, 35 * DAY)
    return items_of(http, order["orderId"])


def test_an_install_happens_on_the_requested_day_never_before(
    app: FastAPI, http: TestClient
) -> None:
    """Ordered three weeks ahead, internet is installed on the day asked, not at first capacity."""
    internet = offer_id(app, "internet")
    [item] = _order(http, [_window(internet, "2026-03-23")])
    assert statuses(item) == SUCCESS_PATH
    assert _local(item["scheduledFor"]).date() == D("2026-03-23")
    assert _local(_first(item, FULFILLED)["timestamp"]).date() == D("2026-03-23")
    scheduled = _first(item, ("scheduled",))
    assert scheduled["providerNotes"].endswith(", as requested")


def test_an_instant_activation_goes_live_on_the_requested_day(
    app: FastAPI, http: TestClient
) -> None:
    """Insurance is bound within a day of the order and in force from the requested day only."""
    insurance = offer_id(app, "insurance")
    [item] = _order(http, [_window(insurance, "2026-03-13")])
    assert statuses(item) == INSTANT_PATH
    accepted = _first(item, ("accepted",))
    assert _local(accepted["timestamp"]) < datetime(2026, 3, 4, tzinfo=AUSTIN)
    assert "effective Fri Mar 13" in accepted["providerNotes"]
    assert _local(item["scheduledFor"]).date() == D("2026-03-13")
    live = _local(_first(item, FULFILLED)["timestamp"])
    assert live.date() == D("2026-03-13")


def test_a_remote_power_start_may_fall_on_a_weekend(app: FastAPI, http: TestClient) -> None:
    """Power for a Saturday possession starts that Saturday, instant or booked, not on Friday."""
    instant = offer_id(app, "energy", zip_code="75201", instant=True)
    booked = offer_id(app, "energy", zip_code="75201", instant=False)
    windows = [_window(instant, "2026-03-21"), _window(booked, "2026-03-21")]
    items = _order(http, windows, address=DALLAS)
    for item in items:
        assert item["status"] in FULFILLED, statuses(item)
        live = _local(_first(item, FULFILLED)["timestamp"]).date()
        assert live >= D("2026-03-21")
        started = _local(_first(item, ("active", "in_progress"))["timestamp"]).date()
        assert started == D("2026-03-21")


def test_a_provider_that_cannot_meet_the_day_books_its_earliest_and_says_so(
    app: FastAPI, http: TestClient
) -> None:
    """Asked for the day after tomorrow, the installer books its first free day and says so."""
    internet = offer_id(app, "internet")
    [item] = _order(http, [_window(internet, "2026-03-04")])
    scheduled = _first(item, ("scheduled",))
    booked = _local(scheduled["scheduledFor"]).date()
    assert booked > D("2026-03-04")
    assert "the earliest we can, after the requested Wed Mar 4" in scheduled["providerNotes"]
    # preclose reads that as a line at risk.
    facts = ItemFacts(
        status="scheduled",
        placed_at=datetime(2026, 3, 2, 14, tzinfo=UTC),
        status_at=datetime.fromisoformat(scheduled["timestamp"].replace("Z", "+00:00")),
        scheduled_for=datetime.fromisoformat(scheduled["scheduledFor"].replace("Z", "+00:00")),
        service_deadline=D("2026-03-04"),
        time_zone="America/Chicago",
    )
    assert (risk_of(facts, as_of=datetime(2026, 3, 3, tzinfo=UTC)) or "").startswith("Scheduled")


def test_possession_holds_back_a_start_asked_too_early(app: FastAPI, http: TestClient) -> None:
    """A start before the notBefore day (possession) waits for possession."""
    insurance = offer_id(app, "insurance")
    window = _window(insurance, "2026-03-09", not_before="2026-03-16")
    [item] = _order(http, [window])
    assert _local(_first(item, FULFILLED)["timestamp"]).date() == D("2026-03-16")


def test_without_a_window_providers_work_as_soon_as_they_can(
    app: FastAPI, http: TestClient
) -> None:
    """An order with no window (another reseller) is activated when ordered, as before."""
    insurance = offer_id(app, "insurance")
    order = place_order(http, [insurance])
    advance(http, 2 * DAY)
    [item] = items_of(http, order["orderId"])
    live = _local(_first(item, FULFILLED)["timestamp"])
    assert live - datetime(2026, 3, 2, 8, tzinfo=AUSTIN) < timedelta(days=2)
