"""The CRM's way in from Python: start or change a closing; each request is stored before its run.

Both calls first commit what was asked (the closing, or the change), then create the flow run of
the matching deployment and return at once with its ID. The run is created under an idempotency
key made from the stored request, so a resend, or a retry after a crash between the two steps,
finds the same request and the same run: never a second one. A request whose run could not be
started (Prefect unreachable) stays stored; sending it again starts it, and `start_pending_runs`
starts every such run in one go.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from deployments.names import CHANGE, COORDINATE
from flows.runs import closing_tag
from models.change import ClosingChange
from models.closing import ClosingRequest, check_closing_dates
from models.tables import Closing, ClosingStatus, CrmRequest, CrmRequestKind
from preclose import repository
from preclose.runtime import db_session
from preclose.settings import Settings

__all__ = [
    "FINISHED_STATUSES",
    "ClosingConflictError",
    "ClosingFinishedError",
    "ClosingNotFoundError",
    "RunNotStartedError",
    "Submission",
    "change_closing",
    "closing_differences",
    "start_closing",
    "start_pending_runs",
    "submit_change",
    "submit_closing",
]

logger = logging.getLogger(__name__)

# A closing in one of these states takes no further change: its orders are cancelled or never made.
FINISHED_STATUSES = frozenset({ClosingStatus.fell_through, ClosingStatus.cancelled})


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
    """The closing fell through or was cancelled: nothing about it can change any more."""

    def __init__(self, crm_closing_id: str, status: ClosingStatus) -> None:
        """Name the closing and its final status."""
        super().__init__(
            f"crm_closing_id: closing {crm_closing_id!r} is {status.value.replace('_', ' ')}; "
            "it takes no further change"
        )
        self.crm_closing_id = crm_closing_id
        self.status = status


class RunNotStartedError(RuntimeError):
    """The request is stored, but its flow run could not be created; send it again to retry."""

    def __init__(self, submission: Submission, reason: str) -> None:
        """Keep what was stored and a short reason (an exception type, never a secret)."""
        super().__init__(
            f"request for closing {submission.crm_closing_id!r} is stored, but its run could "
            f"not be started ({reason}); send the same request again"
        )
        self.submission = submission
        self.reason = reason


@dataclass(frozen=True)
class Submission:
    """A stored CRM request and the flow run started for it."""

    closing_id: uuid.UUID
    crm_closing_id: str
    request_id: uuid.UUID
    kind: CrmRequestKind
    new: bool  # False when this was a resend of a request already stored
    flow_run_id: uuid.UUID | None = None


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
    now = _now(as_of)
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
        submission = _submission(row, request, new)
        parameters = {"closing": row.request}
    return _ensure_started(submission, request, COORDINATE, parameters, settings)


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
    now = _now(as_of)
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
        submission = _submission(row, request, new)
        parameters = {"crm_closing_id": row.crm_closing_id, "change": request.body}
    return _ensure_started(submission, request, CHANGE, parameters, settings)


def start_pending_runs(*, settings: Settings | None = None) -> list[uuid.UUID]:
    """Start the run of every stored request that has none yet; returns the runs started.

    Requests whose run still cannot be started stay pending (with the reason recorded).
    """
    started: list[uuid.UUID] = []
    with db_session(settings) as session:
        pending = repository.list_crm_requests(session=session, unstarted=True)
        jobs: list[tuple[Submission, CrmRequest, str, dict[str, Any]]] = []
        for request in pending:
            row = repository.get_closing(session=session, closing_id=request.closing_id)
            if row is None:
                continue
            parameters: dict[str, Any]
            if request.kind == CrmRequestKind.start:
                deployment, parameters = COORDINATE, {"closing": row.request}
            else:
                parameters = {"crm_closing_id": row.crm_closing_id, "change": request.body}
                deployment = CHANGE
            jobs.append((_submission(row, request, False), request, deployment, parameters))
    for submission, request, deployment, parameters in jobs:
        try:
            done = _ensure_started(submission, request, deployment, parameters, settings)
        except RunNotStartedError:
            continue
        if done.flow_run_id is not None:
            started.append(done.flow_run_id)
    return started


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


def _now(as_of: datetime | None) -> datetime:
    if as_of is None:
        return datetime.now(UTC)
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise ValueError("as_of: give a timezone-aware time, e.g. datetime.now(UTC)")
    return as_of


def _digest(body: dict[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _check_change(row: Closing, change: ClosingChange, now: datetime) -> None:
    if row.status in FINISHED_STATUSES:
        raise ClosingFinishedError(row.crm_closing_id, ClosingStatus(row.status))
    if change.closing_date is not None:
        # The same rule (and field name) as a new closing's date; only the date is looked at.
        moved = row.closing_request().model_copy(
            update={"closing_date": change.closing_date, "move_in_date": None}
        )
        check_closing_dates(moved, as_of=now)


def _submission(row: Closing, request: CrmRequest, new: bool) -> Submission:
    return Submission(
        closing_id=row.id,
        crm_closing_id=row.crm_closing_id,
        request_id=request.id,
        kind=CrmRequestKind(request.kind),
        new=new,
        flow_run_id=request.flow_run_id,
    )


def _run_name(kind: CrmRequestKind, crm_closing_id: str) -> str:
    # Which closing and which step: never the buyer's name or contact details.
    step = "coordinate" if kind == CrmRequestKind.start else "change"
    return f"{step} {crm_closing_id}"


def _ensure_started(
    submission: Submission,
    request: CrmRequest,
    deployment: str,
    parameters: dict[str, Any],
    settings: Settings | None,
) -> Submission:
    """The submission with its flow run, creating the run unless the request already has one."""
    if submission.flow_run_id is not None:
        return submission
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    from preclose.prefect_api import NoPrefectApiError, prefect_api

    try:
        with prefect_api(settings):
            flow_run = run_deployment(
                deployment,
                parameters=parameters,
                timeout=0,
                tags=[closing_tag(submission.crm_closing_id)],
                idempotency_key=f"preclose:{submission.kind.value}:{submission.request_id}",
                flow_run_name=_run_name(submission.kind, submission.crm_closing_id),
                as_subflow=False,
            )
    except NoPrefectApiError as err:
        # Says what to set; it names only the data directory, never a secret.
        _record_not_started(request.id, "no Prefect server", settings)
        raise RunNotStartedError(submission, str(err)) from err
    except Exception as err:
        # Whatever went wrong reaching Prefect, the request stays stored and can be resent; only
        # the exception's type is kept, as its message may carry a URL with credentials.
        reason = type(err).__name__
        logger.warning(
            "Could not start the %s run for closing %s: %s",
            deployment,
            submission.crm_closing_id,
            reason,
        )
        _record_not_started(request.id, reason, settings)
        raise RunNotStartedError(submission, reason) from err
    assert isinstance(flow_run, FlowRun)  # called from sync code: the sync variant ran
    with db_session(settings) as session:
        repository.mark_crm_request_started(
            session=session, request_id=request.id, flow_run_id=flow_run.id
        )
    logger.info(
        "Started %s run %s for closing %s", deployment, flow_run.id, submission.crm_closing_id
    )
    return Submission(
        closing_id=submission.closing_id,
        crm_closing_id=submission.crm_closing_id,
        request_id=submission.request_id,
        kind=submission.kind,
        new=submission.new,
        flow_run_id=flow_run.id,
    )


def _record_not_started(request_id: uuid.UUID, reason: str, settings: Settings | None) -> None:
    with db_session(settings) as session:
        repository.mark_crm_request_not_started(
            session=session, request_id=request_id, error=reason
        )
