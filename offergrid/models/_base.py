"""Shared bases for the wire models: tolerant readers, UTC timestamps and lenient number parsing."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = ["ReadModel", "UtcDatetime", "parse_bool", "parse_money", "parse_months"]


class ReadModel(BaseModel):
    """Base of every response model: camelCase on the wire, unknown fields kept, lenient types."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        coerce_numbers_to_str=True,
    )


def _as_utc(value: datetime) -> datetime:
    # A timestamp without an offset is taken as UTC: the documented examples all use "Z".
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
"""A datetime that is always timezone-aware UTC after validation."""


def none_to_empty_list(value: Any) -> Any:
    """Read an explicit null list as an empty one."""
    return [] if value is None else value


NullableList = BeforeValidator(none_to_empty_list)

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_FREE_WORDS = {"free", "none", "waived", "no", "n/a", "included", "0"}


def parse_money(value: Any) -> float | None:
    """Read an amount such as 99, "99.00", "$1,299.50" or "Free"; None when absent or unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return None
        if text in _FREE_WORDS:
            return 0.0
        match = _NUMBER.search(text.replace(",", ""))
        return float(match.group()) if match else None
    return None


def parse_months(value: Any) -> int | None:
    """Read a duration such as 12, "12 months", "24-month", "2 years" or "No contract" as months."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return None
        if any(word in text for word in ("no contract", "month-to-month", "month to month")):
            return 0
        if text in _FREE_WORDS:
            return 0
        match = _NUMBER.search(text)
        if not match:
            return None
        amount = float(match.group())
        if "year" in text or re.search(r"\d\s*yr", text):
            amount *= 12
        return int(amount)
    return None


def parse_bool(value: Any) -> bool | None:
    """Read a yes/no flag that may arrive as a bool, a number or a word."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"true", "yes", "y", "required", "1"}:
            return True
        if text in {"false", "no", "n", "none", "not required", "0", ""}:
            return False
        # "$100 deposit" and the like say a deposit is required.
        return parse_money(text) not in (None, 0.0)
    return None
