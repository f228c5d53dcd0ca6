"""The buyer's Offergrid link and customer record through a closing's life, on the local Offergrid:
made once, moved with the closing, closed when the deal falls through; link orders on the page."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from flows.change import change_closing
from flows.coordinate import coordinate_closing
from flows.place import place_due_orders
from flows.sync import sync_orders
from models.change import ClosingChange, ContactChange
from models.closing import ClosingRequest
from offergrid_sandbox.config import RESELLER_KEY
from offergrid_sandbox.server import SandboxServer
from preclose.app.api import create_api
from preclose.app.samples import sample_closings
from preclose.runtime import db_session
from preclose.settings import get_settings
from preclose.storage import repository
from tests.fixtures_flows import preclose_on_local_offergrid
from tests.test_flows import START

RESELLER = {"x-api-key": RESELLER_KEY}


@pytest.fixture
def offergrid(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prefect_harness: None
) -> Iterator[SandboxServer]:
    """A virtual-clock local Offergrid on loopback, a fresh SQLite database, Prefect's test API."""
    with preclose_on_local_offergrid(monkeypatch, tmp_path, start=START) as server:
        yield server


def _get(server: SandboxServer, path: str) -> Any:
    return httpx.get(f"{server.url}{path}", headers=RESELLER).json()


def _outbox() -> list[dict[str, Any]]:
    path = Path(os.environ["PRECLOSE_DATA_DIR"]) / "outbox.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _calls(server: SandboxServer, endpoint: str) -> int:
    stats = httpx.get(f"{server.url}/sandbox/requests").json()["byEndpoint"]
    return sum(stats.get(endpoint, {}).values())


def _drive(server: SandboxServer, days: float) -> None:
    """Jump `days` ahead, then place what is due and sync once."""
    server.sandbox.advance(days * 86_400)
    now = server.sandbox.clock.now()
    place_due_orders(as_of=now)
    sync_orders(as_of=now)


def _first_order_day(crm_id: str) -> date:
    with db_session() as session:
        row = repository.get_closing_by_crm_id(session=session, crm_closing_id=crm_id)
        assert row is not None
        lines = repository.list_plan_lines(session=session, closing_id=row.id)
    return min(line.placement_date for line in lines if line.offer_id)


def _page_text(url: str) -> str:
    api = create_api(get_settings())
    with TestClient(api) as http:
        answer = http.get(urlsplit(url).path)
    assert answer.status_code == 200, answer.text
    return answer.text


def test_link_and_customer_follow_the_closing(offergrid: SandboxServer) -> None:
    """One link in the buyer's plan message, one customer at the first order, both kept in step;
    a link order shows on the page; the fall-through deactivates the link."""
    closing: ClosingRequest = sample_closings(offergrid.sandbox.clock.now().date())[0]
    coordinate_closing(closing, as_of=offergrid.sandbox.clock.now())

    [link] = _get(offergrid, "/reseller/links")
    assert link["moveInDate"] == closing.effective_move_in.isoformat()
    assert link["propertyName"] == closing.crm_closing_id
    plan = {m["audience"]: m["body"] for m in _outbox() if m["milestone"] == "plan_ready"}
    assert link["url"] in plan["buyer"] and link["url"] not in plan["agent"]
    assert "/pages/closing/" in plan["buyer"] and "/pages/closing/" in plan["agent"]

    first = _first_order_day(closing.crm_closing_id)
    _drive(offergrid, (first - offergrid.sandbox.clock.now().date()).days + 0.1)
    assert _get(offergrid, "/reseller/orders"), "the first order went out"
    _drive(offergrid, 2)
    [customer] = _get(offergrid, "/reseller/customers")
    assert (customer["kind"], customer["source"]) == ("customer", "order")
    assert customer["email"] == closing.buyer.email
    # Later orders and syncs never make a second record, nor a second link.
    assert _calls(offergrid, "POST /reseller/customers") == 1
    assert _calls(offergrid, "POST /reseller/links") == 1

    # The buyer orders a TV service themselves through the link page.
    offer = _get(offergrid, f"/reseller/catalog?zipCode={closing.property.address.zip5}")
    tv = next(o for o in offer if o["category"] == "television")
    form = {
        "offerId": tv["id"],
        "fullName": closing.buyer.full_name,
        "email": closing.buyer.email,
        "phone": closing.buyer.phone,
    }
    answer = httpx.post(f"{link['url']}/orders", data=form)
    assert answer.status_code == 201, answer.text
    _drive(offergrid, 1)
    buyer_page = next(m for m in _outbox() if m["audience"] == "buyer")["body"]
    page_url = buyer_page[buyer_page.index("http://127.0.0.1:8000/pages/closing/") :].split()[0]
    text = _page_text(page_url)
    assert tv["name"] in text and "Chosen by the buyer" in text

    moved = closing.closing_date + timedelta(days=7)
    change_closing(
        closing.crm_closing_id,
        ClosingChange(closing_date=moved, move_in_date=moved, reason="Appraisal delay"),
        as_of=offergrid.sandbox.clock.now(),
    )
    assert _get(offergrid, f"/reseller/links/{link['id']}")["moveInDate"] == moved.isoformat()

    change_closing(
        closing.crm_closing_id,
        ClosingChange(contact=ContactChange(email="new.address@example.com")),
        as_of=offergrid.sandbox.clock.now(),
    )
    [customer] = _get(offergrid, "/reseller/customers")
    assert customer["email"] == "new.address@example.com"
    assert _calls(offergrid, "POST /reseller/customers") == 1

    change_closing(
        closing.crm_closing_id,
        ClosingChange(fell_through=True, reason="Financing denied"),
        as_of=offergrid.sandbox.clock.now(),
    )
    assert _get(offergrid, f"/reseller/links/{link['id']}")["status"] == "inactive"
    assert httpx.get(link["url"]).status_code == 410


def test_a_closing_with_only_its_link_live_is_read_hourly_and_open_orders_every_sync(
    offergrid: SandboxServer,
) -> None:
    """Before its first order, a closing's buyer link is looked at once an hour whatever the sync
    cadence (the stored answer is reused); once orders are open, every sync reads them afresh."""
    closing: ClosingRequest = sample_closings(offergrid.sandbox.clock.now().date())[0]
    start = offergrid.sandbox.clock.now()
    coordinate_closing(closing, as_of=start)
    assert not _get(offergrid, "/reseller/orders"), "nothing is due on the first day"
    before = _calls(offergrid, "GET /reseller/orders")
    for minutes in (0, 15, 30, 45):
        sync_orders(as_of=start + timedelta(minutes=minutes))
    assert _calls(offergrid, "GET /reseller/orders") - before == 1
    sync_orders(as_of=start + timedelta(minutes=75))
    assert _calls(offergrid, "GET /reseller/orders") - before == 2

    first = _first_order_day(closing.crm_closing_id)
    _drive(offergrid, (first - offergrid.sandbox.clock.now().date()).days + 0.1)
    now = offergrid.sandbox.clock.now()
    reads = _calls(offergrid, "GET /reseller/orders")
    sync_orders(as_of=now + timedelta(minutes=15))
    sync_orders(as_of=now + timedelta(minutes=30))
    assert _calls(offergrid, "GET /reseller/orders") - reads == 2
