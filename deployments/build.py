"""Every flow as a deployment named "preclose": schedules, the follow-up trigger, the run forms.

`build_deployments()` makes no server call. Serve them all in this process (from the repository
root) with ``python -m deployments.build``, or `preclose serve` for the whole stack; the scale-out
script deploys the same deployments to a process work pool instead.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import Flow
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron, Interval, Schedule

from deployments.forms import label_parameters
from preclose.names import (
    CLOSING_RESOURCE_PREFIX,
    CRM_ID_LABEL,
    DEPLOYMENT,
    STATUS_CHANGED_EVENT,
)
from preclose.settings import get_settings

# Entrypoints are file paths relative to this directory; runners and workers run flows from it.
ROOT = Path(__file__).resolve().parents[1]
TAGS = ["preclose"]

# The all-closings placement run: 08:00 Central is the same calendar day in every US state, and the
# per-closing runs (tasks/schedules.py) already fire at 08:00 at each property.
DAILY_PLACEMENT_CRON = "0 8 * * *"
DAILY_PLACEMENT_TIME_ZONE = "America/Chicago"
SYNC_ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class DeploymentSpec:
    """One flow's deployment: where the flow is, what the UI says, when and why it runs."""

    entrypoint: str
    description: str
    schedules: list[Schedule] = field(default_factory=list)
    triggers: list[DeploymentEventTrigger] = field(default_factory=list)
    concurrency_limit: ConcurrencyLimitConfig | None = None


def follow_up_trigger() -> DeploymentEventTrigger:
    """Run `follow up closing` for the closing named in each order-status-changed event."""
    return DeploymentEventTrigger(
        name="follow up on an order status change",
        description="The webhook receiver applied a status change: tell people, flag risks.",
        expect={STATUS_CHANGED_EVENT},
        match={"prefect.resource.id": f"{CLOSING_RESOURCE_PREFIX}*"},
        parameters={"crm_closing_id": f"{{{{ event.resource['{CRM_ID_LABEL}'] }}}}"},
    )


def deployment_specs() -> list[DeploymentSpec]:
    """The deployments' definitions, in the order the UI lists them to a newcomer."""
    sync_minutes = get_settings().sync_interval_minutes
    return [
        DeploymentSpec(
            entrypoint="flows/coordinate.py:coordinate_closing",
            description=(
                "Start here for a new closing: fill in the closing form to store it, fetch what "
                "is offered at the address, plan each service and place what is due today. "
                "The plan shows as an artifact on the run."
            ),
        ),
        DeploymentSpec(
            entrypoint="flows/place.py:place_due_orders",
            description=(
                "Place every plan line whose order date has come, one Offergrid order per "
                "closing. Runs daily for all closings and at 08:00 local time on each closing's "
                "placement dates."
            ),
            schedules=[
                Cron(
                    DAILY_PLACEMENT_CRON,
                    timezone=DAILY_PLACEMENT_TIME_ZONE,
                    slug="daily-all-closings",
                )
            ],
        ),
        DeploymentSpec(
            entrypoint="flows/sync.py:sync_orders",
            description=(
                "Read every open order from Offergrid in one bulk call and apply what changed: "
                "the safety net for missed webhooks."
            ),
            schedules=[
                # Anchored, so the runs land on the quarter hours whenever serving (re)starts.
                Interval(
                    timedelta(minutes=sync_minutes),
                    anchor_date=SYNC_ANCHOR,
                    slug="safety-net-sync",
                ),
            ],
            # A sync that starts while another is still reading has nothing to add.
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
        ),
        DeploymentSpec(
            entrypoint="flows/follow_up.py:follow_up_closing",
            description=(
                "After a closing's orders changed status: tell the buyer and agent, flag risks, "
                "close out a fulfilled closing. Triggered by each applied webhook."
            ),
            triggers=[follow_up_trigger()],
        ),
        DeploymentSpec(
            entrypoint="flows/reconcile.py:reconcile_intake",
            description=(
                "Every accepted closing or change reaches a run that finishes: starts again the "
                "run of each accepted request whose run was lost, crashed, cancelled by a stop or "
                "failed for a passing reason. Also run when `preclose serve` starts."
            ),
            schedules=[
                Interval(
                    timedelta(minutes=get_settings().reconcile_interval_minutes),
                    anchor_date=SYNC_ANCHOR,
                    slug="reconcile-intake",
                )
            ],
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
        ),
        DeploymentSpec(
            entrypoint="flows/change.py:change_closing",
            description=(
                "A closing changed after coordination: a new closing or move-in date, a "
                "fall-through, corrected contact details or address. Re-plans and re-times orders."
            ),
        ),
    ]


def _load_flow(entrypoint: str, *, from_source: bool) -> Flow[Any, Any]:
    if from_source:
        # Workers run flows from the repository directory (a set_working_directory pull step).
        return Flow.from_source(source=str(ROOT), entrypoint=entrypoint)  # type: ignore[return-value]
    # The module itself, imported once like any other, not a second copy loaded from its path.
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow: Flow[Any, Any] = getattr(module, name)
    return flow


def build_deployment(
    spec: DeploymentSpec, *, work_pool_name: str | None = None
) -> RunnerDeployment:
    """One flow's deployment named "preclose": served in-process, or for a work pool's workers."""
    flow = _load_flow(spec.entrypoint, from_source=work_pool_name is not None)
    deployment = flow.to_deployment(
        name=DEPLOYMENT,
        description=spec.description,
        schedules=spec.schedules or None,
        triggers=list(spec.triggers) or None,
        concurrency_limit=spec.concurrency_limit,
        tags=TAGS,
        work_pool_name=work_pool_name,
    )
    assert isinstance(deployment, RunnerDeployment)  # sync context: built, not a coroutine
    # Relative to the repository root whatever the working directory of the build.
    deployment.entrypoint = spec.entrypoint
    return label_parameters(deployment)


def build_deployments(*, work_pool_name: str | None = None) -> list[RunnerDeployment]:
    """Every flow as a deployment named "preclose", served in-process or (with a pool) deployed."""
    return [build_deployment(spec, work_pool_name=work_pool_name) for spec in deployment_specs()]


if __name__ == "__main__":
    from prefect import serve

    serve(*build_deployments())
