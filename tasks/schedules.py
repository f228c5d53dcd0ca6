"""One schedule per closing: scheduled `place due orders` runs on the closing's placement dates.

`sync_closing_schedule` makes a closing's scheduled runs of the PLACE_DUE deployment match its
planned lines (one run per future placement date, at 08:00 at the property); the decisions are in
`preclose.rules.placement_runs`. `cancel_closing_schedule` cancels them all (the deal fell through).
Where the deployment is not registered (the demo, most tests run flows directly) both log once
and do nothing: the daily all-closings run of the same deployment covers every closing anyway.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import (
    DeploymentResponse,
    OrchestrationResult,
    SetStateStatus,
)
from prefect.context import MissingContextError
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled, Scheduled

from models.tables import PlanLineRow, PlanLineState
from preclose.names import PLACE_DUE, as_of_or_now, closing_tag
from preclose.rules.placement_runs import (
    PlacementRun,
    PlannedLine,
    ScheduledRun,
    schedule_changes,
    wanted_runs,
)
from preclose.runtime import db_session
from preclose.storage import repository

__all__ = ["cancel_closing_schedule", "sync_closing_schedule"]

# Deployments already reported missing by this process: say it once, not once per closing.
_reported_missing: set[str] = set()
# More scheduled runs than one closing can ever have; a guard, not a page size that matters.
_MAX_RUNS = 200


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:  # called as plain `.fn(...)`, outside any run
        return logging.getLogger(__name__)


def _placement_deployment(client: SyncPrefectClient) -> DeploymentResponse | None:
    """The registered PLACE_DUE deployment, or None (reported once per process)."""
    try:
        return client.read_deployment_by_name(PLACE_DUE)
    except ObjectNotFound:
        if PLACE_DUE not in _reported_missing:
            _reported_missing.add(PLACE_DUE)
            _logger().info(
                "Deployment %r is not registered: no per-closing placement runs are scheduled "
                "(flows run directly; serve the deployments for scheduled placement)",
                PLACE_DUE,
            )
        return None


def _scheduled_runs(
    client: SyncPrefectClient, deployment_id: uuid.UUID, crm_closing_id: str
) -> list[FlowRun]:
    """The closing's runs of the deployment still waiting to start (Scheduled or Late)."""
    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[closing_tag(crm_closing_id)]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
        ),
        limit=_MAX_RUNS,
    )


def _create(client: SyncPrefectClient, deployment_id: uuid.UUID, run: PlacementRun) -> FlowRun:
    def create(key: str) -> FlowRun:
        return client.create_flow_run_from_deployment(
            deployment_id,
            parameters={"crm_closing_id": run.crm_closing_id},
            state=Scheduled(scheduled_time=run.scheduled_time),
            name=run.name,
            tags=[closing_tag(run.crm_closing_id)],
            idempotency_key=key,
        )

    flow_run = create(run.idempotency_key)
    if flow_run.state is not None and flow_run.state.type != StateType.SCHEDULED:
        # The key found an old run of the same lines and date that was cancelled (a date moved
        # away and back under one closing version): derive a new key from it, the same in every
        # process that gets here, so concurrent callers still agree on one run.
        flow_run = create(f"{run.idempotency_key}-after-{flow_run.id.hex[:12]}")
    return flow_run


def _cancel(client: SyncPrefectClient, flow_run_id: uuid.UUID, reason: str) -> bool:
    # Not forced: a run that has just started placing is left to finish (placement is idempotent).
    result: OrchestrationResult[Any] = client.set_flow_run_state(
        flow_run_id, Cancelled(message=reason), force=False
    )
    return result.status == SetStateStatus.ACCEPT


def sync_closing_schedule(closing_id: uuid.UUID, as_of: datetime | None = None) -> list[uuid.UUID]:
    """Make the closing's scheduled placement runs match its planned lines; returns their IDs.

    A plain step, not a task run: the scheduled runs it makes are what a person looks at.
    """
    now = as_of_or_now(as_of)
    with db_session() as session:
        closing = repository.get_closing(session=session, closing_id=closing_id)
        if closing is None:
            raise LookupError(f"closing_id: no closing {closing_id}")
        lines = repository.list_plan_lines(session=session, closing_id=closing_id)
    live = closing.status in repository.TRACKED_CLOSING_STATUSES
    wanted = wanted_runs(
        crm_closing_id=closing.crm_closing_id,
        time_zone=closing.time_zone,
        version=closing.version,
        lines=[
            PlannedLine(line.id, line.placement_date) for line in lines if live and _ordering(line)
        ],
        now=now,
    )
    return _reconcile_runs(closing.crm_closing_id, wanted, now)


def _ordering(line: PlanLineRow) -> bool:
    """A planned line with an offer: what a placement run will order."""
    return line.state == PlanLineState.planned and line.offer_id is not None


def _reconcile_runs(
    crm_closing_id: str, wanted: list[PlacementRun], now: datetime
) -> list[uuid.UUID]:
    """Cancel the closing's scheduled runs not wanted, create the missing ones; returns the IDs."""
    with get_client(sync_client=True) as client:
        deployment = _placement_deployment(client)
        if deployment is None:
            return []
        # Runs already late are left alone: when a runner picks them up they place what is due.
        pending = [
            ScheduledRun(run.id, run.expected_start_time)
            for run in _scheduled_runs(client, deployment.id, crm_closing_id)
            if run.expected_start_time is not None and run.expected_start_time > now
        ]
        changes = schedule_changes(wanted, pending)
        for flow_run_id in changes.cancel:
            _cancel(client, flow_run_id, "the closing's plan no longer places orders on this date")
        created = [_create(client, deployment.id, run) for run in changes.create]
    runs = sorted(
        [(run.scheduled_time, run.flow_run_id) for run in changes.keep]
        + [(run.expected_start_time or now, run.id) for run in created]
    )
    if changes.create or changes.cancel:
        _logger().info(
            "Placement runs of %s: %d scheduled, %d created, %d cancelled",
            crm_closing_id,
            len(runs),
            len(changes.create),
            len(changes.cancel),
        )
    return [flow_run_id for _, flow_run_id in runs]


@task(name="cancel closing schedule", cache_policy=NONE)
def cancel_closing_schedule(crm_closing_id: str) -> list[uuid.UUID]:
    """Cancel every scheduled placement run of the closing (it fell through); returns their IDs."""
    with get_client(sync_client=True) as client:
        deployment = _placement_deployment(client)
        if deployment is None:
            return []
        cancelled = [
            run.id
            for run in _scheduled_runs(client, deployment.id, crm_closing_id)
            if _cancel(client, run.id, "the closing fell through")
        ]
    if cancelled:
        _logger().info("Cancelled %d placement runs of %s", len(cancelled), crm_closing_id)
    return cancelled
