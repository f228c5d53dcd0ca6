"""The plain rules behind placing and tracking: grouping, order contents, reconciliation, risks."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from models.samples import sample_closings
from offergrid.models import Order
from preclose.placing import (
    CLOSING_REF_KEY,
    INTENT_KEY,
    DueLine,
    find_order_for_intent,
    group_due_lines,
    order_request,
)
from preclose.timeline import LineDates, build_timeline, window_chart
from preclose.tracking import NO_RESPONSE_REASON, ItemFacts, risk_of, updates_from_orders

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
        ("active", 1, datetime(2027, 3, 20, 15, tzinfo=UTC), None),
    ],
)
def test_risks(
    status: str, placed_hours_ago: int, scheduled_for: datetime | None, expected: str | None
) -> None:
    """Rejected, failed, silent for 48 h, or scheduled after the deadline is a risk; else none."""
    facts = ItemFacts(
        status=status,
        placed_at=AS_OF - timedelta(hours=placed_hours_ago),
        status_at=AS_OF,
        scheduled_for=scheduled_for,
        service_deadline=date(2027, 3, 15),
        time_zone="America/Chicago",
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
    internet = next(row for row in chart.splitlines() if row.startswith("internet"))
    assert internet.count("▲") == 1 and internet.count("●") == 1 and "━" in internet
    assert internet.index("▲") < internet.index("●")
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
    row = next(line for line in chart.splitlines() if line.startswith("internet"))
    assert row.count("●") == 1 and row.count("▲") == 1 and row.rstrip().endswith("⚠")
    assert row.index("●") < row.index("▲")
