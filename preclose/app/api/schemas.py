"""What the API answers: closings, their plan lines, orders, timeline and risks, and errors."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, Field

from models.tables import ClosingPublic


class Accepted(BaseModel):
    """A request stored and its flow run started."""

    closing: ClosingPublic = Field(title="Closing")
    flow_run_id: uuid.UUID = Field(title="Flow run ID", description="The Prefect flow run started.")
    request_id: uuid.UUID = Field(title="Request ID", description="The stored request.")
    created: bool = Field(
        title="New request", description="False when this was a resend of a stored request."
    )


class ClosingList(BaseModel):
    """One page of closings."""

    items: list[ClosingPublic]
    limit: int
    offset: int
    next_offset: int | None = Field(
        title="Next offset", description="Pass as `offset` for the next page; null on the last."
    )


class OrderView(BaseModel):
    """Offergrid's order item for a plan line, as we last heard of it."""

    offergrid_order_id: str | None
    offergrid_item_id: str | None
    status: str | None
    status_at: datetime | None
    scheduled_for: datetime | None
    account_number: str | None


class LineView(BaseModel):
    """One service of the plan: the pick, its dates, where it stands, its order."""

    category: str
    importance: str
    attempt: int
    provider: str | None
    offer_id: str | None
    offer_name: str | None
    monthly_price: float | None
    reason: str
    problem: str | None
    placement_date: date
    service_date: date
    state: str
    status: str = Field(description="Where it stands, in words.")
    at_risk: bool
    risk_reason: str | None
    order: OrderView | None


class TimelineView(BaseModel):
    """A dated entry of the closing's timeline: planned, or done."""

    day: date
    category: str | None
    text: str
    done: bool


class RiskView(BaseModel):
    """A service whose date is in danger, and why."""

    category: str
    reason: str


class RequestView(BaseModel):
    """A request a CRM sent about the closing, and its run."""

    id: uuid.UUID
    kind: str
    received_at: datetime
    flow_run_id: uuid.UUID | None


class ClosingDetail(BaseModel):
    """A closing with its plan, orders, timeline, risks and the requests that shaped it."""

    closing: ClosingPublic
    lines: list[LineView]
    risks: list[RiskView]
    timeline: list[TimelineView]
    chart: str = Field(description="The service windows as a text chart.")
    requests: list[RequestView]


class ErrorItem(BaseModel):
    """One thing wrong with a request, named by its field (the value sent is never echoed)."""

    field: str = Field(description="Dotted path of the field, e.g. buyer.email; body for all.")
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    """A 422: what is wrong, field by field."""

    detail: list[ErrorItem]


class ConflictBody(BaseModel):
    """A 409: the closing exists with other details, or takes no change."""

    detail: str
    fields: list[str] = []
    status: str | None = None  # the closing's current state, when that is why it was refused


class ProcessingTimes(BaseModel):
    """How long verified deliveries took from receipt to processed, in milliseconds."""

    samples: int
    p50: float | None
    p95: float | None


class WebhookHealth(BaseModel):
    """Webhook deliveries received in a recent window, from the stored events."""

    window_hours: float
    received: int
    applied: int
    not_newer: int = Field(description="Verified events older than what we held: no change.")
    duplicates: int
    rejected_signatures: int
    stale: int
    malformed: int
    unknown_events: int
    unknown_items: int
    unprocessed: int
    processing_ms: ProcessingTimes
    last_received_at: datetime | None
