"""Health routes: is the API up, and how are Offergrid's webhooks doing (from the stored events)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from preclose.app.api.auth import Reader
from preclose.app.api.schemas import ProcessingTimes, WebhookHealth
from preclose.app.api.webhooks import TIMED_OUTCOMES, Outcome
from preclose.runtime import db_session
from preclose.storage import repository
from preclose.storage.integration_health import IntegrationHealth, integration_health

router = APIRouter(prefix="/health", tags=["health"])


def percentile(samples: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile of `samples` (share between 0 and 1), None when empty."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


@router.get("", summary="Liveness and database")
def health(request: Request) -> JSONResponse:
    """200 when the API answers and its database does; 503 when the database does not."""
    try:
        with db_session(request.app.state.settings) as session:
            session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    except Exception:
        # Only that it failed: the error may carry the database URL.
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get(
    "/webhooks",
    response_model=WebhookHealth,
    summary="Webhook deliveries of the recent window",
    responses={401: {"description": "Missing or unknown API key"}},
)
def webhook_health(
    request: Request,
    caller: Reader,
    hours: Annotated[float, Query(gt=0, le=24 * 90, description="Window length.")] = 24,
) -> WebhookHealth:
    """Deliveries received, duplicates, refused signatures, stale ones, processing p50/p95."""
    since = datetime.now(UTC) - timedelta(hours=hours)
    with db_session(request.app.state.settings) as session:
        figures = repository.webhook_figures(
            session=session, since=since, timed_outcomes=[o.value for o in TIMED_OUTCOMES]
        )
    count = figures.by_outcome.get
    samples = figures.processing_ms
    return WebhookHealth(
        window_hours=hours,
        received=figures.received,
        applied=count(Outcome.applied.value, 0),
        not_newer=count(Outcome.not_newer.value, 0),
        duplicates=count(Outcome.duplicate.value, 0),
        rejected_signatures=count(Outcome.bad_signature.value, 0),
        stale=count(Outcome.stale.value, 0),
        malformed=count(Outcome.malformed.value, 0),
        unknown_events=count(Outcome.unknown_event.value, 0),
        unknown_items=count(Outcome.unknown_item.value, 0),
        unprocessed=figures.unprocessed,
        processing_ms=ProcessingTimes(
            samples=len(samples),
            p50=percentile(samples, 0.50),
            p95=percentile(samples, 0.95),
        ),
        last_received_at=figures.last_received_at,
    )


@router.get(
    "/offergrid",
    response_model=IntegrationHealth,
    summary="Offergrid integration health over a window",
    responses={401: {"description": "Missing or unknown API key"}},
)
def offergrid_health(
    request: Request,
    caller: Reader,
    hours: Annotated[float, Query(gt=0, le=24 * 90, description="Window length.")] = 24,
) -> IntegrationHealth:
    """Success rate, p50/p95 and error rate by endpoint, acceptance rate, provider response."""
    until = datetime.now(UTC)
    with db_session(request.app.state.settings) as session:
        return integration_health(
            session=session, since=until - timedelta(hours=hours), until=until
        )
