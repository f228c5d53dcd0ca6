"""Tracking steps: apply Offergrid statuses, find risks, close out fulfilled closings.

Only the Offergrid read (`fill account numbers`) is a task run, for its retries; the rest are
plain database steps of the calling flow: a task run each cost Prefect's server more than the step.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from prefect import task
from prefect.cache_policies import NONE
from sqlmodel import Session

from models.tables import (
    Audience,
    ClosingStatus,
    StatusSource,
)
from preclose.rules import lifecycle
from preclose.rules.tracking import HeldItem, ItemUpdate, RiskFinding, milestone_for
from preclose.runtime import db_session, offergrid_client
from preclose.storage import repository
from preclose.wording.notify import Milestone
from tasks.notifications import told_key
from tasks.policies import OFFERGRID_TASK_OPTIONS


@dataclass(frozen=True)
class AppliedChange:
    """One item status we newly learnt, with what a message about it needs."""

    closing_id: uuid.UUID
    category: str
    provider: str | None
    status: str
    scheduled_for: datetime | None
    account_number: str | None


def open_items(as_of: datetime) -> dict[str, HeldItem]:
    """What we hold of every placed item a newer status may still follow (completed ones too:
    they may become active), by Offergrid item ID: one query, so a sync writes only news."""
    with db_session() as session:
        items = repository.list_items_watched(session=session)
        return {
            item.offergrid_item_id: HeldItem(item.status, item.status_at, item.account_number)
            for item in items
            if item.offergrid_item_id and lifecycle.sync_watches(item.status, item.status_at, as_of)
        }


def repick_candidates(closing_ids: Iterable[uuid.UUID] | None) -> list[uuid.UUID]:
    """The tracked closings (of these, or all) that have a line to re-pick (its order ended
    unfulfilled), in one query."""
    scope = set(closing_ids) if closing_ids is not None else None
    if scope is not None and not scope:
        return []
    with db_session() as session:
        lines = repository.list_lines_to_repick(session=session, closing_ids=scope)
    return sorted({line.closing_id for line in lines})


def lacking_account_numbers(closing_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Those of these closings with a live service that has no account number yet."""
    scope = set(closing_ids)
    if not scope:
        return set()
    with db_session() as session:
        return repository.closings_lacking_accounts(session=session, closing_ids=scope)


@task(name="fill account numbers", cache_policy=NONE, **OFFERGRID_TASK_OPTIONS)
def fill_account_numbers(closing_id: uuid.UUID) -> int:
    """Read from Offergrid the account number of each live service that lacks one (its
    `order.completed` was lost, and the `active` event carries none); returns how many it found.

    One call per order concerned, and none at all when nothing is missing.
    """
    with db_session() as session:
        missing = repository.list_live_items_without_account(session=session, closing_id=closing_id)
    if not missing:
        return 0
    found = 0
    with offergrid_client() as client:
        for order_id in sorted({order_id for order_id, _ in missing}):
            order = client.get_order(order_id)
            for item in order.items:
                if item.item_id and item.account_number:
                    with db_session() as session:
                        found += repository.fill_item_facts(
                            session=session,
                            offergrid_item_id=item.item_id,
                            account_number=item.account_number,
                        )
    return found


def _upsert(session: Session, update: ItemUpdate, source: StatusSource) -> bool:
    return repository.upsert_item_status(
        session=session,
        offergrid_item_id=update.offergrid_item_id,
        status=update.status,
        at=update.at,
        source=source,
        scheduled_for=update.scheduled_for,
        account_number=update.account_number,
        notes=update.notes,
    )


def record_update(update: ItemUpdate, source: StatusSource) -> bool:
    """Store one item status from Offergrid unless it is older than what we hold; True if stored."""
    with db_session() as session:
        return _upsert(session, update, source)


def apply_updates(updates: list[ItemUpdate], source: StatusSource) -> list[AppliedChange]:
    """Apply each update unless it is older than what we hold; returns the ones that changed.

    One session for all of them, each update still its own committed unit of work.
    """
    changes: list[AppliedChange] = []
    with db_session() as session:
        for update in updates:
            if not _upsert(session, update, source):
                continue
            record = repository.get_item_line(
                session=session, offergrid_item_id=update.offergrid_item_id
            )
            assert record is not None and record.item is not None and record.placement is not None
            changes.append(
                AppliedChange(
                    closing_id=record.placement.closing_id,
                    category=record.category,
                    provider=record.line.provider_name,
                    status=update.status,
                    scheduled_for=record.item.scheduled_for,
                    account_number=record.item.account_number,
                )
            )
    return changes


def assess_risks(as_of: datetime, closing_id: uuid.UUID | None = None) -> list[RiskFinding]:
    """Mark placed lines whose order endangers the service date; returns the newly found ones."""
    with db_session() as session:
        return repository.assess_line_risks(session=session, as_of=as_of, closing_id=closing_id)


def advance_closings(closing_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """Move each closing as far as its lines say (the lifecycle decides, under the row lock), and
    every live closing whose services are all live to fulfilled; returns those just fulfilled."""
    done: list[uuid.UUID] = []
    with db_session() as session:
        ready = {c.id for c in repository.list_fulfilled_closings(session=session)}
        for closing_id in sorted(set(closing_ids) | ready):
            before = repository.get_closing(session=session, closing_id=closing_id)
            was = before.status if before is not None else None
            after = repository.advance_closing(session=session, closing_id=closing_id)
            if after.status == ClosingStatus.fulfilled and was != ClosingStatus.fulfilled:
                done.append(closing_id)
    return done


@dataclass(frozen=True)
class ItemNews:
    """A milestone an item has reached that the agent has not been told yet."""

    milestone: Milestone
    topic: str
    category: str
    provider: str | None
    scheduled_for: datetime | None
    account_number: str | None


def item_news(closing_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[ItemNews]]:
    """The news of these closings' items not told yet, derived from each item's current status,
    by closing (two queries however many closings).

    The agent hears every milestone, so a milestone whose agent message is recorded is old news;
    reading that here keeps a sync from composing a message for every item every time.
    """
    scope = set(closing_ids)
    if not scope:
        return {}
    with db_session() as session:
        ordered = repository.list_ordered_lines(session=session, closing_ids=scope)
        told = repository.list_notification_keys(session=session, closing_ids=scope)
    news: dict[uuid.UUID, list[ItemNews]] = {}
    for record in ordered:
        line, item = record.line, record.item
        assert item is not None  # ordered lines have their item
        milestone = milestone_for(str(item.status))
        topic = f"{line.category}:{line.attempt}"
        if milestone is None or told_key(line.closing_id, Audience.agent, milestone, topic) in told:
            continue
        news.setdefault(line.closing_id, []).append(
            ItemNews(
                milestone=milestone,
                topic=topic,
                category=line.category,
                provider=line.provider_name,
                scheduled_for=item.scheduled_for,
                account_number=item.account_number,
            )
        )
    return news
