"""The `reconcile intake` flow: every accepted closing or change reaches a run that finishes."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.runs import FLOW_OPTIONS
from models.summary import ReconcileSummary
from preclose.intake import restart_stranded
from tasks.lifecycle import mark_needs_attention


@flow(name="reconcile intake", **FLOW_OPTIONS)
def reconcile_intake() -> ReconcileSummary:
    """Start again the run of each accepted request whose run was lost, crashed, cancelled by a
    stop or failed for a passing reason (idempotent: each attempt has its own key)."""
    done = restart_stranded()
    for closing in done.gave_up:
        # The same step as any failure a person must fix: the state, and one message to the agent.
        mark_needs_attention(closing.closing_id, closing.reason)
    logger = get_run_logger()
    logger.info(
        "Checked %d unfinished requests: %d runs started again, %d handed to a person",
        done.checked,
        len(done.restarted),
        len(done.gave_up),
    )
    return ReconcileSummary(
        checked=done.checked,
        restarted=done.restarted,
        needs_attention=[closing.crm_closing_id for closing in done.gave_up],
    )
