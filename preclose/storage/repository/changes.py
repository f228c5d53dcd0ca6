"""Changes: re-plans, re-picks, withdrawn placements, corrected addresses."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.change import ClosingChange
from models.closing import ClosingInputError, ClosingRequest, check_closing_dates
from models.plan import Plan, PlanLine
from models.tables import (
    Closing,
    ClosingCreate,
    ClosingStatus,
    OrderItem,
    Placement,
    PlacementState,
    PlanLineRow,
    PlanLineState,
    utcnow,
)
from preclose.rules import lifecycle
from preclose.rules.changes import StoredChange, accept_change, what_changed
from preclose.rules.lifecycle import Event
from preclose.rules.placing import may_withdraw
from preclose.storage.repository._base import (
    _REPLACEABLE,
    _RETRYABLE,
    TRACKED_CLOSING_STATUSES,
    _aware,
    _commit,
    _lock_closing,
)
from preclose.storage.repository.closings import (
    _move,
    get_closing_by_crm_id,
    transition_closing,
    update_closing_request,
)
from preclose.storage.repository.placements import (
    _fail_placement,
    _lock_placement,
    _set_line_states,
    intent_key_for,
    list_placement_items,
    list_placements,
)
from preclose.storage.repository.plans import _current_line_filter, _line_values, list_plan_lines

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
    _fail_placement(session, placement, error=reason, lines=PlanLineState.cancelled, now=at)
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
    *,
    session: Session,
    closing_id: uuid.UUID | None = None,
    closing_ids: Collection[uuid.UUID] | None = None,
) -> list[PlanLineRow]:
    """Current lines whose order was rejected or failed, of closings whose orders are followed,
    oldest change first."""
    statement = (
        select(PlanLineRow)
        .join(Closing, col(Closing.id) == col(PlanLineRow.closing_id))
        .where(
            col(Closing.status).in_(list(TRACKED_CLOSING_STATUSES)),
            col(PlanLineRow.state).in_([PlanLineState.rejected, PlanLineState.failed]),
            col(PlanLineRow.offer_id).is_not(None),
            _current_line_filter(PlanLineRow),
        )
        .order_by(col(PlanLineRow.updated_at), col(PlanLineRow.id))
    )
    if closing_id is not None:
        statement = statement.where(col(PlanLineRow.closing_id) == closing_id)
    if closing_ids is not None:
        statement = statement.where(col(PlanLineRow.closing_id).in_(list(closing_ids)))
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
    person must choose (skipped, at risk, with `line.risk_reason`) and, in the same transaction,
    the closing needs attention for that reason. None when `previous_line_id`
    is no longer the category's current line or did not end unfulfilled: another run (a webhook
    and a sync seeing the same rejection) got there first.
    """
    previous = session.get(PlanLineRow, previous_line_id)
    if previous is None:
        raise LookupError(f"previous_line_id: no plan line {previous_line_id}")
    closing_id, category = previous.closing_id, previous.category
    if str(line.category) != category:
        raise ValueError(f"line.category: {line.category} is not the line's {category}")
    closing = _lock_closing(session, closing_id)
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
        else:
            _hold_for_person(closing, line.risk_reason or line.problem or category, at=now)
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


def placement_categories(*, session: Session, placement_id: uuid.UUID) -> list[str]:
    """The categories of the plan lines a placement orders."""
    items = list_placement_items(session=session, placement_id=placement_id)
    lines = [session.get(PlanLineRow, item.plan_line_id) for item in items]
    return [line.category for line in lines if line is not None]


def settle_closing_placements(
    *, session: Session, closing_id: uuid.UUID, withdraw: bool, now: datetime
) -> tuple[int, list[str]]:
    """Count the closing's unfinished placements a placer holds right now and, with `withdraw`,
    call off the intents never tried; returns that count and the categories called off."""
    held = 0
    withdrawn: list[str] = []
    pending = list_placements(
        session=session,
        states=[PlacementState.intent, PlacementState.unknown],
        closing_id=closing_id,
    )
    for placement in pending:
        busy = placement.claimed_until is not None and placement.claimed_until > now
        if busy:
            held += 1
        if (
            withdraw
            and may_withdraw(
                unsent_intent=placement.state == PlacementState.intent,
                attempts=placement.attempts,
                held=busy,
            )
            and withdraw_placement(
                session=session,
                placement_id=placement.id,
                reason="withdrawn: the closing changed before the order was sent",
            )
        ):
            withdrawn.extend(placement_categories(session=session, placement_id=placement.id))
    return held, withdrawn


def store_closing_change(
    *, session: Session, crm_closing_id: str, change: ClosingChange, as_of: datetime
) -> StoredChange:
    """Check a change against the stored closing and store it; bad input names its field.

    A fall-through marks the closing at once; a corrected address is refused once any order went
    to Offergrid (checked and stored under the closing's lock); any other change to a closing
    that is no longer live is refused, and repeating a fall-through changes nothing.
    """
    row = get_closing_by_crm_id(session=session, crm_closing_id=crm_closing_id)
    if row is None:
        raise ClosingInputError("crm_closing_id", f"no closing {crm_closing_id!r} is known")
    closing_id, status, version = row.id, ClosingStatus(row.status), row.version
    before = row.closing_request()
    # End the read: each write below takes the write lock in a transaction of its own (SQLite
    # cannot turn a read transaction into a write one once another writer has committed).
    _commit(session)
    if not accept_change(crm_closing_id, status, fell_through=change.fell_through):
        return StoredChange(closing_id, before, before, status, version)
    if change.fell_through:
        ended = transition_closing(session=session, closing_id=closing_id, event=Event.fall_through)
        fell = ClosingStatus.fell_through
        return StoredChange(closing_id, before, before, fell, ended.version, ["fell through"])
    after = change.applied_to(before)
    if change.moves_dates:
        check_closing_dates(after, as_of=as_of)
    if after.property.address != before.property.address:
        stored = correct_address(session=session, closing_id=closing_id, closing_in=after)
    else:
        updated = update_closing_request(
            session=session, closing_id=closing_id, closing_in=after, expected_version=version
        )
        assert updated is not None  # read above; closings are never deleted
        stored = updated
    return StoredChange(
        closing_id, before, after, status, stored.version, what_changed(before, after)
    )


def _hold_for_person(closing: Closing, reason: str, *, at: datetime) -> None:
    """A category with no offer left: the locked closing needs attention for `reason` too."""
    status = ClosingStatus(closing.status)
    if status == ClosingStatus.needs_attention:
        # The same spell (and retry) covers every service waiting for a person.
        closing.attention_reason = lifecycle.joined_reasons(closing.attention_reason, reason)
        closing.updated_at = at
    elif lifecycle.allows(status, Event.fail):
        _move(closing, Event.fail, reason=reason, at=at)
