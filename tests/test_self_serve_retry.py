"""After an unclear answer, the buyer's link and customer record are found, never made twice."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from models.closing import ClosingRequest
from offergrid import OffergridClient
from offergrid.models.directory import CreateCustomerRequest, CreateLinkRequest
from offergrid_sandbox.config import RESELLER_KEY
from offergrid_sandbox.server import SandboxServer
from preclose.rules.self_serve import link_address
from preclose.runtime import db_session
from preclose.storage import repository
from preclose.storage.repository import self_serve as store
from tasks.self_serve import open_buyer_link, record_buyer_customer
from tests.fixtures_flows import preclose_on_local_offergrid
from tests.fixtures_planning import closing_data

START = datetime(2026, 11, 20, 15, tzinfo=UTC)


@pytest.fixture
def offergrid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[SandboxServer]:
    """preclose configured against a local Offergrid on loopback, without Prefect."""
    with preclose_on_local_offergrid(monkeypatch, tmp_path, start=START) as server:
        yield server


def _closing() -> tuple[uuid.UUID, ClosingRequest]:
    closing = ClosingRequest.model_validate(closing_data(closing_date="2026-12-15"))
    with db_session() as session:
        row, _ = repository.create_or_get_closing(session=session, closing_in=closing)
    return row.id, closing


def _posts(server: SandboxServer, endpoint: str) -> int:
    stats = httpx.get(f"{server.url}/sandbox/requests").json()["byEndpoint"]
    return sum(stats.get(endpoint, {}).values())


def test_customer_made_before_a_lost_answer_is_adopted(offergrid: SandboxServer) -> None:
    """A record Offergrid made whose answer never came back is found by email and kept."""
    closing_id, closing = _closing()
    with OffergridClient(RESELLER_KEY, base_url=offergrid.url) as client:
        lost = client.create_customer(
            CreateCustomerRequest(full_name=closing.buyer.full_name, email=closing.buyer.email)
        )
    with db_session() as session:
        store.claim_buyer_customer(
            session=session, key=store.buyer_key(closing.buyer.email), closing_id=closing_id
        )
    assert record_buyer_customer(closing_id) == lost.id
    assert record_buyer_customer(closing_id) == lost.id  # stored: no call at all
    assert _posts(offergrid, "POST /reseller/customers") == 1
    assert _posts(offergrid, "GET /reseller/customers") == 1


def test_same_buyer_on_a_second_closing_keeps_one_record(offergrid: SandboxServer) -> None:
    """The buyer's second closing reuses their record: one per buyer, not per closing."""
    first_id, _ = _closing()
    first = record_buyer_customer(first_id)
    second = ClosingRequest.model_validate(
        closing_data(crm_closing_id="CL-SECOND", closing_date="2026-12-20")
    )
    with db_session() as session:
        row, _ = repository.create_or_get_closing(session=session, closing_in=second)
    assert first is not None and record_buyer_customer(row.id) == first
    assert _posts(offergrid, "POST /reseller/customers") == 1


def test_link_made_before_a_lost_answer_is_adopted(offergrid: SandboxServer) -> None:
    """A link Offergrid made whose answer never came back is found in the list and kept."""
    closing_id, closing = _closing()
    with OffergridClient(RESELLER_KEY, base_url=offergrid.url) as client:
        lost = client.create_link(
            CreateLinkRequest(
                address=link_address(closing),
                property_name=closing.crm_closing_id,
                move_in_date=closing.effective_move_in,
            )
        )
    with db_session() as session:
        store.claim_buyer_link(session=session, closing_id=closing_id)
    assert open_buyer_link.fn(closing_id) == lost.url
    assert open_buyer_link.fn(closing_id) == lost.url
    assert _posts(offergrid, "POST /reseller/links") == 1
    assert _posts(offergrid, "GET /reseller/links") == 1
