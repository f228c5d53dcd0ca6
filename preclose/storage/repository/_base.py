"""Shared pieces of the storage layer: constants, error classes and locking/commit helpers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import update
from sqlmodel import Session, SQLModel, col, select

from models.tables import Closing, ClosingStatus, PlanLineState
from offergrid.models.enums import OrderStatus
from preclose.rules.lifecycle import LIVE_STATUSES, TERMINAL_ITEM_STATUSES, TRACKED_STATUSES

T = TypeVar("T", bound=SQLModel)

# The status sets are the lifecycle's (preclose.rules.lifecycle), re-exported for the queries here.
LIVE_CLOSING_STATUSES: frozenset[ClosingStatus] = LIVE_STATUSES
# Closings whose orders are placed and followed (the live ones and those waiting for a person).
TRACKED_CLOSING_STATUSES: frozenset[ClosingStatus] = TRACKED_STATUSES
__all__ = ["LIVE_CLOSING_STATUSES", "TERMINAL_ITEM_STATUSES", "TRACKED_CLOSING_STATUSES"]
# Lines a new plan may overwrite: nothing has been sent to Offergrid for them.
_REPLACEABLE = frozenset({PlanLineState.planned, PlanLineState.skipped})
# Lines whose order ended without the service: a new plan starts the next attempt.
_RETRYABLE = frozenset({PlanLineState.rejected, PlanLineState.failed, PlanLineState.cancelled})
_LINE_STATE_FOR_ITEM: dict[str, PlanLineState] = {
    OrderStatus.COMPLETED: PlanLineState.fulfilled,
    OrderStatus.ACTIVE: PlanLineState.fulfilled,
    OrderStatus.REJECTED: PlanLineState.rejected,
    OrderStatus.FAILED: PlanLineState.failed,
    OrderStatus.CANCELLED: PlanLineState.cancelled,
    OrderStatus.PENDING: PlanLineState.placed,
    OrderStatus.SUBMITTED_TO_PROVIDER: PlanLineState.placed,
    OrderStatus.ACCEPTED: PlanLineState.placed,
    OrderStatus.SCHEDULED: PlanLineState.placed,
    OrderStatus.IN_PROGRESS: PlanLineState.placed,
}


class StaleClosingError(RuntimeError):
    """The closing changed since the caller read it (its version moved on)."""

    def __init__(self, closing_id: uuid.UUID, expected: int, actual: int) -> None:
        """Record which closing and which versions disagreed."""
        super().__init__(
            f"closing {closing_id} is at version {actual}, not {expected}: re-read and retry"
        )
        self.closing_id = closing_id
        self.expected = expected
        self.actual = actual


class PlacementConflictError(ValueError):
    """A placement request contradicts what is already recorded for those lines or that order."""


@dataclass(frozen=True)
class PlacedItem:
    """One item of an order Offergrid accepted: the offer ordered, its item ID and status."""

    offer_id: str
    offergrid_item_id: str
    status: str = OrderStatus.PENDING.value


# Helpers --------------------------------------------------------------------------------------


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}: must be timezone-aware (e.g. datetime.now(UTC))")
    return value


def _locked(session: Session, model: type[T], *criteria: Any) -> list[T]:
    """The rows matching `criteria`, locked for this transaction and freshly read.

    `model` must have an `updated_at` column (the SQLite lock rewrites it with itself).
    """
    if session.get_bind().dialect.name == "sqlite":
        # SQLite has no row locks. A no-op write first takes the database write lock (waiting on
        # the busy timeout), so the read below sees the latest data and nobody writes until we
        # commit.
        table = model.__table__  # type: ignore[attr-defined]
        session.exec(update(table).where(*criteria).values(updated_at=table.c.updated_at))
    statement = (
        select(model).where(*criteria).with_for_update().execution_options(populate_existing=True)
    )
    return list(session.exec(statement).all())


def _commit(session: Session) -> None:
    try:
        session.commit()
    except BaseException:
        session.rollback()
        raise


def _lock_closing(session: Session, closing_id: uuid.UUID) -> Closing:
    rows = _locked(session, Closing, col(Closing.id) == closing_id)
    if not rows:
        session.rollback()
        raise LookupError(f"closing_id: no closing {closing_id}")
    return rows[0]
