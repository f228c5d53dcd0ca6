"""Business days: weekends, US federal and state holidays (the `holidays` package), extra days."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from functools import lru_cache

import holidays

__all__ = ["BusinessCalendar", "state_holidays", "us_federal_holidays"]


@lru_cache(maxsize=256)
def _holidays_of(year: int, subdivision: str | None) -> tuple[tuple[date, str], ...]:
    # Only the PUBLIC category (the package's default): days offices, banks and recorders close,
    # including the observed weekday of a holiday that falls on a weekend.
    try:
        found = holidays.country_holidays("US", subdiv=subdivision, years=year)
    except NotImplementedError:
        # A territory or code the package does not know: its federal holidays still apply.
        found = holidays.country_holidays("US", years=year)
    return tuple(sorted(found.items()))


def us_federal_holidays(year: int) -> dict[date, str]:
    """The US federal holidays observed in `year`, date → name (from the `holidays` package)."""
    return dict(_holidays_of(year, None))


def state_holidays(year: int, state: str) -> dict[date, str]:
    """Federal and `state`'s own public holidays in `year`, date → name (the state's name wins)."""
    return {**dict(_holidays_of(year, None)), **dict(_holidays_of(year, state.upper()))}


class BusinessCalendar:
    """Counts business days: Monday to Friday minus federal (and a state's) holidays and extras."""

    def __init__(
        self,
        *,
        us_federal: bool = True,
        state: str | None = None,
        extra_holidays: Iterable[date] = (),
    ) -> None:
        """Build a calendar; `state` adds its holidays, `us_federal=False` keeps only extras."""
        self.us_federal = us_federal
        self.state = state.upper() if state else None
        self.extra_holidays = frozenset(extra_holidays)

    def __repr__(self) -> str:
        return (
            f"BusinessCalendar(us_federal={self.us_federal}, state={self.state!r}, "
            f"extra_holidays={len(self.extra_holidays)})"
        )

    def holiday_name(self, day: date) -> str | None:
        """The name of the holiday on `day`, or None when it is not a holiday."""
        if day in self.extra_holidays:
            return "Holiday"
        if self.state is not None:
            return state_holidays(day.year, self.state).get(day)
        if self.us_federal:
            return us_federal_holidays(day.year).get(day)
        return None

    def is_business_day(self, day: date) -> bool:
        """Whether `day` is a weekday that is not a holiday."""
        return day.weekday() < 5 and self.holiday_name(day) is None

    def closed_reason(self, day: date) -> str | None:
        """Why `day` is not a business day ("a Saturday", "Thanksgiving Day"), or None."""
        name = self.holiday_name(day)
        if name is not None:
            return name
        if day.weekday() >= 5:
            return f"a {day:%A}"
        return None

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
