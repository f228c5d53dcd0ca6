"""The pre-close flows end to end on Prefect's test server, the local Offergrid and SQLite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from sqlmodel import select

from flows.coordinate import coordinate_closing
from flows.place import place_due_orders
from flows.sync import sync_orders
from models.closing import ClosingRequest
from models.tables import ClosingStatus, OrderItem, Placement, PlacementState, PlanLineRow
from offergrid_sandbox.config import (
    FaultConfig,
)
from offergrid_sandbox.server import SandboxServer
from preclose.app.samples import sample_closings
from preclose.runtime import db_session
from tasks.artifacts import artifact_key
from tests.fixtures_flows import preclose_on_local_offergrid

START = datetime.fromisoformat("2027-03-01T15:00:00+00:00")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def offergrid(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prefect_harness: None
) -> Iterator[SandboxServer]:
    """A virtual-clock local Offergrid on loopback, a fresh SQLite database, Prefect's test API."""
    with preclose_on_local_offergrid(monkeypatch, tmp_path, start=START) as server:
        yield server


def _sample(server: SandboxServer, index: int = 1) -> ClosingRequest:
    return sample_closings(server.sandbox.clock.now().date())[index]


def _sandbox_orders(server: SandboxServer) -> list[dict[str, Any]]:
    orders: list[dict[str, Any]] = httpx.get(f"{server.url}/sandbox/orders").json()
    return orders


def _requests(server: SandboxServer) -> dict[str, dict[str, int]]:
    stats: dict[str, dict[str, int]] = httpx.get(f"{server.url}/sandbox/requests").json()[
        "byEndpoint"
    ]
    return stats


def _drive(server: SandboxServer, days: int) -> None:
    for _ in range(days):
        server.sandbox.advance(86_400)
        now = server.sandbox.clock.now()
        place_due_orders(as_of=now)
        sync_orders(as_of=now)


def _assert_one_order_item_per_line(server: SandboxServer) -> None:
    """Offergrid's orders and our records agree line by line: one order item per plan line."""
    offergrid_items = {
        item["itemId"]: (order["orderId"], item["offerId"])
        for order in _sandbox_orders(server)
        for item in order["items"]
    }
    with db_session() as session:
        ours = session.exec(select(OrderItem).where(OrderItem.offergrid_item_id != None)).all()  # noqa: E711
        lines = session.exec(select(PlanLineRow)).all()
        placements = {p.id: p for p in session.exec(select(Placement)).all()}
    assert len(ours) == len(offergrid_items)
    for item in ours:
        assert item.offergrid_item_id in offergrid_items
        order_id, offer_id = offergrid_items[item.offergrid_item_id]
        assert placements[item.placement_id].offergrid_order_id == order_id
        assert item.offer_id == offer_id
    ordered_lines = [line for line in lines if str(line.state) != "planned" and line.offer_id]
    assert len({item.plan_line_id for item in ours}) == len(ours) <= len(ordered_lines)


def test_coordinate_stores_plans_and_publishes_artifacts(offergrid: SandboxServer) -> None:
    """Coordinating stores the plan, names the run for the closing, and publishes one artifact:
    the plan table, then the timeline, in one markdown document."""
    closing = _sample(offergrid)
    summary = coordinate_closing(closing, as_of=offergrid.sandbox.clock.now())

    assert summary.created and summary.crm_closing_id == closing.crm_closing_id
    assert {line.category for line in summary.lines} >= {"energy", "insurance"}
    assert summary.next_placement is not None

    async def read() -> tuple[list[Any], list[str]]:
        async with get_client() as client:
            from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

            # The keys of the two artifacts a closing had before are read too: none is left.
            slug = key.removeprefix("closing-")
            keys = [key, f"plan-{slug}", f"timeline-{slug}"]
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
            )
            runs = await client.read_flow_runs()
            return artifacts, [run.name for run in runs]

    import asyncio

    key = artifact_key(closing.crm_closing_id)
    assert key == f"closing-{closing.crm_closing_id.lower()}"
    artifacts, names = asyncio.run(read())
    assert artifacts and {(a.key, a.type) for a in artifacts} == {(key, "markdown")}
    document = max(artifacts, key=lambda artifact: artifact.created).data
    plan, timeline = document.index("## Plan"), document.index("## Timeline")
    assert plan < timeline
    header = document[plan:timeline].splitlines()[2]
    assert {"Service", "Provider", "Why", "Service date", "Order date", "Status"} <= {
        cell.strip() for cell in header.strip("|").split("|")
    }
    assert "| Day | Service | What |" in document[timeline:]
    assert f"coordinate {closing.crm_closing_id}" in names
    # No personal data in run names.
    assert not any(closing.buyer.email in name or closing.buyer.full_name in name for name in names)


def test_coordinating_twice_places_nothing_twice(offergrid: SandboxServer) -> None:
    """A resent closing is known by its CRM ID: same closing, no second plan, no extra order."""
    closing = _sample(offergrid)
    now = offergrid.sandbox.clock.now()
    first = coordinate_closing(closing, as_of=now)
    _drive(offergrid, 12)
    second = coordinate_closing(closing, as_of=offergrid.sandbox.clock.now())

    assert second.closing_id == first.closing_id and not second.created
    _assert_one_order_item_per_line(offergrid)


def test_closing_runs_to_fulfilled_with_bulk_sync_and_cached_catalog(
    offergrid: SandboxServer,
) -> None:
    """Three closings reach fulfilled; the catalog is read once per ZIP and orders in bulk only."""
    began = datetime.now(UTC)
    today = offergrid.sandbox.clock.now().date()
    closings = sample_closings(today)[:3]
    for closing in closings:
        coordinate_closing(closing, as_of=offergrid.sandbox.clock.now())
    _drive(offergrid, 45)

    with db_session() as session:
        from preclose.storage import repository

        statuses = [
            repository.get_closing_by_crm_id(session=session, crm_closing_id=c.crm_closing_id)
            for c in closings
        ]
    assert [row.status if row else None for row in statuses] == [ClosingStatus.fulfilled] * 3
    _assert_one_order_item_per_line(offergrid)

    requests = _requests(offergrid)
    zips = {closing.property.address.zip5 for closing in closings}
    assert sum(requests.get("GET /reseller/catalog", {}).values()) == len(zips)
    # Tracking is bulk: never one call per order.
    assert "GET /reseller/orders/{order_id}" not in requests
    outbox = (Path(os.environ["PRECLOSE_DATA_DIR"]) / "outbox.jsonl").read_text().splitlines()
    milestones = {json.loads(line)["milestone"] for line in outbox}
    assert {"plan_ready", "order_accepted", "order_scheduled", "order_fulfilled"} <= milestones
    _assert_every_service_started_in_its_window(offergrid, closings)
    # Each closing has one artifact, kept current to its end: the sync that fulfilled it said so.
    for closing in closings:
        [artifact] = _artifacts(artifact_key(closing.crm_closing_id), since=began)
        assert "**Status:** fulfilled" in str(artifact.data), str(artifact.data)[:200]


def _artifacts(key: str, *, since: datetime) -> list[Any]:
    """The versions of the artifact under `key` created since `since` (the test server is shared
    by every test, and other tests use the same sample closings)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        versions = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return [version for version in versions if version.created and version.created >= since]


def _assert_every_service_started_in_its_window(
    server: SandboxServer, closings: list[ClosingRequest]
) -> None:
    """Each order names every item's window; each item went live on its start, never before."""
    zones = {c.crm_closing_id: c.tz for c in closings}
    for order in _sandbox_orders(server):
        windows = order["metadata"]["serviceWindows"]
        assert [w["offerId"] for w in windows] == [item["offerId"] for item in order["items"]]
        assert len({w["startDate"] for w in windows}) == 1  # one order, one start date
        assert order["notes"].startswith("Service dates (the buyer gets the keys on ")
        zone = zones[order["metadata"]["preclose_closing"]]
        for item, window in zip(order["items"], windows, strict=True):
            live = next(
                entry["timestamp"]
                for entry in item["history"]
                if entry["status"] in ("completed", "active")
            )
            day = datetime.fromisoformat(live.replace("Z", "+00:00")).astimezone(zone).date()
            assert day >= date.fromisoformat(window["startDate"]), (item["category"], window)
            assert day >= date.fromisoformat(window["notBefore"])


def test_committed_then_failed_placement_is_found_not_repeated(offergrid: SandboxServer) -> None:
    """An order created but answered 5xx is looked up on retry, never placed a second time."""
    closing = _sample(offergrid, 1)
    now = offergrid.sandbox.clock.now()
    # Plan only: nothing is due on the first day of a closing three weeks out.
    coordinate_closing(closing, as_of=now)
    httpx.put(
        f"{offergrid.url}/sandbox/faults",
        json=FaultConfig(committed_then_failed_rate=1.0).model_dump(),
    ).raise_for_status()
    from tasks.orders import place_order
    from tasks.policies import RetryPolicy, offergrid_task_options

    fast = place_order.with_options(
        **offergrid_task_options(RetryPolicy(retries=2, base_delay_seconds=0))
    )
    later = now + timedelta(days=30)
    from tasks.orders import prepare_placements

    placement_ids = prepare_placements(None, later)
    assert placement_ids
    for pid in placement_ids:
        fast(pid)
    posts = _requests(offergrid)["POST /reseller/orders"]
    assert posts.get("500") == len(placement_ids)  # each placement's only POST
    assert sum(posts.values()) == len(placement_ids)
    with db_session() as session:
        states = {p.state for p in session.exec(select(Placement)).all()}
    assert states == {PlacementState.placed}
    _assert_one_order_item_per_line(offergrid)


_CRASH_AFTER_POST = """
import os, signal, sys, uuid
import tasks.orders as orders

def die(*args, **kwargs):
    # Offergrid has answered with the new order; die before our database hears of it.
    os.kill(os.getpid(), signal.SIGKILL)

orders.record_placed = die
orders.place_order.fn(uuid.UUID(sys.argv[1]))
"""


def test_process_killed_mid_placement_leaves_exactly_one_order(offergrid: SandboxServer) -> None:
    """A placer killed between Offergrid's answer and our write: the next run adopts that order."""
    closing = _sample(offergrid, 1)
    now = offergrid.sandbox.clock.now()
    coordinate_closing(closing, as_of=now)
    from tasks.orders import prepare_placements

    # Everything is due 30 days on: one order per start date, the first of which is killed.
    placement_ids = prepare_placements(None, now + timedelta(days=30))
    placement_id = placement_ids[0]
    child = subprocess.run(  # noqa: S603  (our own interpreter and script)
        [sys.executable, "-c", _CRASH_AFTER_POST, str(placement_id)],
        cwd=ROOT,
        env={**os.environ},
        capture_output=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL
    assert len(_sandbox_orders(offergrid)) == 1
    with db_session() as session:
        placement = session.get(Placement, placement_id)
        assert placement is not None and placement.state == PlacementState.intent
        # The dead placer's lease runs out.
        placement.claimed_until = datetime.now(placement.created_at.tzinfo) - timedelta(seconds=1)
        session.add(placement)

    place_due_orders(as_of=now + timedelta(days=30))

    assert len(_sandbox_orders(offergrid)) == len(placement_ids)
    assert sum(_requests(offergrid)["POST /reseller/orders"].values()) == len(placement_ids)
    with db_session() as session:
        placement = session.get(Placement, placement_id)
        assert placement is not None and placement.state == PlacementState.placed
    _assert_one_order_item_per_line(offergrid)


def test_bad_closing_input_fails_with_the_field_named(offergrid: SandboxServer) -> None:
    """A closing dated in the past is refused before anything is stored or ordered."""
    closing = _sample(offergrid).model_copy(
        update={"closing_date": offergrid.sandbox.clock.now().date() - timedelta(days=3)}
    )
    state = coordinate_closing(closing, as_of=offergrid.sandbox.clock.now(), return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match="closing_date"):
        state.result()
    assert _sandbox_orders(offergrid) == []
