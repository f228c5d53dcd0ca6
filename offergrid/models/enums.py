"""Offergrid's enumerations, the status groupings built on them, and lenient enum field types."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator

__all__ = [
    "CANCELLABLE",
    "FULFILLED",
    "STATUS_RANK",
    "TERMINAL",
    "Category",
    "CategoryField",
    "OfferStatus",
    "OfferStatusField",
    "OrderStatus",
    "OrderStatusField",
    "PricingType",
    "PricingTypeField",
    "is_cancellable",
    "is_fulfilled",
    "is_terminal",
    "status_rank",
]


class Category(StrEnum):
    """The six documented offer categories (television, not tv; energy covers power and gas)."""

    INTERNET = "internet"
    TELEVISION = "television"
    SECURITY = "security"
    ENERGY = "energy"
    INSURANCE = "insurance"
    OTHER = "other"


class OfferStatus(StrEnum):
    """An offer's publication state; resellers only ever see active offers."""

    DRAFT = "draft"
    ACTIVE = "active"
    INACTIVE = "inactive"
    ARCHIVED = "archived"


class PricingType(StrEnum):
    """How an offer is priced; variable and custom offers may have no monthly price."""

    FIXED = "fixed"
    VARIABLE = "variable"
    TIERED = "tiered"
    CUSTOM = "custom"


class OrderStatus(StrEnum):
    """The ten documented statuses of an order item, in the order the spec lists them."""

    PENDING = "pending"
    SUBMITTED_TO_PROVIDER = "submitted_to_provider"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    ACTIVE = "active"
    CANCELLED = "cancelled"
    FAILED = "failed"


# Both end states of the success path count as fulfilled: providers may finish with either.
FULFILLED: frozenset[OrderStatus] = frozenset({OrderStatus.COMPLETED, OrderStatus.ACTIVE})
CANCELLABLE: frozenset[OrderStatus] = frozenset(
    {
        OrderStatus.PENDING,
        OrderStatus.SUBMITTED_TO_PROVIDER,
        OrderStatus.ACCEPTED,
        OrderStatus.SCHEDULED,
    }
)
TERMINAL: frozenset[OrderStatus] = frozenset(
    {
        OrderStatus.COMPLETED,
        OrderStatus.ACTIVE,
        OrderStatus.REJECTED,
        OrderStatus.CANCELLED,
        OrderStatus.FAILED,
    }
)

# Progress along the lifecycle, for "never move an item back": a status may replace another only
# when its rank is at least as high. Failure ends outrank everything so a late, older "scheduled"
# cannot revive a cancelled item; `active` outranks `completed` because it follows it.
STATUS_RANK: dict[OrderStatus, int] = {
    OrderStatus.PENDING: 0,
    OrderStatus.SUBMITTED_TO_PROVIDER: 1,
    OrderStatus.ACCEPTED: 2,
    OrderStatus.SCHEDULED: 3,
    OrderStatus.IN_PROGRESS: 4,
    OrderStatus.COMPLETED: 5,
    OrderStatus.ACTIVE: 6,
    OrderStatus.REJECTED: 7,
    OrderStatus.CANCELLED: 7,
    OrderStatus.FAILED: 7,
}


def _known(status: str | None) -> OrderStatus | None:
    if status is None:
        return None
    try:
        return OrderStatus(status)
    except ValueError:
        return None


def status_rank(status: str | None) -> int | None:
    """The lifecycle rank of a status, or None for a status this client does not know."""
    known = _known(status)
    return None if known is None else STATUS_RANK[known]


def is_fulfilled(status: str | None) -> bool:
    """Whether the status means the service was delivered (completed or active)."""
    return _known(status) in FULFILLED


def is_terminal(status: str | None) -> bool:
    """Whether no further status change is expected after this one."""
    return _known(status) in TERMINAL


def is_cancellable(status: str | None) -> bool:
    """Whether a reseller may still cancel an item in this status (per the contract)."""
    return _known(status) in CANCELLABLE


E = TypeVar("E", bound=StrEnum)


def _lenient(enum: type[E]) -> BeforeValidator:
    """A validator turning a known value into its member and leaving any other string as it is."""

    def convert(value: Any) -> Any:
        if isinstance(value, str) and not isinstance(value, enum):
            try:
                return enum(value)
            except ValueError:
                # Case differences are common in hand-written payloads; unknown values pass as str.
                try:
                    return enum(value.strip().lower())
                except ValueError:
                    return value
        return value

    return BeforeValidator(convert)


# Field types that carry an unknown value through as a plain string instead of failing.
CategoryField = Annotated[Category | str, _lenient(Category)]
OfferStatusField = Annotated[OfferStatus | str, _lenient(OfferStatus)]
OrderStatusField = Annotated[OrderStatus | str, _lenient(OrderStatus)]
PricingTypeField = Annotated[PricingType | str, _lenient(PricingType)]
