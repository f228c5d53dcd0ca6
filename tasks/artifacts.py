"""Artifact tasks: a closing's plan table and timeline in the Prefect UI, and tracking progress."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from models.tables import ClosingStatus
from preclose.app.runtime import db_session
from preclose.rules.lifecycle import describe
from preclose.storage import repository
from preclose.storage.integration_health import health_markdown, integration_health
from preclose.wording.reports import closing_report
from preclose.wording.timeline import timeline_markdown


def artifact_key(prefix: str, crm_closing_id: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) for a closing's artifact."""
    slug = re.sub(r"[^a-z0-9]+", "-", crm_closing_id.lower()).strip("-")
    return f"{prefix}-{slug}"[:100]


@task(name="publish closing", cache_policy=NONE)
def publish_closing(closing_id: uuid.UUID, as_of: datetime) -> None:
    """Publish the closing's plan table and markdown timeline; the keys keep one history each."""
    with db_session() as session:
        record = repository.read_closing_record(session=session, closing_id=closing_id)
    if record is None:
        raise LookupError(f"closing_id: no closing {closing_id}")
    report = closing_report(record, as_of=as_of)
    reason, since = record.closing.attention_reason, record.closing.attention_at
    state = describe(report.status)
    if reason and report.status == ClosingStatus.needs_attention.value:
        # A person must act: the reason and the time lead the plan, where they look first.
        state += f" since {since:%Y-%m-%d %H:%M} UTC: {reason}" if since else f": {reason}"
    rows = report.rows or [{"service": "—", "status": state}]
    create_table_artifact(
        key=artifact_key("plan", report.crm_closing_id),
        table=rows,
        description=f"Home services plan for closing {report.crm_closing_id} ({state})",
    )
    create_markdown_artifact(
        key=artifact_key("timeline", report.crm_closing_id),
        markdown=timeline_markdown(
            f"Closing {report.crm_closing_id}: timeline", report.timeline, report.chart
        ),
        description=f"Timeline of closing {report.crm_closing_id}",
    )


def publish(closing_id: uuid.UUID, as_of: datetime) -> None:
    """Run `publish closing` inside a flow without letting a report failure fail the flow.

    Artifacts are for people to look at: a closing's orders and notifications must not wait on
    them. A failure stays visible as the failed task run and a warning.
    """
    state = publish_closing(closing_id, as_of, return_state=True)
    if state.is_failed():
        get_run_logger().warning("Could not publish the plan and timeline of %s", closing_id)


@task(name="publish offergrid health", cache_policy=NONE)
def publish_health(hours: float = 24) -> None:
    """Refresh the `offergrid-health` artifact: the integration's figures for the last hours."""
    until = datetime.now(UTC)
    with db_session() as session:
        figures = integration_health(
            session=session, since=until - timedelta(hours=hours), until=until
        )
    create_markdown_artifact(
        key="offergrid-health",
        markdown=health_markdown(figures),
        description=f"Offergrid integration health, last {hours:g} hours",
    )
