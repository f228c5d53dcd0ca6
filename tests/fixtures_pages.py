"""A closing stored with its plan, one order with history and one risk, for the page tests.

Built with the same plain code the flows use (recommend, plan, save), from the local Offergrid's
catalog, without Prefect: the pages read the records, whatever wrote them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlmodel import select

from models.closing import ClosingRequest
from models.tables import Audience, CrmRequestKind, PlanLineRow, StatusSource
from offergrid.models import Offer
from offergrid_sandbox.catalog import seed_catalog
from preclose.app.api import create_api
from preclose.app.api.auth import issue_api_key
from preclose.rules.lifecycle import Event
from preclose.rules.pagelinks import page_url
from preclose.rules.policy import load_policy
from preclose.rules.recommend import recommend
from preclose.rules.timing import plan_closing
from preclose.runtime import db_session
from preclose.settings import Settings
from preclose.storage import repository
from preclose.storage.db import dispose_engines
from preclose.storage.repository import self_serve
from tests.fixtures_planning import closing_data

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
ACCOUNT = "LSF-12345678"
RISK = "No response from the provider within 48 hours of ordering."
NOTE = "Appraisal came in low; closing may move"
SELF_SERVE_OFFER = "Lone Star Fiber TV Essentials"


@dataclass
class StoredClosing:
    """The app, its settings, the closing's records and the keys to reach its pages."""

    app: FastAPI
    settings: Settings
    closing_id: uuid.UUID
    closing: ClosingRequest
    lines: list[PlanLineRow]
    ordered_category: str
    risky_category: str
    read_key: str

    def url(self, audience: Audience, *, now: datetime | None = None) -> str:
        """The signed page link for `audience`, as a message carries it."""
        return page_url(self.settings, self.closing_id, audience, now=now or datetime.now(UTC))


def store_closing(
    settings: Settings, crm_id: str = "CL-PAGE-1", *, at_risk: bool = True
) -> StoredClosing:
    """A planned closing with its first line ordered and live, its second ordered, unanswered
    and (unless `at_risk` is False) flagged at risk."""
    closing = ClosingRequest.model_validate(
        closing_data(crm_closing_id=crm_id, closing_date="2026-12-15")
    )
    offers = [
        Offer.model_validate(o)
        for o in seed_catalog(7).offers
        if closing.property.address.zip5 in o["zipCodes"] and o["status"] == "active"
    ]
    rules = load_policy(None)
    plan = plan_closing(closing, recommend(closing, offers, rules), rules, as_of=NOW)
    with db_session(settings) as session:
        row, _ = repository.create_or_get_closing(session=session, closing_in=closing)
        repository.save_plan(session=session, closing_id=row.id, plan=plan, first=True)
        repository.transition_closing(session=session, closing_id=row.id, event=Event.service_live)
        ordered = [
            line
            for line in repository.list_plan_lines(session=session, closing_id=row.id)
            if line.offer_id
        ]
        first, second = ordered[0], ordered[1]
        placement = repository.create_placement_intent(
            session=session,
            closing_id=row.id,
            plan_line_ids=[first.id],
            due_date=first.placement_date,
        )
        repository.mark_placement_placed(
            session=session,
            placement_id=placement.id,
            offergrid_order_id=f"ord-{crm_id}",
            placed_at=NOW,
            items=[
                repository.PlacedItem(
                    offer_id=first.offer_id or "", offergrid_item_id=f"item-{crm_id}"
                )
            ],
        )
        for hours, status in ((2, "accepted"), (30, "scheduled"), (80, "active")):
            repository.upsert_item_status(
                session=session,
                offergrid_item_id=f"item-{crm_id}",
                status=status,
                at=NOW + timedelta(hours=hours),
                source=StatusSource.sync,
                notes="Installer booked" if status == "scheduled" else None,
                scheduled_for=NOW + timedelta(days=5) if status != "accepted" else None,
                account_number=ACCOUNT if status == "active" else None,
            )
        # The second service was ordered too, and its provider has not answered.
        waiting = repository.create_placement_intent(
            session=session,
            closing_id=row.id,
            plan_line_ids=[second.id],
            due_date=second.placement_date,
        )
        repository.mark_placement_placed(
            session=session,
            placement_id=waiting.id,
            offergrid_order_id=f"ord-{crm_id}-2",
            placed_at=NOW + timedelta(days=1),
            items=[
                repository.PlacedItem(
                    offer_id=second.offer_id or "", offergrid_item_id=f"item-{crm_id}-2"
                )
            ],
        )
        line = session.get(PlanLineRow, second.id)
        assert line is not None
        line.at_risk, line.risk_reason = at_risk, RISK if at_risk else None
        session.add(line)
        session.commit()
        repository.record_crm_request(
            session=session,
            closing_id=row.id,
            kind=CrmRequestKind.change,
            idempotency_key=f"{crm_id}:note",
            body={"reason": NOTE},
        )
        self_serve.set_buyer_link(
            session=session,
            closing_id=row.id,
            offergrid_link_id=f"lnk-{crm_id}",
            url=f"http://127.0.0.1:8765/links/{crm_id}",
            move_in_date=closing.effective_move_in,
            status="active",
        )
        self_serve.upsert_self_serve_item(
            session=session,
            closing_id=row.id,
            offergrid_order_id=f"ord-own-{crm_id}",
            offergrid_item_id=f"item-own-{crm_id}",
            ordered_at=NOW + timedelta(days=1),
            values={
                "category": "television",
                "offer_name": SELF_SERVE_OFFER,
                "provider_name": "Lone Star Fiber",
                "status": "accepted",
                "history": [
                    {"status": "pending", "at": (NOW + timedelta(days=1)).isoformat()},
                    {"status": "accepted", "at": (NOW + timedelta(days=2)).isoformat()},
                ],
            },
        )
        key, _ = issue_api_key(session=session, name=f"brokerage-{crm_id}", read_only=True)
        lines = list(session.exec(select(PlanLineRow).where(PlanLineRow.closing_id == row.id)))
    app = create_api(settings)
    app.state.now = lambda: NOW + timedelta(days=4)
    return StoredClosing(
        app=app,
        settings=settings,
        closing_id=row.id,
        closing=closing,
        lines=lines,
        ordered_category=first.category,
        risky_category=second.category,
        read_key=key,
    )


@pytest.fixture
def stored(tmp_path: Path) -> Iterator[StoredClosing]:
    """A stored closing and the API app over its database (SQLite in tmp_path)."""
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'preclose.db'}",
        page_link_secret="first-secret-for-tests",
    )
    yield store_closing(settings)
    dispose_engines()
