"""Artifact tasks: a closing's plan table and timeline in the Prefect UI, and tracking progress."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from models.tables import ClosingStatus
from preclose.rules.lifecycle import describe
from preclose.runtime import db_session
from preclose.storage import repository
from preclose.storage.integration_health import health_markdown, integration_health
from preclose.wording.reports import closing_report
from preclose.wording.timeline import timeline_markdown


def artifact_key(prefix: str, crm_closing_id: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) for a closing's artifact."""
    slug = re.sub(r"[^a-z0-9]+", "-", crm_closing_id.lower()).strip("-")
    return f"{prefix}-{slug}"[:100]


# The content last published under each artifact key by this process: a key whose content did
# not change gets no new version (a version is a write and two events in Prefect's server). A new
# process publishes once more; bounded, since a long-lived worker sees many closings.
_published: OrderedDict[str, str] = OrderedDict()
_PUBLISHED_KEYS = 10_000


def _changed(key: str, *parts: object) -> bool:
    """Whether `parts` differ from what this process last published under `key` (and note them)."""
    digest = hashlib.sha256(repr(parts).encode()).hexdigest()
    if _published.get(key) == digest:
        _published.move_to_end(key)
        return False
    _published[key] = digest
    _published.move_to_end(key)
    while len(_published) > _PUBLISHED_KEYS:
        _published.popitem(last=False)
    return True


def _forget(key: str) -> None:
    _published.pop(key, None)


def publish_closing(closing_id: uuid.UUID, as_of: datetime) -> int:
    """Publish the closing's plan table and markdown timeline where they changed; returns how
    many artifacts got a new version (the keys keep one history each)."""
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
    published = 0
    plan_key = artifact_key("plan", report.crm_closing_id)
    plan_description = f"Home services plan for closing {report.crm_closing_id} ({state})"
    if _changed(plan_key, rows, plan_description):
        try:
            create_table_artifact(key=plan_key, table=rows, description=plan_description)
        except BaseException:
            _forget(plan_key)  # not published: try again next time
            raise
        published += 1
    timeline_key = artifact_key("timeline", report.crm_closing_id)
    markdown = timeline_markdown(
        f"Closing {report.crm_closing_id}: timeline", report.timeline, report.chart
    )
    if _changed(timeline_key, markdown):
        try:
            create_markdown_artifact(
                key=timeline_key,
                markdown=markdown,
                description=f"Timeline of closing {report.crm_closing_id}",
            )
        except BaseException:
            _forget(timeline_key)
            raise
        published += 1
    return published


def publish(closing_id: uuid.UUID, as_of: datetime) -> None:
    """Publish the closing's artifacts inside a flow without letting a report failure fail it.

    Artifacts are for people to look at: a closing's orders and notifications must not wait on
    them. A failure is logged as a warning on the run. No task run: an artifact is itself what
    a person looks at, and one task run per publish cost more than the artifact.
    """
    try:
        publish_closing(closing_id, as_of)
    except Exception as err:
        get_run_logger().warning(
            "Could not publish the plan and timeline of %s (%s)", closing_id, type(err).__name__
        )


# The health figures move with every call (the sync's own read among them): refreshed at most this
# often by one process, and only when they changed.
HEALTH_EVERY = timedelta(hours=1)
_health_published: list[datetime] = []


def publish_health(hours: float = 24) -> bool:
    """Refresh the `offergrid-health` artifact hourly where its figures changed; True if published.

    A report failure is logged as a warning, never a failed sync.
    """
    until = datetime.now(UTC)
    if _health_published and until - _health_published[-1] < HEALTH_EVERY:
        return False
    try:
        with db_session() as session:
            figures = integration_health(
                session=session, since=until - timedelta(hours=hours), until=until
            )
        markdown = health_markdown(figures)
        # The first line dates the window (to the minute): the figures below it are the content.
        if not _changed("offergrid-health", markdown.partition("\n")[2]):
            return False
        create_markdown_artifact(
            key="offergrid-health",
            markdown=markdown,
            description=f"Offergrid integration health, last {hours:g} hours",
        )
    except Exception as err:
        _forget("offergrid-health")
        get_run_logger().warning("Could not publish the Offergrid health (%s)", type(err).__name__)
        return False
    _health_published[:] = [until]
    return True
