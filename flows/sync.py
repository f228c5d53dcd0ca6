"""The `sync orders` flow: reconcile every open order with Offergrid in one bulk read."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from flows.runs import as_of_or_now, sync_run_name
from models.summary import SyncSummary
from models.tables import StatusSource
from preclose.notify import Milestone
from preclose.settings import get_settings
from preclose.tracking import milestone_for, updates_from_orders
from tasks.artifacts import publish_closing
from tasks.notifications import notify_milestone
from tasks.orders import list_orders
from tasks.tracking import (
    apply_updates,
    assess_risks,
    complete_fulfilled_closings,
    open_item_ids,
)


def status_period(as_of: datetime, minutes: float) -> str:
    """The status-cache window `as_of` falls in: reads in the same window share one answer."""
    if minutes <= 0:
        return as_of.isoformat()
    width = timedelta(minutes=minutes)
    start = as_of - (as_of - datetime.min.replace(tzinfo=as_of.tzinfo)) % width
    return start.strftime("%Y%m%dT%H%M%S")


@flow(name="sync orders", flow_run_name=sync_run_name)
def sync_orders(as_of: datetime | None = None) -> SyncSummary:
    """Read every order once, apply changes, tell people, flag risks, close fulfilled closings."""
    now = as_of_or_now(as_of)
    logger = get_run_logger()
    item_ids = open_item_ids()
    if not item_ids:
        return SyncSummary()
    progress = create_progress_artifact(
        progress=0.0, description=f"Syncing {len(item_ids)} open Offergrid items"
    )
    assert isinstance(progress, uuid.UUID)  # the sync API returns the ID, not a coroutine
    period = status_period(now, get_settings().status_cache_minutes)
    orders = list_orders(period)
    update_progress_artifact(progress, 40.0)
    changes = apply_updates(updates_from_orders(orders, item_ids), StatusSource.sync)
    update_progress_artifact(progress, 70.0)
    touched = {change.closing_id for change in changes}
    for change in changes:
        milestone = milestone_for(change.status)
        if milestone is None:
            continue
        notify_milestone(
            change.closing_id,
            milestone,
            topic=change.category,
            category=change.category,
            provider=change.provider,
            scheduled_for=change.scheduled_for,
            account_number=change.account_number,
        )
    risks = assess_risks(now)
    for risk in risks:
        touched.add(risk.closing_id)
        notify_milestone(
            risk.closing_id,
            Milestone.order_at_risk,
            topic=f"{risk.category}:{risk.reason}",
            category=risk.category,
            provider=risk.provider,
        )
    fulfilled = complete_fulfilled_closings()
    for closing_id in touched | set(fulfilled):
        publish_closing(closing_id, now)
    update_progress_artifact(progress, 100.0)
    logger.info(
        "Checked %d open items: %d changed, %d new risks, %d closings fulfilled",
        len(item_ids),
        len(changes),
        len(risks),
        len(fulfilled),
    )
    return SyncSummary(
        open_items=len(item_ids),
        changes=len(changes),
        risks=len(risks),
        fulfilled_closings=fulfilled,
    )
