"""What the sandbox core tells its listeners (simulated providers, webhooks) when an item moves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ItemChange:
    """One order item changed status; the single record every listener reacts to."""

    order_id: str
    item_id: str
    offer_id: str
    category: str
    previous_status: str | None  # None when the item was just created
    new_status: str
    at: datetime
    provider_notes: str | None = None
    scheduled_for: datetime | None = None
    account_number: str | None = None
    reason: str | None = None  # rejection or cancellation reason
    cancelled_by: str | None = None  # "reseller" or "provider" on cancellation
    test: bool = False  # the order was placed in test mode (metadata.test)
