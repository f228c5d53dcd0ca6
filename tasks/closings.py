"""Tasks that take a closing in and read it back."""

from __future__ import annotations

import uuid
from datetime import datetime

from models.closing import ClosingRequest, check_closing_dates
from preclose.runtime import db_session
from preclose.storage import repository


def store_closing(closing: ClosingRequest, as_of: datetime) -> tuple[uuid.UUID, bool]:
    """Check the closing's dates and store it once per CRM closing ID; returns (id, created).

    A plain step of its flow, not a task run: one database write, nothing to retry or cache.
    """
    check_closing_dates(closing, as_of=as_of)
    with db_session() as session:
        row, created = repository.create_or_get_closing(session=session, closing_in=closing)
        return row.id, created


def load_closing(closing_id: uuid.UUID) -> ClosingRequest:
    """The stored request of a closing; a missing one is a LookupError naming the ID."""
    with db_session() as session:
        row = repository.get_closing(session=session, closing_id=closing_id)
        if row is None:
            raise LookupError(f"closing_id: no closing {closing_id}")
        return row.closing_request()
