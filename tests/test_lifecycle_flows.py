"""The lifecycle end to end on the local Offergrid: events in any order, a sync that isolates each
closing, and races that end in the one state a person expects, Offergrid and our records agreeing
line by line."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import select

from flows.coordinate import coordinate_closing
from flows.follow_up import follow_up_closing
from flows.place import place_due_orders
from flows.sync import sync_orders
from models.change import ClosingChange
from models.closing import ClosingRequest
from models.tables import Closing, ClosingStatus, OrderItem, PlanLineRow, StatusSource
from offergrid_sandbox.config import PROVIDER_KEY
from offergrid_sandbox.server import SandboxServer
from preclose.app import crm
from preclose.app.samples import sample_closings
from preclose.names import CHANGE, COORDINATE
from preclose.runtime import db_session
from preclose.storage import repository
from tests.fixtures_flows import (
    execute_created_run,
    preclose_on_local_offergrid,
    register_deployments,
)

START = datetime.fromisoformat("2027-03-01T15:00:00+00:00")


@pytest.fixture
def offergrid(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prefect_harness: None
) -> Iterator[SandboxServer]:
    """A virtual-clock local Offergrid, a fresh database, and the CRM's two deployments."""
    with preclose_on_local_offergrid(monkeypatch, tmp_path, start=START) as server:
        register_deployments(COORDINATE, CHANGE)
        yield server


def _sample(server: SandboxServer, index: int = 1, crm_id: str | None = None) -> ClosingRequest:
    closing = sample_closings(server.sandbox.clock.now().date())[index]
    return closing.model_copy(update={"crm_closing_id": crm_id or closing.crm_closing_id})


def _offergrid_items(server: SandboxServer, crm_id: str | None = None) -> dict[str, dict[str, Any]]:
    orders = httpx.get(f"{server.url}/sandbox/orders").json()
    return {
        item["itemId"]: {**item, "orderId": order["orderId"]}
        for order in orders
        if crm_id is None or (order.get("metadata") or {}).get("closingRef") in (crm_id, None)
        for item in order["items"]
    }


def _ours(crm_id: str | None = None) -> dict[str, OrderItem]:
    with db_session() as session:
        items = session.exec(select(OrderItem).where(OrderItem.offergrid_item_id != None)).all()  # noqa: E711
        return {str(item.offergrid_item_id): item for item in items}


def _status(crm_id: str) -> ClosingStatus:
    with db_session() as session:
        row = repository.get_closing_by_crm_id(session=session, crm_closing_id=crm_id)
        assert row is not None
        return ClosingStatus(row.status)


def _lines(crm_id: str) -> list[PlanLineRow]:
    with db_session() as session:
        row = repository.get_closing_by_crm_id(session=session, crm_closing_id=crm_id)
        assert row is not None
        return repository.list_plan_lines(session=session, closing_id=row.id)


def _patch(server: SandboxServer, item_id: str, status: str, **extra: Any) -> dict[str, Any]:
    response = httpx.patch(
        f"{server.url}/provider/orders/{item_id}/status",
        json={"status": status, **extra},
        headers={"x-api-key": PROVIDER_KEY},
    )
    assert response.status_code == 200, response.text
    server.sandbox.advance(60)  # the next event happens later
    return dict(response.json())


def _stamp(server: SandboxServer, item_id: str, status: str) -> datetime:
    item = _offergrid_items(server)[item_id]
    stamps = [e["timestamp"] for e in item["history"] if e["status"] == status]
    return datetime.fromisoformat(stamps[-1].replace("Z", "+00:00"))


def _webhook(item_id: str, status: str, at: datetime, **facts: Any) -> bool:
    """What the receiver does with one verified event (preclose.app.api.webhooks._apply)."""
    with db_session() as session:
        return repository.upsert_item_status(
            session=session,
            offergrid_item_id=item_id,
            status=status,
            at=at,
            source=StatusSource.webhook,
            **facts,
        )


def _outbox() -> list[dict[str, Any]]:
    path = Path(os.environ["PRECLOSE_DATA_DIR"]) / "outbox.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _agree(server: SandboxServer) -> None:
    """Offergrid's items and ours agree line by line: same items, same statuses, same orders."""
    offergrid = _offergrid_items(server)
    ours = _ours()
    assert set(ours) == set(offergrid)
    for item_id, item in ours.items():
        assert item.status == offergrid[item_id]["status"], item_id
        assert item.account_number == offergrid[item_id].get("accountNumber"), item_id


def _ordered(server: SandboxServer, closing: ClosingRequest) -> list[str]:
    """Coordinate the closing and place every line now (the sandbox's clock stays put)."""
    now = server.sandbox.clock.now()
    coordinate_closing(closing, as_of=now)
    place_due_orders(crm_closing_id=closing.crm_closing_id, as_of=now + timedelta(days=60))
    return sorted(_ours())


@pytest.mark.slow
def test_events_in_any_order_end_as_offergrid_says(offergrid: SandboxServer) -> None:
    """A lost `order.completed`, reversed and skipped steps, and completed then active: every
    follow-up and sync completes, and ours end as Offergrid's, account numbers included."""
    closing = _sample(offergrid)
    lost, reversed_, later = _ordered(offergrid, closing)[:3]

    _patch(offergrid, lost, "completed")
    _patch(offergrid, lost, "active")
    assert _webhook(lost, "active", _stamp(offergrid, lost, "active"))  # completed was dropped
    for status in ("accepted", "scheduled", "in_progress"):
        _patch(offergrid, reversed_, status)
    for status in ("in_progress", "scheduled", "accepted"):  # newest first, then older ones
        _webhook(reversed_, status, _stamp(offergrid, reversed_, status))
    followed = follow_up_closing(
        closing.crm_closing_id, as_of=offergrid.sandbox.clock.now(), return_state=True
    )
    assert followed.is_completed()
    assert _ours()[lost].account_number == _offergrid_items(offergrid)[lost]["accountNumber"]
    assert _ours()[reversed_].status == "in_progress"
    live = [
        m for m in _outbox() if m["milestone"] == "order_fulfilled" and m["audience"] == "buyer"
    ]
    assert len(live) == 1 and _ours()[lost].account_number in live[0]["body"]

    _patch(offergrid, later, "completed")
    first = sync_orders(as_of=offergrid.sandbox.clock.now(), return_state=True)
    assert first.is_completed() and _ours()[later].status == "completed"
    _patch(offergrid, later, "active")
    second = sync_orders(
        as_of=offergrid.sandbox.clock.now() + timedelta(minutes=10), return_state=True
    )
    assert second.is_completed()
    assert _ours()[later].status == "active"  # completed is not final: the sync applies active
    _agree(offergrid)


@pytest.mark.slow
def test_one_closing_s_failing_follow_up_never_fails_another_s(offergrid: SandboxServer) -> None:
    """A closing whose follow-up fails is reported by the sync; the other closing is told its
    news and the sync completes."""
    broken, fine = _sample(offergrid, 1, "ISO-BROKEN"), _sample(offergrid, 2, "ISO-FINE")
    _ordered(offergrid, broken)
    _ordered(offergrid, fine)
    with db_session() as session:
        rows = {c.crm_closing_id: c.id for c in session.exec(select(Closing)).all()}
        ours = session.exec(select(OrderItem, PlanLineRow).join(PlanLineRow)).all()
        session.exec(  # a stored request that no longer reads: this closing's follow-up fails
            update(Closing).where(Closing.id == rows["ISO-BROKEN"]).values(request={"x": 1})
        )
        session.commit()
    for item, _line in ours:
        _patch(offergrid, str(item.offergrid_item_id), "accepted")
    fine_items = [i for i, line in ours if line.closing_id == rows["ISO-FINE"]]

    state = sync_orders(as_of=offergrid.sandbox.clock.now(), return_state=True)

    assert state.is_completed()
    summary = state.result()
    assert summary.failed_closings == ["ISO-BROKEN"]
    accepted = [m for m in _outbox() if m["milestone"] == "order_accepted"]
    assert len(accepted) >= len(fine_items) > 0
    assert all(_ours()[str(i.offergrid_item_id)].status == "accepted" for i in fine_items)


@pytest.mark.parametrize("change_first", [True, False], ids=["change-first", "start-first"])
def test_start_then_fall_through_in_both_orders_of_arrival(
    offergrid: SandboxServer, change_first: bool
) -> None:
    """A closing started then at once called off ends fell through whichever run goes first:
    nothing left ordered at Offergrid, no line left planned, no "plan ready" after "cancelled"."""
    closing = _sample(offergrid, 0, f"RACE-{'C' if change_first else 'S'}")
    now = offergrid.sandbox.clock.now()
    started = crm.submit_closing(closing, as_of=now)
    called_off = crm.submit_change(
        closing.crm_closing_id,
        ClosingChange(fell_through=True, reason="Financing denied"),
        as_of=now,
    )
    assert started.flow_run_id and called_off.flow_run_id
    runs = [started.flow_run_id, called_off.flow_run_id]
    for run_id in reversed(runs) if change_first else runs:
        assert execute_created_run(run_id, offergrid).is_completed()

    assert _status(closing.crm_closing_id) == ClosingStatus.fell_through
    assert {str(line.state) for line in _lines(closing.crm_closing_id)} <= {"cancelled"}
    live = [i for i in _offergrid_items(offergrid).values() if i["status"] != "cancelled"]
    assert live == []
    _agree(offergrid)
    told = [m["milestone"] for m in _outbox() if m["audience"] == "agent"]
    assert told[-1] == "closing_cancelled"
    if change_first:
        assert "plan_ready" not in told


def test_a_change_while_coordinate_plans_is_planned_with(
    offergrid: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A date change stored while the coordination is planning makes it plan again from the new
    dates; the change's own run then finds nothing left to do."""
    closing = _sample(offergrid, 1, "RACE-MOVE")
    now = offergrid.sandbox.clock.now()
    started = crm.submit_closing(closing, as_of=now)
    moved_to = closing.closing_date + timedelta(days=14)
    change = ClosingChange(closing_date=moved_to, move_in_date=moved_to)
    moved = crm.submit_change(closing.crm_closing_id, change, as_of=now)
    import tasks.planning

    real = tasks.planning.recommend_detailed
    calls: list[int] = []

    def recommend_then_change(*args: Any, **kwargs: Any) -> Any:
        if not calls:  # the change run stores the new dates while this plan is being made
            with db_session() as session:
                row = repository.get_closing_by_crm_id(
                    session=session, crm_closing_id=closing.crm_closing_id
                )
                assert row is not None
                repository.update_closing_request(
                    session=session, closing_id=row.id, closing_in=change.applied_to(closing)
                )
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tasks.planning, "recommend_detailed", recommend_then_change)
    assert started.flow_run_id and moved.flow_run_id
    assert execute_created_run(started.flow_run_id, offergrid).is_completed()
    monkeypatch.setattr(tasks.planning, "recommend_detailed", real)
    assert execute_created_run(moved.flow_run_id, offergrid).is_completed()

    assert len(calls) == 2  # planned again from the new request
    assert _status(closing.crm_closing_id) in (ClosingStatus.planned, ClosingStatus.ordering)
    lines = _lines(closing.crm_closing_id)
    assert lines and all(line.service_date >= closing.closing_date for line in lines)
    energy = next(line for line in lines if line.category == "energy")
    assert energy.service_date == moved_to  # power by the new closing date
    _agree(offergrid)


def test_two_coordinations_of_one_closing_plan_and_order_once(offergrid: SandboxServer) -> None:
    """Two coordinate runs of the same closing at once: one plan, one order item per line."""
    closing = _sample(offergrid, 0, "RACE-TWICE")
    now = offergrid.sandbox.clock.now()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            coordinate_closing(closing, as_of=now)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    lines = _lines(closing.crm_closing_id)
    assert len({line.category for line in lines}) == len(lines)
    assert all(line.attempt == 1 for line in lines)
    items = _ours()
    assert len({item.plan_line_id for item in items.values()}) == len(items)
    assert [m["milestone"] for m in _outbox() if m["audience"] == "agent"].count("plan_ready") == 1
    assert _status(closing.crm_closing_id) in (ClosingStatus.planned, ClosingStatus.ordering)
    _agree(offergrid)


# A date change while placing and a fall-through while placing are pinned in tests/test_changes.py
# (test_date_change_while_an_order_call_is_in_flight_reorders_that_order and
# test_fall_through_while_an_order_is_being_placed_cancels_that_order), on the same lifecycle.


def test_a_placement_run_waiting_on_another_placer_says_so(offergrid: SandboxServer) -> None:
    """A `place due orders` run whose orders another placer holds ends `Waiting on another
    placer`, not plain Completed, and sends nothing itself."""
    from flows.place import WAITING
    from tasks.orders import PLACEMENT_LEASE, prepare_placements

    closing = _sample(offergrid, 1, "HELD-1")
    now = offergrid.sandbox.clock.now()
    coordinate_closing(closing, as_of=now)
    later = now + timedelta(days=60)
    with db_session() as session:
        row = repository.get_closing_by_crm_id(session=session, crm_closing_id="HELD-1")
        assert row is not None
    held = prepare_placements(row.id, later)
    assert held
    with db_session() as session:
        for placement_id in held:  # another placer took them, and is still sending
            claimed = repository.claim_placement(
                session=session, placement_id=placement_id, lease=PLACEMENT_LEASE
            )
            assert claimed is not None

    state = place_due_orders(crm_closing_id="HELD-1", as_of=later, return_state=True)

    assert state.is_completed() and state.name == WAITING
    assert state.result().held_elsewhere == len(held)
    assert state.result().orders == []
    assert _offergrid_items(offergrid) == {}
