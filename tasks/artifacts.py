"""Artifact tasks: a closing's plan and timeline in the Prefect UI, and the Offergrid health."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactUpdate
from prefect.exceptions import PrefectHTTPStatusError

from models.records import ClosingRecord
from models.tables import Closing, ClosingStatus, PlanLineRow, PlanLineState
from preclose.rules.lifecycle import describe
from preclose.runtime import db_session
from preclose.storage import repository
from preclose.storage.integration_health import health_markdown, integration_health
from preclose.wording.reports import closing_markdown, closing_report


def artifact_key(crm_closing_id: str) -> str:
    """The Prefect artifact key of a closing, `closing-<crm id>` in lowercase letters, digits
    and dashes (Prefect's rule for keys)."""
    slug = re.sub(r"[^a-z0-9]+", "-", crm_closing_id.lower()).strip("-")
    return f"closing-{slug}"[:100]


def _digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _published(digests: dict[str, str], artifact_ids: dict[str, uuid.UUID] | None = None) -> None:
    if digests:
        with db_session() as session:
            repository.record_published(session=session, digests=digests, artifact_ids=artifact_ids)


def show_markdown(
    key: str, markdown: str, description: str, artifact_id: uuid.UUID | None
) -> uuid.UUID:
    """Update the key's artifact in place, or create it (the first time, or when Prefect no
    longer has it); returns the artifact's ID.

    In place, because the document holds its own timeline: a version per milestone cost Prefect's
    server a write and two events each, and a person only ever reads the latest.
    """
    if artifact_id is not None:
        update = ArtifactUpdate(data=markdown, description=description)
        try:
            with get_client(sync_client=True) as client:
                # The route itself: the client's `update_artifact` also emits an event carrying
                # the whole document, which no automation or person listens to.
                client.request(
                    "PATCH",
                    "/artifacts/{id}",
                    path_params={"id": artifact_id},
                    json=update.model_dump(mode="json", exclude_unset=True),
                )
            return artifact_id
        except PrefectHTTPStatusError as err:
            if err.response.status_code != 404:
                raise
            # Removed from Prefect (retention, a reset server): a new one under the key.
    created = create_markdown_artifact(key=key, markdown=markdown, description=description)
    assert isinstance(created, uuid.UUID)  # called from sync code: the sync variant ran
    return created


# A line's milestones: on its way (planned, being ordered, ordered), live, or ended otherwise.
_LINE_MILESTONE = {
    PlanLineState.planned: "on its way",
    PlanLineState.placing: "on its way",
    PlanLineState.placed: "on its way",
}


def milestone_facts(closing: Closing, lines: Sequence[PlanLineRow]) -> tuple[object, ...]:
    """What a person follows a closing by: its status (planned, ordering, active, fulfilled,
    needs attention...), its plan (current lines), and which services are live, ended badly or at
    risk.

    The steps of an order on its way (sent, accepted, booked, under way) change none of these,
    so they publish nothing: the closing's next milestone shows them all. Each order is a task
    run of its own in the UI meanwhile.
    """
    facts = tuple(
        (
            line.category,
            line.attempt,
            line.offer_id,
            line.placement_date,
            line.service_date,
            _LINE_MILESTONE.get(PlanLineState(line.state), str(line.state)),
            line.at_risk,
            line.risk_reason,
        )
        for line in lines
    )
    return (str(closing.status), closing.attention_reason, closing.attention_at, facts)


def publish_closings(closing_ids: Iterable[uuid.UUID], as_of: datetime) -> int:
    """Publish the artifact (plan, then timeline) of each of these closings that reached a
    milestone since it was last published (by any process); returns how many were shown anew.

    One read of every closing's milestone facts and of what each artifact shows; the full report
    is read only for those with news.
    """
    scope = set(closing_ids)
    if not scope:
        return 0
    with db_session() as session:
        closings = repository.get_closings(session=session, closing_ids=scope)
        lines: dict[uuid.UUID, list[PlanLineRow]] = {}
        for line in repository.list_current_lines(session=session, closing_ids=scope):
            lines.setdefault(line.closing_id, []).append(line)
        keyed = {
            closing.id: (
                artifact_key(closing.crm_closing_id),
                _digest(milestone_facts(closing, lines.get(closing.id, []))),
            )
            for closing in closings
        }
        shown = repository.published_artifacts(
            session=session, keys=[key for key, _ in keyed.values()]
        )
        news = sorted(
            (closing_id, key, digest)
            for closing_id, (key, digest) in keyed.items()
            if key not in shown or shown[key].digest != digest
        )
        # No milestone since: not even the report is read.
        records = [
            (key, digest, repository.read_closing_record(session=session, closing_id=closing_id))
            for closing_id, key, digest in news
        ]
        ids = {key: row.artifact_id for key, row in shown.items()}
    published: dict[str, str] = {}
    shown_as: dict[str, uuid.UUID] = {}
    failed: list[str] = []
    for key, digest, record in records:
        assert record is not None  # read in the session that found the closing
        try:
            shown_as[key] = _show(key, record, as_of, ids.get(key))
            published[key] = digest
        except Exception as err:
            # One closing's report must not keep the others' from showing.
            failed.append(f"{key} ({type(err).__name__})")
    # Noted only once shown: one that failed is tried again at its next publish.
    _published(published, shown_as)
    if missing := scope - keyed.keys():
        failed += [f"no closing {closing_id}" for closing_id in sorted(missing)]
    if failed:
        raise PublishError(f"could not show {len(failed)} artifacts: {', '.join(failed)}")
    return len(published)


class PublishError(RuntimeError):
    """Some closings' artifacts could not be shown (the others were)."""


def _show(
    key: str, record: ClosingRecord, as_of: datetime, artifact_id: uuid.UUID | None
) -> uuid.UUID:
    report = closing_report(record, as_of=as_of)
    reason, since = record.closing.attention_reason, record.closing.attention_at
    state = describe(report.status)
    if reason and report.status == ClosingStatus.needs_attention.value:
        # A person must act: the reason and the time lead the document, where they look first.
        state += f" since {since:%Y-%m-%d %H:%M} UTC: {reason}" if since else f": {reason}"
    # One artifact, not a table and a markdown timeline: each version costs Prefect's server a
    # write and its events, and a person reads the plan and the timeline together anyway.
    return show_markdown(
        key,
        closing_markdown(report, state=state),
        f"Plan and timeline of closing {report.crm_closing_id} ({state})",
        artifact_id,
    )


def publish(closing_ids: uuid.UUID | Iterable[uuid.UUID], as_of: datetime) -> None:
    """Publish these closings' artifacts inside a flow without letting a report failure fail it.

    Artifacts are for people to look at: a closing's orders and notifications must not wait on
    them. A failure is logged as a warning on the run. No task run: an artifact is itself what
    a person looks at, and one task run per publish cost more than the artifact.
    """
    scope = [closing_ids] if isinstance(closing_ids, uuid.UUID) else list(closing_ids)
    try:
        publish_closings(scope, as_of)
    except PublishError as err:
        get_run_logger().warning("%s", err)
    except Exception as err:
        get_run_logger().warning(
            "Could not publish the artifacts of %d closings (%s)", len(scope), type(err).__name__
        )


# The health figures move with every call (the sync's own read among them): refreshed at most this
# often, by whichever process syncs (our table says when it last was), and only when they changed.
HEALTH_EVERY = timedelta(hours=1)
HEALTH_KEY = "offergrid-health"


def publish_health(hours: float = 24) -> bool:
    """Refresh the `offergrid-health` artifact hourly where its figures changed; True if published.

    A report failure is logged as a warning, never a failed sync.
    """
    until = datetime.now(UTC)
    try:
        with db_session() as session:
            last = repository.last_published(session=session, key=HEALTH_KEY)
            if last is not None and until - last.published_at < HEALTH_EVERY:
                return False
            figures = integration_health(
                session=session, since=until - timedelta(hours=hours), until=until
            )
        markdown = health_markdown(figures)
        # The first line dates the window (to the minute): the figures below it are the content.
        digest = _digest(markdown.partition("\n")[2])
        if last is not None and last.digest == digest:
            return False
        create_markdown_artifact(
            key=HEALTH_KEY,
            markdown=markdown,
            description=f"Offergrid integration health, last {hours:g} hours",
        )
        _published({HEALTH_KEY: digest})
    except Exception as err:
        get_run_logger().warning("Could not publish the Offergrid health (%s)", type(err).__name__)
        return False
    return True
