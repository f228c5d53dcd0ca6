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
    """The live closings (of these, or all) that have a line to re-pick (its order ended
    unfulfilled)."""
    with db_session() as session:
        scope: list[uuid.UUID | None] = list(closing_ids) if closing_ids is not None else [None]
        lines = [
            line
            for closing_id in scope
            for line in repository.list_lines_to_repick(session=session, closing_id=closing_id)
        ]
    return sorted({line.closing_id for line in lines})


def lacks_account_numbers(closing_id: uuid.UUID) -> bool:
    """Whether a live service of the closing has no account number yet."""
    with db_session() as session:
        return bool(
            repository.list_live_items_without_account(session=session, closing_id=closing_id)
        )


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


def record_update(update: ItemUpdate, source: StatusSource) -> bool:
    """Store one item status from Offergrid unless it is older than what we hold; True if stored."""
    with db_session() as session:
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


def apply_updates(updates: list[ItemUpdate], source: StatusSource) -> list[AppliedChange]:
    """Apply each update unless it is older than what we hold; returns the ones that changed."""
    return [_applied(update) for update in updates if record_update(update, source)]


def _applied(update: ItemUpdate) -> AppliedChange:
    with db_session() as session:
        record = repository.get_item_line(
            session=session, offergrid_item_id=update.offergrid_item_id
        )
    assert record is not None and record.item is not None and record.placement is not None
    return AppliedChange(
        closing_id=record.placement.closing_id,
        category=record.category,
        provider=record.line.provider_name,
        status=update.status,
        scheduled_for=record.item.scheduled_for,
        account_number=record.item.account_number,
    )


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


def item_news(closing_id: uuid.UUID) -> list[ItemNews]:
    """The news of a closing's items not told yet, derived from each item's current status.

    The agent hears every milestone, so a milestone whose agent message is recorded is old news;
    reading that here keeps a sync from composing a message for every item every time.
    """
    with db_session() as session:
        ordered = repository.list_ordered_lines(session=session, closing_id=closing_id)
        told = repository.list_notification_keys(session=session, closing_id=closing_id)
    news: list[ItemNews] = []
    for record in ordered:
        line, item = record.line, record.item
        assert item is not None  # ordered lines have their item
        milestone = milestone_for(str(item.status))
        topic = f"{line.category}:{line.attempt}"
        if milestone is None or told_key(closing_id, Audience.agent, milestone, topic) in told:
            continue
        news.append(
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
