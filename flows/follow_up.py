"""The `follow up closing` flow: after statuses change, tell people, flag risks, close out."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from prefect import flow

from flows.runs import as_of_or_now, closing_tag, follow_up_run_name, tag_this_run
from models.summary import FollowUpSummary
from preclose import repository
from preclose.notify import Milestone
from preclose.runtime import db_session
from tasks.artifacts import publish
from tasks.notifications import notify_milestone
from tasks.replan import repick_rejected
from tasks.tracking import assess_risks, complete_fulfilled_closings, item_news


def follow_up(
    closing_ids: Iterable[uuid.UUID], as_of: datetime, *, all_risks: bool = False
) -> FollowUpSummary:
    """The follow-up steps for these closings, inside the calling flow (sync or follow-up).

    Milestones are derived from each item's current status and told once (the notification's
    dedupe key), so a webhook, a sync and a retry seeing the same change tell it once between them.
    """
    touched = set(closing_ids)
    told = 0
    for closing_id in touched:
        for news in item_news(closing_id):
            audiences = notify_milestone(
                closing_id,
                news.milestone,
                topic=news.topic,
                category=news.category,
                provider=news.provider,
                scheduled_for=news.scheduled_for,
                account_number=news.account_number,
            )
            told += len(audiences)
    # A rejected or failed order: the next best offer goes out now, or a person is asked.
    repick_rejected(as_of, None if all_risks else touched)
    risks = (
        assess_risks(as_of)
        if all_risks
        else [risk for cid in touched for risk in assess_risks(as_of, cid)]
    )
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
        publish(closing_id, as_of)
    return FollowUpSummary(messages=told, risks=len(risks), fulfilled_closings=[*fulfilled])


@flow(name="follow up closing", flow_run_name=follow_up_run_name)
def follow_up_closing(crm_closing_id: str, as_of: datetime | None = None) -> FollowUpSummary:
    """Follow up one closing after its orders moved (run by the webhook event's trigger)."""
    now = as_of_or_now(as_of)
    tag_this_run(closing_tag(crm_closing_id))
    with db_session() as session:
        row = repository.get_closing_by_crm_id(session=session, crm_closing_id=crm_closing_id)
    if row is None:
        raise ValueError(f"crm_closing_id: no closing {crm_closing_id!r} is known")
    return follow_up([row.id], now)
