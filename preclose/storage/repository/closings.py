"""Closings: create, read, list and update."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.closing import ClosingRequest
from models.tables import (
    Closing,
    ClosingCreate,
    ClosingStatus,
    PlanLineRow,
    PlanLineState,
    utcnow,
)
from preclose.rules import lifecycle
from preclose.rules.lifecycle import Event, TransitionRefused
from preclose.storage.repository._base import (
    StaleClosingError,
    _aware,
    _commit,
    _lock_closing,
    _locked,
)
from preclose.storage.repository.plans import _current_line_filter

# Closings -------------------------------------------------------------------------------------


def create_or_get_closing(*, session: Session, closing_in: ClosingRequest) -> tuple[Closing, bool]:
    """The closing for `closing_in.crm_closing_id`, created if new; True when this call made it."""
    existing = get_closing_by_crm_id(session=session, crm_closing_id=closing_in.crm_closing_id)
    if existing is not None:
        return existing, False
    closing = Closing.model_validate(ClosingCreate.from_request(closing_in))
    session.add(closing)
    try:
        session.commit()
    except IntegrityError:
        # Another caller created the same closing between our read and our insert.
        session.rollback()
        existing = get_closing_by_crm_id(session=session, crm_closing_id=closing_in.crm_closing_id)
        if existing is None:
            raise
        return existing, False
    return closing, True


def get_closing(*, session: Session, closing_id: uuid.UUID) -> Closing | None:
    """The closing with this ID, if any."""
    return session.get(Closing, closing_id)


def get_closings(*, session: Session, closing_ids: Collection[uuid.UUID]) -> list[Closing]:
    """The closings with these IDs that exist, in one query."""
    if not closing_ids:
        return []
    return list(session.exec(select(Closing).where(col(Closing.id).in_(list(closing_ids)))).all())


def get_closing_by_crm_id(*, session: Session, crm_closing_id: str) -> Closing | None:
    """The closing with this CRM ID, if any."""
    statement = select(Closing).where(col(Closing.crm_closing_id) == crm_closing_id)
    return session.exec(statement).first()


def list_closings(
    *,
    session: Session,
    statuses: Iterable[ClosingStatus] | None = None,
    closing_from: date | None = None,
    closing_to: date | None = None,
    test_mode: bool | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Closing]:
    """Closings matching every given filter, by closing date then CRM ID."""
    statement = select(Closing)
    if statuses is not None:
        statement = statement.where(col(Closing.status).in_(list(statuses)))
    if closing_from is not None:
        statement = statement.where(col(Closing.closing_date) >= closing_from)
    if closing_to is not None:
        statement = statement.where(col(Closing.closing_date) <= closing_to)
    if test_mode is not None:
        statement = statement.where(col(Closing.test_mode) == test_mode)
    statement = (
        statement.order_by(col(Closing.closing_date), col(Closing.crm_closing_id))
        .offset(offset)
        .limit(limit)
    )
    return list(session.exec(statement).all())


def _check_version(closing: Closing, expected_version: int | None) -> None:
    if expected_version is not None and closing.version != expected_version:
        raise StaleClosingError(closing.id, expected_version, closing.version)


def update_closing_request(
    *,
    session: Session,
    closing_id: uuid.UUID,
    closing_in: ClosingRequest,
    expected_version: int | None = None,
) -> Closing | None:
    """Replace the stored request (a moved closing date, a new phone) and its copied columns."""
    rows = _locked(session, Closing, col(Closing.id) == closing_id)
    if not rows:
        session.rollback()
        return None
    closing = rows[0]
    try:
        _check_version(closing, expected_version)
        if closing_in.crm_closing_id != closing.crm_closing_id:
            raise ValueError(
                f"crm_closing_id: {closing_in.crm_closing_id!r} does not match the stored "
                f"closing's {closing.crm_closing_id!r}"
            )
    except (StaleClosingError, ValueError):
        session.rollback()
        raise
    values = ClosingCreate.from_request(closing_in).model_dump(exclude={"status"})
    if any(getattr(closing, name) != value for name, value in values.items()):
        for name, value in values.items():
            setattr(closing, name, value)
        closing.version += 1
        closing.updated_at = utcnow()
    _commit(session)
    return closing


# The closing's life: every status change asks rules.lifecycle, under the closing's row lock -------


def _move(closing: Closing, event: Event, *, reason: str | None, at: datetime) -> None:
    """Apply `event` to a locked closing (TransitionRefused if not allowed), in the transaction."""
    target = lifecycle.next_status(closing.crm_closing_id, ClosingStatus(closing.status), event)
    if event == Event.fail:
        closing.attention_reason = reason or "a run failed"
        closing.attention_at = at
    elif event == Event.retry:
        closing.attention_reason = None
        closing.attention_at = None
    if closing.status != target or event == Event.fail:
        closing.status = target
        closing.version += 1
        closing.updated_at = at


def transition_closing(
    *,
    session: Session,
    closing_id: uuid.UUID,
    event: Event,
    reason: str | None = None,
    at: datetime | None = None,
) -> Closing:
    """Move the closing by `event` under its row lock; TransitionRefused names its current state.

    `reason` is what a person reads when the event is a failure (needs attention).
    """
    now = _aware("at", at) if at is not None else utcnow()
    closing = _lock_closing(session, closing_id)
    try:
        _move(closing, event, reason=reason, at=now)
    except TransitionRefused:
        session.rollback()
        raise
    _commit(session)
    return closing


@dataclass(frozen=True)
class Attention:
    """A closing just marked needs attention: its request and when the spell began."""

    closing: ClosingRequest
    since: datetime | None


def mark_needs_attention(*, session: Session, closing_id: uuid.UUID, reason: str) -> Attention:
    """Set the closing to needs attention with `reason` under its lock; TransitionRefused when it
    is past failing (fell through or fulfilled)."""
    row = transition_closing(
        session=session, closing_id=closing_id, event=Event.fail, reason=reason
    )
    return Attention(row.closing_request(), row.attention_at)


def advance_closing(*, session: Session, closing_id: uuid.UUID) -> Closing:
    """Move a live closing as far as its current plan lines say (ordering, active, fulfilled).

    Under the closing's lock; a closing that is not live, or already that far, stays as it is.
    """
    closing = _lock_closing(session, closing_id)
    lines = session.exec(
        select(PlanLineRow.state, PlanLineRow.at_risk).where(
            col(PlanLineRow.closing_id) == closing_id, _current_line_filter(PlanLineRow)
        )
    ).all()
    # A skipped line flagged at risk is an essential service with no offer left to order.
    must_choose = any(state == PlanLineState.skipped and at_risk for state, at_risk in lines)
    event = lifecycle.progress_event(
        (state for state, _ in lines), a_person_must_choose=must_choose
    )
    status = ClosingStatus(closing.status)
    # Each step implies the ones before it: a closing seen fulfilled at once skips ordering.
    if event is not None and lifecycle.allows(status, event):
        _move(closing, event, reason=None, at=utcnow())
    _commit(session)
    return closing
