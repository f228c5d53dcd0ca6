"""The `follow up closing` flow: after statuses change, tell people, flag risks, close out."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from prefect import flow, get_run_logger

from flows.runs import follow_up_run_name, tag_this_run
from models.summary import FollowUpSummary
from preclose.names import as_of_or_now, closing_tag
from preclose.rules.tracking import RiskFinding
from preclose.runtime import db_session
from preclose.storage import repository
from preclose.wording.notify import Milestone, MilestoneFacts
from tasks.artifacts import publish
from tasks.notifications import notify_milestone
from tasks.replan import repick_rejected
from tasks.tracking import (
    advance_closings,
    assess_risks,
    fill_account_numbers,
    item_news,
    lacks_account_numbers,
    repick_candidates,
)


def follow_up(
    closing_ids: Iterable[uuid.UUID], as_of: datetime, *, all_risks: bool = False
) -> FollowUpSummary:
    """The follow-up steps for these closings, inside the calling flow (sync or follow-up).

    Milestones are derived from each item's current status and told once (the notification's
    dedupe key), so a webhook, a sync and a retry seeing the same change tell it once between them.
    Each closing is followed up on its own: one that fails is reported, the others go on.
    """
    touched = set(closing_ids)
    risks: list[RiskFinding] = []
    if all_risks:
        # Time-based risks and re-picks may concern closings no status change touched.
        risks = assess_risks(as_of)
        touched |= {risk.closing_id for risk in risks} | set(repick_candidates(None))
    summary = FollowUpSummary()
    for closing_id in sorted(touched):
        try:
            own = [r for r in risks if r.closing_id == closing_id]
            told, found = _follow_up_one(closing_id, as_of, own, assess=not all_risks)
            summary.messages += told
            summary.risks += found
        except Exception as err:
            crm_id = _crm_id(closing_id)
            get_run_logger().warning(
                "Follow-up of closing %s failed (%s); the other closings go on",
                crm_id,
                type(err).__name__,
            )
            summary.failed_closings.append(crm_id)
    summary.fulfilled_closings = sorted(advance_closings(touched))
    return summary


def _follow_up_one(
    closing_id: uuid.UUID, as_of: datetime, risks: list[RiskFinding], *, assess: bool
) -> tuple[int, int]:
    """News, re-picks, risks and artifacts of one closing; returns (messages told, risks)."""
    told = 0
    # A task run only where there is work: most follow-ups have no account number to look up.
    if lacks_account_numbers(closing_id):
        fill_account_numbers(closing_id)
    for news in item_news(closing_id):
        audiences = notify_milestone(
            closing_id,
            news.milestone,
            MilestoneFacts(
                category=news.category,
                provider=news.provider,
                scheduled_for=news.scheduled_for,
                account_number=news.account_number,
            ),
            topic=news.topic,
        )
        told += len(audiences)
    # A rejected or failed order: the next best offer goes out now, or a person is asked.
    if closing_id in repick_candidates([closing_id]):
        repick_rejected(as_of, [closing_id])
    if assess:
        risks = assess_risks(as_of, closing_id)
    for risk in risks:
        notify_milestone(
            risk.closing_id,
            Milestone.order_at_risk,
            MilestoneFacts(category=risk.category, provider=risk.provider),
            topic=f"{risk.category}:{risk.reason}",
        )
    publish(closing_id, as_of)
    return told, len(risks)


def _crm_id(closing_id: uuid.UUID) -> str:
    with db_session() as session:
        row = repository.get_closing(session=session, closing_id=closing_id)
    return row.crm_closing_id if row is not None else str(closing_id)


@flow(name="follow up closing", flow_run_name=follow_up_run_name)
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
