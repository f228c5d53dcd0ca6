"""The `sync orders` flow: reconcile every open order with Offergrid in one bulk read."""

from __future__ import annotations

from datetime import datetime, timedelta

from prefect import flow, get_run_logger

from flows.follow_up import follow_up
from flows.runs import FLOW_OPTIONS, sync_run_name
from models.summary import SyncSummary
from models.tables import StatusSource
from preclose.names import as_of_or_now
from preclose.rules.tracking import is_news, items_offergrid_lacks, updates_from_orders
from preclose.settings import get_settings
from tasks.artifacts import publish_health
from tasks.orders import cached_list_orders, list_orders
from tasks.self_serve import LINK_ONLY_READ_MINUTES, live_link_count, record_link_orders
from tasks.tracking import apply_updates, open_items


def status_period(as_of: datetime, minutes: float) -> str:
    """The status-cache window `as_of` falls in: reads in the same window share one answer."""
    if minutes <= 0:
        return as_of.isoformat()
    width = timedelta(minutes=minutes)
    start = as_of - (as_of - datetime.min.replace(tzinfo=as_of.tzinfo)) % width
    return start.strftime("%Y%m%dT%H%M%S")


@flow(name="sync orders", flow_run_name=sync_run_name, **FLOW_OPTIONS)
def sync_orders(as_of: datetime | None = None) -> SyncSummary:
    """Read every order once, apply what changed, then follow up every closing it touched."""
    now = as_of_or_now(as_of)
    logger = get_run_logger()
    held = open_items(now)
    item_ids = list(held)
    links = live_link_count()
    if not item_ids and not links:
        return SyncSummary()
    settings = get_settings()
    # With only buyers' links to look at, one read an hour is plenty (not one per sync).
    minutes = settings.status_cache_minutes if item_ids else LINK_ONLY_READ_MINUTES
    period = status_period(now, minutes)
    # The answer (every order, pickled) is stored only where a later scheduled sync can reuse
    # it: storing it every 15 minutes for a 5-minute cache cost more than the rare read it saved.
    read = cached_list_orders(minutes) if minutes > settings.sync_interval_minutes else list_orders
    orders = read(period)
    lost = items_offergrid_lacks(orders, item_ids)
    if lost:
        # Nothing is changed for them: a person decides (a reset sandbox, or a lost order).
        logger.warning(
            "Offergrid no longer knows %d of the %d items we track (%s); they stay as last "
            "seen: check the Offergrid account (was the local Offergrid started --fresh?)",
            len(lost),
            len(item_ids),
            ", ".join(lost[:5]) + (", ..." if len(lost) > 5 else ""),
        )
    # Orders the buyers placed through their links are in the same answer: no extra call.
    if links:
        record_link_orders(orders)
    # Only what differs from what we hold is written: most open items have not moved since.
    news = [
        u for u in updates_from_orders(orders, item_ids) if is_news(held[u.offergrid_item_id], u)
    ]
    changes = apply_updates(news, StatusSource.sync) if news else []
    # Time-based risks (no provider response in 48 h) need every live closing looked at.
    followed = follow_up({change.closing_id for change in changes}, now, all_risks=True)
    # The health figures come from our own records: no Offergrid call; a new version hourly at most.
    publish_health()
    logger.info(
        "Checked %d open items: %d changed, %d new risks, %d closings fulfilled",
        len(item_ids),
        len(changes),
        followed.risks,
        len(followed.fulfilled_closings),
    )
    if followed.failed_closings:
        logger.warning(
            "The follow-up of %d closings failed: %s",
            len(followed.failed_closings),
            ", ".join(followed.failed_closings),
        )
    return SyncSummary(
        open_items=len(item_ids),
        changes=len(changes),
        risks=followed.risks,
        fulfilled_closings=followed.fulfilled_closings,
        failed_closings=followed.failed_closings,
    )
