"""Business days and timing: service dates, placement dates, and what is due or at risk."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from models.closing import ClosingRequest
from models.plan import CategoryPick, Importance, Plan
from offergrid.models import Category
from preclose.rules.calendar import BusinessCalendar, us_federal_holidays
from preclose.rules.policy import load_policy
from preclose.rules.recommend import to_choice
from preclose.rules.timing import plan_closing, service_timing
from tests.fixtures_planning import at, closing_data, make_closing, make_offer

POLICY = load_policy()
CAL = BusinessCalendar()
TX = BusinessCalendar(state="TX")
D = date.fromisoformat


def test_us_federal_holidays_2026_with_observed_days() -> None:
    """The 2026 federal holidays (OPM), Independence Day observed on Friday 3 July."""
    closed = {day for day in us_federal_holidays(2026) if day.weekday() < 5}
    assert sorted(closed) == [
        D(x)
        for x in (
            "2026-01-01",
            "2026-01-19",
            "2026-02-16",
            "2026-05-25",
            "2026-06-19",
            "2026-07-03",
            "2026-09-07",
            "2026-10-12",
            "2026-11-11",
            "2026-11-26",
            "2026-12-25",
        )
    ]


@pytest.mark.parametrize(
    ("day", "name"),
    [
        ("2027-12-24", "Christmas Day"),  # Christmas 2027 is a Saturday
        ("2027-07-05", "Independence Day"),  # 4 July 2027 is a Sunday
        ("2021-12-31", "New Year's Day"),  # 1 January 2022 is a Saturday
        ("2026-11-26", "Thanksgiving Day"),
        ("2027-05-31", "Memorial Day"),
    ],
)
def test_observed_holidays_close_the_right_weekday(day: str, name: str) -> None:
    """A holiday on a weekend closes the nearest weekday; floating holidays land on their rule."""
    assert name in (CAL.holiday_name(D(day)) or "")
    assert not CAL.is_business_day(D(day))


@pytest.mark.parametrize(
    ("state", "day", "name"),
    [
        ("TX", "2027-03-02", "Texas Independence Day"),
        ("TX", "2026-11-27", "Friday After Thanksgiving"),
        ("HI", "2027-06-11", "Kamehameha Day"),
        ("MA", "2027-04-19", "Patriots' Day"),
        ("CA", "2026-10-12", "Columbus Day"),  # federal: banks close whatever the state says
    ],
)
def test_a_state_calendar_closes_its_own_holidays_and_the_federal_ones(
    state: str, day: str, name: str
) -> None:
    """The property's state adds its public holidays to the federal ones; elsewhere they work."""
    assert name in (BusinessCalendar(state=state).holiday_name(D(day)) or "")
    assert not BusinessCalendar(state=state).is_business_day(D(day))
    if state != "CA":
        assert CAL.is_business_day(D(day))


def test_business_day_arithmetic_skips_weekends_and_holidays() -> None:
    """Stepping, rolling and counting business days skip weekends, Thanksgiving and extras."""
    assert CAL.add_business_days(D("2026-11-25"), 1) == D("2026-11-27")
    assert CAL.add_business_days(D("2026-11-27"), -1) == D("2026-11-25")
    assert CAL.add_business_days(D("2026-11-25"), -10) == D("2026-11-10")  # skips Veterans Day
    assert CAL.add_business_days(D("2026-11-25"), 0) == D("2026-11-25")
    assert CAL.on_or_before(D("2026-11-29")) == D("2026-11-27")
    assert CAL.on_or_after(D("2026-12-25")) == D("2026-12-28")
    assert CAL.business_days_between(D("2026-11-23"), D("2026-11-30")) == 4
    assert CAL.business_days_between(D("2026-11-30"), D("2026-11-23")) == -4
    extra = BusinessCalendar(extra_holidays=[D("2026-12-24")])
    assert extra.on_or_before(D("2026-12-25")) == D("2026-12-23")
    plain = BusinessCalendar(us_federal=False)
    assert plain.is_business_day(D("2026-11-26"))


# Worked by hand from the policy for a Texas home (ZIP 78701): Texas closes the day after
# Thanksgiving, Christmas Eve and the day after Christmas as well as the federal holidays.
# Possession is the closing, or the move-in when earlier; nothing starts before it. Energy and
# insurance start "on" possession (any weekday); internet is in "by" move-in but never before
# possession; security and TV the 1st to 3rd business day after move-in. Lead times: energy and
# installs 10 business days, insurance 2 before its bind date (3 business days before closing).
# (closing, move-in, category, start, window end, ideal placement)
TIMINGS = [
    # An ordinary Tuesday closing.
    ("2026-12-15", None, "energy", "2026-12-15", "2026-12-15", "2026-12-01"),
    ("2026-12-15", None, "insurance", "2026-12-15", "2026-12-15", "2026-12-08"),
    ("2026-12-15", None, "internet", "2026-12-15", "2026-12-15", "2026-12-01"),
    ("2026-12-15", None, "security", "2026-12-16", "2026-12-18", "2026-12-02"),
    ("2026-12-15", None, "television", "2026-12-16", "2026-12-18", "2026-12-02"),
    ("2026-12-15", None, "other", "2026-12-15", "2026-12-15", "2026-12-08"),
    # A Saturday closing: power and the policy start that Saturday; internet cannot go in before
    # the buyer has the keys, so the Monday after.
    ("2026-12-12", None, "energy", "2026-12-12", "2026-12-12", "2026-11-30"),
    ("2026-12-12", None, "internet", "2026-12-14", "2026-12-14", "2026-11-30"),
    ("2026-12-12", None, "insurance", "2026-12-12", "2026-12-12", "2026-12-07"),
    ("2026-12-12", None, "security", "2026-12-14", "2026-12-16", "2026-11-30"),
    # Thanksgiving (Texas also closes the Friday after).
    ("2026-11-26", None, "energy", "2026-11-26", "2026-11-26", "2026-11-12"),
    ("2026-11-26", None, "internet", "2026-11-30", "2026-11-30", "2026-11-12"),
    ("2026-11-26", None, "insurance", "2026-11-26", "2026-11-26", "2026-11-19"),
    ("2026-11-26", None, "security", "2026-11-30", "2026-12-02", "2026-11-12"),
    # Pre-possession: the buyer moves in on 1 December, two weeks before closing; every service
    # (power and the policy too) starts with the keys.
    ("2026-12-15", "2026-12-01", "energy", "2026-12-01", "2026-12-01", "2026-11-13"),
    ("2026-12-15", "2026-12-01", "insurance", "2026-12-01", "2026-12-01", "2026-11-25"),
    ("2026-12-15", "2026-12-01", "internet", "2026-12-01", "2026-12-01", "2026-11-13"),
    ("2026-12-15", "2026-12-01", "security", "2026-12-02", "2026-12-04", "2026-11-16"),
    # Rent-back: the buyer owns from closing (power, insurance) and moves in after the holidays.
    ("2026-12-15", "2027-01-04", "energy", "2026-12-15", "2026-12-15", "2026-12-01"),
    ("2026-12-15", "2027-01-04", "insurance", "2026-12-15", "2026-12-15", "2026-12-08"),
    ("2026-12-15", "2027-01-04", "internet", "2027-01-04", "2027-01-04", "2026-12-16"),
    ("2026-12-15", "2027-01-04", "security", "2027-01-05", "2027-01-07", "2026-12-17"),
]


@pytest.mark.parametrize(
    ("closing_date", "move_in", "category", "service", "window_end", "placement"), TIMINGS
)
def test_service_windows_and_placement_dates(
    closing_date: str,
    move_in: str | None,
    category: str,
    service: str,
    window_end: str,
    placement: str,
) -> None:
    """Each window starts on its anchor, never before possession; placement is the lead earlier."""
    closing = make_closing(closing_date=closing_date, move_in_date=move_in)
    timing = service_timing(closing, Category(category), POLICY)
    assert (timing.service_date, timing.window_end, timing.placement_date) == (
        D(service),
        D(window_end),
        D(placement),
    )
    assert timing.service_date >= closing.possession_date == timing.not_before
    assert TX.is_business_day(timing.placement_date)


def test_insurance_is_bound_three_business_days_before_closing_financed_or_cash() -> None:
    """The bind date is 3 business days before closing, for a cash purchase as for a loan."""
    for financed in (True, False):
        closing = make_closing(closing_date="2026-12-15", financed=financed)
        timing = service_timing(closing, Category.INSURANCE, POLICY)
        assert timing.bind_by == D("2026-12-10")
        assert timing.service_date == D("2026-12-15")  # effective at closing


def test_instant_activation_orders_a_few_business_days_ahead() -> None:
    """An instant-activation power plan is ordered 3 business days ahead, not 10."""
    closing = make_closing(closing_date="2026-12-15")
    timing = service_timing(closing, Category.ENERGY, POLICY, instant=True)
    assert (timing.service_date, timing.placement_date) == (D("2026-12-15"), D("2026-12-10"))
    assert timing.instant and timing.lead_business_days == 3


def test_new_construction_gets_more_lead_time() -> None:
    """A newly built home's power and internet are ordered 10 business days earlier than usual."""
    closing = make_closing(closing_date="2026-12-15", property_type="new_construction")
    energy = service_timing(closing, Category.ENERGY, POLICY)
    internet = service_timing(closing, Category.INTERNET, POLICY)
    instant = service_timing(closing, Category.ENERGY, POLICY, instant=True)
    assert energy.placement_date == internet.placement_date == D("2026-11-13")
    assert instant.placement_date == D("2026-11-24")
    security = service_timing(closing, Category.SECURITY, POLICY)
    assert security.placement_date == D("2026-12-02")  # no extra lead named for security


@pytest.mark.parametrize(
    ("closing_date", "warning"),
    [
        ("2026-12-12", "falls on a Saturday"),
        ("2026-11-26", "falls on Thanksgiving Day, a holiday in TX"),
        ("2027-03-02", "falls on Texas Independence Day, a holiday in TX"),
    ],
)
def test_a_closing_on_a_weekend_or_holiday_is_planned_with_a_warning(
    closing_date: str, warning: str
) -> None:
    """The plan keeps a weekend or holiday closing and says why the date needs checking."""
    plan = _plan(at(D(closing_date) - timedelta(days=40)), closing_date=closing_date)
    assert len(plan.lines) == len(ALL)
    assert any(warning in problem and "lenders do not fund" in problem for problem in plan.problems)


def test_a_business_day_closing_has_no_date_warning() -> None:
    """An ordinary Tuesday closing plans without a warning about its date."""
    plan = _plan(at(D("2026-11-02")), closing_date="2026-12-15")
    assert plan.problems == []


def _picks(*categories: str, chosen: bool = True) -> list[CategoryPick]:
    return [
        CategoryPick(
            category=Category(cat),
            importance=Importance.essential if cat != "security" else Importance.recommended,
            choice=to_choice(make_offer(f"o-{cat}", cat), POLICY) if chosen else None,
            reason="test",
            problem=None if chosen else f"No {cat} offer at 78701",
        )
        for cat in categories
    ]


ALL = ("energy", "insurance", "internet", "security")


def _plan(as_of: datetime, closing_date: str, move_in_date: str | None = None) -> Plan:
    closing = make_closing(closing_date=closing_date, move_in_date=move_in_date)
    return plan_closing(closing, _picks(*ALL), POLICY, as_of=as_of)


def test_far_ahead_nothing_is_due_and_lines_run_in_placement_order() -> None:
    """Six weeks out nothing is due or at risk, and lines are ordered by placement date."""
    plan = _plan(at(D("2026-11-02")), closing_date="2026-12-15")
    assert [line.category.value for line in plan.lines] == [
        "internet",
        "energy",
        "security",
        "insurance",
    ]
    assert [line.placement_date for line in plan.lines] == [
        D("2026-12-01"),
        D("2026-12-01"),
        D("2026-12-02"),
        D("2026-12-08"),
    ]
    assert not any(line.due_now or line.at_risk for line in plan.lines)
    assert plan.as_of_date == D("2026-11-02")
    assert plan.generated_at.tzinfo is UTC


def test_closing_tomorrow_puts_everything_due_now_with_reasons() -> None:
    """The day before closing every order is due today and at risk, each with a plain reason."""
    plan = _plan(at(D("2026-12-14")), closing_date="2026-12-15")
    reasons = {line.category.value: line.risk_reason for line in plan.lines}
    assert reasons == {
        "internet": "Closing is in 1 business day; internet installs usually need 10",
        "energy": "Closing is in 1 business day; energy start-ups usually need 10",
        "insurance": (
            "Home insurance was to be bound by 2026-12-10 for closing, which has passed; "
            "insurance binding usually needs 2"
        ),
        "security": (
            "Home security is targeted for 2026-12-16 to 2026-12-18 (4 business days left); "
            "security installs usually need 10"
        ),
    }
    assert all(line.at_risk and line.due_now for line in plan.lines)
    assert {line.placement_date for line in plan.lines} == {D("2026-12-14")}


def test_today_is_the_property_date_not_utc() -> None:
    """05:00 UTC on 2 December is still 1 December in Chicago: due today, not yet at risk."""
    evening = _plan(datetime(2026, 12, 2, 5, tzinfo=UTC), closing_date="2026-12-15")
    internet = evening.line(Category.INTERNET)
    assert internet is not None and internet.due_now and not internet.at_risk
    next_morning = _plan(datetime(2026, 12, 2, 7, tzinfo=UTC), closing_date="2026-12-15")
    internet = next_morning.line(Category.INTERNET)
    assert internet is not None and internet.at_risk
    assert (
        internet.risk_reason == "Closing is in 9 business days; internet installs usually need 10"
    )
    assert internet.placement_date == D("2026-12-02")


def test_an_after_target_is_at_risk_only_once_its_window_is_unreachable() -> None:
    """Security may be ordered past its ideal day while the end of its window is reachable."""
    inside = _plan(at(D("2026-12-04")), "2026-12-15").line(Category.SECURITY)
    assert inside is not None and inside.due_now and not inside.at_risk
    beyond = _plan(at(D("2026-12-07")), "2026-12-15").line(Category.SECURITY)
    assert beyond is not None and beyond.at_risk


def test_move_in_anchor_is_named_in_the_reason() -> None:
    """With pre-possession, internet risk speaks of move-in (Texas closes 26-27 November)."""
    plan = _plan(at(D("2026-11-24")), closing_date="2026-12-15", move_in_date="2026-12-01")
    internet = plan.line(Category.INTERNET)
    assert internet is not None
    assert (
        internet.risk_reason == "Move-in is in 3 business days; internet installs usually need 10"
    )


def test_missing_essential_is_at_risk_but_missing_optional_is_not() -> None:
    """A category with nothing to order is at risk only when essential, and is never due."""
    picks = _picks("insurance", "security", chosen=False)
    plan = plan_closing(make_closing(), picks, POLICY, as_of=at(D("2026-11-02")))
    insurance, security = plan.line(Category.INSURANCE), plan.line(Category.SECURITY)
    assert insurance is not None and security is not None
    assert insurance.at_risk and insurance.risk_reason == "No insurance offer at 78701"
    assert not security.at_risk and security.risk_reason is None
    assert not insurance.due_now
    assert plan.problems == ["No insurance offer at 78701", "No security offer at 78701"]


def test_naive_as_of_is_refused() -> None:
    """plan_closing needs an aware moment to know the property's today."""
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_closing(make_closing(), _picks("energy"), POLICY, as_of=datetime(2026, 12, 1))


def _hawaii(closing_date: str) -> ClosingRequest:
    data = closing_data(closing_date=closing_date)
    data["property"]["address"].update(city="Honolulu", state="HI", zip_code="96813")
    data.pop("time_zone", None)
    return ClosingRequest.model_validate(data)


def test_a_state_holiday_moves_lead_times_in_that_state_only() -> None:
    """Kamehameha Day (Fri 11 June 2027) closes Hawaii, not Texas: Honolulu orders a day earlier."""
    honolulu = service_timing(_hawaii("2027-06-14"), Category.INTERNET, POLICY)
    austin = service_timing(make_closing(closing_date="2027-06-14"), Category.INTERNET, POLICY)
    # Back 10 business days from Monday 14 June, skipping Memorial Day (31 May) in both.
    assert austin.placement_date == D("2027-05-28")
    assert honolulu.placement_date == D("2027-05-27")


def test_a_honolulu_plan_is_dated_by_honolulu_time() -> None:
    """At 09:30 UTC on 15 March it is still the 14th in Honolulu (no daylight saving there)."""
    closing = _hawaii("2027-04-20")
    plan = plan_closing(
        closing, _picks("energy"), POLICY, as_of=datetime(2027, 3, 15, 9, 30, tzinfo=UTC)
    )
    assert closing.time_zone == "Pacific/Honolulu"
    assert plan.as_of_date == D("2027-03-14")
