"""Order items: status updates, history and fulfilment checks."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, not_, or_
from sqlalchemy import select as sa_select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from models.records import LineRecord
from models.tables import (
    Closing,
    ItemStatusHistory,
    OrderItem,
    Placement,
    PlanLineRow,
    PlanLineState,
    StatusSource,
    utcnow,
)
from offergrid.models.enums import FULFILLED, OrderStatus
from preclose.rules.tracking import ItemFacts, LineRisk, RiskFinding, reassess, supersedes
from preclose.storage.repository._base import (
    _LINE_STATE_FOR_ITEM,
    _REPLACEABLE,
    LIVE_CLOSING_STATUSES,
    TERMINAL_ITEM_STATUSES,
    TRACKED_CLOSING_STATUSES,
    _aware,
    _commit,
    _lock_closing,
    _locked,
)
from preclose.storage.repository.plans import _current_line_filter

# Order items ----------------------------------------------------------------------------------


def get_item_by_offergrid_id(*, session: Session, offergrid_item_id: str) -> OrderItem | None:
    """The order item with this Offergrid item ID, if any."""
    statement = select(OrderItem).where(col(OrderItem.offergrid_item_id) == offergrid_item_id)
    return session.exec(statement).first()


def _supersedes(item: OrderItem, status: str, at: datetime) -> bool:
    """Whether an event (status, at) is newer than what the item already holds."""
    return supersedes(item.status, item.status_at, status, at)


def upsert_item_status(
    *,
    session: Session,
    offergrid_item_id: str,
    status: str,
    at: datetime,
    source: StatusSource,
    scheduled_for: datetime | None = None,
    account_number: str | None = None,
    notes: str | None = None,
) -> bool:
    """Apply a status event to an item unless it is older than what we hold; True if applied.

    False when the item is unknown, or the event is older than (or a replay of) the item's
    current status: out-of-order webhooks and stale syncs can never move an item back.
    """
    _aware("at", at)
    if scheduled_for is not None:
        _aware("scheduled_for", scheduled_for)
    source = StatusSource(source)
    rows = _locked(session, OrderItem, col(OrderItem.offergrid_item_id) == offergrid_item_id)
    if not rows:
        session.rollback()
        return False
    if not _supersedes(rows[0], status, at):
        # Older news still fills a fact we lack (the account number a lost event carried).
        if account_number is not None and rows[0].account_number is None:
            rows[0].account_number = account_number
            rows[0].updated_at = utcnow()
            _commit(session)
        else:
            session.rollback()
        return False
    item = rows[0]
    now = utcnow()
    item.status = status
    item.status_at = at
    if scheduled_for is not None:
        item.scheduled_for = scheduled_for
    if account_number is not None:
        item.account_number = account_number
    if notes is not None:
        item.provider_notes = notes
    item.updated_at = now
    session.add(
        ItemStatusHistory(order_item_id=item.id, status=status, at=at, source=source, notes=notes)
    )
    line_state = _LINE_STATE_FOR_ITEM.get(status)
    line = session.get(PlanLineRow, item.plan_line_id)
    # An unknown status leaves the line as it is; a known one decides whether it is fulfilled.
    if line_state is not None and line is not None and line.state not in _REPLACEABLE:
        line.state = line_state
        line.updated_at = now
    _commit(session)
    return True


def _not_terminal() -> Any:
    return or_(
        col(OrderItem.status).is_(None),
        col(OrderItem.status).not_in(sorted(TERMINAL_ITEM_STATUSES)),
    )


def list_items_watched(*, session: Session) -> list[OrderItem]:
    """Placed items whose status a newer one may follow (completed may become active)."""
    final = sorted(TERMINAL_ITEM_STATUSES - {OrderStatus.COMPLETED.value})
    statement = (
        select(OrderItem)
        .where(
            col(OrderItem.offergrid_item_id).is_not(None),
            or_(col(OrderItem.status).is_(None), col(OrderItem.status).not_in(final)),
        )
        .order_by(col(OrderItem.updated_at), col(OrderItem.id))
    )
    return list(session.exec(statement).all())


def _live_without_account() -> tuple[Any, ...]:
    """Criteria (items joined to their placements) of a live service with no account number."""
    return (
        col(Placement.offergrid_order_id).is_not(None),
        col(OrderItem.offergrid_item_id).is_not(None),
        col(OrderItem.status).in_([s.value for s in FULFILLED]),
        col(OrderItem.account_number).is_(None),
    )


def list_live_items_without_account(
    *, session: Session, closing_id: uuid.UUID
) -> list[tuple[str, str]]:
    """(Offergrid order ID, item ID) of the closing's live services that lack an account number."""
    rows = session.exec(
        select(Placement.offergrid_order_id, OrderItem.offergrid_item_id)
        .join(Placement, col(Placement.id) == col(OrderItem.placement_id))
        .where(col(Placement.closing_id) == closing_id, *_live_without_account())
    ).all()
    return [(str(order_id), str(item_id)) for order_id, item_id in rows]


def closings_lacking_accounts(
    *, session: Session, closing_ids: Collection[uuid.UUID]
) -> set[uuid.UUID]:
    """Those of these closings with a live service that has no account number yet (one query)."""
    if not closing_ids:
        return set()
    rows = session.exec(
        select(Placement.closing_id)
        .join(OrderItem, col(Placement.id) == col(OrderItem.placement_id))
        .where(col(Placement.closing_id).in_(list(closing_ids)), *_live_without_account())
        .distinct()
    ).all()
    return set(rows)


def fill_item_facts(*, session: Session, offergrid_item_id: str, account_number: str) -> bool:
    """Set an item's account number when it has none; True if this call set it."""
    rows = _locked(session, OrderItem, col(OrderItem.offergrid_item_id) == offergrid_item_id)
    if not rows or rows[0].account_number is not None:
        session.rollback()
        return False
    rows[0].account_number = account_number
    rows[0].updated_at = utcnow()
    _commit(session)
    return True


# Built once: a fresh alias per query is slow to build and defeats the statement cache.
_LINE = aliased(PlanLineRow, name="closing_line")


def _fulfilled_closing_filter() -> Any:
    """True for a closing whose current lines are all fulfilled or skipped, some fulfilled, and
    none an essential service skipped for want of an offer (at risk: a person must choose)."""
    line = _LINE
    current = and_(col(line.closing_id) == col(Closing.id), _current_line_filter(line))
    return and_(
        exists().where(current, col(line.state) == PlanLineState.fulfilled),
        not_(
            exists().where(
                current,
                col(line.state).not_in([PlanLineState.fulfilled, PlanLineState.skipped]),
            )
        ),
        not_(exists().where(current, col(line.state) == PlanLineState.skipped, col(line.at_risk))),
    )


def list_fulfilled_closings(*, session: Session) -> list[Closing]:
    """Live closings (planning or active) whose every orderable line is fulfilled."""
    statement = (
        select(Closing)
        .where(col(Closing.status).in_(list(LIVE_CLOSING_STATUSES)), _fulfilled_closing_filter())
        .order_by(col(Closing.closing_date), col(Closing.crm_closing_id))
    )
    return list(session.exec(statement).all())


def assess_line_risks(
    *, session: Session, as_of: datetime, closing_id: uuid.UUID | None = None
) -> list[RiskFinding]:
    """Judge each ordered line of the live closings (or of one) again, store the changed risk
    flags (each closing under its row lock), and return the lines newly found at risk.

    One unlocked read judges every line first: only a closing whose verdict would change is then
    locked, read again and judged again before anything is written. Most syncs change nothing,
    and a lock per live closing per sync was a write transaction each.
    """
    # Plain columns, not whole rows: this read covers every live line on every sync.
    statement = (
        sa_select(
            col(Closing.id),
            col(Closing.time_zone),
            col(OrderItem.status),
            col(OrderItem.status_at),
            col(OrderItem.scheduled_for),
            col(Placement.placed_at),
            col(PlanLineRow.service_window_end),
            col(PlanLineRow.service_date),
            col(PlanLineRow.at_risk),
            col(PlanLineRow.risk_reason),
        )
        .join(PlanLineRow, col(PlanLineRow.id) == col(OrderItem.plan_line_id))
        .join(Placement, col(Placement.id) == col(OrderItem.placement_id))
        .join(Closing, col(Closing.id) == col(Placement.closing_id))
        .where(col(Closing.status).in_(list(TRACKED_CLOSING_STATUSES)))
    )
    if closing_id is not None:
        statement = statement.where(col(Closing.id) == closing_id)
    moving = sorted(
        {
            row[0]
            for row in session.execute(statement).all()
            if reassess(
                ItemFacts(
                    status=row[2],
                    placed_at=row[5],
                    status_at=row[3],
                    scheduled_for=row[4],
                    service_deadline=row[6] or row[7],
                    time_zone=row[1],
                    service_start=row[7],
                ),
                LineRisk(row[8], row[9]),
                as_of=as_of,
            )
            is not None
        }
    )
    session.rollback()  # the read is over: each closing below is read again under its lock
    findings: list[RiskFinding] = []
    for live_id in moving:
        closing = _lock_closing(session, live_id)
        if closing.status not in TRACKED_CLOSING_STATUSES:
            session.rollback()  # it ended since the query above
            continue
        rows = session.exec(
            select(OrderItem, PlanLineRow, Placement)
            .join(PlanLineRow, col(PlanLineRow.id) == col(OrderItem.plan_line_id))
            .join(Placement, col(Placement.id) == col(OrderItem.placement_id))
            .where(col(Placement.closing_id) == live_id)
        ).all()
        for item, line, placement in rows:
            verdict = _risk_verdict(item, line, placement, closing.time_zone, as_of)
            if verdict is None:
                continue
            line.at_risk, line.risk_reason = verdict.at_risk, verdict.reason
            session.add(line)
            if verdict.reason is not None:
                findings.append(
                    RiskFinding(live_id, line.id, line.category, line.provider_name, verdict.reason)
                )
        _commit(session)
    return findings


def _risk_verdict(
    item: OrderItem, line: PlanLineRow, placement: Placement, time_zone: str, as_of: datetime
) -> LineRisk | None:
    """The line's new risk flag and reason, or None when they stay as stored."""
    facts = ItemFacts(
        status=item.status,
        placed_at=placement.placed_at,
        status_at=item.status_at,
        scheduled_for=item.scheduled_for,
        service_deadline=line.service_window_end or line.service_date,
        time_zone=time_zone,
        service_start=line.service_date,
    )
    return reassess(facts, LineRisk(line.at_risk, line.risk_reason), as_of=as_of)


def get_item_line(*, session: Session, offergrid_item_id: str) -> LineRecord | None:
    """The item with this Offergrid ID with its plan line and placement, if it is one of ours."""
    item = get_item_by_offergrid_id(session=session, offergrid_item_id=offergrid_item_id)
    if item is None:
        return None
    line = session.get(PlanLineRow, item.plan_line_id)
    assert line is not None  # the item's foreign key guarantees it
    return LineRecord(line=line, item=item, placement=session.get(Placement, item.placement_id))


def list_ordered_lines(*, session: Session, closing_ids: Collection[uuid.UUID]) -> list[LineRecord]:
    """Every ordered item of these closings (any attempt) that has a status, with its plan line:
    one query however many closings."""
    if not closing_ids:
        return []
    rows = session.exec(
        select(OrderItem, PlanLineRow)
        .join(PlanLineRow, col(PlanLineRow.id) == col(OrderItem.plan_line_id))
        .join(Placement, col(Placement.id) == col(OrderItem.placement_id))
        .where(col(Placement.closing_id).in_(list(closing_ids)), col(OrderItem.status).is_not(None))
        .order_by(col(PlanLineRow.closing_id), col(PlanLineRow.category), col(PlanLineRow.attempt))
    ).all()
    return [LineRecord(line=line, item=item) for item, line in rows]
