"""Webhook events, API calls and notifications."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from contextlib import suppress
from datetime import datetime
from typing import Any

from sqlalchemy import delete as sa_delete
from sqlalchemy import update as sa_update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.tables import (
    ApiCall,
    Audience,
    Notification,
    PublishedArtifact,
    WebhookEvent,
    utcnow,
)
from preclose.storage.repository._base import _aware, _commit

# Webhooks, API calls, notifications -----------------------------------------------------------


def record_webhook_event(
    *,
    session: Session,
    dedupe_key: str,
    raw_body: str,
    signature_ok: bool,
    event_type: str | None = None,
    offergrid_order_id: str | None = None,
    offergrid_item_id: str | None = None,
    received_at: datetime | None = None,
) -> WebhookEvent | None:
    """Store a webhook delivery; None if a verified delivery with this key was already stored.

    Deliveries that fail verification are always stored (for the record) but never claim the key,
    so a forged copy sent first cannot make the genuine event look like a duplicate.
    """
    event = WebhookEvent(
        dedupe_key=dedupe_key if signature_ok else None,
        event_type=event_type,
        offergrid_order_id=offergrid_order_id,
        offergrid_item_id=offergrid_item_id,
        raw_body=raw_body,
        signature_ok=signature_ok,
        received_at=_aware("received_at", received_at) if received_at else utcnow(),
    )
    if signature_ok:
        seen = session.exec(
            select(WebhookEvent.id).where(col(WebhookEvent.dedupe_key) == dedupe_key)
        ).first()
        if seen is not None:
            return None
    session.add(event)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()  # the same delivery, stored by a concurrent request
        return None
    return event


def record_api_call(
    *,
    session: Session,
    endpoint: str,
    method: str,
    status_code: int | None,
    latency_ms: float,
    error_type: str | None = None,
    at: datetime | None = None,
) -> ApiCall:
    """Store one call to Offergrid (status None when no response came back)."""
    call = ApiCall(
        endpoint=endpoint[:200],
        method=method.upper(),
        status_code=status_code,
        latency_ms=latency_ms,
        error_type=error_type,
        at=_aware("at", at) if at else utcnow(),
    )
    session.add(call)
    _commit(session)
    return call


def notification_key(closing_id: uuid.UUID, audience: Audience, milestone: str) -> str:
    """The default dedupe key: one message per closing, audience and milestone."""
    return f"{closing_id}:{Audience(audience)}:{milestone}"


def list_notification_keys(*, session: Session, closing_ids: Collection[uuid.UUID]) -> set[str]:
    """The dedupe keys of every message recorded for these closings: who was told what already."""
    if not closing_ids:
        return set()
    statement = select(Notification.dedupe_key).where(
        col(Notification.closing_id).in_(list(closing_ids))
    )
    return set(session.exec(statement).all())


def release_notifications(*, session: Session, notification_ids: list[uuid.UUID]) -> None:
    """Give back claims whose message was never tried, so a later run tells it."""
    if not notification_ids:
        return
    session.execute(sa_delete(Notification).where(col(Notification.id).in_(notification_ids)))
    _commit(session)


def record_notification(
    *,
    session: Session,
    closing_id: uuid.UUID,
    audience: Audience,
    milestone: str,
    channel: str,
    body: str,
    dedupe_key: str | None = None,
    sent_at: datetime | None = None,
) -> Notification | None:
    """Claim a milestone message; None if it was already told (same dedupe key)."""
    audience = Audience(audience)
    key = dedupe_key or notification_key(closing_id, audience, milestone)
    if session.exec(select(Notification.id).where(col(Notification.dedupe_key) == key)).first():
        return None
    notification = Notification(
        closing_id=closing_id,
        audience=audience,
        milestone=milestone,
        channel=channel,
        body=body,
        dedupe_key=key,
        sent_at=_aware("sent_at", sent_at) if sent_at else None,
    )
    session.add(notification)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()  # told concurrently by another run
        return None
    return notification


def told_keys(*, session: Session, dedupe_keys: list[str]) -> set[str]:
    """Those of `dedupe_keys` already claimed: one look-up for several messages."""
    if not dedupe_keys:
        return set()
    statement = select(Notification.dedupe_key).where(col(Notification.dedupe_key).in_(dedupe_keys))
    return set(session.exec(statement).all())


def claim_notifications(
    *, session: Session, notifications: list[Notification]
) -> list[Notification]:
    """Claim several messages in one commit; returns those claimed (others were told already).

    The unique dedupe key decides: when another run claimed one meanwhile, each is claimed on
    its own, so the others still go out once.
    """
    if not notifications:
        return []
    session.add_all(notifications)
    try:
        session.commit()
        return notifications
    except IntegrityError:
        session.rollback()
    claimed: list[Notification] = []
    for notification in notifications:
        session.add(notification)
        try:
            session.commit()
            claimed.append(notification)
        except IntegrityError:
            session.rollback()  # told concurrently by another run
    return claimed


def mark_notifications_sent(
    *, session: Session, notification_ids: list[uuid.UUID], sent_at: datetime | None = None
) -> None:
    """Record when claimed notifications went out, in one statement."""
    if not notification_ids:
        return
    when = _aware("sent_at", sent_at) if sent_at else utcnow()
    session.execute(
        sa_update(Notification)
        .where(col(Notification.id).in_(notification_ids))
        .values(sent_at=when)
    )
    _commit(session)


def mark_notification_sent(
    *, session: Session, notification_id: uuid.UUID, sent_at: datetime | None = None
) -> Notification | None:
    """Record when a claimed notification went out (None if there is no such notification)."""
    notification = session.get(Notification, notification_id)
    if notification is None:
        return None
    notification.sent_at = _aware("sent_at", sent_at) if sent_at else utcnow()
    _commit(session)
    return notification


# Artifacts ------------------------------------------------------------------------------------


def published_artifacts(*, session: Session, keys: list[str]) -> dict[str, PublishedArtifact]:
    """What was last published under each of these artifact keys that has been published."""
    rows = session.exec(select(PublishedArtifact).where(col(PublishedArtifact.key).in_(keys))).all()
    return {row.key: row for row in rows}


def last_published(*, session: Session, key: str) -> PublishedArtifact | None:
    """What was last published under this artifact key, and when, by any process."""
    return session.get(PublishedArtifact, key)


def record_published(
    *,
    session: Session,
    digests: dict[str, str],
    artifact_ids: dict[str, uuid.UUID] | None = None,
) -> None:
    """Note what each artifact key now shows (after it was created or updated), and the Prefect
    artifact kept current under it, in one unit."""
    now = utcnow()
    ids = artifact_ids or {}
    known = set(published_artifacts(session=session, keys=list(digests)))
    for key, digest in digests.items():
        values: dict[str, Any] = {"digest": digest, "published_at": now}
        if key in ids:
            values["artifact_id"] = ids[key]
        if key in known:
            session.execute(
                sa_update(PublishedArtifact)
                .where(col(PublishedArtifact.key) == key)
                .values(**values)
            )
        else:
            session.add(PublishedArtifact.model_validate({"key": key, **values}))
    # Another process may have recorded a new key first: what it shows is as new as ours.
    with suppress(IntegrityError):
        _commit(session)
