"""Notifications: tell the buyer and the agent about a milestone, once.

A plain step of the calling flow, not a task run per message: the outbox and the notification
rows say what was told, and a failure fails the step that asked.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from models.closing import ClosingRequest, ContactChannel
from models.tables import Audience, Notification
from preclose.rules.pagelinks import page_url
from preclose.runtime import db_session
from preclose.settings import get_settings
from preclose.storage import repository
from preclose.wording.notify import (
    Message,
    Milestone,
    MilestoneFacts,
    NotificationContext,
    compose,
    send,
)
from tasks.closings import load_closing

logger = logging.getLogger(__name__)


def notify_milestone(
    closing_id: uuid.UUID,
    milestone: Milestone,
    facts: MilestoneFacts | None = None,
    *,
    topic: str = "",
    agent_only: bool = False,
) -> list[Audience]:
    """Tell the agent, and the buyer if they agreed, unless this milestone was told already.

    `topic` tells milestones of the same kind apart (e.g. the category), so each service's news
    is told once however many runs see it.
    """
    closing = load_closing(closing_id)
    context = NotificationContext.from_closing(closing, facts)
    return deliver_once(closing_id, closing, milestone, context, topic=topic, agent_only=agent_only)


def deliver_once(
    closing_id: uuid.UUID,
    closing: ClosingRequest,
    milestone: Milestone,
    context: NotificationContext,
    *,
    topic: str,
    agent_only: bool = False,
) -> list[Audience]:
    """Send the milestone's message to each audience that has not had it yet; returns who got it.

    The claim is stored before the send, so two runs seeing the same news tell it once between
    them; the buyer is told only with their consent, on their preferred channel.
    """
    audiences = [Audience.agent]
    if closing.buyer.contact_consent and not agent_only:
        audiences.insert(0, Audience.buyer)
    keys = {audience: told_key(closing_id, audience, milestone, topic) for audience in audiences}
    messages: dict[Audience, tuple[Message, ContactChannel | None]] = {}
    with db_session() as session:
        # One look-up for every audience, and a message composed only for those not told yet.
        told_before = repository.told_keys(session=session, dedupe_keys=list(keys.values()))
        claims = []
        for audience in audiences:
            if keys[audience] in told_before:
                continue
            message = compose(
                milestone, with_page_link(context, closing_id, audience), audience=audience
            )
            channel = closing.buyer.preferred_channel if audience is Audience.buyer else None
            messages[audience] = (message, channel)
            claims.append(
                Notification(
                    closing_id=closing_id,
                    audience=audience,
                    milestone=milestone.value,
                    channel=channel.value if channel else "email",
                    body=message.body,
                    dedupe_key=keys[audience],
                )
            )
        # Claimed before the send, so two runs seeing the same news tell it once between them.
        claimed = repository.claim_notifications(session=session, notifications=claims)
        sent = [(claim.id, Audience(claim.audience)) for claim in claimed]
    urls = get_settings().notify_urls
    told: list[Audience] = []
    try:
        for _, audience in sent:
            message, channel = messages[audience]
            send(message, to=audience, urls=urls, channel=channel)
            told.append(audience)
    finally:
        # What went out is recorded even when a later send failed.
        ids = [claim_id for claim_id, audience in sent if audience in told]
        if ids:
            with db_session() as session:
                repository.mark_notifications_sent(session=session, notification_ids=ids)
    return told


def with_page_link(
    context: NotificationContext, closing_id: uuid.UUID, audience: Audience
) -> NotificationContext:
    """The context with the signed link to the closing's page for `audience`."""
    url = page_url(get_settings(), closing_id, audience, now=datetime.now(UTC))
    return context.model_copy(update={"page_url": url})


def told_key(closing_id: uuid.UUID, audience: Audience, milestone: Milestone, topic: str) -> str:
    """The dedupe key that records one milestone told to one audience about one topic."""
    return f"{closing_id}:{audience.value}:{milestone.value}:{topic}"[:200]
