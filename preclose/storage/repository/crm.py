"""CRM API keys and requests, and the webhook receiver's bookkeeping."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.records import ClosingRecord, LineRecord, PortfolioEntry
from models.tables import (
    ApiKey,
    Closing,
    CrmRequest,
    CrmRequestKind,
    ItemStatusHistory,
    OrderItem,
    Placement,
    PlanLineRow,
    WebhookEvent,
    WebhookRefusal,
    utcnow,
)
from preclose.storage.repository._base import _aware, _commit
from preclose.storage.repository.plans import list_plan_lines
from preclose.storage.repository.self_serve import (
    ended_statuses,
    get_buyer_link,
    list_self_serve_items,
)

# CRM API and webhook receiver -----------------------------------------------------------------
# Caller keys, the requests CRMs sent (stored before their runs start), and the webhook receiver's
# bookkeeping: deliveries that claim no dedupe key, the one-time finish of an event, health counts.


def create_api_key(
    *, session: Session, name: str, key_hash: str, key_prefix: str, scopes: Iterable[str]
) -> ApiKey:
    """Store a new caller key (its hash only); a name already in use is a ValueError naming it."""
    key = ApiKey(
        name=name, key_hash=key_hash, key_prefix=key_prefix, scopes=" ".join(sorted(set(scopes)))
    )
    session.add(key)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ValueError(f"name: an API key named {name!r} already exists") from None
    return key


def get_api_key_by_hash(*, session: Session, key_hash: str) -> ApiKey | None:
    """The key with this hash, revoked or not, if any."""
    return session.exec(select(ApiKey).where(col(ApiKey.key_hash) == key_hash)).first()


def list_api_keys(*, session: Session) -> list[ApiKey]:
    """Every caller key, oldest first."""
    return list(session.exec(select(ApiKey).order_by(col(ApiKey.created_at))).all())


def revoke_api_key(*, session: Session, name: str, at: datetime | None = None) -> ApiKey | None:
    """Revoke the key named `name` (None if there is none); revoking twice keeps the first time."""
    key = session.exec(select(ApiKey).where(col(ApiKey.name) == name)).first()
    if key is None:
        return None
    if key.revoked_at is None:
        key.revoked_at = _aware("at", at) if at else utcnow()
        _commit(session)
    return key


def record_crm_request(
    *,
    session: Session,
    closing_id: uuid.UUID,
    kind: CrmRequestKind,
    idempotency_key: str,
    body: dict[str, Any] | None = None,
) -> tuple[CrmRequest, bool]:
    """Store a CRM's request under its idempotency key, or find the one stored; True if new."""
    kind = CrmRequestKind(kind)
    existing = find_crm_request(session=session, idempotency_key=idempotency_key)
    if existing is not None:
        return existing, False
    request = CrmRequest(
        closing_id=closing_id, kind=kind, idempotency_key=idempotency_key, body=body
    )
    session.add(request)
    try:
        session.commit()
    except IntegrityError:
        # The same request, stored by a concurrent call between our read and our insert.
        session.rollback()
        existing = find_crm_request(session=session, idempotency_key=idempotency_key)
        if existing is None:
            raise
        return existing, False
    return request, True


def find_crm_request(*, session: Session, idempotency_key: str) -> CrmRequest | None:
    """The CRM request stored under this idempotency key, if any."""
    statement = select(CrmRequest).where(col(CrmRequest.idempotency_key) == idempotency_key)
    return session.exec(statement.execution_options(populate_existing=True)).first()


def latest_crm_request(
    *, session: Session, closing_id: uuid.UUID, kind: CrmRequestKind
) -> CrmRequest | None:
    """The closing's most recent request of this kind, if any."""
    statement = (
        select(CrmRequest)
        .where(col(CrmRequest.closing_id) == closing_id, col(CrmRequest.kind) == kind)
        .order_by(col(CrmRequest.received_at).desc(), col(CrmRequest.id).desc())
        .limit(1)
    )
    return session.exec(statement).first()


def list_crm_requests(
    *, session: Session, closing_id: uuid.UUID | None = None, unstarted: bool = False
) -> list[CrmRequest]:
    """CRM requests, oldest first: of one closing, and/or only those whose run never started."""
    statement = select(CrmRequest)
    if closing_id is not None:
        statement = statement.where(col(CrmRequest.closing_id) == closing_id)
    if unstarted:
        statement = statement.where(col(CrmRequest.flow_run_id).is_(None))
    statement = statement.order_by(col(CrmRequest.received_at), col(CrmRequest.id))
    return list(session.exec(statement).all())


def mark_crm_request_started(
    *,
    session: Session,
    request_id: uuid.UUID,
    flow_run_id: uuid.UUID,
    started_at: datetime | None = None,
) -> CrmRequest | None:
    """Record the flow run started for a request (None if there is no such request)."""
    request = session.get(CrmRequest, request_id)
    if request is None:
        return None
    request.flow_run_id = flow_run_id
    request.started_at = _aware("started_at", started_at) if started_at else utcnow()
    request.last_error = None
    _commit(session)
    return request


def mark_crm_request_not_started(
    *, session: Session, request_id: uuid.UUID, error: str
) -> CrmRequest | None:
    """Record why a request's run could not be started (None if there is no such request)."""
    request = session.get(CrmRequest, request_id)
    if request is None:
        return None
    request.last_error = error
    _commit(session)
    return request


def list_line_orders(
    *, session: Session, closing_id: uuid.UUID, with_history: bool = False
) -> list[LineRecord]:
    """The closing's current plan lines, each with its order item and placement if ordered (and
    the item's status history, oldest first, when asked)."""
    lines = list_plan_lines(session=session, closing_id=closing_id)
    rows = session.exec(
        select(OrderItem, Placement)
        .join(Placement, col(Placement.id) == col(OrderItem.placement_id))
        .where(col(OrderItem.plan_line_id).in_([line.id for line in lines]))
    ).all()
    by_line = {item.plan_line_id: (item, placement) for item, placement in rows}
    history: dict[uuid.UUID, list[ItemStatusHistory]] = {}
    if with_history and rows:
        for entry in session.exec(
            select(ItemStatusHistory)
            .where(col(ItemStatusHistory.order_item_id).in_([item.id for item, _ in rows]))
            .order_by(col(ItemStatusHistory.at))
        ).all():
            history.setdefault(entry.order_item_id, []).append(entry)
    records: list[LineRecord] = []
    for line in lines:
        item, placement = by_line.get(line.id, (None, None))
        records.append(
            LineRecord(
                line=line,
                item=item,
                placement=placement,
                history=tuple(history.get(item.id, ())) if item is not None else (),
            )
        )
    return records


def read_closing_record(*, session: Session, closing_id: uuid.UUID) -> ClosingRecord | None:
    """A closing with its lines (orders and histories), CRM requests, buyer link and the buyer's
    own orders: what its page shows."""
    closing = session.get(Closing, closing_id)
    if closing is None:
        return None
    return ClosingRecord(
        closing=closing,
        lines=list_line_orders(session=session, closing_id=closing_id, with_history=True),
        crm_requests=list_crm_requests(session=session, closing_id=closing_id),
        buyer_link=get_buyer_link(session=session, closing_id=closing_id),
        self_serve=list_self_serve_items(session=session, closing_id=closing_id),
    )


def list_portfolio(*, session: Session, limit: int = 500) -> list[PortfolioEntry]:
    """Live closings by closing date, each with its count of lines at risk."""
    closings = session.exec(
        select(Closing)
        .where(col(Closing.status).not_in(ended_statuses()))
        .order_by(col(Closing.closing_date), col(Closing.crm_closing_id))
        .limit(limit)
    ).all()
    risky = dict(
        session.exec(
            select(PlanLineRow.closing_id, func.count())
            .where(
                col(PlanLineRow.closing_id).in_([c.id for c in closings]),
                col(PlanLineRow.at_risk).is_(True),
            )
            .group_by(col(PlanLineRow.closing_id))
        ).all()
    )
    return [PortfolioEntry(closing=c, at_risk=int(risky.get(c.id, 0))) for c in closings]


@dataclass(frozen=True)
class ItemContext:
    """Which closing and category an Offergrid item belongs to."""

    closing_id: uuid.UUID
    crm_closing_id: str
    category: str


def get_item_context(*, session: Session, offergrid_item_id: str) -> ItemContext | None:
    """The closing and category of the item with this Offergrid ID, if it is one of ours."""
    row = session.exec(
        select(Closing.id, Closing.crm_closing_id, PlanLineRow.category)
        .join(Placement, col(Placement.closing_id) == col(Closing.id))
        .join(OrderItem, col(OrderItem.placement_id) == col(Placement.id))
        .join(PlanLineRow, col(PlanLineRow.id) == col(OrderItem.plan_line_id))
        .where(col(OrderItem.offergrid_item_id) == offergrid_item_id)
    ).first()
    if row is None:
        return None
    closing_id, crm_closing_id, category = row
    return ItemContext(closing_id, crm_closing_id, category)


def record_webhook_delivery(
    *,
    session: Session,
    raw_body: str,
    signature_ok: bool,
    outcome: str,
    event_type: str | None = None,
    offergrid_order_id: str | None = None,
    offergrid_item_id: str | None = None,
    received_at: datetime | None = None,
    processed_at: datetime | None = None,
) -> WebhookEvent:
    """Store a delivery that claims no dedupe key (refused, malformed or a duplicate), finished."""
    received = _aware("received_at", received_at) if received_at else utcnow()
    event = WebhookEvent(
        dedupe_key=None,
        event_type=event_type,
        offergrid_order_id=offergrid_order_id,
        offergrid_item_id=offergrid_item_id,
        raw_body=raw_body,
        signature_ok=signature_ok,
        received_at=received,
        processed_at=_aware("processed_at", processed_at) if processed_at else received,
        outcome=outcome[:200],
    )
    session.add(event)
    _commit(session)
    return event


def count_webhook_refusal(*, session: Session, reason: str, at: datetime | None = None) -> None:
    """Count one refused delivery under its reason and UTC hour; nothing else of it is stored."""
    when = _aware("at", at) if at else utcnow()
    hour = when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    reason = reason[:40]
    for _ in range(2):
        # An UPDATE first: the common case, and atomic under concurrent refusals.
        bumped = session.exec(
            update(WebhookRefusal)
            .where(col(WebhookRefusal.reason) == reason, col(WebhookRefusal.hour) == hour)
            .values(count=WebhookRefusal.count + 1, last_at=when)
        )
        if bumped.rowcount:
            _commit(session)
            return
        session.add(WebhookRefusal(reason=reason, hour=hour, count=1, last_at=when))
        try:
            session.commit()
            return
        except IntegrityError:
            session.rollback()  # a concurrent refusal made the row first: bump it instead
    raise RuntimeError("could not count a webhook refusal")  # pragma: no cover


def webhook_refusals(*, session: Session, since: datetime) -> dict[str, int]:
    """Refused deliveries by reason in the hours from the one holding `since` onwards."""
    since = _aware("since", since).astimezone(UTC)
    first_hour = since.replace(minute=0, second=0, microsecond=0)
    rows = session.exec(
        select(WebhookRefusal.reason, func.sum(WebhookRefusal.count))
        .where(col(WebhookRefusal.hour) >= first_hour)
        .group_by(WebhookRefusal.reason)
    ).all()
    return {str(reason): int(total or 0) for reason, total in rows}


def get_webhook_event_by_dedupe_key(*, session: Session, dedupe_key: str) -> WebhookEvent | None:
    """The verified delivery stored under this dedupe key, if any."""
    statement = select(WebhookEvent).where(col(WebhookEvent.dedupe_key) == dedupe_key)
    return session.exec(statement.execution_options(populate_existing=True)).first()


def finish_webhook_event(
    *, session: Session, event_id: uuid.UUID, outcome: str, processed_at: datetime | None = None
) -> bool:
    """Record what handling an event did, only if nobody has yet; True if this call recorded it."""
    at = _aware("processed_at", processed_at) if processed_at else utcnow()
    result = session.exec(
        update(WebhookEvent)
        .where(col(WebhookEvent.id) == event_id, col(WebhookEvent.processed_at).is_(None))
        .values(processed_at=at, outcome=outcome[:200])
    )
    _commit(session)
    return bool(result.rowcount)


@dataclass(frozen=True)
class WebhookFigures:
    """Webhook deliveries received since a moment: counts by outcome and processing times."""

    received: int
    unprocessed: int
    by_outcome: dict[str, int]
    processing_ms: list[float]
    last_received_at: datetime | None


def webhook_figures(
    *, session: Session, since: datetime, timed_outcomes: Iterable[str], max_samples: int = 5000
) -> WebhookFigures:
    """Counts of the deliveries received since `since`, and the processing times (newest
    `max_samples`, in ms) of those whose outcome is one of `timed_outcomes`."""
    _aware("since", since)
    recent = col(WebhookEvent.received_at) >= since
    counts = session.exec(
        select(WebhookEvent.outcome, func.count()).where(recent).group_by(WebhookEvent.outcome)
    ).all()
    by_outcome = {str(outcome): int(n) for outcome, n in counts if outcome is not None}
    # Refusals are counted per hour, so the window takes whole hours of them.
    for reason, n in webhook_refusals(session=session, since=since).items():
        by_outcome[reason] = by_outcome.get(reason, 0) + n
    unprocessed = sum(int(n) for outcome, n in counts if outcome is None)
    last = session.exec(select(func.max(WebhookEvent.received_at)).where(recent)).first()
    refused_last = session.exec(
        select(func.max(WebhookRefusal.last_at)).where(
            col(WebhookRefusal.hour) >= since - timedelta(hours=1)
        )
    ).first()
    if isinstance(refused_last, datetime) and refused_last.tzinfo is None:
        refused_last = refused_last.replace(tzinfo=UTC)
    if isinstance(last, datetime) and last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    if isinstance(refused_last, datetime) and refused_last >= since:
        last = max(last, refused_last) if isinstance(last, datetime) else refused_last
    timed = session.exec(
        select(WebhookEvent.received_at, WebhookEvent.processed_at)
        .where(
            recent,
            col(WebhookEvent.processed_at).is_not(None),
            col(WebhookEvent.outcome).in_(list(timed_outcomes)),
        )
        .order_by(col(WebhookEvent.received_at).desc())
        .limit(max_samples)
    ).all()
    samples = [
        (processed - received).total_seconds() * 1000
        for received, processed in timed
        if processed is not None
    ]
    if isinstance(last, datetime) and last.tzinfo is None:
        last = last.replace(tzinfo=UTC)  # an aggregate skips the column type on SQLite
    return WebhookFigures(
        received=sum(by_outcome.values()) + unprocessed,
        unprocessed=unprocessed,
        by_outcome=by_outcome,
        processing_ms=samples,
        last_received_at=last if isinstance(last, datetime) else None,
    )


def get_crm_request(*, session: Session, request_id: uuid.UUID) -> CrmRequest | None:
    """The CRM request with this ID, if any."""
    return session.get(CrmRequest, request_id)


def finish_crm_request(
    *, session: Session, request_id: uuid.UUID, outcome: str, at: datetime | None = None
) -> bool:
    """Record that a run finished the request, and how; False if there is no such request."""
    result = session.exec(
        update(CrmRequest)
        .where(col(CrmRequest.id) == request_id)
        .values(finished_at=_aware("at", at) if at else utcnow(), outcome=outcome[:200])
    )
    _commit(session)
    return bool(result.rowcount)


def list_unfinished_requests(*, session: Session, received_before: datetime) -> list[CrmRequest]:
    """Accepted requests no run has finished, received before `received_before`, oldest first."""
    statement = (
        select(CrmRequest)
        .where(
            col(CrmRequest.finished_at).is_(None),
            col(CrmRequest.received_at) < _aware("received_before", received_before),
        )
        .order_by(col(CrmRequest.received_at), col(CrmRequest.id))
    )
    return list(session.exec(statement).all())


def restart_crm_request(*, session: Session, request_id: uuid.UUID, attempt: int) -> bool:
    """Count one more run for a request still at `attempt` and forget its old run; False when
    another caller restarted (or a run finished) it first."""
    result = session.exec(
        update(CrmRequest)
        .where(
            col(CrmRequest.id) == request_id,
            col(CrmRequest.attempt) == attempt,
            col(CrmRequest.finished_at).is_(None),
        )
        .values(attempt=attempt + 1, flow_run_id=None, started_at=None, outcome=None)
    )
    _commit(session)
    return bool(result.rowcount)
