"""Placements: intents, outcomes and claims of Offergrid orders."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Iterable, Sequence
from datetime import date, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from models.tables import (
    Closing,
    ClosingStatus,
    ItemStatusHistory,
    OrderItem,
    Placement,
    PlacementState,
    PlanLineRow,
    PlanLineState,
    StatusSource,
    utcnow,
)
from preclose.rules.order_placement import Claim
from preclose.rules.placing import DueLine, LineWindow, group_due_lines
from preclose.storage.repository._base import (
    _LINE_STATE_FOR_ITEM,
    TERMINAL_ITEM_STATUSES,
    TRACKED_CLOSING_STATUSES,
    PlacedItem,
    PlacementConflictError,
    _aware,
    _commit,
    _lock_closing,
    _locked,
)
from preclose.storage.repository.plans import list_due_plan_lines

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


def placements_summary(
    *, session: Session, placement_ids: Collection[uuid.UUID]
) -> tuple[int, set[uuid.UUID]]:
    """(how many items these placements hold, the closings they belong to), in two queries."""
    if not placement_ids:
        return 0, set()
    ids = list(placement_ids)
    items = session.exec(
        select(func.count()).select_from(OrderItem).where(col(OrderItem.placement_id).in_(ids))
    ).one()
    closings = set(
        session.exec(select(Placement.closing_id).where(col(Placement.id).in_(ids))).all()
    )
    return int(items), closings


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


def _fail_placement(
    session: Session, placement: Placement, *, error: str, lines: PlanLineState, now: datetime
) -> None:
    """Fail a locked placement that was never sent, and give its plan lines the state `lines`."""
    placement.state = PlacementState.failed
    placement.claimed_until = None
    placement.last_error = error
    placement.updated_at = now
    items = list_placement_items(session=session, placement_id=placement.id)
    _set_line_states(session, [item.plan_line_id for item in items], lines, now)


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
    _fail_placement(session, placement, error=error, lines=PlanLineState.failed, now=utcnow())
    _commit(session)
    return placement


def count_held_placements(
    *, session: Session, placement_ids: list[uuid.UUID], now: datetime
) -> int:
    """How many of these placements are unsent and held by a placer's lease right now."""
    if not placement_ids:
        return 0
    statement = select(Placement).where(
        col(Placement.id).in_(placement_ids),
        col(Placement.state).in_([PlacementState.intent, PlacementState.unknown]),
        col(Placement.claimed_until).is_not(None),
        col(Placement.claimed_until) > _aware("now", now),
    )
    return len(session.exec(statement).all())


def claim_placement_to_send(
    *, session: Session, placement_id: uuid.UUID, lease: timedelta
) -> Claim | None:
    """Claim a placement for one order attempt (see `claim_placement`) and read what its order is
    made from: the closing, the offers and each line's window; None if it may not be sent now."""
    placement = claim_placement(session=session, placement_id=placement_id, lease=lease)
    if placement is None:
        return None
    items = list_placement_items(session=session, placement_id=placement_id)
    closing = session.get(Closing, placement.closing_id)
    assert closing is not None  # the placement's foreign key guarantees it
    lines = []
    for item in items:
        line = session.get(PlanLineRow, item.plan_line_id)
        assert line is not None  # the item's foreign key guarantees it
        snapshot = line.offer_snapshot or {}
        lines.append(
            LineWindow(
                offer_id=item.offer_id,
                category=line.category,
                offer_name=line.offer_name,
                service_date=line.service_date,
                service_window_end=line.service_window_end,
                instant=bool(snapshot.get("instant_activation")),
            )
        )
    return Claim(
        closing_id=placement.closing_id,
        intent_key=placement.intent_key,
        look_up_first=placement.attempts > 1 or placement.state == PlacementState.unknown,
        live=closing.status in TRACKED_CLOSING_STATUSES,
        closing=closing.closing_request(),
        offer_ids=[item.offer_id for item in items],
        lines=lines,
    )


def items_to_cancel(*, session: Session, placement_id: uuid.UUID) -> list[str] | None:
    """The Offergrid item IDs of a placement whose closing fell through while an item is still
    open: its order is to be cancelled. None when there is nothing to cancel."""
    placement = session.get(Placement, placement_id)
    closing = session.get(Closing, placement.closing_id) if placement is not None else None
    if closing is None or closing.status != ClosingStatus.fell_through:
        return None
    items = list_placement_items(session=session, placement_id=placement_id)
    if all(item.status in TERMINAL_ITEM_STATUSES for item in items):
        return None  # cancelled (or ended) already
    return [item.offergrid_item_id for item in items if item.offergrid_item_id]


def prepare_placements(
    *, session: Session, as_of: datetime, closing_id: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """Placements to send now: unfinished ones, then one new intent per closing's due lines
    (`rules.placing.group_due_lines` decides which are due, on each closing's own clock)."""
    unfinished = list_placements(
        session=session,
        states=[PlacementState.intent, PlacementState.unknown],
        closing_id=closing_id,
    )
    # The query widens "today" by a day; each closing's own zone decides below.
    candidates = list_due_plan_lines(
        session=session, as_of_date=(as_of + timedelta(days=1)).date(), closing_id=closing_id
    )
    zones: dict[uuid.UUID, str] = {}
    for line in candidates:
        if line.closing_id not in zones:
            closing = session.get(Closing, line.closing_id)
            assert closing is not None  # the line's foreign key guarantees it
            zones[line.closing_id] = closing.time_zone
    batches = group_due_lines(
        [
            DueLine(line.id, line.closing_id, line.placement_date, line.service_date)
            for line in candidates
        ],
        time_zones=zones,
        as_of=as_of,
    )
    created = [
        create_placement_intent(
            session=session,
            closing_id=batch.closing_id,
            plan_line_ids=list(batch.line_ids),
            due_date=batch.due_date,
        )
        for batch in batches
    ]
    ids = [placement.id for placement in unfinished]
    return ids + [placement.id for placement in created if placement.id not in ids]
