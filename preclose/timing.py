"""Timing: when each service must start and when its order must be placed, in business days."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from models.closing import ClosingRequest
from models.plan import CategoryPick, Importance, Plan, PlanLine
from offergrid.models import Category
from preclose.calendar import BusinessCalendar
from preclose.policy import CategoryTiming, Policy

__all__ = ["ServiceTiming", "plan_closing", "service_timing"]

_TITLES = {Category.TELEVISION: "TV"}


@dataclass(frozen=True)
class ServiceTiming:
    """One category's dates for a closing, before looking at today."""

    category: Category
    anchor: str  # "Closing" or "Move-in", as the buyer would say it
    anchor_date: date
    service_date: date
    window_end: date
    placement_date: date  # the ideal day to place the order
    rule: CategoryTiming


def service_timing(
    closing: ClosingRequest,
    category: Category,
    policy: Policy,
    calendar: BusinessCalendar | None = None,
) -> ServiceTiming:
    """The service date and ideal placement date for one category of a closing.

    A service date on a weekend or holiday moves to the business day BEFORE it for "by"
    deadlines (power on by closing, internet installed by move-in) and to the business day AFTER
    it for "after" targets (security and TV installed once the buyer is in). A non-zero offset
    counts business days from the anchor, so it always lands on a business day. The placement
    date is the service date minus the category's lead time in business days.
    """
    cal = calendar or policy.calendar()
    rule = policy.timing_for(category)
    move_in = closing.effective_move_in
    if rule.anchor == "closing":
        anchor, anchor_date = "Closing", closing.closing_date
    else:
        anchor = "Closing" if move_in == closing.closing_date else "Move-in"
        anchor_date = move_in
    if rule.offset_business_days:
        service = cal.add_business_days(anchor_date, rule.offset_business_days)
    elif rule.mode == "by":
        service = cal.on_or_before(anchor_date)
    else:
        service = cal.on_or_after(anchor_date)
    return ServiceTiming(
        category=category,
        anchor=anchor,
        anchor_date=anchor_date,
        service_date=service,
        window_end=cal.add_business_days(service, rule.window_business_days),
        placement_date=cal.add_business_days(service, -rule.lead_business_days),
        rule=rule,
    )


def _business_days(count: int) -> str:
    return f"{count} business day" + ("" if count == 1 else "s")


def _risk(timing: ServiceTiming, today: date, cal: BusinessCalendar) -> str:
    """Why an order whose placement date has passed may not be in service on time."""
    rule = timing.rule
    title = _TITLES.get(timing.category, timing.category.value.capitalize())
    need = f"{rule.lead_phrase} {rule.lead_business_days}"
    service = timing.service_date
    if timing.window_end < today:
        return f"{title} was due by {timing.window_end.isoformat()}, which has passed; {need}"
    left = cal.business_days_between(today, service)
    if service == timing.anchor_date:
        when = "today" if service == today else f"in {_business_days(left)}"
        return f"{timing.anchor} is {when}; {need}"
    if rule.mode == "by" or timing.window_end == service:
        return f"{title} is needed by {service.isoformat()} ({_business_days(left)} away); {need}"
    left = cal.business_days_between(today, timing.window_end)
    return (
        f"{title} is targeted for {service.isoformat()} to {timing.window_end.isoformat()} "
        f"({_business_days(left)} left); {need}"
    )


def plan_closing(
    closing: ClosingRequest,
    picks: Sequence[CategoryPick],
    policy: Policy,
    *,
    as_of: datetime,
) -> Plan:
    """Date every pick: service date, placement date, and whether it is due now or at risk.

    `as_of` must be timezone-aware; "today" is its date in the property's time zone. An order
    whose ideal placement date has passed is due today (`due_now`); it is at risk once the lead
    time no longer fits before its service date (or its window's end for an "after" target). An
    essential category with nothing to order is at risk too.
    """
    today = closing.local_date(as_of)
    cal = policy.calendar()
    lines: list[PlanLine] = []
    for pick in picks:
        timing = service_timing(closing, pick.category, policy, cal)
        # An "after" target has a window: the order is late only once even its end is unreachable.
        latest = cal.add_business_days(timing.window_end, -timing.rule.lead_business_days)
        late = latest < today
        at_risk, risk = late, _risk(timing, today, cal) if late else None
        if pick.choice is None:
            # Nothing to order: timing is moot, but a missing essential service endangers closing.
            essential = pick.importance == Importance.essential
            at_risk, risk = essential, (pick.problem or pick.reason) if essential else None
        lines.append(
            PlanLine(
                category=pick.category,
                importance=pick.importance,
                choice=pick.choice,
                reason=pick.reason,
                runners_up=list(pick.runners_up),
                problem=pick.problem,
                service_date=timing.service_date,
                service_window_end=timing.window_end,
                placement_date=max(timing.placement_date, today),
                lead_business_days=timing.rule.lead_business_days,
                due_now=pick.choice is not None and timing.placement_date <= today,
                at_risk=at_risk,
                risk_reason=risk,
            )
        )
    order = list(Category)
    lines.sort(key=lambda ln: (ln.placement_date, ln.importance.rank, order.index(ln.category)))
    return Plan(
        closing_id=closing.crm_closing_id,
        closing_date=closing.closing_date,
        move_in_date=closing.effective_move_in,
        time_zone=closing.time_zone,
        as_of_date=today,
        lines=lines,
        problems=[pick.problem for pick in picks if pick.problem],
        generated_at=as_of.astimezone(UTC),
    )
