"""Notifications: tell the buyer and the agent about a milestone, once.

A plain step of the calling flow, not a task run per message: the outbox and the notification
rows say what was told, and a failure fails the step that asked.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Notice:
    """One milestone to tell about a closing: what happened, its facts, and its topic."""

    milestone: Milestone
    facts: MilestoneFacts | None = None
    topic: str = ""
    agent_only: bool = False


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
    [told] = notify_milestones(closing_id, [Notice(milestone, facts, topic, agent_only)])
    return told


def notify_milestones(closing_id: uuid.UUID, notices: Sequence[Notice]) -> list[list[Audience]]:
    """Tell each notice as `notify_milestone` does, reading the closing once for all of them;
    returns who got each."""
    if not notices:
        return []
    closing = load_closing(closing_id)
    return deliver(
        closing_id,
        closing,
        [
            Delivery(
                notice.milestone,
                NotificationContext.from_closing(closing, notice.facts),
                notice.topic,
                notice.agent_only,
            )
            for notice in notices
        ],
    )


@dataclass(frozen=True)
class Delivery:
    """A composed milestone ready to claim and send."""

    milestone: Milestone
    context: NotificationContext
    topic: str
    agent_only: bool = False


def deliver_once(
    closing_id: uuid.UUID,
    closing: ClosingRequest,
    milestone: Milestone,
    context: NotificationContext,
    *,
    topic: str,
    agent_only: bool = False,
) -> list[Audience]:
    """Send the milestone's message to each audience that has not had it yet; returns who got it."""
    [told] = deliver(closing_id, closing, [Delivery(milestone, context, topic, agent_only)])
    return told


def deliver(
    closing_id: uuid.UUID, closing: ClosingRequest, deliveries: Sequence[Delivery]
) -> list[list[Audience]]:
    """Send each delivery's message to each audience that has not had it; returns who got each.

    Every claim is stored, in one commit, before any send, so two runs seeing the same news tell
    it once between them; the buyer is told only with their consent, on their preferred channel.
    """
    wanted: list[tuple[int, Audience, str]] = []
    for index, delivery in enumerate(deliveries):
        audiences = [Audience.agent]
        if closing.buyer.contact_consent and not delivery.agent_only:
            audiences.insert(0, Audience.buyer)
        wanted += [
            (index, audience, told_key(closing_id, audience, delivery.milestone, delivery.topic))
            for audience in audiences
        ]
    pending: dict[str, tuple[int, Audience, Message, ContactChannel | None]] = {}
    with db_session() as session:
        # One look-up for every message, and a message composed only for those not told yet.
        told_before = repository.told_keys(session=session, dedupe_keys=[k for *_, k in wanted])
        claims = []
        for index, audience, key in wanted:
            if key in told_before or key in pending:
                continue
            delivery = deliveries[index]
            message = compose(
                delivery.milestone,
                with_page_link(delivery.context, closing_id, audience),
                audience=audience,
            )
            channel = closing.buyer.preferred_channel if audience is Audience.buyer else None
            pending[key] = (index, audience, message, channel)
            claims.append(
                Notification(
                    closing_id=closing_id,
                    audience=audience,
                    milestone=delivery.milestone.value,
                    channel=channel.value if channel else "email",
                    body=message.body,
                    dedupe_key=key,
                )
            )
        claimed = [
            (claim.id, pending[claim.dedupe_key])
            for claim in repository.claim_notifications(session=session, notifications=claims)
        ]
    urls = get_settings().notify_urls
    told: list[list[Audience]] = [[] for _ in deliveries]
    sent: list[uuid.UUID] = []
    untried = [claim_id for claim_id, _ in claimed]
    try:
        for claim_id, (index, audience, message, channel) in claimed:
            untried.remove(claim_id)
            send(message, to=audience, urls=urls, channel=channel)
            sent.append(claim_id)
            told[index].append(audience)
    finally:
        # What went out is recorded even when a later send failed; a message that failed stays
        # claimed (told at most once), and those never tried are given back for a later run.
        if sent or untried:
            with db_session() as session:
                repository.mark_notifications_sent(session=session, notification_ids=sent)
                repository.release_notifications(session=session, notification_ids=untried)
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
