"""Accepted CRM requests and their flow runs: each started once, again when none will finish.

A request is stored first (by the CRM functions or the HTTP API); `ensure_started` then creates
the flow run of the matching deployment with the request's ID as its only parameter (the buyer's
details stay in our tables), under an idempotency key made from the request and its attempt, so a
resend or a retry after a crash finds the same run. `restart_stranded` (the `reconcile intake`
flow) starts again the run of every accepted request no run will finish, and `start_pending_runs`
those never started. Prefect is imported only inside the calls that reach it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from models.tables import Closing, CrmRequest, CrmRequestKind
from preclose.names import CHANGE, COORDINATE, as_of_or_now, closing_tag
from preclose.rules import lifecycle
from preclose.runtime import db_session
from preclose.settings import Settings
from preclose.storage import repository

__all__ = [
    "HandedOver",
    "Reconciled",
    "RunNotStartedError",
    "Submission",
    "ensure_started",
    "restart_stranded",
    "start_pending_runs",
    "submission_of",
]

logger = logging.getLogger(__name__)


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


def start_pending_runs(*, settings: Settings | None = None) -> list[uuid.UUID]:
    """Start the run of every stored request that has none yet; returns the runs started.

    Requests whose run still cannot be started stay pending (with the reason recorded). The
    reconciler (`restart_stranded`) does this and more; this is its first step.
    """
    started: list[uuid.UUID] = []
    with db_session(settings) as session:
        pending = repository.list_crm_requests(session=session, unstarted=True)
        jobs = []
        for request in pending:
            if request.finished_at is not None:
                continue
            row = repository.get_closing(session=session, closing_id=request.closing_id)
            if row is not None:
                jobs.append((submission_of(row, request, False), request))
    for submission, request in jobs:
        run_id = _start(submission, request, settings)
        if run_id is not None:
            started.append(run_id)
    return started


@dataclass(frozen=True)
class HandedOver:
    """A closing whose runs kept stopping: it needs a person, for this reason."""

    crm_closing_id: str
    closing_id: uuid.UUID
    reason: str


@dataclass(frozen=True)
class Reconciled:
    """What one reconciliation did: runs started again, requests handed to a person, left be."""

    restarted: list[uuid.UUID]
    gave_up: list[HandedOver]
    checked: int


def restart_stranded(
    *,
    settings: Settings | None = None,
    now: datetime | None = None,
    grace: timedelta = timedelta(seconds=30),
) -> Reconciled:
    """Start again the run of every accepted request that no run will finish (idempotently).

    A request whose run is missing, crashed, cancelled, failed for a passing reason, or stuck
    running past `settings.reconcile_stale_minutes` gets a new run under a new idempotency key
    (its attempt number); after `settings.max_run_attempts` runs, the closing needs attention.
    Requests younger than `grace` are left to the call that accepted them.
    """
    from preclose.settings import get_settings

    settings = settings or get_settings()
    at = as_of_or_now(now)
    with db_session(settings) as session:
        open_requests = repository.list_unfinished_requests(
            session=session, received_before=at - grace
        )
    runs = _read_runs([r.flow_run_id for r in open_requests if r.flow_run_id is not None])
    stale = timedelta(minutes=settings.reconcile_stale_minutes)
    restarted: list[uuid.UUID] = []
    gave_up: list[HandedOver] = []
    for request in open_requests:
        run = runs.get(request.flow_run_id) if request.flow_run_id else None
        # No run, or one Prefect no longer has (a reset database): started again.
        state = run[0] if run else None
        fact = lifecycle.RunFact(
            state=state, started=run[1] if run else None, attempt=request.attempt
        )
        if state == "COMPLETED":
            with db_session(settings) as session:
                repository.finish_crm_request(
                    session=session, request_id=request.id, outcome="done"
                )
            continue
        why = lifecycle.restart_decision(fact, now=at, stale_after=stale)
        if why is None:
            continue
        with db_session(settings) as session:
            row = repository.get_closing(session=session, closing_id=request.closing_id)
            assert row is not None
            crm_id = row.crm_closing_id
            if request.attempt >= settings.max_run_attempts:
                repository.finish_crm_request(
                    session=session, request_id=request.id, outcome="gave up"
                )
                # The caller (the reconcile flow) sets needs attention and tells the agent once.
                gave_up.append(HandedOver(crm_id, request.closing_id, _gave_up(request.attempt)))
                continue
            if not repository.restart_crm_request(
                session=session, request_id=request.id, attempt=request.attempt
            ):
                continue  # another reconciler restarted it first
        if state in ("PENDING", "RUNNING") and request.flow_run_id is not None:
            _mark_crashed(request.flow_run_id, why)
        logger.info("Starting again the %s run of closing %s: %s", request.kind, crm_id, why)
        with db_session(settings) as session:
            fresh = repository.get_crm_request(session=session, request_id=request.id)
            assert fresh is not None
            row = repository.get_closing(session=session, closing_id=request.closing_id)
            assert row is not None
            submission = submission_of(row, fresh, False)
        run_id = _start(submission, fresh, settings)
        if run_id is not None:
            restarted.append(run_id)
    return Reconciled(restarted=restarted, gave_up=gave_up, checked=len(open_requests))


def _gave_up(attempts: int) -> str:
    """Why a closing whose runs kept stopping needs a person, in words the agent reads."""
    return (
        f"Its run stopped {attempts} times without finishing; "
        "look at the runs' logs in the Prefect UI, then retry."
    )


def _mark_crashed(run_id: uuid.UUID, why: str) -> None:
    """Say in Prefect that a run whose runner was killed is over (it would show running forever)."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    try:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run_id, Crashed(message=f"Taken as lost: {why}"), force=True)
    except Exception:  # only the run's display: the restart goes on regardless
        logger.warning("Could not mark the lost run %s crashed", run_id)


def _read_runs(run_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[str, datetime | None]]:
    """Each run's state type and start time, read from Prefect in pages."""
    if not run_ids:
        return {}
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    found: dict[uuid.UUID, tuple[str, datetime | None]] = {}
    with get_client(sync_client=True) as client:
        for start in range(0, len(run_ids), 200):
            page = run_ids[start : start + 200]
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=page)), limit=len(page)
            )
            for run in runs:
                state = run.state.type.value if run.state is not None else None
                if state is not None and run.state is not None:
                    # Since when it is in that state: a pending or running run is measured on it.
                    found[run.id] = (state, run.state.timestamp)
    return found


def submission_of(row: Closing, request: CrmRequest, new: bool) -> Submission:
    """The submission a stored request stands for, with its run if it has one."""
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
    step = {"start": "coordinate", "retry": "coordinate", "change": "change"}[kind.value]
    return f"{step} {crm_closing_id}" + (" (retry)" if kind == CrmRequestKind.retry else "")


def _deployment(kind: CrmRequestKind) -> str:
    return CHANGE if kind == CrmRequestKind.change else COORDINATE


def ensure_started(
    submission: Submission, request: CrmRequest, settings: Settings | None
) -> Submission:
    """The submission with its flow run, creating the run unless the request already has one.

    The run takes the request's ID, never the closing's details: the buyer's name, email and phone
    stay in our tables. Each attempt has its own idempotency key, so a restart is a new run while
    two calls for the same attempt find one.
    """
    if submission.flow_run_id is not None:
        return submission
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    from preclose.prefect_api import NoPrefectApiError, prefect_api

    deployment = _deployment(submission.kind)
    attempt = f":{request.attempt}" if request.attempt > 1 else ""
    try:
        with prefect_api(settings):
            flow_run = run_deployment(
                deployment,
                parameters={"request_id": str(request.id)},
                timeout=0,
                tags=[closing_tag(submission.crm_closing_id)],
                idempotency_key=f"preclose:{submission.kind.value}:{submission.request_id}{attempt}",
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
    return replace(submission, flow_run_id=flow_run.id)


def _start(
    submission: Submission, request: CrmRequest, settings: Settings | None
) -> uuid.UUID | None:
    """The run started for a request, or None while it still cannot be (the reason is recorded)."""
    try:
        return ensure_started(submission, request, settings).flow_run_id
    except RunNotStartedError:
        return None


def _record_not_started(request_id: uuid.UUID, reason: str, settings: Settings | None) -> None:
    with db_session(settings) as session:
        repository.mark_crm_request_not_started(
            session=session, request_id=request_id, error=reason
        )
