"""Offergrid's webhook receiver: verify the signature, store the event, then apply its status.

Every verified delivery is stored under its dedupe key before anything is acted on. A refused
one (bad signature, stale timestamp, malformed or hostile JSON) is only counted, by reason and
hour (`webhook_refusal`): nothing a sender wrote is kept, so a flood of forgeries costs a
counter. A verified event is applied with `upsert_item_status(source=webhook)`, which never lets
an older event move an item back, and each applied change is announced as a Prefect event
(STATUS_CHANGED_EVENT on the closing's resource), whose deployment trigger runs the closing's
follow-up. Duplicates answer 200 and do nothing; unknown events are stored and acknowledged. The
work is a few small database writes, well within Offergrid's 5 s; a delivery stored but never
finished (a crash in between) is finished by its next delivery, and the periodic sync catches up
on anything else.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from models.tables import StatusSource
from offergrid.errors import InvalidSignatureError, StaleTimestampError, WebhookPayloadError
from offergrid.models.webhooks import UnknownEvent, parse_webhook_event
from offergrid.models.webhooks import WebhookEvent as WireEvent
from offergrid.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_webhook
from preclose.names import STATUS_CHANGED_EVENT, closing_resource
from preclose.runtime import db_session
from preclose.settings import Settings
from preclose.storage import repository

__all__ = [
    "TIMED_OUTCOMES",
    "AppliedStatus",
    "Outcome",
    "Receipt",
    "handle_delivery",
    "router",
]

logger = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

# Prefect event IDs derived from the dedupe key: a re-announced change is the same event.
_EVENT_NAMESPACE = uuid.UUID("1b2f7f2e-6c1a-4e55-9a7e-5d0c6f1b8a11")
_MAX_KEY = 128  # webhook_event.dedupe_key


class Outcome(StrEnum):
    """What handling one delivery did, as stored in `webhook_event.outcome`."""

    applied = "applied"
    not_newer = "not newer"  # no newer than what we held (an older event, or a replay)
    unknown_item = "unknown item"  # not an item of ours (or its placement is not recorded yet)
    unknown_event = "unknown event"
    incomplete = "incomplete"  # a known event without item, status or timestamp
    duplicate = "duplicate"
    bad_signature = "bad signature"
    stale = "stale timestamp"
    malformed = "malformed"


# Outcomes of verified events that went through processing: their times make the p50/p95.
TIMED_OUTCOMES = frozenset(
    {
        Outcome.applied,
        Outcome.not_newer,
        Outcome.unknown_item,
        Outcome.unknown_event,
        Outcome.incomplete,
    }
)


@dataclass(frozen=True)
class Receipt:
    """The answer to one delivery: HTTP status, what was done, and words for the sender."""

    status_code: int
    outcome: Outcome
    detail: str


@dataclass(frozen=True)
class AppliedStatus:
    """A status change the receiver applied to one of our items."""

    crm_closing_id: str
    category: str
    item_id: str
    status: str


def handle_delivery(
    *,
    settings: Settings,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    now: datetime,
) -> Receipt:
    """Verify, store, apply and announce one delivery; `now` is the clock the timestamp is held to.

    The caller has checked that a webhook secret is configured.
    """
    secret = settings.offergrid_webhook_secret
    assert secret is not None
    received_at = datetime.now(UTC)
    try:
        verify_webhook(secret, body=body, signature=signature, timestamp=timestamp, now=now)
    except InvalidSignatureError as err:
        return _refuse(settings, received_at, Outcome.bad_signature, 401, str(err))
    except StaleTimestampError as err:
        return _refuse(settings, received_at, Outcome.stale, 400, str(err))
    try:
        event = parse_webhook_event(body)
    except WebhookPayloadError as err:
        return _refuse(settings, received_at, Outcome.malformed, 400, str(err))
    # Kept as text for the record; the parser refused NUL and lone surrogates in its values,
    # but a NUL may still sit outside them (PostgreSQL text cannot hold it).
    raw = body.decode("utf-8", errors="replace").replace("\x00", "\ufffd")

    key = _dedupe_key(event)
    with db_session(settings) as session:
        stored = repository.record_webhook_event(
            session=session,
            dedupe_key=key,
            raw_body=raw,
            signature_ok=True,
            event_type=event.event[:64] or None,
            offergrid_order_id=_clip(event.order_id),
            offergrid_item_id=_clip(event.item_id),
            received_at=received_at,
        )
        resumed = stored is None
        if stored is None:
            earlier = repository.get_webhook_event_by_dedupe_key(session=session, dedupe_key=key)
            if earlier is None or earlier.processed_at is not None:
                return _duplicate(session, event, raw, received_at)
            # Stored by a delivery that never finished (a crash): finish it now.
            stored = earlier
        outcome, applied = _apply(session, event, resumed=resumed)
        finished = repository.finish_webhook_event(
            session=session, event_id=stored.id, outcome=outcome.value
        )
        if not finished:
            # A concurrent copy finished it first: this one is the duplicate.
            return _duplicate(session, event, raw, received_at)
    if applied is not None:
        _announce(applied, key)
    logger.info("Webhook %s for item %s: %s", event.event or "?", event.item_id, outcome.value)
    return Receipt(200, outcome, outcome.value)


def _clip(value: str | None) -> str | None:
    return value[:100] if value else None


def _dedupe_key(event: WireEvent) -> str:
    key = event.dedupe_key
    return key if len(key) <= _MAX_KEY else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _refuse(
    settings: Settings, received_at: datetime, outcome: Outcome, status_code: int, detail: str
) -> Receipt:
    with db_session(settings) as session:
        repository.count_webhook_refusal(session=session, reason=outcome.value, at=received_at)
    logger.warning("Refused a webhook delivery: %s", outcome.value)
    return Receipt(status_code, outcome, detail)


def _duplicate(session: Session, event: WireEvent, raw: str, received_at: datetime) -> Receipt:
    repository.record_webhook_delivery(
        session=session,
        raw_body=raw,
        signature_ok=True,
        outcome=Outcome.duplicate.value,
        event_type=event.event[:64] or None,
        offergrid_order_id=_clip(event.order_id),
        offergrid_item_id=_clip(event.item_id),
        received_at=received_at,
        processed_at=datetime.now(UTC),
    )
    return Receipt(200, Outcome.duplicate, Outcome.duplicate.value)


def _apply(
    session: Session, event: WireEvent, *, resumed: bool = False
) -> tuple[Outcome, AppliedStatus | None]:
    """Apply the event's status to its item unless it is older; what happened, and the change.

    When `resumed` (finishing an event an earlier delivery stored but never finished), an item
    that already holds exactly this event counts as applied, so that its announcement, lost with
    the crash, is made now.
    """
    if isinstance(event, UnknownEvent):
        return Outcome.unknown_event, None
    status = event.implied_status
    if not event.item_id or status is None or event.timestamp is None:
        return Outcome.incomplete, None
    notes = event.provider_notes or getattr(event, "reason", None)
    applied = repository.upsert_item_status(
        session=session,
        offergrid_item_id=event.item_id,
        status=str(status),
        at=event.timestamp,
        source=StatusSource.webhook,
        scheduled_for=getattr(event, "scheduled_for", None),
        account_number=getattr(event, "account_number", None),
        notes=notes,
    )
    context = repository.get_item_context(session=session, offergrid_item_id=event.item_id)
    if context is None:
        return Outcome.unknown_item, None
    if not applied and not (resumed and _holds(session, event.item_id, str(status), event)):
        return Outcome.not_newer, None
    return Outcome.applied, AppliedStatus(
        crm_closing_id=context.crm_closing_id,
        category=context.category,
        item_id=event.item_id,
        status=str(status),
    )


def _holds(session: Session, item_id: str, status: str, event: WireEvent) -> bool:
    """Whether the item's current status is exactly this event's (same status, same time)."""
    item = repository.get_item_by_offergrid_id(session=session, offergrid_item_id=item_id)
    return item is not None and item.status == status and item.status_at == event.timestamp


def _announce(change: AppliedStatus, dedupe_key: str) -> None:
    """Emit the Prefect event the follow-up deployment's trigger listens for."""
    from prefect.events import emit_event

    emit_event(
        event=STATUS_CHANGED_EVENT,
        resource=closing_resource(change.crm_closing_id),
        payload={"item": change.item_id, "status": change.status, "category": change.category},
        id=uuid.uuid5(_EVENT_NAMESPACE, dedupe_key),
    )


@router.post(
    "/webhooks/offergrid",
    summary="Offergrid's webhook deliveries",
    responses={
        200: {"description": "Stored (applied, a duplicate, or an event we do not know)"},
        400: {"description": "Stale timestamp or malformed JSON"},
        401: {"description": "Signature does not match the body"},
        413: {"description": "Body larger than the limit"},
        503: {"description": "No webhook secret is configured"},
    },
)
async def offergrid_webhook(request: Request) -> JSONResponse:
    """Verify a signed delivery over its raw body, store it, apply its status and answer."""
    settings: Settings = request.app.state.settings
    if settings.offergrid_webhook_secret is None:
        # Never accept an unverifiable delivery: Offergrid retries until we are configured.
        return JSONResponse(
            {"detail": "webhooks are not configured: set PRECLOSE_OFFERGRID_WEBHOOK_SECRET"},
            status_code=503,
        )
    body = await request.body()
    receipt = await run_in_threadpool(
        lambda: handle_delivery(
            settings=settings,
            body=body,
            signature=request.headers.get(SIGNATURE_HEADER),
            timestamp=request.headers.get(TIMESTAMP_HEADER),
            now=request.app.state.now(),
        )
    )
    key = "outcome" if receipt.status_code == 200 else "detail"
    return JSONResponse({key: receipt.detail}, status_code=receipt.status_code)
