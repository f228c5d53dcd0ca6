"""The CRM's closing routes: start (POST), read (GET), change (PATCH) and list closings.

Each accepted request is committed before it is answered (preclose.app.crm stores it first), so a
crash after the answer loses nothing the CRM was told was accepted.

A POST repeating a stored CRM closing ID with the same details answers 200 with the stored
closing and its run. With different details it answers 409 naming the differing fields, rather
than applying them as a change: a resend of an older copy must never undo a newer change, and a
change says what it means (a new date, a fall-through) where a whole closing only says what is.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse

from models.change import ClosingChange
from models.closing import ClosingInputError, ClosingRequest
from models.tables import ClosingPublic, ClosingStatus
from preclose.app import crm
from preclose.app.api.auth import Reader, Writer
from preclose.app.api.schemas import (
    Accepted,
    ClosingDetail,
    ClosingList,
    ConflictBody,
    LineView,
    OrderView,
    RequestView,
    RiskView,
    TimelineView,
    ValidationErrorBody,
)
from preclose.rules.lifecycle import TransitionRefused
from preclose.runtime import db_session
from preclose.storage import repository
from preclose.wording.reports import closing_report

router = APIRouter(prefix="/closings", tags=["closings"])

# Retry-After for a request stored whose run could not be started (Prefect unreachable).
RETRY_AFTER_SECONDS = 30

_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or unknown API key"}
}
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or unknown API key"},
    403: {"description": "The key lacks the closings:write scope"},
    409: {"model": ConflictBody},
    413: {"description": "Body larger than the limit"},
    422: {"model": ValidationErrorBody},
    503: {"description": "Stored, but its run could not be started: send it again"},
}


def input_error(err: ClosingInputError) -> JSONResponse:
    """A 422 naming the field of a closing that is well-formed but not acceptable now."""
    item = {
        "field": err.field,
        "loc": ["body", err.field],
        "msg": err.message,
        "type": "value_error",
    }
    return JSONResponse({"detail": [item]}, status_code=422)


def _not_started(err: crm.RunNotStartedError) -> JSONResponse:
    return JSONResponse(
        {"detail": str(err)},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _accepted(request: Request, submission: crm.Submission, response: Response) -> Accepted:
    with db_session(request.app.state.settings) as session:
        row = repository.get_closing(session=session, closing_id=submission.closing_id)
    assert row is not None and submission.flow_run_id is not None
    response.status_code = 202 if submission.new else 200
    response.headers["Location"] = f"/closings/{submission.crm_closing_id}"
    return Accepted(
        closing=ClosingPublic.model_validate(row, from_attributes=True),
        flow_run_id=submission.flow_run_id,
        request_id=submission.request_id,
        created=submission.new,
    )


@router.post(
    "",
    status_code=202,
    response_model=Accepted,
    summary="Start coordinating a closing",
    responses={
        200: {"model": Accepted, "description": "A repeat: the stored closing"},
        **_WRITE_ERRORS,
    },
)
def post_closing(
    closing: ClosingRequest, request: Request, response: Response, caller: Writer
) -> Accepted | JSONResponse:
    """Store the closing and start its coordinate run (202); a repeat answers 200, same run."""
    try:
        submission = crm.submit_closing(
            closing, as_of=request.app.state.now(), settings=request.app.state.settings
        )
    except ClosingInputError as err:
        return input_error(err)
    except crm.ClosingConflictError as err:
        return JSONResponse({"detail": str(err), "fields": err.fields}, status_code=409)
    except crm.RunNotStartedError as err:
        return _not_started(err)
    return _accepted(request, submission, response)


@router.patch(
    "/{crm_id}",
    status_code=202,
    response_model=Accepted,
    summary="Change a closing",
    responses={
        200: {"model": Accepted, "description": "A resend of the latest change"},
        404: {"description": "No such closing"},
        **_WRITE_ERRORS,
    },
)
def patch_closing(
    crm_id: str, change: ClosingChange, request: Request, response: Response, caller: Writer
) -> Accepted | JSONResponse:
    """Record the change and start its change run (202); the latest change resent answers 200."""
    try:
        submission = crm.submit_change(
            crm_id, change, as_of=request.app.state.now(), settings=request.app.state.settings
        )
    except crm.ClosingNotFoundError as err:
        raise HTTPException(404, str(err)) from None
    except crm.ClosingFinishedError as err:
        return JSONResponse({"detail": str(err), "fields": []}, status_code=409)
    except ClosingInputError as err:
        return input_error(err)
    except crm.RunNotStartedError as err:
        return _not_started(err)
    return _accepted(request, submission, response)


@router.post(
    "/{crm_id}/retry",
    status_code=202,
    response_model=Accepted,
    summary="Retry a closing that needs attention",
    responses={
        200: {"model": Accepted, "description": "A resend: the retry already under way"},
        404: {"description": "No such closing"},
        **_WRITE_ERRORS,
    },
)
def retry_closing(
    crm_id: str, request: Request, response: Response, caller: Writer
) -> Accepted | JSONResponse:
    """Start again a closing that needs attention (202); a resend answers 200 with the same run,
    and a closing that does not need attention 409 naming its state."""
    try:
        submission = crm.retry_closing_submission(crm_id, settings=request.app.state.settings)
    except crm.ClosingNotFoundError as err:
        raise HTTPException(404, str(err)) from None
    except TransitionRefused as err:
        return JSONResponse(
            {"detail": str(err), "fields": [], "status": err.current.value}, status_code=409
        )
    except crm.RunNotStartedError as err:
        return _not_started(err)
    return _accepted(request, submission, response)


@router.get(
    "",
    response_model=ClosingList,
    summary="List closings",
    responses={
        401: {"description": "Missing or unknown API key"},
        422: {"model": ValidationErrorBody},
    },
)
def list_closings(
    request: Request,
    caller: Reader,
    status: Annotated[list[ClosingStatus] | None, Query(description="Any of these.")] = None,
    closing_from: Annotated[date | None, Query(description="Closing on or after.")] = None,
    closing_to: Annotated[date | None, Query(description="Closing on or before.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ClosingList | JSONResponse:
    """Closings by closing date, filtered by status and closing-date range, a page at a time."""
    if closing_from is not None and closing_to is not None and closing_from > closing_to:
        item = {
            "field": "closing_to",
            "loc": ["query", "closing_to"],
            "msg": "closing_to is before closing_from",
            "type": "value_error",
        }
        return JSONResponse({"detail": [item]}, status_code=422)
    with db_session(request.app.state.settings) as session:
        rows = repository.list_closings(
            session=session,
            statuses=status,
            closing_from=closing_from,
            closing_to=closing_to,
            limit=limit + 1,  # one more tells whether a next page exists
            offset=offset,
        )
    return ClosingList(
        items=[ClosingPublic.model_validate(row, from_attributes=True) for row in rows[:limit]],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if len(rows) > limit else None,
    )


@router.get(
    "/{crm_id}",
    response_model=ClosingDetail,
    summary="A closing with its plan, orders, timeline and risks",
    responses={
        401: {"description": "Missing or unknown API key"},
        404: {"description": "No such closing"},
    },
)
def get_closing(crm_id: str, request: Request, caller: Reader) -> ClosingDetail:
    """The closing, each service's pick, dates, order and status, the timeline and the risks."""
    with db_session(request.app.state.settings) as session:
        row = repository.get_closing_by_crm_id(session=session, crm_closing_id=crm_id)
        if row is None:
            raise HTTPException(404, f"crm_id: no closing {crm_id!r} is known")
        record = repository.read_closing_record(session=session, closing_id=row.id)
    assert record is not None  # found above
    report = closing_report(record, as_of=request.app.state.now())
    orders, requests = record.lines, record.crm_requests
    lines = []
    for entry in orders:
        line, item, placement = entry.line, entry.item, entry.placement
        lines.append(
            LineView(
                category=line.category,
                importance=line.importance,
                attempt=line.attempt,
                provider=line.provider_name,
                offer_id=line.offer_id,
                offer_name=line.offer_name,
                monthly_price=line.monthly_price,
                reason=line.reason,
                problem=line.problem,
                placement_date=line.placement_date,
                service_date=line.service_date,
                state=str(line.state),
                status=report.statuses.get(line.category, str(line.state)),
                at_risk=line.at_risk,
                risk_reason=line.risk_reason,
                order=None
                if item is None
                else OrderView(
                    offergrid_order_id=placement.offergrid_order_id if placement else None,
                    offergrid_item_id=item.offergrid_item_id,
                    status=item.status,
                    status_at=item.status_at,
                    scheduled_for=item.scheduled_for,
                    account_number=item.account_number,
                ),
            )
        )
    return ClosingDetail(
        closing=ClosingPublic.model_validate(row, from_attributes=True),
        lines=lines,
        risks=[
            RiskView(category=line.category, reason=line.risk_reason or line.problem or "at risk")
            for line in lines
            if line.at_risk
        ],
        timeline=[
            TimelineView(day=e.day, category=e.category, text=e.text, done=e.done)
            for e in report.timeline
        ],
        chart=report.chart,
        requests=[
            RequestView(
                id=r.id, kind=str(r.kind), received_at=r.received_at, flow_run_id=r.flow_run_id
            )
            for r in requests
        ],
    )
