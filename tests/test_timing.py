"""Business days and timing: service dates, placement dates, and what is due or at risk."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from models.plan import CategoryPick, Importance, Plan
from offergrid.models import Category
from preclose.calendar import BusinessCalendar, us_federal_holidays
from preclose.policy import load_policy
from preclose.recommend import to_choice
from preclose.timing import plan_closing, service_timing
from tests.fixtures_planning import at, make_closing, make_offer

POLICY = load_policy()
CAL = BusinessCalendar()
D = date.fromisoformat


def test_us_federal_holidays_2026_with_observed_days() -> None:
    """The 2026 federal holidays, Independence Day observed on Friday 3 July."""
    assert sorted(us_federal_holidays(2026)) == [
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
    assert CAL.holiday_name(D(day)) == name
    assert not CAL.is_business_day(D(day))


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


# (closing, move-in, category, service date, window end, ideal placement)
TIMINGS = [
    # An ordinary Tuesday closing.
    ("2026-12-15", None, "energy", "2026-12-15", "2026-12-15", "2026-12-01"),
    ("2026-12-15", None, "insurance", "2026-12-10", "2026-12-10", "2026-12-07"),
    ("2026-12-15", None, "internet", "2026-12-15", "2026-12-15", "2026-12-01"),
    ("2026-12-15", None, "security", "2026-12-16", "2026-12-18", "2026-12-02"),
    ("2026-12-15", None, "television", "2026-12-16", "2026-12-18", "2026-12-02"),
    # A Saturday closing: deadlines move to Friday, "after" targets to the next week.
    ("2026-12-12", None, "energy", "2026-12-11", "2026-12-11", "2026-11-27"),
    ("2026-12-12", None, "internet", "2026-12-11", "2026-12-11", "2026-11-27"),
    ("2026-12-12", None, "insurance", "2026-12-09", "2026-12-09", "2026-12-04"),
    ("2026-12-12", None, "security", "2026-12-14", "2026-12-16", "2026-11-30"),
    # Thanksgiving: power on the Wednesday before; the lead time skips Veterans Day.
    ("2026-11-26", None, "energy", "2026-11-25", "2026-11-25", "2026-11-10"),
    ("2026-11-26", None, "internet", "2026-11-25", "2026-11-25", "2026-11-10"),
    ("2026-11-26", None, "insurance", "2026-11-23", "2026-11-23", "2026-11-18"),
    ("2026-11-26", None, "security", "2026-11-27", "2026-12-01", "2026-11-12"),
    # Christmas Day (a Friday).
    ("2026-12-25", None, "energy", "2026-12-24", "2026-12-24", "2026-12-10"),
    ("2026-12-25", None, "television", "2026-12-28", "2026-12-30", "2026-12-11"),
    # Pre-possession: move-in services follow the buyer in; power and insurance follow closing.
    ("2026-12-15", "2026-12-01", "internet", "2026-12-01", "2026-12-01", "2026-11-16"),
    ("2026-12-15", "2026-12-01", "security", "2026-12-02", "2026-12-04", "2026-11-17"),
    ("2026-12-15", "2026-12-01", "energy", "2026-12-15", "2026-12-15", "2026-12-01"),
    # Rent-back: the buyer moves in after the holidays.
    ("2026-12-15", "2027-01-04", "internet", "2027-01-04", "2027-01-04", "2026-12-17"),
    ("2026-12-15", "2027-01-04", "security", "2027-01-05", "2027-01-07", "2026-12-18"),
    ("2026-12-15", "2027-01-04", "insurance", "2026-12-10", "2026-12-10", "2026-12-07"),
]


@pytest.mark.parametrize(
    ("closing_date", "move_in", "category", "service", "window_end", "placement"), TIMINGS
)
def test_service_and_placement_dates(
    closing_date: str,
    move_in: str | None,
    category: str,
    service: str,
    window_end: str,
    placement: str,
) -> None:
    """Service dates follow the anchor and roll by mode; placement is the lead time earlier."""
    closing = make_closing(closing_date=closing_date, move_in_date=move_in)
    timing = service_timing(closing, Category(category), POLICY)
    assert (timing.service_date, timing.window_end, timing.placement_date) == (
        D(service),
        D(window_end),
        D(placement),
    )
    assert CAL.is_business_day(timing.service_date)
    assert CAL.is_business_day(timing.placement_date)


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
        D("2026-12-07"),
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
            "Insurance was due by 2026-12-10, which has passed; insurance binding usually needs 3"
        ),
        "security": (
            "Security is targeted for 2026-12-16 to 2026-12-18 (4 business days left); "
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
    """With pre-possession, internet risk speaks of move-in, not closing."""
    plan = _plan(at(D("2026-11-24")), closing_date="2026-12-15", move_in_date="2026-12-01")
    internet = plan.line(Category.INTERNET)
    assert internet is not None
    assert (
        internet.risk_reason == "Move-in is in 4 business days; internet installs usually need 10"
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
