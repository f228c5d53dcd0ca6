"""Re-planning tasks: new dates for a closing's services, and re-picks after rejections."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from prefect import task
from prefect.cache_policies import NONE

from models.plan import CategoryPick, Importance, Plan
from models.tables import ClosingStatus, OrderItem, PlanLineRow, PlanLineState
from offergrid.models import Category, Order
from preclose.rules import lifecycle
from preclose.rules.replanning import (
    Decision,
    carry_flags,
    exhausted_reason,
    may_try_again,
    next_offer,
    picks_from_lines,
)
from preclose.rules.replanning import decide_new_dates as decide_replan
from preclose.rules.timing import plan_closing
from preclose.runtime import db_session, policy
from preclose.settings import get_settings
from preclose.storage import repository
from preclose.wording.notify import Milestone, MilestoneFacts
from tasks.notifications import notify_milestone
from tasks.orders import place_order

logger = logging.getLogger(__name__)


@task(name="decide new dates", cache_policy=NONE)
def decide_new_dates(
    closing_id: uuid.UUID,
    orders: list[Order],
    withdrawn: list[str],
    previous_move_in: date,
    as_of: datetime,
) -> list[Decision]:
    """What the closing's new dates mean for each current line (rules.replanning decides)."""
    with db_session() as session:
        record = repository.read_closing_record(session=session, closing_id=closing_id)
    if record is None:
        raise LookupError(f"closing_id: no closing {closing_id}")
    return decide_replan(
        record.closing.closing_request(),
        record.lines,
        orders=orders,
        withdrawn=withdrawn,
        previous_move_in=previous_move_in,
        policy=policy(),
        as_of=as_of,
    )


@task(name="save new dates", cache_policy=NONE)
def save_new_dates(
    closing_id: uuid.UUID,
    as_of: datetime,
    renew: list[uuid.UUID],
    withdrawn: list[str],
    flags: dict[uuid.UUID, str],
) -> Plan:
    """Plan the closing again from its stored picks on its new dates and store it.

    Lines not ordered yet move to their new dates; lines in `renew` (orders just cancelled) and
    the `withdrawn` categories' cancelled lines (intents called off) start a fresh attempt with the
    same offer; ordered lines get the new deadlines; `flags` (line ID to reason) go at risk.
    """
    with db_session() as session:
        row = repository.get_closing(session=session, closing_id=closing_id)
        if row is None:
            raise LookupError(f"closing_id: no closing {closing_id}")
        closing = row.closing_request()
        lines = repository.list_plan_lines(session=session, closing_id=closing_id)
    renew = [
        *renew,
        *(
            line.id
            for line in lines
            if line.category in withdrawn and line.state == PlanLineState.cancelled
        ),
    ]
    plan = plan_closing(closing, picks_from_lines(lines, renew=renew), policy(), as_of=as_of)
    plan = carry_flags(plan, lines)
    with db_session() as session:
        repository.save_plan(session=session, closing_id=closing_id, plan=plan)
        repository.retime_lines(session=session, closing_id=closing_id, plan=plan, flags=flags)
    return plan


@dataclass(frozen=True)
class RepickResult:
    """What became of one rejected or failed line: a new order, or a category for a person."""

    closing_id: uuid.UUID
    category: str
    attempt: int
    offer_name: str | None
    provider: str | None
    order_id: str | None


def _why(item: OrderItem | None) -> str | None:
    """What the provider said when it turned the order down or the install failed."""
    return item.provider_notes if item is not None and item.provider_notes else None


@task(name="re-pick rejected", cache_policy=NONE)
def repick_rejected(
    as_of: datetime, closing_ids: Iterable[uuid.UUID] | None = None
) -> list[RepickResult]:
    """For every rejected or failed current line (of these closings, or all), order the next best
    runner-up now, or flag the category for a person when none is left or it was tried enough.

    Each line is re-picked once however many runs see its rejection (a webhook and a sync): the
    next attempt is stored under the closing's lock only while that line is still the current one.
    """
    with db_session() as session:
        scope = list(closing_ids) if closing_ids is not None else [None]
        lines = [
            line
            for closing_id in scope
            for line in repository.list_lines_to_repick(session=session, closing_id=closing_id)
        ]
    max_attempts = get_settings().max_attempts_per_category
    results: list[RepickResult] = []
    for line in lines:
        result = _repick(line, as_of, max_attempts)
        if result is not None:
            results.append(result)
    return results


def _repick(line: PlanLineRow, as_of: datetime, max_attempts: int) -> RepickResult | None:
    with db_session() as session:
        closing_row = repository.get_closing(session=session, closing_id=line.closing_id)
        assert closing_row is not None  # the line's foreign key guarantees it
        closing = closing_row.closing_request()
        attempts = repository.list_attempts(
            session=session, closing_id=line.closing_id, category=line.category
        )
        item = repository.get_item_for_line(session=session, plan_line_id=line.id)
    if not lifecycle.is_repickable(
        ClosingStatus(closing_row.status), line.state, has_offer=line.offer_id is not None
    ):
        return None  # the closing fell through (or is fulfilled) since the line was listed
    failures = sum(a.state in (PlanLineState.rejected, PlanLineState.failed) for a in attempts)
    tried = {a.offer_id for a in attempts if a.offer_id}
    install_failed = line.state == PlanLineState.failed
    reason = _why(item)
    pick = next_offer(
        line.runner_up_choices(), tried=tried, closing=closing, category=line.category
    )
    choice = pick.choice if may_try_again(failures, max_attempts) else None
    turned_down = "could not install it" if install_failed else "turned the order down"
    if choice is not None:
        why = f"Next best after {line.provider_name or 'the provider'} {turned_down}."
    else:
        why = exhausted_reason(line.category, failures=failures, max_attempts=max_attempts)
    picked = CategoryPick(
        category=Category(line.category),
        importance=Importance(line.importance),
        choice=choice,
        reason=why,
        runners_up=pick.runners_up if choice is not None else [],
        problem=None if choice is not None else why,
    )
    [planned] = plan_closing(closing, [picked], policy(), as_of=as_of).lines
    if choice is None:
        planned = planned.model_copy(update={"at_risk": True, "risk_reason": why})
    today = closing.local_date(as_of)
    with db_session() as session:
        started = repository.start_next_attempt(
            session=session, previous_line_id=line.id, line=planned, place_on=today
        )
    if started is None:
        return None  # another run re-picked this line already
    attempt = started.line.attempt
    if started.placement is None:
        logger.info("No %s offer left to try: flagged for a person", line.category)
        notify_milestone(
            line.closing_id,
            Milestone.needs_person,
            MilestoneFacts(
                category=line.category,
                provider=line.provider_name,
                reason=reason,
                install_failed=install_failed,
                attempts=failures,
            ),
            topic=f"{line.category}:{attempt}",
            agent_only=True,
        )
        return RepickResult(line.closing_id, line.category, attempt, None, None, None)
    assert choice is not None
    state = place_order(started.placement.id, return_state=True)
    order_id = state.result(raise_on_failure=False) if state.is_completed() else None
    if not isinstance(order_id, str):
        # Refused or not sent: the placement run retries an unknown outcome; a refusal is a
        # failed attempt that the next follow-up re-picks in turn.
        logger.warning("The re-picked %s order did not go through", line.category)
        order_id = None
    notify_milestone(
        line.closing_id,
        Milestone.order_repicked,
        MilestoneFacts(
            category=line.category,
            provider=line.provider_name,
            reason=reason,
            next_provider=choice.provider_name,
            next_offer=choice.offer_name,
            install_failed=install_failed,
        ),
        topic=f"{line.category}:{attempt}",
        agent_only=True,
    )
    return RepickResult(
        line.closing_id, line.category, attempt, choice.offer_name, choice.provider_name, order_id
    )
