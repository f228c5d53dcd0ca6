"""Timing: when each service must start and when its order must be placed, in business days."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from models.closing import ClosingRequest
from models.plan import CategoryPick, Importance, Plan, PlanLine
from offergrid.models import Category
from preclose.rules.calendar import BusinessCalendar
from preclose.rules.policy import CategoryTiming, Policy
from preclose.wording.services import service_name

__all__ = ["ServiceTiming", "closing_day_warnings", "plan_closing", "service_timing"]


@dataclass(frozen=True)
class ServiceTiming:
    """One category's window for a closing, before looking at today."""

    category: Category
    anchor: str  # "Closing", "Move-in" or "Possession", as the buyer would say it
    anchor_date: date
    service_date: date  # the day the service must start (the requested start)
    window_end: date  # the last acceptable day; equals the start for a deadline
    placement_date: date  # the ideal day to place the order
    rule: CategoryTiming
    not_before: date  # possession: nothing starts before it
    bind_by: date | None = None  # insurance: accepted by the insurer by this day
    lead_business_days: int = 0  # the lead this order needs (instant, new construction counted)
    instant: bool = False


def _anchor(closing: ClosingRequest, rule: CategoryTiming) -> tuple[str, date]:
    possession = closing.possession_date
    if rule.anchor == "closing":
        return "Closing", closing.closing_date
    if rule.anchor == "possession":
        return ("Closing" if possession == closing.closing_date else "Move-in"), possession
    move_in = closing.effective_move_in
    return ("Closing" if move_in == closing.closing_date else "Move-in"), move_in


def service_timing(
    closing: ClosingRequest,
    category: Category,
    policy: Policy,
    calendar: BusinessCalendar | None = None,
    *,
    instant: bool = False,
) -> ServiceTiming:
    """The window and ideal placement date for one category of a closing.

    Nothing starts before possession (the closing, or an earlier move-in). An "on" service starts
    on its anchor day whatever the weekday (a remote switch-on, a policy's effective date); a
    "by" deadline on a weekend or holiday moves to the business day before, but never before
    possession; an "after" target is business days after its anchor, widened into a window. The
    placement date is the start (or, for insurance, the bind date) minus the lead time in business
    days: the instant-activation lead when `instant` and the rule allows it, plus any extra lead
    the policy gives the home (new construction).
    """
    cal = calendar or policy.calendar(closing.property.address.state)
    rule = policy.timing_for(category)
    possession = closing.possession_date
    anchor, anchor_date = _anchor(closing, rule)
    if rule.offset_business_days:
        start = cal.add_business_days(anchor_date, rule.offset_business_days)
    elif rule.mode == "by":
        start = cal.on_or_before(anchor_date)
    elif rule.mode == "after":
        start = cal.on_or_after(anchor_date)
    else:
        start = anchor_date
    if start < possession:
        # Never before the buyer has the keys: the first day it can be done from possession.
        start = possession if rule.mode == "on" else cal.on_or_after(possession)
    end = cal.add_business_days(start, rule.window_business_days) if rule.mode == "after" else start
    bind_by = None
    if rule.bind_before_closing_business_days is not None:
        bind_by = min(
            cal.add_business_days(closing.closing_date, -rule.bind_before_closing_business_days),
            cal.on_or_before(start),
        )
    instant_here = rule.instant_activation == "always" or (
        instant and rule.instant_activation == "when_offered"
    )
    lead = rule.lead_business_days
    if instant_here and rule.instant_lead_business_days is not None:
        lead = rule.instant_lead_business_days
    lead += policy.extra_lead_for(closing.property, category)
    return ServiceTiming(
        category=category,
        anchor=anchor,
        anchor_date=anchor_date,
        service_date=start,
        window_end=end,
        placement_date=cal.add_business_days(bind_by or start, -lead),
        rule=rule,
        not_before=possession,
        bind_by=bind_by,
        lead_business_days=lead,
        instant=instant_here,
    )


def _business_days(count: int) -> str:
    return f"{count} business day" + ("" if count == 1 else "s")


def _risk(timing: ServiceTiming, today: date, cal: BusinessCalendar) -> str:
    """Why an order whose placement date has passed may not be in service on time."""
    rule = timing.rule
    title = service_name(timing.category.value)
    need = f"{rule.lead_phrase} {timing.lead_business_days}"
    service = timing.service_date
    if timing.bind_by is not None:
        bind_by = timing.bind_by.isoformat()
        if timing.bind_by < today:
            return f"{title} was to be bound by {bind_by} for closing, which has passed; {need}"
        left = cal.business_days_between(today, timing.bind_by)
        when = "today" if left == 0 else f"in {_business_days(left)}"
        return f"{title} must be bound by {bind_by} for closing ({when}); {need}"
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


def closing_day_warnings(closing: ClosingRequest, cal: BusinessCalendar) -> list[str]:
    """A warning when the closing falls on a weekend or a holiday at the property."""
    day = closing.closing_date
    why = cal.closed_reason(day)
    if why is None:
        return []
    when = why if why.startswith("a ") else f"{why}, a holiday in {closing.property.address.state}"
    return [
        f"The closing on {day:%A %B} {day.day} falls on {when}: lenders do not fund and county "
        "recorders are closed, so confirm the date with the title company. The plan keeps it."
    ]


def plan_closing(
    closing: ClosingRequest,
    picks: Sequence[CategoryPick],
    policy: Policy,
    *,
    as_of: datetime,
    notes: Sequence[str] = (),
) -> Plan:
    """Date every pick: service date, placement date, and whether it is due now or at risk.

    `as_of` must be timezone-aware; "today" is its date in the property's time zone. An order
    whose ideal placement date has passed is due today (`due_now`); it is at risk once the lead
    time no longer fits before its service date (or its window's end for an "after" target). An
    essential category with nothing to order is at risk too.
    """
    today = closing.local_date(as_of)
    cal = policy.calendar(closing.property.address.state)
    lines: list[PlanLine] = []
    for pick in picks:
        instant = pick.choice is not None and pick.choice.snapshot.instant_activation
        timing = service_timing(closing, pick.category, policy, cal, instant=instant)
        # An "after" target has a window: the order is late only once even its end is unreachable.
        latest = cal.add_business_days(
            timing.bind_by or timing.window_end, -timing.lead_business_days
        )
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
                lead_business_days=timing.lead_business_days,
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
        problems=[*closing_day_warnings(closing, cal), *(p.problem for p in picks if p.problem)],
        notes=list(notes),
        generated_at=as_of.astimezone(UTC),
    )
