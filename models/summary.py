"""What the flows return: small summaries a CRM or a person can read."""

from __future__ import annotations

import uuid
from datetime import date

from pydantic import BaseModel, Field


class LineSummary(BaseModel):
    """One service of a closing's plan, as the coordinator left it."""

    category: str = Field(title="Service")
    provider: str | None = Field(None, title="Provider")
    offer: str | None = Field(None, title="Offer")
    service_date: date = Field(title="Service date")
    placement_date: date = Field(title="Order date")
    state: str = Field(title="State")
    at_risk: bool = Field(False, title="At risk")
    risk: str | None = Field(None, title="Risk")


class ClosingSummary(BaseModel):
    """The outcome of coordinating one closing."""

    closing_id: uuid.UUID = Field(title="preclose closing ID")
    crm_closing_id: str = Field(title="CRM closing ID")
    created: bool = Field(title="New closing", description="False when the CRM ID was known.")
    status: str = Field(title="Closing status")
    lines: list[LineSummary] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
    orders_placed: list[str] = Field(default_factory=list, title="Offergrid orders placed now")
    next_placement: date | None = Field(None, title="Next order date")


class PlacementSummary(BaseModel):
    """What one placement run ordered."""

    placements: int = Field(0, title="Orders attempted")
    orders: list[str] = Field(default_factory=list, title="Offergrid order IDs")
    failed: int = Field(0, title="Orders refused or not sent")
    lines: int = Field(0, title="Plan lines ordered")
    held_elsewhere: int = Field(
        0,
        title="Orders another placer holds",
        description="Being sent by another run right now (its lease): not done by this one.",
    )


class SyncSummary(BaseModel):
    """What one sync run learnt."""

    open_items: int = Field(0, title="Open items checked")
    changes: int = Field(0, title="Statuses changed")
    risks: int = Field(0, title="New risks")
    fulfilled_closings: list[uuid.UUID] = Field(default_factory=list)
    failed_closings: list[str] = Field(
        default_factory=list,
        title="Closings whose follow-up failed",
        description="CRM IDs; each failed on its own, the others were followed up.",
    )


class FollowUpSummary(BaseModel):
    """What one follow-up told, flagged and closed out."""

    messages: int = Field(0, title="Messages sent")
    risks: int = Field(0, title="New risks")
    fulfilled_closings: list[uuid.UUID] = Field(default_factory=list)
    failed_closings: list[str] = Field(
        default_factory=list,
        title="Closings whose follow-up failed",
        description="CRM IDs; each failed on its own, the others were followed up.",
    )


class ReconcileSummary(BaseModel):
    """What one reconciliation of accepted requests did."""

    checked: int = Field(0, title="Unfinished requests checked")
    restarted: list[uuid.UUID] = Field(default_factory=list, title="Runs started again")
    needs_attention: list[str] = Field(
        default_factory=list, title="Closings handed to a person (too many lost runs)"
    )
