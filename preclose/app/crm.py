"""The CRM's way in from Python: start, change or retry a closing; each request is stored first.

Every call first commits what was asked (the closing, the change, the retry), then creates the
flow run of the matching deployment with the request's ID as its only parameter (the buyer's
details stay in our tables) and returns at once with the run's ID. The run is created under an
idempotency key made from the stored request and its attempt, so a resend, or a retry after a
crash between the two steps, finds the same request and the same run: never a second one. A run
records its request finished; `restart_stranded` (the `reconcile intake` flow) starts again the
run of every accepted request no run will finish, and `start_pending_runs` those never started.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from contextlib import suppress
from datetime import datetime
from typing import Any

from models.change import ClosingChange
from models.closing import ClosingRequest, check_closing_dates
from models.tables import Closing, ClosingStatus, CrmRequestKind
from preclose.intake import (
    HandedOver,
    Reconciled,
    RunNotStartedError,
    Submission,
    ensure_started,
    restart_stranded,
    start_pending_runs,
    submission_of,
)
from preclose.names import as_of_or_now
from preclose.rules import lifecycle
from preclose.rules.lifecycle import Event, TransitionRefused
from preclose.runtime import db_session
from preclose.settings import Settings
from preclose.storage import repository

__all__ = [
    "ClosingConflictError",
    "ClosingFinishedError",
    "ClosingNotFoundError",
    "HandedOver",
    "Reconciled",
    "RunNotStartedError",
    "Submission",
    "change_closing",
    "closing_differences",
    "restart_stranded",
    "retry_closing",
    "retry_closing_submission",
    "start_closing",
    "start_pending_runs",
    "submit_change",
    "submit_closing",
]


class ClosingConflictError(ValueError):
    """A closing with this CRM ID is stored with different details; `fields` names them."""

    def __init__(self, crm_closing_id: str, fields: list[str]) -> None:
        """Name the closing and the differing fields (never their values: they may be personal)."""
        super().__init__(
            f"crm_closing_id: closing {crm_closing_id!r} already exists with different "
            f"{', '.join(fields)}; send a change (PATCH) to change it"
        )
        self.crm_closing_id = crm_closing_id
        self.fields = fields


class ClosingNotFoundError(LookupError):
    """No closing with this CRM ID is known."""

    def __init__(self, crm_closing_id: str) -> None:
        """Name the unknown CRM ID."""
        super().__init__(f"crm_closing_id: no closing {crm_closing_id!r} is known")
        self.crm_closing_id = crm_closing_id


class ClosingFinishedError(ValueError):
    """The closing's state takes no such change (it fell through, or is fulfilled)."""

    def __init__(self, crm_closing_id: str, status: ClosingStatus) -> None:
        """Name the closing and its current state."""
        super().__init__(
            f"crm_closing_id: closing {crm_closing_id!r} is {lifecycle.describe(status)}; "
            "it takes no further change"
        )
        self.crm_closing_id = crm_closing_id
        self.status = status


def start_closing(closing: ClosingRequest) -> uuid.UUID:
    """Store a closing and start its `coordinate closing` run; returns the flow run ID."""
    submission = submit_closing(closing)
    assert submission.flow_run_id is not None  # submit_closing raises when it has none
    return submission.flow_run_id


def change_closing(crm_closing_id: str, change: ClosingChange) -> uuid.UUID:
    """Record a change to a closing and start its `change closing` run; returns the flow run ID."""
    submission = submit_change(crm_closing_id, change)
    assert submission.flow_run_id is not None  # submit_change raises when it has none
    return submission.flow_run_id


def submit_closing(
    closing: ClosingRequest, *, as_of: datetime | None = None, settings: Settings | None = None
) -> Submission:
    """Store a closing (once per CRM ID) and start its coordinate run (once per closing).

    Raises ClosingInputError when a new closing is dated in the past, ClosingConflictError when
    the CRM ID is stored with other details, and RunNotStartedError when the closing is stored
    but Prefect could not be reached.
    """
    now = as_of_or_now(as_of)
    sent = closing.model_dump(mode="json")
    with db_session(settings) as session:
        row = repository.get_closing_by_crm_id(
            session=session, crm_closing_id=closing.crm_closing_id
        )
        if row is None:
            # Only a new closing is judged on its dates: a resend of an accepted one days later
            # must still find it.
            check_closing_dates(closing, as_of=now)
            row, _ = repository.create_or_get_closing(session=session, closing_in=closing)
        differences = closing_differences(row.request, sent)
        if differences:
            raise ClosingConflictError(closing.crm_closing_id, differences)
        request, new = repository.record_crm_request(
            session=session,
            closing_id=row.id,
            kind=CrmRequestKind.start,
            idempotency_key=f"start:{row.id}",
        )
        if row.status == ClosingStatus.needs_attention and not new:
            # The same POST sent again after a failure is the CRM's way to retry.
            return retry_closing_submission(closing.crm_closing_id, settings=settings)
        retried = repository.latest_crm_request(
            session=session, closing_id=row.id, kind=CrmRequestKind.retry
        )
        if not new and retried is not None:
            request = retried  # a resend after a retry: the retry is the closing's latest run
        submission = submission_of(row, request, new)
    return ensure_started(submission, request, settings)


def submit_change(
    crm_closing_id: str,
    change: ClosingChange,
    *,
    as_of: datetime | None = None,
    settings: Settings | None = None,
) -> Submission:
    """Record a change to a closing and start its change run; the same change resent is found.

    A change equal to the closing's latest recorded change is a resend: the same request and run
    are returned. Raises ClosingNotFoundError, ClosingFinishedError (fell through or cancelled),
    ClosingInputError (a new closing date in the past) and RunNotStartedError.
    """
    now = as_of_or_now(as_of)
    body = change.model_dump(mode="json")
    with db_session(settings) as session:
        row = repository.get_closing_by_crm_id(session=session, crm_closing_id=crm_closing_id)
        if row is None:
            raise ClosingNotFoundError(crm_closing_id)
        latest = repository.latest_crm_request(
            session=session, closing_id=row.id, kind=CrmRequestKind.change
        )
        if latest is not None and latest.body == body:
            request, new = latest, False
        else:
            _check_change(row, change, now)
            # The key names the change it follows, so the same change sent again later (after
            # another one) is a new request, while two copies sent at once are one request.
            previous = latest.id.hex if latest is not None else "first"
            key = f"change:{row.id.hex}:{previous}:{_digest(body)}"
            request, new = repository.record_crm_request(
                session=session,
                closing_id=row.id,
                kind=CrmRequestKind.change,
                idempotency_key=key,
                body=body,
            )
        submission = submission_of(row, request, new)
    return ensure_started(submission, request, settings)


def retry_closing(crm_closing_id: str, *, settings: Settings | None = None) -> uuid.UUID:
    """Retry a closing that needs attention; returns the flow run ID (the same one when resent).

    Idempotent: while the retry's run has not finished, asking again returns that run. Raises
    ClosingNotFoundError, TransitionRefused (the closing does not need attention: the message names
    its state) and RunNotStartedError.
    """
    submission = retry_closing_submission(crm_closing_id, settings=settings)
    assert submission.flow_run_id is not None
    return submission.flow_run_id


def retry_closing_submission(
    crm_closing_id: str, *, settings: Settings | None = None
) -> Submission:
    """Start the retry of a closing that needs attention (see `retry_closing`), as a Submission."""
    with db_session(settings) as session:
        row = repository.get_closing_by_crm_id(session=session, crm_closing_id=crm_closing_id)
        if row is None:
            raise ClosingNotFoundError(crm_closing_id)
        if row.status != ClosingStatus.needs_attention:
            latest = repository.latest_crm_request(
                session=session, closing_id=row.id, kind=CrmRequestKind.retry
            )
            if latest is not None and latest.finished_at is None:
                # A retry already under way: the same request and run (a resend).
                return ensure_started(submission_of(row, latest, False), latest, settings)
            raise TransitionRefused(crm_closing_id, ClosingStatus(row.status), Event.retry)
        # One retry per failure: the key names the moment the closing needed attention.
        since = row.attention_at.isoformat() if row.attention_at else str(row.version)
        request, new = repository.record_crm_request(
            session=session,
            closing_id=row.id,
            kind=CrmRequestKind.retry,
            idempotency_key=f"retry:{row.id.hex}:{since}",
        )
        # A concurrent retry of the same failure may have moved it first.
        with suppress(TransitionRefused):
            repository.transition_closing(session=session, closing_id=row.id, event=Event.retry)
        submission = submission_of(row, request, new)
    return ensure_started(submission, request, settings)


def closing_differences(stored: Any, sent: Any, path: str = "") -> list[str]:
    """The dotted paths where two closing requests (as JSON data) differ, in document order."""
    if isinstance(stored, dict) and isinstance(sent, dict):
        differences: list[str] = []
        for key in [*stored, *(key for key in sent if key not in stored)]:
            differences += closing_differences(
                stored.get(key), sent.get(key), f"{path}.{key}" if path else str(key)
            )
        return differences
    return [] if stored == sent else [path or "body"]


# Helpers --------------------------------------------------------------------------------------


def _digest(body: dict[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _check_change(row: Closing, change: ClosingChange, now: datetime) -> None:
    try:
        lifecycle.may_change(
            row.crm_closing_id, ClosingStatus(row.status), fell_through=change.fell_through
        )
    except TransitionRefused:
        raise ClosingFinishedError(row.crm_closing_id, ClosingStatus(row.status)) from None
    if change.closing_date is not None:
        # The same rule (and field name) as a new closing's date; only the date is looked at.
        moved = row.closing_request().model_copy(
            update={"closing_date": change.closing_date, "move_in_date": None}
        )
        check_closing_dates(moved, as_of=now)
