"""Business days: weekends, US federal holidays (via dateutil.rrule) and extra closed dates."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from functools import lru_cache

from dateutil.rrule import MO, TH, YEARLY, rrule

__all__ = ["BusinessCalendar", "observed", "us_federal_holidays"]

# Fixed-date holidays as (name, month, day); each is observed on the nearest weekday.
_FIXED: tuple[tuple[str, int, int], ...] = (
    ("New Year's Day", 1, 1),
    ("Juneteenth National Independence Day", 6, 19),
    ("Independence Day", 7, 4),
    ("Veterans Day", 11, 11),
    ("Christmas Day", 12, 25),
)
# Floating holidays as (name, month, nth weekday of that month).
_FLOATING = (
    ("Martin Luther King Jr. Day", 1, MO(+3)),
    ("Washington's Birthday", 2, MO(+3)),
    ("Memorial Day", 5, MO(-1)),
    ("Labor Day", 9, MO(+1)),
    ("Columbus Day", 10, MO(+2)),
    ("Thanksgiving Day", 11, TH(+4)),
)


def observed(day: date) -> date:
    """The day a fixed-date federal holiday is observed: Saturday → Friday, Sunday → Monday."""
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


@lru_cache(maxsize=64)
def _holidays_of(year: int) -> tuple[tuple[date, str], ...]:
    found: dict[date, str] = {}
    for name, month, weekday in _FLOATING:
        start = datetime(year, month, 1)
        # One yearly rule per holiday, limited to its month; dateutil resolves "+3rd Monday" etc.
        (when,) = rrule(YEARLY, dtstart=start, count=1, bymonth=month, byweekday=weekday)
        found[when.date()] = name
    for name, month, day in _FIXED:
        found[observed(date(year, month, day))] = name
    # New Year's Day of the next year is observed on Friday 31 December when it falls on a Saturday.
    next_new_year = observed(date(year + 1, 1, 1))
    if next_new_year.year == year:
        found[next_new_year] = "New Year's Day"
    # ...and then it does not belong to the year it falls in.
    this_new_year = observed(date(year, 1, 1))
    if this_new_year.year != year:
        found.pop(this_new_year, None)
    return tuple(sorted(found.items()))


def us_federal_holidays(year: int) -> dict[date, str]:
    """The US federal holidays observed in `year` (OPM rules), date → name."""
    return dict(_holidays_of(year))


class BusinessCalendar:
    """Counts business days: Monday to Friday minus US federal holidays (optional) and extras."""

    def __init__(self, *, us_federal: bool = True, extra_holidays: Iterable[date] = ()) -> None:
        """Build a calendar; `us_federal=False` keeps only weekends and `extra_holidays` closed."""
        self.us_federal = us_federal
        self.extra_holidays = frozenset(extra_holidays)

    def __repr__(self) -> str:
        return (
            f"BusinessCalendar(us_federal={self.us_federal}, "
            f"extra_holidays={len(self.extra_holidays)})"
        )

    def holiday_name(self, day: date) -> str | None:
        """The name of the holiday on `day`, or None when it is not a holiday."""
        if day in self.extra_holidays:
            return "Holiday"
        if self.us_federal:
            return us_federal_holidays(day.year).get(day)
        return None

    def is_business_day(self, day: date) -> bool:
        """Whether `day` is a weekday that is not a holiday."""
        return day.weekday() < 5 and self.holiday_name(day) is None

    def on_or_before(self, day: date) -> date:
        """`day` if it is a business day, else the business day before it."""
        while not self.is_business_day(day):
            day -= timedelta(days=1)
        return day

    def on_or_after(self, day: date) -> date:
        """`day` if it is a business day, else the business day after it."""
        while not self.is_business_day(day):
            day += timedelta(days=1)
        return day

    def add_business_days(self, day: date, count: int) -> date:
        """Step `count` business days from `day` (back when negative); `day` itself never counts."""
        step = timedelta(days=1 if count >= 0 else -1)
        remaining = abs(count)
        while remaining:
            day += step
            if self.is_business_day(day):
                remaining -= 1
        return day

    def business_days_between(self, start: date, end: date) -> int:
        """Business days in (start, end]: working days from `start` to `end`, negative if before."""
        if end < start:
            return -self.business_days_between(end, start)
        count = 0
        day = start
        while day < end:
            day += timedelta(days=1)
            if self.is_business_day(day):
                count += 1
        return count
