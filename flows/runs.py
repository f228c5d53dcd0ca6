"""Flow-run names and tags: which closing and which step, never personal data."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect.runtime import flow_run

# Every flow's options. Flow results are summaries nobody reads back, and a flow's persisted
# results would carry its tasks' too (the buyer's self-serve link among them): never persisted.
# Saying so also spares a call to Prefect's server per run, which otherwise asks for its default.
FLOW_OPTIONS: dict[str, Any] = {"persist_result": False}


def _as_of_label() -> str:
    as_of = flow_run.parameters.get("as_of")
    if isinstance(as_of, datetime):
        return f"{as_of:%Y-%m-%d %H:%M}"
    if isinstance(as_of, str) and as_of:
        return as_of[:16].replace("T", " ")
    return "now"


def coordinate_run_name() -> str:
    """`coordinate CRM-123`."""
    closing = flow_run.parameters.get("closing")
    if closing is None:
        # Started by a machine with a request ID: it named the run already (never with people).
        return str(flow_run.name or "coordinate")
    crm_id = getattr(closing, "crm_closing_id", None) or (
        closing.get("crm_closing_id") if isinstance(closing, dict) else "?"
    )
    return f"coordinate {crm_id}"


def place_run_name() -> str:
    """`place due orders (all) as of 2026-12-01 09:00`."""
    scope = flow_run.parameters.get("crm_closing_id") or "all closings"
    return f"place due orders ({scope}) as of {_as_of_label()}"


def sync_run_name() -> str:
    """`sync orders as of 2026-12-01 09:00`."""
    return f"sync orders as of {_as_of_label()}"


def follow_up_run_name() -> str:
    """`follow up CRM-123`."""
    return f"follow up {flow_run.parameters.get('crm_closing_id', '?')}"


def tag_this_run(*tags: str) -> None:
    """Add tags to the running flow run, so the UI can filter runs by closing (one API call)."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    merged = sorted(set(context.flow_run.tags) | set(tags))
    if merged == sorted(context.flow_run.tags):
        return
    with get_client(sync_client=True) as client:
        client.update_flow_run(context.flow_run.id, tags=merged)
