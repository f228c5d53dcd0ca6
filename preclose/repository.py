"""Storage operations: keyword-only functions over an explicit session, one unit of work each.

Every function that writes commits before it returns (or rolls back and raises), so a caller never
holds a half-done change. Lookups return `X | None`. Read-modify-write operations first lock the
row they change (`SELECT ... FOR UPDATE` on PostgreSQL, the database write lock on SQLite), so two
coordinators, or a webhook and a sync, cannot interleave and lose an update.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, exists, func, not_, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import Session, SQLModel, col, select

from models.closing import ClosingRequest
from models.plan import Plan, PlanLine
from models.tables import (
    ApiCall,
    ApiKey,
    Audience,
    Closing,
    ClosingCreate,
    ClosingStatus,
    CrmRequest,
    CrmRequestKind,
    ItemStatusHistory,
    Notification,
    OrderItem,
    Placement,
    PlacementState,
    PlanLineRow,
    PlanLineState,
    StatusSource,
    WebhookEvent,
    utcnow,
)
from offergrid.models.enums import TERMINAL, OrderStatus, status_rank

__all__ = [
    "LIVE_CLOSING_STATUSES",
    "TERMINAL_ITEM_STATUSES",
    "PlacedItem",
    "PlacementConflictError",
    "StaleClosingError",
    "cancel_unplaced_lines",
    "create_or_get_closing",
    "create_placement_intent",
    "find_placement_by_intent_key",
    "get_closing",
    "get_closing_by_crm_id",
    "get_item_by_offergrid_id",
    "get_placement",
    "get_plan_line",
    "intent_key_for",
    "is_closing_fulfilled",
    "list_closings",
    "list_due_plan_lines",
    "list_fulfilled_closings",
    "list_item_history",
    "list_items_not_terminal",
    "list_open_items",
    "list_placement_items",
    "list_placements",
    "list_plan_lines",
    "mark_notification_sent",
    "mark_placement_failed",
    "mark_placement_placed",
    "mark_placement_unknown",
    "mark_webhook_processed",
    "record_api_call",
    "record_notification",
    "record_webhook_event",
    "save_plan",
    "update_closing_request",
    "update_closing_status",
    "upsert_item_status",
]

T = TypeVar("T", bound=SQLModel)

# Closings whose orders are still being arranged; the others are finished one way or another.
LIVE_CLOSING_STATUSES: frozenset[ClosingStatus] = frozenset(
    {ClosingStatus.planning, ClosingStatus.active}
)
TERMINAL_ITEM_STATUSES: frozenset[str] = frozenset(str(status) for status in TERMINAL)
# Lines a new plan may overwrite: nothing has been sent to Offergrid for them.
_REPLACEABLE = frozenset({PlanLineState.planned, PlanLineState.skipped})
# Lines whose order ended without the service: a new plan starts the next attempt.
_RETRYABLE = frozenset({PlanLineState.rejected, PlanLineState.failed, PlanLineState.cancelled})
_LINE_STATE_FOR_ITEM: dict[str, PlanLineState] = {
    OrderStatus.COMPLETED: PlanLineState.fulfilled,
    OrderStatus.ACTIVE: PlanLineState.fulfilled,
    OrderStatus.REJECTED: PlanLineState.rejected,
    OrderStatus.FAILED: PlanLineState.failed,
    OrderStatus.CANCELLED: PlanLineState.cancelled,
    OrderStatus.PENDING: PlanLineState.placed,
    OrderStatus.SUBMITTED_TO_PROVIDER: PlanLineState.placed,
    OrderStatus.ACCEPTED: PlanLineState.placed,
    OrderStatus.SCHEDULED: PlanLineState.placed,
    OrderStatus.IN_PROGRESS: PlanLineState.placed,
}


class StaleClosingError(RuntimeError):
    """The closing changed since the caller read it (its version moved on)."""

    def __init__(self, closing_id: uuid.UUID, expected: int, actual: int) -> None:
        """Record which closing and which versions disagreed."""
        super().__init__(
            f"closing {closing_id} is at version {actual}, not {expected}: re-read and retry"
        )
        self.closing_id = closing_id
        self.expected = expected
        self.actual = actual


class PlacementConflictError(ValueError):
    """A placement request contradicts what is already recorded for those lines or that order."""


@dataclass(frozen=True)
class PlacedItem:
    """One item of an order Offergrid accepted: the offer ordered, its item ID and status."""

    offer_id: str
    offergrid_item_id: str
    status: str = OrderStatus.PENDING.value


# Helpers --------------------------------------------------------------------------------------


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}: must be timezone-aware (e.g. datetime.now(UTC))")
    return value


def _locked(session: Session, model: type[T], *criteria: Any) -> list[T]:
    """The rows matching `criteria`, locked for this transaction and freshly read.

    `model` must have an `updated_at` column (the SQLite lock rewrites it with itself).
    """
    if session.get_bind().dialect.name == "sqlite":
        # SQLite has no row locks. A no-op write first takes the database write lock (waiting on
        # the busy timeout), so the read below sees the latest data and nobody writes until we
        # commit.
        table = model.__table__  # type: ignore[attr-defined]
        session.exec(update(table).where(*criteria).values(updated_at=table.c.updated_at))
    statement = (
        select(model).where(*criteria).with_for_update().execution_options(populate_existing=True)
    )
    return list(session.exec(statement).all())


def _commit(session: Session) -> None:
    try:
        session.commit()
    except BaseException:
        session.rollback()
        raise


def _lock_closing(session: Session, closing_id: uuid.UUID) -> Closing:
    rows = _locked(session, Closing, col(Closing.id) == closing_id)
    if not rows:
        session.rollback()
        raise LookupError(f"closing_id: no closing {closing_id}")
    return rows[0]


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


def update_closing_status(
    *,
    session: Session,
    closing_id: uuid.UUID,
    status: ClosingStatus,
    expected_version: int | None = None,
) -> Closing | None:
    """Set the closing's status (None if there is no such closing); raises StaleClosingError if
    `expected_version` is given and the closing has moved on."""
    status = ClosingStatus(status)
    rows = _locked(session, Closing, col(Closing.id) == closing_id)
    if not rows:
        session.rollback()
        return None
    closing = rows[0]
    try:
        _check_version(closing, expected_version)
    except StaleClosingError:
        session.rollback()
        raise
    if closing.status != status:
        closing.status = status
        closing.version += 1
        closing.updated_at = utcnow()
    _commit(session)
    return closing


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


# Plan lines -----------------------------------------------------------------------------------


def _line_values(line: PlanLine) -> dict[str, Any]:
    choice = line.choice
    return {
        "category": str(line.category),
        "importance": str(line.importance),
        "offer_id": choice.offer_id if choice else None,
        "offer_name": choice.offer_name if choice else None,
        "provider_name": choice.provider_name if choice else None,
        "monthly_price": choice.monthly_price if choice else None,
        "first_year_cost": choice.first_year_cost if choice else None,
        "offer_snapshot": choice.snapshot.model_dump(mode="json") if choice else None,
        "runners_up": [runner.model_dump(mode="json") for runner in line.runners_up],
        "reason": line.reason,
        "problem": line.problem,
        "service_date": line.service_date,
        "service_window_end": line.service_window_end,
        "placement_date": line.placement_date,
        "lead_business_days": line.lead_business_days,
        "at_risk": line.at_risk,
        "risk_reason": line.risk_reason,
        # A line without a pick has nothing to order.
        "state": PlanLineState.planned if choice else PlanLineState.skipped,
    }


def save_plan(*, session: Session, closing_id: uuid.UUID, plan: Plan) -> list[PlanLineRow]:
    """Store `plan`: planned lines are replaced, lines already sent to Offergrid are left alone,
    and a category whose order ended unfulfilled gets its next attempt. Returns the current lines.
    """
    closing = _lock_closing(session, closing_id)
    if plan.closing_id != closing.crm_closing_id:
        session.rollback()
        raise ValueError(
            f"plan.closing_id: {plan.closing_id!r} is not closing {closing.crm_closing_id!r}"
        )
    categories = [str(line.category) for line in plan.lines]
    duplicates = sorted({c for c in categories if categories.count(c) > 1})
    if duplicates:
        session.rollback()
        raise ValueError(f"plan.lines: more than one line for {', '.join(duplicates)}")

    existing = session.exec(
        select(PlanLineRow)
        .where(col(PlanLineRow.closing_id) == closing_id)
        .execution_options(populate_existing=True)
    ).all()
    latest: dict[str, PlanLineRow] = {}
    for row in existing:
        if row.category not in latest or row.attempt > latest[row.category].attempt:
            latest[row.category] = row

    now = utcnow()
    for line in plan.lines:
        values = _line_values(line)
        current = latest.get(values["category"])
        if current is None:
            session.add(PlanLineRow(closing_id=closing_id, attempt=1, **values))
        elif current.state in _REPLACEABLE:
            for name, value in values.items():
                setattr(current, name, value)
            current.updated_at = now
        elif current.state in _RETRYABLE:
            session.add(PlanLineRow(closing_id=closing_id, attempt=current.attempt + 1, **values))
        # placing, placed, fulfilled: the order exists at Offergrid; the plan cannot change it.

    planned_categories = set(categories)
    for category, current in latest.items():
        if category not in planned_categories and current.state in _REPLACEABLE:
            session.delete(current)
    _commit(session)
    return list_plan_lines(session=session, closing_id=closing_id)


def cancel_unplaced_lines(*, session: Session, closing_id: uuid.UUID) -> int:
    """Cancel the closing's lines that were never sent to Offergrid; returns how many."""
    _lock_closing(session, closing_id)
    rows = session.exec(
        select(PlanLineRow).where(
            col(PlanLineRow.closing_id) == closing_id,
            col(PlanLineRow.state).in_(list(_REPLACEABLE)),
        )
    ).all()
    now = utcnow()
    for row in rows:
        row.state = PlanLineState.cancelled
        row.updated_at = now
    _commit(session)
    return len(rows)


def get_plan_line(*, session: Session, plan_line_id: uuid.UUID) -> PlanLineRow | None:
    """The plan line with this ID, if any."""
    return session.get(PlanLineRow, plan_line_id)


def _current_line_filter(line: Any) -> Any:
    """True for the latest attempt of each (closing, category)."""
    newer = aliased(PlanLineRow)
    return not_(
        exists().where(
            newer.closing_id == line.closing_id,
            newer.category == line.category,
            newer.attempt > line.attempt,
        )
    )


def list_plan_lines(
    *, session: Session, closing_id: uuid.UUID, current_only: bool = True
) -> list[PlanLineRow]:
    """The closing's plan lines by placement date and category; with `current_only`, the latest
    attempt of each category, else every attempt."""
    statement = select(PlanLineRow).where(col(PlanLineRow.closing_id) == closing_id)
    if current_only:
        statement = statement.where(_current_line_filter(PlanLineRow))
    statement = statement.order_by(
        col(PlanLineRow.placement_date), col(PlanLineRow.category), col(PlanLineRow.attempt)
    )
    return list(session.exec(statement).all())


def list_due_plan_lines(
    *, session: Session, as_of_date: date, closing_id: uuid.UUID | None = None
) -> list[PlanLineRow]:
    """Planned lines with an offer whose placement date has come, for closings still live."""
    statement = (
        select(PlanLineRow)
        .join(Closing, col(Closing.id) == col(PlanLineRow.closing_id))
        .where(
            col(PlanLineRow.state) == PlanLineState.planned,
            col(PlanLineRow.offer_id).is_not(None),
            col(PlanLineRow.placement_date) <= as_of_date,
            col(Closing.status).in_(list(LIVE_CLOSING_STATUSES)),
        )
    )
    if closing_id is not None:
        statement = statement.where(col(PlanLineRow.closing_id) == closing_id)
    statement = statement.order_by(
        col(PlanLineRow.closing_id), col(PlanLineRow.placement_date), col(PlanLineRow.category)
    )
    return list(session.exec(statement).all())


# Placements -----------------------------------------------------------------------------------


def intent_key_for(
    *, closing_id: uuid.UUID, due_date: date, lines: Iterable[tuple[str, int]]
) -> str:
    """The Idempotency-Key for ordering these (category, attempt) lines of a closing on a due date.

    The same closing, date and lines always give the same key, so a second coordinator run (or a
    retry after a crash) reuses the first run's key; a re-pick after a rejection is a new attempt
    and so a new key.
    """
    parts = sorted(f"{category}:{attempt}" for category, attempt in lines)
    if not parts:
        raise ValueError("plan_line_ids: at least one plan line is needed")
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    return f"preclose-{closing_id.hex}-{due_date:%Y%m%d}-{digest}"


def find_placement_by_intent_key(*, session: Session, intent_key: str) -> Placement | None:
    """The placement recorded under this Idempotency-Key, if any."""
    statement = select(Placement).where(col(Placement.intent_key) == intent_key)
    return session.exec(statement).first()


def get_placement(*, session: Session, placement_id: uuid.UUID) -> Placement | None:
    """The placement with this ID, if any."""
    return session.get(Placement, placement_id)


def list_placement_items(*, session: Session, placement_id: uuid.UUID) -> list[OrderItem]:
    """The items of one placement, in a stable order."""
    statement = (
        select(OrderItem)
        .where(col(OrderItem.placement_id) == placement_id)
        .order_by(col(OrderItem.offer_id), col(OrderItem.id))
    )
    return list(session.exec(statement).all())


def list_placements(
    *,
    session: Session,
    states: Iterable[PlacementState] | None = None,
    closing_id: uuid.UUID | None = None,
) -> list[Placement]:
    """Placements in any of `states` (all when None), oldest first."""
    statement = select(Placement)
    if states is not None:
        statement = statement.where(col(Placement.state).in_(list(states)))
    if closing_id is not None:
        statement = statement.where(col(Placement.closing_id) == closing_id)
    return list(session.exec(statement.order_by(col(Placement.created_at))).all())


def create_placement_intent(
    *,
    session: Session,
    closing_id: uuid.UUID,
    plan_line_ids: Sequence[uuid.UUID],
    due_date: date,
) -> Placement:
    """Record the intent to order these plan lines, before any call to Offergrid.

    Returns the placement with its Idempotency-Key. Asking again for the same lines returns the
    same placement (whatever its state), so a second run retries with the first run's key.
    """
    wanted = set(plan_line_ids)
    if not wanted:
        raise ValueError("plan_line_ids: at least one plan line is needed")
    _lock_closing(session, closing_id)
    try:
        lines = session.exec(
            select(PlanLineRow)
            .where(col(PlanLineRow.id).in_(list(wanted)))
            .execution_options(populate_existing=True)
        ).all()
        missing = wanted - {line.id for line in lines}
        if missing:
            raise LookupError(f"plan_line_ids: no plan line {', '.join(map(str, sorted(missing)))}")
        foreign = [line.id for line in lines if line.closing_id != closing_id]
        if foreign:
            raise ValueError(f"plan_line_ids: {foreign[0]} belongs to another closing")

        items = session.exec(
            select(OrderItem).where(col(OrderItem.plan_line_id).in_(list(wanted)))
        ).all()
        if items:
            placement_ids = {item.placement_id for item in items}
            if len(placement_ids) == 1:
                placement_id = placement_ids.pop()
                siblings = list_placement_items(session=session, placement_id=placement_id)
                if {item.plan_line_id for item in siblings} == wanted:
                    placement = session.get(Placement, placement_id)
                    if placement is not None:
                        session.commit()  # release the lock; nothing changed
                        return placement
            raise PlacementConflictError(
                "plan_line_ids: some of these lines already belong to another placement"
            )

        for line in lines:
            if line.state != PlanLineState.planned or line.offer_id is None:
                raise ValueError(
                    f"plan_line_ids: line {line.id} ({line.category}) is {line.state}"
                    + (" without an offer" if line.offer_id is None else "")
                    + "; only planned lines with an offer can be ordered"
                )
    except BaseException:
        session.rollback()
        raise

    key = intent_key_for(
        closing_id=closing_id,
        due_date=due_date,
        lines=[(line.category, line.attempt) for line in lines],
    )
    now = utcnow()
    placement = Placement(closing_id=closing_id, intent_key=key, due_date=due_date)
    try:
        session.add(placement)
        # Without ORM relationships the unit of work does not order inserts by foreign key:
        # the placement row goes in first, then its items.
        session.flush()
        for line in sorted(lines, key=lambda row: row.category):
            assert line.offer_id is not None  # checked above
            session.add(
                OrderItem(placement_id=placement.id, plan_line_id=line.id, offer_id=line.offer_id)
            )
            line.state = PlanLineState.placing
            line.updated_at = now
        session.commit()
    except IntegrityError:
        # A concurrent coordinator recorded the same intent first: use theirs.
        session.rollback()
        found = find_placement_by_intent_key(session=session, intent_key=key)
        if found is None:
            raise
        return found
    return placement


def _lock_placement(session: Session, placement_id: uuid.UUID) -> Placement:
    rows = _locked(session, Placement, col(Placement.id) == placement_id)
    if not rows:
        session.rollback()
        raise LookupError(f"placement_id: no placement {placement_id}")
    return rows[0]


def _set_line_states(
    session: Session, line_ids: Iterable[uuid.UUID], state: PlanLineState, now: datetime
) -> None:
    for line_id in line_ids:
        line = session.get(PlanLineRow, line_id)
        if line is not None:
            line.state = state
            line.updated_at = now


def mark_placement_placed(
    *,
    session: Session,
    placement_id: uuid.UUID,
    offergrid_order_id: str,
    items: Sequence[PlacedItem],
    placed_at: datetime | None = None,
) -> Placement:
    """Record Offergrid's order for a placement: its ID, each item's ID and first status.

    `items` must cover the placement's items exactly, matched by offer ID. Repeating the call with
    the same order ID changes nothing; a different order ID is a PlacementConflictError.
    """
    at = _aware("placed_at", placed_at) if placed_at is not None else utcnow()
    placement = _lock_placement(session, placement_id)
    try:
        if placement.state == PlacementState.placed:
            if placement.offergrid_order_id != offergrid_order_id:
                raise PlacementConflictError(
                    f"offergrid_order_id: placement {placement_id} is already order "
                    f"{placement.offergrid_order_id}, not {offergrid_order_id}"
                )
            session.commit()
            return placement
        if placement.state == PlacementState.failed:
            raise PlacementConflictError(
                f"placement_id: placement {placement_id} failed; it cannot become an order"
            )
        ours = list_placement_items(session=session, placement_id=placement_id)
        unmatched = list(ours)
        pairs: list[tuple[OrderItem, PlacedItem]] = []
        for placed in items:
            match = next((item for item in unmatched if item.offer_id == placed.offer_id), None)
            if match is None:
                raise ValueError(f"items: offer {placed.offer_id!r} is not in this placement")
            unmatched.remove(match)
            pairs.append((match, placed))
        if unmatched:
            offers = ", ".join(item.offer_id for item in unmatched)
            raise ValueError(f"items: no Offergrid item given for offer {offers}")
    except BaseException:
        session.rollback()
        raise

    now = utcnow()
    placement.state = PlacementState.placed
    placement.claimed_until = None
    placement.offergrid_order_id = offergrid_order_id
    placement.placed_at = at
    placement.last_error = None
    placement.updated_at = now
    for item, placed in pairs:
        item.offergrid_item_id = placed.offergrid_item_id
        item.status = placed.status
        item.status_at = at
        item.updated_at = now
        session.add(
            ItemStatusHistory(
                order_item_id=item.id, status=placed.status, at=at, source=StatusSource.placement
            )
        )
        state = _LINE_STATE_FOR_ITEM.get(placed.status, PlanLineState.placed)
        _set_line_states(session, [item.plan_line_id], state, now)
    _commit(session)
    return placement


def claim_placement(
    *, session: Session, placement_id: uuid.UUID, lease: timedelta, now: datetime | None = None
) -> Placement | None:
    """Take the placement for one order attempt, or None if it is placed, failed or held by another.

    The claim is a lease: a placer that dies mid-call holds the placement only until the lease ends,
    then another may take it. Each claim counts an attempt, so the next placer knows an order may
    already exist and looks it up before placing again.
    """
    at = _aware("now", now) if now is not None else utcnow()
    placement = _lock_placement(session, placement_id)
    held = placement.claimed_until is not None and placement.claimed_until > at
    if placement.state in (PlacementState.placed, PlacementState.failed) or held:
        session.rollback()
        return None
    placement.claimed_until = at + lease
    placement.attempts += 1
    placement.updated_at = at
    _commit(session)
    return placement


def release_placement(*, session: Session, placement_id: uuid.UUID) -> None:
    """Give up the claim on a placement, so the next run may take it at once."""
    placement = _lock_placement(session, placement_id)
    placement.claimed_until = None
    placement.updated_at = utcnow()
    _commit(session)


def mark_placement_unknown(*, session: Session, placement_id: uuid.UUID, error: str) -> Placement:
    """Record that the order call's outcome is unknown (timeout, 5xx); a placed one stays placed."""
    placement = _lock_placement(session, placement_id)
    if placement.state in (PlacementState.intent, PlacementState.unknown):
        placement.state = PlacementState.unknown
        placement.claimed_until = None
        placement.last_error = error
        placement.updated_at = utcnow()
    _commit(session)
    return placement


def mark_placement_failed(*, session: Session, placement_id: uuid.UUID, error: str) -> Placement:
    """Record that Offergrid refused the order for good; its lines fail, ready for a new attempt."""
    placement = _lock_placement(session, placement_id)
    if placement.state == PlacementState.placed:
        session.rollback()
        raise PlacementConflictError(
            f"placement_id: placement {placement_id} is order {placement.offergrid_order_id}; "
            "cancel the order instead"
        )
    now = utcnow()
    placement.state = PlacementState.failed
    placement.claimed_until = None
    placement.last_error = error
    placement.updated_at = now
    items = list_placement_items(session=session, placement_id=placement_id)
    _set_line_states(session, [item.plan_line_id for item in items], PlanLineState.failed, now)
    _commit(session)
    return placement


# Order items ----------------------------------------------------------------------------------


def get_item_by_offergrid_id(*, session: Session, offergrid_item_id: str) -> OrderItem | None:
    """The order item with this Offergrid item ID, if any."""
    statement = select(OrderItem).where(col(OrderItem.offergrid_item_id) == offergrid_item_id)
    return session.exec(statement).first()


def _supersedes(item: OrderItem, status: str, at: datetime) -> bool:
    """Whether an event (status, at) is newer than what the item already holds."""
    if item.status_at is None:
        return True
    if at != item.status_at:
        return at > item.status_at
    # Same instant: only a step further along the lifecycle wins, so a replay is a no-op.
    new_rank, old_rank = status_rank(status), status_rank(item.status)
    return new_rank is not None and old_rank is not None and new_rank > old_rank


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
    if not rows or not _supersedes(rows[0], status, at):
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


def list_item_history(*, session: Session, order_item_id: uuid.UUID) -> list[ItemStatusHistory]:
    """Every recorded status of an item, oldest event first."""
    statement = (
        select(ItemStatusHistory)
        .where(col(ItemStatusHistory.order_item_id) == order_item_id)
        .order_by(col(ItemStatusHistory.at), col(ItemStatusHistory.recorded_at))
    )
    return list(session.exec(statement).all())


def _not_terminal() -> Any:
    return or_(
        col(OrderItem.status).is_(None),
        col(OrderItem.status).not_in(sorted(TERMINAL_ITEM_STATUSES)),
    )


def list_open_items(*, session: Session, closing_id: uuid.UUID) -> list[OrderItem]:
    """The closing's placed items whose status is not final yet."""
    statement = (
        select(OrderItem)
        .join(Placement, col(Placement.id) == col(OrderItem.placement_id))
        .where(
            col(Placement.closing_id) == closing_id,
            col(OrderItem.offergrid_item_id).is_not(None),
            _not_terminal(),
        )
        .order_by(col(OrderItem.offer_id))
    )
    return list(session.exec(statement).all())


def list_items_not_terminal(*, session: Session, limit: int | None = None) -> list[OrderItem]:
    """Placed items anywhere whose status is not final, least recently updated first (for sync)."""
    statement = (
        select(OrderItem)
        .where(col(OrderItem.offergrid_item_id).is_not(None), _not_terminal())
        .order_by(col(OrderItem.updated_at), col(OrderItem.id))
    )
    if limit is not None:
        statement = statement.limit(limit)
    return list(session.exec(statement).all())


def _fulfilled_closing_filter() -> Any:
    """True for a closing whose current lines are all fulfilled or skipped, some fulfilled."""
    line = aliased(PlanLineRow)
    current = and_(col(line.closing_id) == col(Closing.id), _current_line_filter(line))
    return and_(
        exists().where(current, col(line.state) == PlanLineState.fulfilled),
        not_(
            exists().where(
                current,
                col(line.state).not_in([PlanLineState.fulfilled, PlanLineState.skipped]),
            )
        ),
    )


def is_closing_fulfilled(*, session: Session, closing_id: uuid.UUID) -> bool:
    """Whether every line of the closing that was to be ordered is fulfilled (skipped aside)."""
    statement = select(Closing.id).where(col(Closing.id) == closing_id, _fulfilled_closing_filter())
    return session.exec(statement).first() is not None


def list_fulfilled_closings(*, session: Session) -> list[Closing]:
    """Live closings (planning or active) whose every orderable line is fulfilled."""
    statement = (
        select(Closing)
        .where(col(Closing.status).in_(list(LIVE_CLOSING_STATUSES)), _fulfilled_closing_filter())
        .order_by(col(Closing.closing_date), col(Closing.crm_closing_id))
    )
    return list(session.exec(statement).all())


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


def mark_webhook_processed(
    *,
    session: Session,
    event_id: uuid.UUID,
    outcome: str,
    processed_at: datetime | None = None,
) -> WebhookEvent | None:
    """Record what handling a webhook event did (None if there is no such event)."""
    event = session.get(WebhookEvent, event_id)
    if event is None:
        return None
    event.processed_at = _aware("processed_at", processed_at) if processed_at else utcnow()
    event.outcome = outcome[:200]
    _commit(session)
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


@dataclass(frozen=True)
class LineOrder:
    """A current plan line with its order item and placement, when it was ordered."""

    line: PlanLineRow
    item: OrderItem | None
    placement: Placement | None


def list_line_orders(*, session: Session, closing_id: uuid.UUID) -> list[LineOrder]:
    """The closing's current plan lines, each with its order item and placement if ordered."""
    lines = list_plan_lines(session=session, closing_id=closing_id)
    rows = session.exec(
        select(OrderItem, Placement)
        .join(Placement, col(Placement.id) == col(OrderItem.placement_id))
        .where(col(OrderItem.plan_line_id).in_([line.id for line in lines]))
    ).all()
    by_line = {item.plan_line_id: (item, placement) for item, placement in rows}
    orders: list[LineOrder] = []
    for line in lines:
        item, placement = by_line.get(line.id, (None, None))
        orders.append(LineOrder(line=line, item=item, placement=placement))
    return orders


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
    unprocessed = sum(int(n) for outcome, n in counts if outcome is None)
    last = session.exec(select(func.max(WebhookEvent.received_at)).where(recent)).first()
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


# Changes: re-plans, re-picks, withdrawn placements, corrected addresses (issue 6) -------------


def withdraw_placement(
    *,
    session: Session,
    placement_id: uuid.UUID,
    reason: str,
    maybe_sent: bool = False,
    now: datetime | None = None,
) -> bool:
    """Call off a placement that is not (known to be) at Offergrid; its lines become cancelled.

    Only an intent that no placer holds right now can be withdrawn; with `maybe_sent` also one
    that a placer tried before (an unknown outcome), which the caller has checked is not among
    Offergrid's orders. A later placer finds it failed and sends nothing. True when withdrawn.
    """
    at = _aware("now", now) if now is not None else utcnow()
    placement = _lock_placement(session, placement_id)
    held = placement.claimed_until is not None and placement.claimed_until > at
    tried = placement.state == PlacementState.unknown or placement.attempts > 0
    if (
        placement.state not in (PlacementState.intent, PlacementState.unknown)
        or held
        or (tried and not maybe_sent)
    ):
        session.rollback()
        return False
    placement.state = PlacementState.failed
    placement.claimed_until = None
    placement.last_error = reason
    placement.updated_at = at
    items = list_placement_items(session=session, placement_id=placement_id)
    _set_line_states(session, [item.plan_line_id for item in items], PlanLineState.cancelled, at)
    _commit(session)
    return True


def list_attempts(*, session: Session, closing_id: uuid.UUID, category: str) -> list[PlanLineRow]:
    """Every attempt of one category of a closing, first attempt first."""
    statement = (
        select(PlanLineRow)
        .where(col(PlanLineRow.closing_id) == closing_id, col(PlanLineRow.category) == category)
        .order_by(col(PlanLineRow.attempt))
    )
    return list(session.exec(statement).all())


def list_lines_to_repick(
    *, session: Session, closing_id: uuid.UUID | None = None
) -> list[PlanLineRow]:
    """Current lines of live closings whose order was rejected or failed, oldest change first."""
    statement = (
        select(PlanLineRow)
        .join(Closing, col(Closing.id) == col(PlanLineRow.closing_id))
        .where(
            col(Closing.status).in_(list(LIVE_CLOSING_STATUSES)),
            col(PlanLineRow.state).in_([PlanLineState.rejected, PlanLineState.failed]),
            col(PlanLineRow.offer_id).is_not(None),
            _current_line_filter(PlanLineRow),
        )
        .order_by(col(PlanLineRow.updated_at), col(PlanLineRow.id))
    )
    if closing_id is not None:
        statement = statement.where(col(PlanLineRow.closing_id) == closing_id)
    return list(session.exec(statement).all())


@dataclass(frozen=True)
class NextAttempt:
    """A category's new attempt: its plan line, and the placement intent when it has an offer."""

    line: PlanLineRow
    placement: Placement | None


def start_next_attempt(
    *, session: Session, previous_line_id: uuid.UUID, line: PlanLine, place_on: date
) -> NextAttempt | None:
    """Start the next attempt of a category whose current line ended unfulfilled.

    With an offer, the new line and its placement intent (due `place_on`) are stored together, so
    no other placement run can claim the line in between; without one, the new line records that a
    person must choose (skipped, at risk, with `line.risk_reason`). None when `previous_line_id`
    is no longer the category's current line or did not end unfulfilled: another run (a webhook
    and a sync seeing the same rejection) got there first.
    """
    previous = session.get(PlanLineRow, previous_line_id)
    if previous is None:
        raise LookupError(f"previous_line_id: no plan line {previous_line_id}")
    closing_id, category = previous.closing_id, previous.category
    if str(line.category) != category:
        raise ValueError(f"line.category: {line.category} is not the line's {category}")
    _lock_closing(session, closing_id)
    latest = session.exec(
        select(PlanLineRow)
        .where(col(PlanLineRow.closing_id) == closing_id, col(PlanLineRow.category) == category)
        .order_by(col(PlanLineRow.attempt).desc())
        .execution_options(populate_existing=True)
    ).first()
    if latest is None or latest.id != previous_line_id or latest.state not in _RETRYABLE:
        session.commit()  # release the lock; nothing to do
        return None
    values = _line_values(line)
    values["placement_date"] = place_on
    attempt = latest.attempt + 1
    now = utcnow()
    row = PlanLineRow(closing_id=closing_id, attempt=attempt, **values)
    placement: Placement | None = None
    try:
        session.add(row)
        if line.choice is not None:
            row.state = PlanLineState.placing
            key = intent_key_for(
                closing_id=closing_id, due_date=place_on, lines=[(category, attempt)]
            )
            placement = Placement(closing_id=closing_id, intent_key=key, due_date=place_on)
            session.add(placement)
            session.flush()
            session.add(
                OrderItem(
                    placement_id=placement.id, plan_line_id=row.id, offer_id=line.choice.offer_id
                )
            )
        row.updated_at = now
        session.commit()
    except IntegrityError:
        session.rollback()  # the same attempt, started concurrently by another run
        return None
    return NextAttempt(line=row, placement=placement)


def retime_lines(
    *,
    session: Session,
    closing_id: uuid.UUID,
    plan: Plan,
    flags: dict[uuid.UUID, str] | None = None,
) -> list[PlanLineRow]:
    """Give the closing's ordered lines the new plan's service dates, and flag the given lines.

    Lines not ordered yet are `save_plan`'s; this moves the deadlines that risk checks measure an
    ordered line against, and marks `flags` (line ID to reason) at risk. Returns the current lines.
    """
    _lock_closing(session, closing_id)
    flags = flags or {}
    rows = session.exec(
        select(PlanLineRow)
        .where(col(PlanLineRow.closing_id) == closing_id, _current_line_filter(PlanLineRow))
        .execution_options(populate_existing=True)
    ).all()
    now = utcnow()
    for row in rows:
        new = plan.line(row.category)
        if row.state not in _REPLACEABLE and new is not None:
            row.service_date = new.service_date
            row.service_window_end = new.service_window_end
            row.lead_business_days = new.lead_business_days
            row.updated_at = now
        reason = flags.get(row.id)
        if reason is not None:
            row.at_risk = True
            row.risk_reason = reason
            row.updated_at = now
    _commit(session)
    return list_plan_lines(session=session, closing_id=closing_id)


def correct_address(
    *, session: Session, closing_id: uuid.UUID, closing_in: ClosingRequest
) -> Closing:
    """Store a corrected address, allowed only while no order has gone to Offergrid.

    In one transaction: refuse (ClosingInputError naming `address`) if any placement is placed,
    may have been sent, or is being sent; otherwise withdraw the unsent intents (their lines are
    cancelled, so the new plan starts fresh attempts) and store the corrected request.
    """
    from models.closing import ClosingInputError

    closing = _lock_closing(session, closing_id)
    try:
        if closing_in.crm_closing_id != closing.crm_closing_id:
            raise ValueError(
                f"crm_closing_id: {closing_in.crm_closing_id!r} does not match the stored "
                f"closing's {closing.crm_closing_id!r}"
            )
        placements = session.exec(
            select(Placement)
            .where(col(Placement.closing_id) == closing_id)
            .execution_options(populate_existing=True)
        ).all()
        now = utcnow()
        sent = [
            p
            for p in placements
            if p.state in (PlacementState.placed, PlacementState.unknown)
            or (p.state == PlacementState.intent and p.attempts > 0)
            or (p.claimed_until is not None and p.claimed_until > now)
        ]
        if sent:
            raise ClosingInputError(
                "address",
                f"{len(sent)} order(s) for this closing already went to Offergrid with the old "
                "address, and an order's address cannot be changed; cancel the closing "
                "(fell_through) and send it again as a new closing with the right address",
            )
    except BaseException:
        session.rollback()
        raise
    for placement in placements:
        if placement.state != PlacementState.intent:
            continue
        placement.state = PlacementState.failed
        placement.last_error = "withdrawn: the address was corrected before the order was sent"
        placement.updated_at = now
        items = list_placement_items(session=session, placement_id=placement.id)
        _set_line_states(session, [i.plan_line_id for i in items], PlanLineState.cancelled, now)
    values = ClosingCreate.from_request(closing_in).model_dump(exclude={"status"})
    for name, value in values.items():
        setattr(closing, name, value)
    closing.version += 1
    closing.updated_at = now
    _commit(session)
    return closing


def get_item_for_line(*, session: Session, plan_line_id: uuid.UUID) -> OrderItem | None:
    """The order item that orders this plan line, if it was ever put in a placement."""
    statement = select(OrderItem).where(col(OrderItem.plan_line_id) == plan_line_id)
    return session.exec(statement).first()


__all__ += [
    "NextAttempt",
    "correct_address",
    "get_item_for_line",
    "list_attempts",
    "list_lines_to_repick",
    "retime_lines",
    "start_next_attempt",
    "withdraw_placement",
]
