"""The names every part agrees on: deployments, the webhook event, and the closing resource."""

from __future__ import annotations

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
CRM_ID_LABEL = "preclose.crm-closing-id"


def closing_resource(crm_closing_id: str) -> dict[str, str]:
    """The Prefect event resource for one closing."""
    return {
        "prefect.resource.id": f"{CLOSING_RESOURCE_PREFIX}{crm_closing_id}",
        CRM_ID_LABEL: crm_closing_id,
    }
