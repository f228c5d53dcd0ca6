"""The `follow up closing` flow: after statuses change, tell people, flag risks, close out."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from prefect import flow, get_run_logger

from flows.runs import FLOW_OPTIONS, follow_up_run_name, tag_this_run
from models.summary import FollowUpSummary
from preclose.names import as_of_or_now, closing_tag
from preclose.rules.tracking import RiskFinding
from preclose.runtime import db_session
from preclose.storage import repository
from preclose.wording.notify import Milestone, MilestoneFacts
from tasks.artifacts import publish
from tasks.notifications import Notice, notify_milestones
from tasks.replan import repick_rejected
from tasks.tracking import (
    ItemNews,
    advance_closings,
    assess_risks,
    fill_account_numbers,
    item_news,
    lacking_account_numbers,
    repick_candidates,
)


def follow_up(
    closing_ids: Iterable[uuid.UUID], as_of: datetime, *, all_risks: bool = False
) -> FollowUpSummary:
    """The follow-up steps for these closings, inside the calling flow (sync or follow-up).

    Milestones are derived from each item's current status and told once (the notification's
    dedupe key), so a webhook, a sync and a retry seeing the same change tell it once between them.
    What every closing needs is read in bulk; each closing is then followed up on its own: one
    that fails is reported, the others go on. Artifacts are published last, once the closings
    have moved on (a closing just fulfilled shows so).
    """
    touched = set(closing_ids)
    risks: list[RiskFinding] = []
    if all_risks:
        # Time-based risks and re-picks may concern closings no status change touched.
        risks = assess_risks(as_of)
        repickable = set(repick_candidates(None))
        touched |= {risk.closing_id for risk in risks} | repickable
    else:
        repickable = set(repick_candidates(touched))
    summary = FollowUpSummary()
    failed: set[uuid.UUID] = set()
    # Account numbers a lost event carried are read first, so the news below tells them; a task
    # run only where there is work: most follow-ups have no account number to look up.
    for closing_id in sorted(lacking_account_numbers(touched)):
        try:
            fill_account_numbers(closing_id)
        except Exception as err:
            _failed(summary, failed, closing_id, err)
    news = item_news(touched - failed)
    for closing_id in sorted(touched - failed):
        try:
            own = [r for r in risks if r.closing_id == closing_id]
            told, found = _follow_up_one(
                closing_id,
                as_of,
                news.get(closing_id, []),
                own,
                repick=closing_id in repickable,
                assess=not all_risks,
            )
            summary.messages += told
            summary.risks += found
        except Exception as err:
            _failed(summary, failed, closing_id, err)
    summary.fulfilled_closings = sorted(advance_closings(touched))
    publish(touched, as_of)
    return summary


def _failed(
    summary: FollowUpSummary, failed: set[uuid.UUID], closing_id: uuid.UUID, err: Exception
) -> None:
    crm_id = _crm_id(closing_id)
    get_run_logger().warning(
        "Follow-up of closing %s failed (%s); the other closings go on", crm_id, type(err).__name__
    )
    failed.add(closing_id)
    summary.failed_closings.append(crm_id)


def _follow_up_one(
    closing_id: uuid.UUID,
    as_of: datetime,
    news: list[ItemNews],
    risks: list[RiskFinding],
    *,
    repick: bool,
    assess: bool,
) -> tuple[int, int]:
    """News, re-picks and risks of one closing; returns (messages told, risks)."""
    told = notify_milestones(
        closing_id,
        [
            Notice(
                item.milestone,
                MilestoneFacts(
                    category=item.category,
                    provider=item.provider,
                    scheduled_for=item.scheduled_for,
                    account_number=item.account_number,
                ),
                topic=item.topic,
            )
            for item in news
        ],
    )
    # A rejected or failed order: the next best offer goes out now, or a person is asked.
    if repick:
        repick_rejected(as_of, [closing_id])
    if assess:
        risks = assess_risks(as_of, closing_id)
    notify_milestones(
        closing_id,
        [
            Notice(
                Milestone.order_at_risk,
                MilestoneFacts(category=risk.category, provider=risk.provider),
                topic=f"{risk.category}:{risk.reason}",
            )
            for risk in risks
        ],
    )
    return sum(len(audiences) for audiences in told), len(risks)


def _crm_id(closing_id: uuid.UUID) -> str:
    with db_session() as session:
        row = repository.get_closing(session=session, closing_id=closing_id)
    return row.crm_closing_id if row is not None else str(closing_id)


@flow(name="follow up closing", flow_run_name=follow_up_run_name, **FLOW_OPTIONS)
def follow_up_closing(crm_closing_id: str, as_of: datetime | None = None) -> FollowUpSummary:
    """Follow up one closing after its orders moved (run by the webhook event's trigger)."""
    now = as_of_or_now(as_of)
    tag_this_run(closing_tag(crm_closing_id))
    with db_session() as session:
        row = repository.get_closing_by_crm_id(session=session, crm_closing_id=crm_closing_id)
    if row is None:
        raise ValueError(f"crm_closing_id: no closing {crm_closing_id!r} is known")
    summary = follow_up([row.id], now)
    if summary.failed_closings:
        raise RuntimeError(f"the follow-up of closing {crm_closing_id} failed; see the task runs")
    return summary
