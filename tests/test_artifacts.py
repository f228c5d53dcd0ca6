"""Artifacts: a new version only when a person has news, whichever process publishes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from models.tables import Closing, ClosingStatus, PlanLineRow, PublishedArtifact, StatusSource
from preclose.runtime import db_session
from preclose.storage import repository
from tasks import artifacts
from tests.fixtures_pages import RISK, StoredClosing, store_closing
from tests.fixtures_pages import stored as stored


def _facts(stored: StoredClosing) -> tuple[object, ...]:
    with db_session(stored.settings) as session:
        closing = repository.get_closing(session=session, closing_id=stored.closing_id)
        assert closing is not None
        lines = repository.list_plan_lines(session=session, closing_id=stored.closing_id)
        return artifacts.milestone_facts(closing, lines)


def _set_line(stored: StoredClosing, category: str, **values: object) -> None:
    with db_session(stored.settings) as session:
        line = next(
            row
            for row in repository.list_plan_lines(session=session, closing_id=stored.closing_id)
            if row.category == category
        )
        row = session.get(PlanLineRow, line.id)
        assert row is not None
        for name, value in values.items():
            setattr(row, name, value)
        session.add(row)
        session.commit()


def test_an_order_on_its_way_is_no_milestone_and_a_live_service_is(stored: StoredClosing) -> None:
    """Booked after accepted changes nothing shown; the service going live, or a risk, does."""
    before = _facts(stored)
    with db_session(stored.settings) as session:
        repository.upsert_item_status(
            session=session,
            offergrid_item_id="item-CL-PAGE-1-2",
            status="scheduled",
            at=datetime(2026, 12, 1, tzinfo=UTC),
            source=StatusSource.sync,
            scheduled_for=datetime(2026, 12, 10, tzinfo=UTC),
        )
    assert _facts(stored) == before
    _set_line(stored, stored.risky_category, state="fulfilled")
    live = _facts(stored)
    assert live != before
    _set_line(stored, stored.risky_category, at_risk=False, risk_reason=None)
    assert _facts(stored) != live


def test_health_is_published_at_most_hourly_whichever_process_syncs(
    stored: StoredClosing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version recorded by another process ten minutes ago holds this one back, before any
    report is read or Prefect is called."""
    monkeypatch.setenv("PRECLOSE_DATABASE_URL", stored.settings.database_url)
    monkeypatch.setenv("PRECLOSE_DATA_DIR", str(stored.settings.data_dir))
    with db_session(stored.settings) as session:
        repository.record_published(session=session, digests={artifacts.HEALTH_KEY: "earlier"})
    calls: list[str] = []
    monkeypatch.setattr(artifacts, "create_markdown_artifact", lambda **kw: calls.append("new"))
    monkeypatch.setattr(artifacts, "integration_health", lambda **kw: calls.append("read"))

    assert artifacts.publish_health() is False
    assert calls == []

    with db_session(stored.settings) as session:
        row = session.get(PublishedArtifact, artifacts.HEALTH_KEY)
    assert row is not None and datetime.now(UTC) - row.published_at < timedelta(hours=1)


def test_a_milestone_publishes_one_document_plan_first_then_timeline(
    stored: StoredClosing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One markdown artifact keyed `closing-<crm id>`: the state with the reason a person must
    act, the plan with its risks, then the timeline; no new version until the next milestone."""
    monkeypatch.setenv("PRECLOSE_DATABASE_URL", stored.settings.database_url)
    monkeypatch.setenv("PRECLOSE_DATA_DIR", str(stored.settings.data_dir))
    calls: list[dict[str, object]] = []
    created: dict[str, uuid.UUID] = {}

    def show(key: str, markdown: str, description: str, artifact_id: uuid.UUID | None) -> uuid.UUID:
        calls.append({"key": key, "markdown": markdown, "artifact_id": artifact_id})
        return artifact_id or created.setdefault(key, uuid.uuid4())

    monkeypatch.setattr(artifacts, "show_markdown", show)
    with db_session(stored.settings) as session:
        closing = session.get(Closing, stored.closing_id)
        assert closing is not None
        closing.status = ClosingStatus.needs_attention
        closing.attention_reason = "Offergrid refused the API key | check it"
        closing.attention_at = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
        session.add(closing)
        session.commit()
    now = datetime(2026, 11, 22, tzinfo=UTC)

    assert artifacts.publish_closings([stored.closing_id], now) == 1
    assert artifacts.publish_closings([stored.closing_id], now) == 0
    [call] = calls
    assert call["key"] == artifacts.artifact_key("CL-PAGE-1") == "closing-cl-page-1"
    document = str(call["markdown"])
    status, plan, timeline = (
        document.index("**Status:**"),
        document.index("## Plan"),
        document.index("## Timeline"),
    )
    assert status < plan < timeline
    assert "needs attention since 2026-11-21 09:30 UTC: Offergrid refused" in document[:plan]
    assert RISK in document[plan:timeline] and "| Risk |" in document[plan:timeline]
    assert "| Day | Service | What |" in document[timeline:]

    _set_line(stored, stored.risky_category, at_risk=False, risk_reason=None)
    assert artifacts.publish_closings([stored.closing_id], now) == 1
    # The same artifact, kept current: the new milestone updates it in place.
    assert calls[0]["artifact_id"] is None and calls[-1]["artifact_id"] == created[call["key"]]
    later = str(calls[-1]["markdown"])
    assert RISK not in later and "| Risk |" not in later
    with db_session(stored.settings) as session:
        keys = [row.key for row in session.exec(select(PublishedArtifact)).all()]
    assert keys == ["closing-cl-page-1"]


def test_an_artifact_is_updated_in_place_and_made_again_when_prefect_lost_it(
    prefect_harness: None,
) -> None:
    """A known artifact is updated in place (one version); an ID Prefect no longer has (retention,
    a reset server) gets a new artifact under the key instead of an error."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    key = f"closing-in-place-{uuid.uuid4().hex[:8]}"

    @flow(name="artifact in place")
    def show_twice(lost: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
        made = artifacts.show_markdown(key, "# one", "first", lost)
        return made, artifacts.show_markdown(key, "# two", "second", made)

    lost = uuid.uuid4()
    made, kept = show_twice(lost)
    assert made != lost and kept == made
    with get_client(sync_client=True) as client:
        versions = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    assert [(v.id, v.data, v.description) for v in versions] == [(made, "# two", "second")]


def test_one_closing_whose_artifact_fails_never_keeps_the_others_from_showing(
    stored: StoredClosing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closings published together are shown one by one: a failure is named, the rest shown and
    noted, and the one that failed is tried again at its next publish."""
    monkeypatch.setenv("PRECLOSE_DATABASE_URL", stored.settings.database_url)
    monkeypatch.setenv("PRECLOSE_DATA_DIR", str(stored.settings.data_dir))
    other = store_closing(stored.settings, "CL-PAGE-2")
    broken = artifacts.artifact_key("CL-PAGE-1")
    shown: list[str] = []

    def show(key: str, markdown: str, description: str, artifact_id: uuid.UUID | None) -> uuid.UUID:
        if key == broken and not shown.count(key):
            shown.append(key)
            raise ConnectionError("Prefect is away")
        shown.append(key)
        return uuid.uuid4()

    monkeypatch.setattr(artifacts, "show_markdown", show)
    now = datetime(2026, 11, 22, tzinfo=UTC)
    with pytest.raises(artifacts.PublishError, match=f"{broken} \\(ConnectionError\\)"):
        artifacts.publish_closings([stored.closing_id, other.closing_id], now)
    assert sorted(shown) == [broken, "closing-cl-page-2"]

    assert artifacts.publish_closings([stored.closing_id, other.closing_id], now) == 1
    assert shown[2:] == [broken]
