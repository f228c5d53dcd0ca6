"""Rules for a closing that changed: which orders stand, which go again, what to re-pick, who acts.

Plain code, no Prefect and no I/O: the change flow gathers the facts (our plan lines, Offergrid's
orders) and these functions decide. Offergrid has no call to update an order and cancels whole
orders only (every item of it, while each is pending, submitted, accepted or scheduled), so a
service whose order carries a date that no longer holds is cancelled and ordered again, together
with whatever shares its order, or flagged for a person when the order can no longer be cancelled.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum

from models.change import ChangeOutcome
from models.closing import ClosingRequest
from models.plan import CategoryPick, Importance, OfferChoice, Plan
from models.records import LineRecord
from models.tables import PlanLineRow, PlanLineState
from offergrid.models import Category, Order
from offergrid.models.enums import FULFILLED, OrderStatus
from preclose.rules.policy import Policy
from preclose.rules.timing import ServiceTiming, plan_closing, service_timing
from preclose.wording.services import SERVICE_NAMES, service_word

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "Decision",
    "OrderedService",
    "Repick",
    "Step",
    "Window",
    "cannot_cancel",
    "carry_flags",
    "conveyed_move_in",
    "decide_date_change",
    "decide_new_dates",
    "exhausted_reason",
    "group_by_order",
    "may_try_again",
    "next_offer",
    "not_cancellable_detail",
    "orders_by_id",
    "out_of_limits",
    "picks_from_lines",
    "refusal_reason",
    "service_name",
    "service_window",
    "service_word",
    "stale_contact_fields",
]

DEFAULT_MAX_ATTEMPTS = 3

_FULFILLED = frozenset(str(status) for status in FULFILLED)
_NOT_YET_SCHEDULED = frozenset(
    {OrderStatus.PENDING.value, OrderStatus.SUBMITTED_TO_PROVIDER.value, OrderStatus.ACCEPTED.value}
)
# An order holding an item in one of these can no longer be cancelled at all.
_BLOCKING = _FULFILLED | {OrderStatus.IN_PROGRESS.value}


def service_name(category: str, provider: str | None = None) -> str:
    """How a service reads at the start of a sentence: "Internet with Metro 5G Home"."""
    name = SERVICE_NAMES.get(category, SERVICE_NAMES["other"])
    return f"{name} with {provider}" if provider else name


def _day(value: date) -> str:
    return f"{value:%a %b} {value.day}"


@dataclass(frozen=True)
class Window:
    """The days an appointment may fall on and still serve the closing."""

    earliest: date
    latest: date

    def holds(self, day: date) -> bool:
        """Whether `day` is inside the window."""
        return self.earliest <= day <= self.latest


def service_window(timing: ServiceTiming) -> Window:
    """When a service's appointment fits the closing's dates: from its requested start to the end
    of its window.

    The start is never before possession, so an appointment booked for the old dates (often before
    the buyer owns the home) no longer fits.
    """
    return Window(earliest=timing.service_date, latest=timing.window_end)


class Step(StrEnum):
    """What a date change does to one service."""

    move = "move"  # not ordered yet: ordered on its new date
    keep = "keep"  # the order stands
    reorder = "reorder"  # cancel the order and order again with the new dates
    flag = "flag"  # the order no longer fits and cannot be cancelled: a person acts
    leave = "leave"  # nothing to say (nothing to order, or a re-pick handles it)


_OUTCOMES = {
    Step.move: ChangeOutcome.moved,
    Step.keep: ChangeOutcome.kept,
    Step.reorder: ChangeOutcome.replaced,
    Step.flag: ChangeOutcome.flagged,
}


@dataclass(frozen=True)
class OrderedService:
    """What the date rules look at for one current plan line."""

    line_id: uuid.UUID
    category: str
    provider: str | None
    state: str  # the plan line's state
    order_id: str | None = None
    item_status: str | None = None
    scheduled_on: date | None = None  # the appointment's day at the property
    conveyed_move_in: date | None = None  # the move-in date the order told the provider


@dataclass(frozen=True)
class Decision:
    """One service's fate after a date change, and the sentence that explains it."""

    line_id: uuid.UUID
    category: str
    provider: str | None
    step: Step
    detail: str = ""
    order_id: str | None = None
    action_by: str | None = None

    @property
    def outcome(self) -> ChangeOutcome | None:
        """The summary's word for this step (None when there is nothing to say)."""
        return _OUTCOMES.get(self.step)

    @property
    def sentence(self) -> str:
        """The consequence as one line of a message: the service, then what happens."""
        return f"{service_name(self.category, self.provider)}: {self.detail}"


def _again(order_on: date | None, today: date) -> str:
    if order_on is None or order_on <= today:
        return "we cancelled it and are ordering it again now"
    return f"we cancelled it and will order it again on {_day(order_on)}"


def _decide_one(
    service: OrderedService,
    *,
    window: Window | None,
    new_move_in: date,
    order_on: date | None,
    today: date,
) -> Decision:
    base = Decision(
        line_id=service.line_id,
        category=service.category,
        provider=service.provider,
        step=Step.leave,
        order_id=service.order_id,
    )
    state, status = service.state, service.item_status
    if state == "planned":
        when = "today" if order_on is None or order_on <= today else f"on {_day(order_on)}"
        return replace(base, step=Step.move, detail=f"not ordered yet; it will be ordered {when}.")
    if state == "fulfilled" or status in _FULFILLED:
        return replace(base, step=Step.keep, detail="already in service; nothing changes.")
    if state != "placed" or status is None:
        # Nothing to order (skipped), or an ended order that the re-pick step handles.
        return base
    scheduled = service.scheduled_on
    if status in _NOT_YET_SCHEDULED or (status == "scheduled" and scheduled is None):
        if service.conveyed_move_in == new_move_in:
            return replace(
                base, step=Step.keep, detail="ordered; the order already carries the move-in date."
            )
        return replace(
            base,
            step=Step.reorder,
            detail="the order carries the old move-in date and an order cannot be updated, so "
            + _again(order_on, today)
            + " with the new one.",
        )
    if scheduled is None or window is None:
        return replace(base, step=Step.keep, detail="ordered; the provider has it in hand.")
    if window.holds(scheduled):
        return replace(
            base, step=Step.keep, detail=f"booked for {_day(scheduled)}, which still fits."
        )
    needed = f"needed between {_day(window.earliest)} and {_day(window.latest)}"
    if status == "scheduled":
        return replace(
            base,
            step=Step.reorder,
            detail=f"booked for {_day(scheduled)}, which no longer fits ({needed}), so "
            + _again(order_on, today)
            + ".",
        )
    return replace(
        base,
        step=Step.flag,
        detail=f"booked for {_day(scheduled)}, which no longer fits ({needed}), and already under "
        f"way, so it cannot be cancelled; the buyer needs to call "
        f"{service.provider or 'the provider'} to move it.",
        action_by="buyer",
    )


def decide_date_change(
    services: Sequence[OrderedService],
    *,
    windows: Mapping[str, Window],
    new_move_in: date,
    order_dates: Mapping[str, date],
    today: date,
    order_statuses: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> list[Decision]:
    """Decide, per current plan line, what new closing or move-in dates do to its order.

    `windows` and `order_dates` are per category under the new dates; `order_statuses` maps each
    Offergrid order to its items' (category, status), so that a service to re-order is cancelled
    together with what shares its order, or flagged when that order can no longer be cancelled.
    """
    decisions = [
        _decide_one(
            service,
            window=windows.get(service.category),
            new_move_in=new_move_in,
            order_on=order_dates.get(service.category),
            today=today,
        )
        for service in services
    ]
    return _settle_orders(decisions, order_statuses or {})


def group_by_order(decisions: Iterable[Decision]) -> dict[str, list[Decision]]:
    """The decisions that have an Offergrid order, by order."""
    grouped: dict[str, list[Decision]] = defaultdict(list)
    for decision in decisions:
        if decision.order_id is not None:
            grouped[decision.order_id].append(decision)
    return dict(grouped)


def _settle_orders(
    decisions: list[Decision], order_statuses: Mapping[str, Sequence[tuple[str, str]]]
) -> list[Decision]:
    """Apply Offergrid's whole-order cancel: all of an order goes again, or none of it can."""
    result = list(decisions)
    for order_id, group in group_by_order(decisions).items():
        to_replace = [d for d in group if d.step == Step.reorder]
        if not to_replace:
            continue
        items = order_statuses.get(order_id, [(d.category, "") for d in group])
        # Known blockers only: an unfamiliar status is tried, and a refusal is handled then.
        blockers = [(category, status) for category, status in items if status in _BLOCKING]
        first = to_replace[0]
        for index, decision in enumerate(result):
            if decision.order_id != order_id:
                continue
            if blockers:
                if decision.step == Step.reorder:
                    result[index] = cannot_cancel(
                        decision, refusal_reason(blockers, decision.category)
                    )
            elif decision.step == Step.keep:
                result[index] = replace(
                    decision,
                    step=Step.reorder,
                    detail=f"ordered together with {service_word(first.category)}, "
                    "whose order has to be made again, so it is ordered again too.",
                )
    return result


def refusal_reason(items: Sequence[tuple[str, str]], own_category: str) -> str:
    """Why Offergrid would not cancel an order, from its items' (category, status), in words."""
    for category, status in items:
        if status in _BLOCKING:
            doing = "already in service" if status in _FULFILLED else "already under way"
            if category == own_category:
                return f"it is {doing}"
            return f"{service_word(category)} in the same order is {doing}"
    return "the provider no longer allows it"


def cannot_cancel(decision: Decision, why: str) -> Decision:
    """The decision turned into a flag because Offergrid would not cancel its order (`why`)."""
    lead = decision.detail.split(", so ")[0].rstrip(".")
    return replace(
        decision,
        step=Step.flag,
        detail=f"{lead}; the order cannot be cancelled ({why}), so the buyer needs to call "
        f"{decision.provider or 'the provider'} to move the date.",
        action_by="buyer",
    )


def not_cancellable_detail(status: str | None, *, provider: str | None, why: str = "") -> str:
    """Why a fell-through closing's service could not be cancelled, and who must call whom."""
    who = provider or "the provider"
    if status in _FULFILLED:
        state = "already in service"
    elif status == OrderStatus.IN_PROGRESS.value:
        state = "being installed right now"
    else:
        state = "in an order that can no longer be cancelled"
    if why:
        state += f" ({why})"
    return f"{state}, so it could not be cancelled; the buyer needs to call {who} to stop it."


# Re-picks ---------------------------------------------------------------------------------------


def may_try_again(failures: int, max_attempts: int) -> bool:
    """Whether a category that ended unfulfilled `failures` times may be ordered once more."""
    return failures < max_attempts


def out_of_limits(choice: OfferChoice, closing: ClosingRequest, category: str) -> str | None:
    """Why an offer is no longer within the buyer's limits (excluded provider, budget), or None."""
    prefs = closing.preferences
    excluded = {name.strip().casefold() for name in prefs.excluded_providers}
    if choice.provider_name and choice.provider_name.strip().casefold() in excluded:
        return f"{choice.provider_name} is excluded by the buyer"
    cap = prefs.cap_for(category)
    if cap is not None:
        # The regular price decides, as in the recommendation: the promotion ends, the bill stays.
        price = choice.snapshot.regular_price
        if price is None:
            price = choice.monthly_price
        if price is None:
            return "its price is not fixed, so it cannot be held to the budget"
        if price > cap:
            return f"${price:,.2f}/month is over the ${cap:,.2f} budget"
    return None


@dataclass(frozen=True)
class Repick:
    """The next offer to try for a category, the ones left after it, and the ones passed over."""

    choice: OfferChoice | None
    runners_up: list[OfferChoice] = field(default_factory=list)
    passed_over: list[str] = field(default_factory=list)


def next_offer(
    runners_up: Sequence[OfferChoice],
    *,
    tried: Iterable[str],
    closing: ClosingRequest,
    category: str,
) -> Repick:
    """The best runner-up not tried yet and still within limits, with the rest kept in order."""
    tried_ids = set(tried)
    passed: list[str] = []
    for index, runner in enumerate(runners_up):
        if runner.offer_id in tried_ids:
            continue
        why = out_of_limits(runner, closing, category)
        if why is not None:
            passed.append(f"{runner.offer_name}: {why}")
            continue
        rest = [r for r in runners_up[index + 1 :] if r.offer_id not in tried_ids]
        return Repick(choice=runner, runners_up=rest, passed_over=passed)
    return Repick(choice=None, passed_over=passed)


def exhausted_reason(category: str, *, failures: int, max_attempts: int) -> str:
    """The risk a person reads when a category has nothing left to order."""
    name = service_name(category)
    if failures >= max_attempts:
        return (
            f"{name}: {failures} orders ended without service (the most we try is "
            f"{max_attempts}); a person must choose a provider."
        )
    return f"{name}: no other offer within the buyer's limits is left; a person must choose one."


# Contact corrections ----------------------------------------------------------------------------


def _digits(phone: str | None) -> str:
    return re.sub(r"\D", "", phone or "")


def stale_contact_fields(
    sent_email: str | None,
    sent_phone: str | None,
    *,
    email: str,
    phone: str,
) -> list[str]:
    """Which of the buyer's details an order was sent with that differ from the current ones."""
    stale: list[str] = []
    if sent_email is not None and sent_email.strip().casefold() != email.strip().casefold():
        stale.append("email")
    if sent_phone is not None and _digits(sent_phone) != _digits(phone):
        stale.append("phone")
    return stale


# Re-planning from stored lines ------------------------------------------------------------------

# Lines a re-plan gives new dates: not ordered yet, or ordered (only their deadlines move).
_RETIMED_STATES = frozenset({"planned", "skipped", "placing", "placed", "fulfilled"})


def picks_from_lines(
    lines: Sequence[PlanLineRow], *, renew: Iterable[uuid.UUID] = ()
) -> list[CategoryPick]:
    """The picks a re-plan times again: every current line, and the ended ones in `renew`.

    A line whose order we just cancelled (or whose intent we withdrew) is renewed: the plan gives
    its category a fresh attempt with the same offer. Other ended lines (rejected, failed) are left
    to the re-pick step, so a re-plan never orders a rejected offer again.
    """
    renewed = set(renew)
    return [
        CategoryPick(
            category=Category(line.category),
            importance=Importance(line.importance),
            choice=line.offer_choice(),
            reason=line.reason,
            runners_up=line.runner_up_choices(),
            problem=line.problem,
        )
        for line in lines
        if str(line.state) in _RETIMED_STATES or line.id in renewed
    ]


def carry_flags(plan: Plan, lines: Sequence[PlanLineRow]) -> Plan:
    """The plan with the flags of categories a person must choose for kept (nothing to order)."""
    flagged = {
        line.category: line.risk_reason
        for line in lines
        if line.offer_id is None and line.at_risk and line.risk_reason
    }
    if not flagged:
        return plan
    kept = [
        line.model_copy(update={"at_risk": True, "risk_reason": flagged[str(line.category)]})
        if line.choice is None and str(line.category) in flagged
        else line
        for line in plan.lines
    ]
    return plan.model_copy(update={"lines": kept})


def orders_by_id(orders: list[Order]) -> dict[str, Order]:
    """The orders keyed by their Offergrid ID."""
    return {order.order_id: order for order in orders}


def conveyed_move_in(order: Order | None) -> date | None:
    """The move-in date an order told the provider (its metadata), if it says."""
    value: object = (order.metadata or {}).get("moveInDate") if order is not None else None
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def decide_new_dates(
    closing: ClosingRequest,
    lines: Sequence[LineRecord],
    *,
    orders: list[Order],
    withdrawn: Collection[str],
    previous_move_in: date,
    policy: Policy,
    as_of: datetime,
) -> list[Decision]:
    """What a closing's new dates mean for each current line: move, keep, re-order or flag.

    The move-in an order carries is read from the order itself; where Offergrid does not echo it,
    the order is taken to carry `previous_move_in`, the date we sent before the change.
    """
    rows = [record.line for record in lines]
    renew = [line.id for line in rows if line.category in withdrawn]
    plan = plan_closing(closing, picks_from_lines(rows, renew=renew), policy, as_of=as_of)
    by_id = orders_by_id(orders)
    services: list[OrderedService] = []
    for record in lines:
        line, item = record.line, record.item
        order_id = record.placement.offergrid_order_id if record.placement is not None else None
        scheduled = item.scheduled_for if item is not None else None
        withdrawn_now = line.id in renew and line.state == PlanLineState.cancelled
        services.append(
            OrderedService(
                line_id=line.id,
                category=line.category,
                provider=line.provider_name,
                state="planned" if withdrawn_now else str(line.state),
                order_id=None if withdrawn_now else order_id,
                item_status=item.status if item is not None and not withdrawn_now else None,
                scheduled_on=scheduled.astimezone(closing.tz).date() if scheduled else None,
                conveyed_move_in=(
                    conveyed_move_in(by_id.get(order_id)) or previous_move_in if order_id else None
                ),
            )
        )
    windows = {
        str(category): service_window(service_timing(closing, category, policy))
        for category in {Category(line.category) for line in rows}
    }
    statuses = {
        order.order_id: [(str(item.category or ""), str(item.status or "")) for item in order.items]
        for order in orders
    }
    return decide_date_change(
        services,
        windows=windows,
        new_move_in=closing.effective_move_in,
        order_dates={str(line.category): line.placement_date for line in plan.lines},
        today=closing.local_date(as_of),
        order_statuses=statuses,
    )
