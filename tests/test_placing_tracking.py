"""The plain rules behind placing and tracking: grouping, order contents, reconciliation, risks."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from offergrid.models import Order
from preclose.app.samples import sample_closings
from preclose.rules.placing import (
    CLOSING_REF_KEY,
    INTENT_KEY,
    DueLine,
    ItemWindow,
    LineWindow,
    find_order_for_intent,
    group_due_lines,
    item_windows,
    order_notes,
    order_request,
)
from preclose.rules.policy import load_policy
from preclose.rules.tracking import NO_RESPONSE_REASON, ItemFacts, risk_of, updates_from_orders
from preclose.wording.timeline import LineDates, build_timeline, window_chart
from tests.fixtures_planning import make_closing

TODAY = date(2027, 3, 1)


def test_due_lines_group_per_closing_in_each_closing_zone() -> None:
    """At 01:00 UTC it is still yesterday in Chicago: only the Tokyo closing is due."""
    east, west = uuid.uuid4(), uuid.uuid4()
    lines = [
        DueLine(uuid.uuid4(), east, date(2027, 3, 2)),
        DueLine(uuid.uuid4(), east, date(2027, 3, 1)),
        DueLine(uuid.uuid4(), west, date(2027, 3, 2)),
    ]
    zones = {east: "Asia/Tokyo", west: "America/Chicago"}
    batches = group_due_lines(lines, time_zones=zones, as_of=datetime(2027, 3, 2, 1, tzinfo=UTC))
    assert [batch.closing_id for batch in batches] == [east]
    assert len(batches[0].line_ids) == 2
    assert batches[0].due_date == date(2027, 3, 2)


def test_due_batch_is_the_same_on_a_later_day() -> None:
    """A rerun days later rebuilds the same batch and due date, so the same Idempotency-Key."""
    closing = uuid.uuid4()
    lines = [DueLine(uuid.uuid4(), closing, date(2027, 3, 1))]
    zones = {closing: "America/New_York"}
    first = group_due_lines(lines, time_zones=zones, as_of=datetime(2027, 3, 1, 18, tzinfo=UTC))
    later = group_due_lines(lines, time_zones=zones, as_of=datetime(2027, 3, 9, 18, tzinfo=UTC))
    assert first == later


def test_order_request_carries_address_unit_buyer_and_intent() -> None:
    """The order puts the unit in the street and metadata, and tags the intent and the closing."""
    closing = next(c for c in sample_closings(TODAY) if c.property.address.unit)
    request = order_request(closing, ["off-1", "off-2"], intent_key="preclose-abc")
    wire = request.to_wire()
    assert closing.property.address.unit in wire["serviceAddress"]["street"]
    assert wire["metadata"][INTENT_KEY] == "preclose-abc"
    assert wire["metadata"][CLOSING_REF_KEY] == closing.crm_closing_id
    assert wire["metadata"]["unitNumber"] == closing.property.address.unit
    assert wire["customerInfo"]["email"] == closing.buyer.email
    assert [item["offerId"] for item in wire["items"]] == ["off-1", "off-2"]
    assert "test" not in wire["metadata"]
    test_mode = order_request(
        closing.model_copy(update={"test_mode": True}), ["off-1"], intent_key="k"
    )
    assert test_mode.to_wire()["metadata"]["test"] is True


def test_find_order_for_intent_matches_only_its_key() -> None:
    """An order is found by the intent key in its metadata, not by anything else."""
    orders = [
        Order.model_validate({"orderId": "ord-1", "metadata": {INTENT_KEY: "a"}}),
        Order.model_validate({"orderId": "ord-2", "metadata": {INTENT_KEY: "b"}}),
        Order.model_validate({"orderId": "ord-3"}),
    ]
    found = find_order_for_intent(orders, "b")
    assert found is not None and found.order_id == "ord-2"
    assert find_order_for_intent(orders, "c") is None


def test_updates_use_the_time_the_item_reached_its_status() -> None:
    """Each update is stamped with the item's history entry for its current status."""
    order = Order.model_validate(
        {
            "orderId": "ord-1",
            "updatedAt": "2027-03-09T00:00:00Z",
            "items": [
                {
                    "itemId": "item-1",
                    "status": "scheduled",
                    "scheduledFor": "2027-03-12T15:00:00Z",
                    "history": [
                        {"status": "pending", "timestamp": "2027-03-01T10:00:00Z"},
                        {"status": "scheduled", "timestamp": "2027-03-03T10:00:00Z"},
                    ],
                },
                {"itemId": "item-other", "status": "active"},
            ],
        }
    )
    [update] = updates_from_orders([order], ["item-1"])
    assert update.status == "scheduled"
    assert update.at == datetime(2027, 3, 3, 10, tzinfo=UTC)
    assert update.scheduled_for == datetime(2027, 3, 12, 15, tzinfo=UTC)


AS_OF = datetime(2027, 3, 10, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "placed_hours_ago", "scheduled_for", "expected"),
    [
        ("rejected", 1, None, "The provider rejected the order."),
        ("failed", 1, None, "The installation failed."),
        ("pending", 49, None, NO_RESPONSE_REASON),
        ("submitted_to_provider", 49, None, NO_RESPONSE_REASON),
        ("pending", 47, None, None),
        ("accepted", 100, None, None),
        ("scheduled", 1, datetime(2027, 3, 20, 15, tzinfo=UTC), "Scheduled for Sat Mar 20"),
        ("scheduled", 1, datetime(2027, 3, 14, 15, tzinfo=UTC), None),
        ("scheduled", 1, datetime(2027, 3, 11, 15, tzinfo=UTC), "Scheduled for Thu Mar 11, before"),
        ("active", 1, datetime(2027, 3, 20, 15, tzinfo=UTC), None),
    ],
)
def test_risks(
    status: str, placed_hours_ago: int, scheduled_for: datetime | None, expected: str | None
) -> None:
    """Rejected, failed, silent for 48 h, or booked outside its window (the 12th to the 15th)
    is a risk; else none."""
    facts = ItemFacts(
        status=status,
        placed_at=AS_OF - timedelta(hours=placed_hours_ago),
        status_at=AS_OF,
        scheduled_for=scheduled_for,
        service_deadline=date(2027, 3, 15),
        time_zone="America/Chicago",
        service_start=date(2027, 3, 12),
    )
    reason = risk_of(facts, as_of=AS_OF)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and reason.startswith(expected)


def test_timeline_chart_marks_order_service_and_closing() -> None:
    """The text chart shows each service's order day, lead time and service day, and the closing."""
    lines = [
        LineDates("internet", "Lone Star Fiber", date(2027, 3, 2), date(2027, 3, 16), "placed"),
        LineDates("energy", "Cascade Power", date(2027, 3, 9), date(2027, 3, 16), "planned"),
    ]
    chart = window_chart(
        lines=lines, closing_date=date(2027, 3, 16), move_in_date=date(2027, 3, 16), today=TODAY
    )
    internet = next(row for row in chart.splitlines() if row.startswith("Internet "))
    assert internet.count("▲") == 1 and internet.count("●") == 1 and "━" in internet
    assert internet.index("▲") < internet.index("●")
    assert any(row.startswith("Power ") for row in chart.splitlines())  # one name per service
    entries = build_timeline(
        closing_date=date(2027, 3, 16),
        move_in_date=date(2027, 3, 18),
        lines=lines,
        events=[("internet", "accepted", datetime(2027, 3, 3, tzinfo=UTC))],
        today=date(2027, 3, 4),
    )
    texts = [(entry.day, entry.text) for entry in entries]
    assert (date(2027, 3, 3), "Accepted by the provider") in texts
    assert (date(2027, 3, 18), "Move-in") in texts
    assert texts == sorted(texts, key=lambda pair: pair[0])


def test_timeline_chart_fits_a_late_repick_ordered_after_its_service_date() -> None:
    """A re-pick ordered after the day it was needed still gets a row, never an error."""
    lines = [
        LineDates("internet", "Metro 5G", date(2027, 3, 20), date(2027, 3, 16), "placed", True),
    ]
    chart = window_chart(
        lines=lines,
        closing_date=date(2027, 3, 16),
        move_in_date=date(2027, 3, 16),
        today=date(2027, 3, 22),
    )
    row = next(line for line in chart.splitlines() if line.startswith("Internet "))
    assert row.count("●") == 1 and row.count("▲") == 1 and row.rstrip().endswith("⚠")
    assert row.index("●") < row.index("▲")


def test_lines_due_together_share_an_order_only_when_they_start_the_same_day() -> None:
    """Power and internet starting at closing go together; security, a day later, goes apart."""
    closing = uuid.uuid4()
    power, internet, security = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    lines = [
        DueLine(power, closing, date(2027, 3, 1), date(2027, 3, 15)),
        DueLine(internet, closing, date(2027, 3, 1), date(2027, 3, 15)),
        DueLine(security, closing, date(2027, 3, 1), date(2027, 3, 16)),
    ]
    zones = {closing: "America/Chicago"}
    batches = group_due_lines(lines, time_zones=zones, as_of=datetime(2027, 3, 1, 18, tzinfo=UTC))
    assert [set(batch.line_ids) for batch in batches] == [{power, internet}, {security}]


def _windows_for(closing_date: str, move_in: str | None) -> tuple[Any, list[ItemWindow]]:
    closing = make_closing(closing_date=closing_date, move_in_date=move_in)
    lines = [
        LineWindow("off-power", "energy", "Flat Power", date(2026, 12, 1), date(2026, 12, 1)),
        LineWindow("off-ins", "insurance", "Homeowners Plus", date(2026, 12, 1), date(2026, 12, 1)),
    ]
    return closing, item_windows(closing, lines, load_policy())


def test_every_item_carries_its_window_in_metadata_and_in_words() -> None:
    """A pre-possession order names each item's start, possession, closing and the bind date."""
    closing, windows = _windows_for("2026-12-15", "2026-12-01")
    request = order_request(closing, ["off-power", "off-ins"], intent_key="k", windows=windows)
    wire = request.to_wire()
    assert wire["metadata"]["serviceWindows"] == [
        {
            "offerId": "off-power",
            "category": "energy",
            "startDate": "2026-12-01",
            "neededBy": "2026-12-01",
            "notBefore": "2026-12-01",
        },
        {
            "offerId": "off-ins",
            "category": "insurance",
            "startDate": "2026-12-01",
            "neededBy": "2026-12-01",
            "notBefore": "2026-12-01",
            "bindBy": "2026-12-01",
        },
    ]
    assert wire["metadata"]["closingDate"] == "2026-12-15"
    assert wire["metadata"]["possessionDate"] == wire["metadata"]["moveInDate"] == "2026-12-01"
    notes = wire["notes"]
    assert notes.startswith("Service dates (the buyer gets the keys on Tue Dec 1, 2026")
    assert "closing is Tue Dec 15, 2026" in notes
    assert (
        "- Power (Flat Power): start service on Tue Dec 1, 2026, not earlier "
        "(the day the buyer gets the keys)."
    ) in notes
    assert "bind the policy by Tue Dec 1, 2026 for the lender" in notes


def test_a_rent_back_tells_providers_the_closing_and_the_later_move_in() -> None:
    """In a rent-back the notes name possession at closing and the later move-in."""
    closing = make_closing(closing_date="2026-12-15", move_in_date="2027-01-04")
    windows = item_windows(
        closing,
        [LineWindow("off-net", "internet", None, date(2027, 1, 4), date(2027, 1, 4))],
        load_policy(),
    )
    wire = order_request(closing, ["off-net"], intent_key="k", windows=windows).to_wire()
    assert wire["metadata"]["possessionDate"] == "2026-12-15"
    assert wire["metadata"]["moveInDate"] == "2027-01-04"
    assert "move-in is Mon Jan 4, 2027" in wire["notes"]
    assert (
        "Internet: install on Mon Jan 4, 2027, not earlier "
        "(the buyer has the keys from Tue Dec 15, 2026)."
    ) in wire["notes"]


def test_installer_notes_follow_the_windows_and_the_notes_fit_offergrids_limit() -> None:
    """The buyer's access notes are kept after the windows, within 2,000 characters."""
    closing = make_closing(
        closing_date="2026-12-15",
        preferences={"installer_notes": "Gate code 4417. " + "x" * 980},
    )
    lines = [
        LineWindow(f"off-{n}", "internet", "N" * 180, date(2026, 12, 15), date(2026, 12, 15))
        for n in range(6)
    ]
    windows = item_windows(closing, lines, load_policy())
    notes = order_notes(closing, windows)
    assert notes is not None and len(notes) <= 2000
    assert "Access notes: Gate code 4417." in notes
