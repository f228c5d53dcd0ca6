"""The names every layer agrees on: deployments, the webhook event, the closing's tag, and "now".

A low module with no imports of ours: tasks, the CRM functions and the webhook receiver name a
deployment or a run's tag here without importing `deployments/` or `flows/`.
"""

from __future__ import annotations

from datetime import UTC, datetime

# Each flow is deployed once, under this deployment name: "<flow name>/preclose".
DEPLOYMENT = "preclose"
COORDINATE = f"coordinate closing/{DEPLOYMENT}"
PLACE_DUE = f"place due orders/{DEPLOYMENT}"
SYNC = f"sync orders/{DEPLOYMENT}"
FOLLOW_UP = f"follow up closing/{DEPLOYMENT}"
CHANGE = f"change closing/{DEPLOYMENT}"
RECONCILE = f"reconcile intake/{DEPLOYMENT}"

# Emitted by the webhook receiver for every applied status change; a deployment trigger on it runs
# FOLLOW_UP for the closing named in the resource.
STATUS_CHANGED_EVENT = "preclose.order.status-changed"
CLOSING_RESOURCE_PREFIX = "preclose.closing."
CRM_ID_LABEL = "preclose.app.crm-closing-id"


def closing_resource(crm_closing_id: str) -> dict[str, str]:
    """The Prefect event resource for one closing."""
    return {
        "prefect.resource.id": f"{CLOSING_RESOURCE_PREFIX}{crm_closing_id}",
        CRM_ID_LABEL: crm_closing_id,
    }


def closing_tag(crm_closing_id: str) -> str:
    """The tag every run about one closing carries."""
    return f"closing:{crm_closing_id}"


def as_of_or_now(as_of: datetime | None) -> datetime:
    """The flow's notion of now: the given time (a simulation's clock) or the real one, in UTC."""
    if as_of is None:
        return datetime.now(UTC)
    if as_of.tzinfo is None:
        raise ValueError("as_of: give a timezone-aware time, e.g. 2026-12-01T09:00:00Z")
    return as_of.astimezone(UTC)
