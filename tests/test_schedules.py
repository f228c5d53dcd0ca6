"""One schedule per closing: scheduled `place due orders` runs on Prefect's test server."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import ObjectNotFound
from sqlmodel import select

from deployments.build import build_deployment, deployment_specs
from models.tables import PlanLineRow, PlanLineState
from preclose.app.samples import sample_closings
from preclose.names import PLACE_DUE
from preclose.rules.lifecycle import Event
from preclose.rules.placement_runs import (
    PlacementRun,
    PlannedLine,
    ScheduledRun,
    placement_moment,
    schedule_changes,
    wanted_runs,
)
from preclose.runtime import db_session
from preclose.settings import get_settings
from preclose.storage import repository
from preclose.storage.db import dispose_engines
from tasks import schedules
from tasks.schedules import cancel_closing_schedule, sync_closing_schedule

TODAY = datetime.now(UTC).date()
PLACE_DUE_ENTRYPOINT = "flows/place.py:place_due_orders"


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A fresh SQLite database for preclose's own tables."""
    monkeypatch.setenv("PRECLOSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PRECLOSE_DATABASE_URL", f"sqlite:///{tmp_path / 'preclose.db'}")
    get_settings.cache_clear()
    yield
    dispose_engines()
    get_settings.cache_clear()


@pytest.fixture
def placement_deployment(prefect_harness: None) -> Iterator[uuid.UUID]:
    """The PLACE_DUE deployment registered on the test server, removed again afterwards."""
    spec = next(s for s in deployment_specs() if s.entrypoint == PLACE_DUE_ENTRYPOINT)
    deployment = build_deployment(spec)
    assert f"{deployment.flow_name}/{deployment.name}" == PLACE_DUE
    deployment_id = deployment.apply()
    assert isinstance(deployment_id, uuid.UUID)
    yield deployment_id
    with get_client(sync_client=True) as client:
        client.delete_deployment(deployment_id)


def _closing_with_lines(
    crm_closing_id: str, lines: list[tuple[str, int, PlanLineState]]
) -> uuid.UUID:
    """A stored closing (Chicago time) with plan lines (category, days from today, state)."""
    sample = sample_closings(TODAY)[0].model_copy(update={"crm_closing_id": crm_closing_id})
    with db_session() as session:
        closing, _ = repository.create_or_get_closing(session=session, closing_in=sample)
        for category, days, state in lines:
            placement = TODAY + timedelta(days=days)
            session.add(
                PlanLineRow(
                    closing_id=closing.id,
                    category=category,
                    importance="essential",
                    offer_id=f"off-{category}",
                    offer_name=f"{category} offer",
                    service_date=placement + timedelta(days=10),
                    placement_date=placement,
                    state=state,
                )
            )
        session.commit()
        return closing.id


def _runs(deployment_id: uuid.UUID, crm_closing_id: str) -> list[FlowRun]:
    """Every run of the deployment tagged for the closing, whatever its state."""
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[f"closing:{crm_closing_id}"])
            ),
        )


def _scheduled(runs: list[FlowRun]) -> dict[date, FlowRun]:
    """The scheduled runs by their date at the property (Chicago for the sample closing)."""
    out = {}
    for run in runs:
        assert run.state is not None
        if run.state.type == StateType.SCHEDULED:
            assert run.expected_start_time is not None
            out[run.expected_start_time.astimezone(sample_closings(TODAY)[0].tz).date()] = run
    return out


def _move_line(closing_id: uuid.UUID, category: str, days: int) -> None:
    """Re-plan one line to another placement date, as a moved closing does."""
    with db_session() as session:
        row = session.exec(
            select(PlanLineRow).where(
                PlanLineRow.closing_id == closing_id, PlanLineRow.category == category
            )
        ).one()
        row.placement_date = TODAY + timedelta(days=days)
        session.add(row)
        session.commit()


def test_creates_one_run_per_future_placement_date(
    database: None, placement_deployment: uuid.UUID
) -> None:
    """Planned lines get one Scheduled run per future date at 08:00 local, named and tagged."""
    closing_id = _closing_with_lines(
        "SCHED-CREATE",
        [
            ("internet", 5, PlanLineState.planned),
            ("energy", 5, PlanLineState.planned),  # same date: the same run
            ("insurance", 9, PlanLineState.planned),
            ("security", 7, PlanLineState.placed),  # already ordered: no run
            ("television", -1, PlanLineState.planned),  # past: the daily run's business
        ],
    )
    ids = sync_closing_schedule(closing_id)

    runs = _runs(placement_deployment, "SCHED-CREATE")
    scheduled = _scheduled(runs)
    first, second = TODAY + timedelta(days=5), TODAY + timedelta(days=9)
    assert sorted(scheduled) == [first, second]
    assert ids == [scheduled[first].id, scheduled[second].id]
    run = scheduled[first]
    assert run.name == f"place due orders (SCHED-CREATE) on {first.isoformat()}"
    assert run.parameters == {"crm_closing_id": "SCHED-CREATE"}
    assert "closing:SCHED-CREATE" in run.tags
    assert run.expected_start_time == placement_moment(first, "America/Chicago")
    assert run.expected_start_time.astimezone(sample_closings(TODAY)[0].tz).hour == 8


def test_second_sync_creates_nothing(database: None, placement_deployment: uuid.UUID) -> None:
    """Syncing twice (a second coordination) keeps the same runs and creates no second set."""
    closing_id = _closing_with_lines(
        "SCHED-TWICE",
        [("internet", 4, PlanLineState.planned), ("insurance", 8, PlanLineState.planned)],
    )
    first = sync_closing_schedule(closing_id)
    second = sync_closing_schedule(closing_id)

    assert first == second and len(first) == 2
    assert len(_runs(placement_deployment, "SCHED-TWICE")) == 2


def test_moved_date_cancels_old_run_and_schedules_new(
    database: None, placement_deployment: uuid.UUID
) -> None:
    """A line moved to another date cancels that date's run and schedules the new date's run."""
    closing_id = _closing_with_lines(
        "SCHED-MOVE",
        [("internet", 4, PlanLineState.planned), ("insurance", 8, PlanLineState.planned)],
    )
    before = sync_closing_schedule(closing_id)
    _move_line(closing_id, "insurance", 12)
    after = sync_closing_schedule(closing_id)

    runs = {run.id: run for run in _runs(placement_deployment, "SCHED-MOVE")}
    assert after[0] == before[0]  # the untouched date keeps its run
    assert runs[before[1]].state is not None and runs[before[1]].state.type == StateType.CANCELLED
    assert sorted(_scheduled(list(runs.values()))) == [
        TODAY + timedelta(days=4),
        TODAY + timedelta(days=12),
    ]
    # Moved back: a fresh run, not the cancelled one handed back by its idempotency key.
    _move_line(closing_id, "insurance", 8)
    back = sync_closing_schedule(closing_id)
    assert back[1] not in (before[1], after[1])
    assert TODAY + timedelta(days=8) in _scheduled(_runs(placement_deployment, "SCHED-MOVE"))


def test_fell_through_closing_cancels_everything(
    database: None, placement_deployment: uuid.UUID
) -> None:
    """Cancelling a closing's schedule cancels all its scheduled runs; a re-sync adds none."""
    closing_id = _closing_with_lines(
        "SCHED-OFF",
        [("internet", 4, PlanLineState.planned), ("insurance", 8, PlanLineState.planned)],
    )
    ids = sync_closing_schedule(closing_id)
    cancelled = cancel_closing_schedule("SCHED-OFF")
    with db_session() as session:
        repository.transition_closing(
            session=session, closing_id=closing_id, event=Event.fall_through
        )
    again = sync_closing_schedule(closing_id)

    assert sorted(cancelled) == sorted(ids)
    assert again == []
    states = {run.state.type for run in _runs(placement_deployment, "SCHED-OFF") if run.state}
    assert states == {StateType.CANCELLED}


def test_without_the_deployment_nothing_is_scheduled(
    database: None,
    prefect_harness: None,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With PLACE_DUE not registered both tasks do nothing and say so once per process."""
    monkeypatch.setattr(schedules, "_reported_missing", set())  # as in a fresh process
    closing_id = _closing_with_lines("SCHED-NONE", [("internet", 4, PlanLineState.planned)])
    with get_client(sync_client=True) as client, pytest.raises(ObjectNotFound):
        client.read_deployment_by_name(PLACE_DUE)

    with caplog.at_level(logging.INFO):
        assert sync_closing_schedule(closing_id) == []
        assert cancel_closing_schedule("SCHED-NONE") == []
        assert sync_closing_schedule(closing_id) == []
    assert sum("is not registered" in record.getMessage() for record in caplog.records) == 1


def test_schedule_changes_keeps_matches_and_drops_duplicates() -> None:
    """The plain comparison keeps one run per wanted time, cancels the rest, creates the missing."""
    now = datetime(2027, 3, 1, 15, tzinfo=UTC)  # 09:00 in Chicago
    lines = [
        PlannedLine(uuid.uuid4(), date(2027, 3, 1)),  # 08:00 Chicago today has passed
        PlannedLine(uuid.uuid4(), date(2027, 3, 3)),
        PlannedLine(uuid.uuid4(), date(2027, 3, 5)),
    ]
    wanted = wanted_runs(
        crm_closing_id="CL-1", time_zone="America/Chicago", version=1, lines=lines, now=now
    )
    assert [run.placement_date for run in wanted] == [date(2027, 3, 3), date(2027, 3, 5)]
    assert wanted[0].scheduled_time == datetime(2027, 3, 3, 14, tzinfo=UTC)  # 08:00 CST
    kept, dup, stray = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    changes = schedule_changes(
        wanted,
        [
            ScheduledRun(kept, wanted[0].scheduled_time),
            ScheduledRun(dup, wanted[0].scheduled_time),
            ScheduledRun(stray, datetime(2027, 3, 4, 14, tzinfo=UTC)),
        ],
    )
    assert [run.flow_run_id for run in changes.keep] == sorted([kept, dup], key=str)[:1]
    assert set(changes.cancel) == {kept, dup, stray} - {changes.keep[0].flow_run_id}
    assert changes.create == [wanted[1]]
    assert isinstance(changes.create[0], PlacementRun)


def test_idempotency_key_changes_with_version_and_lines() -> None:
    """Same closing, date and lines give the same key; a new version or new lines a new one."""
    line = PlannedLine(uuid.uuid4(), date(2027, 3, 3))
    now = datetime(2027, 3, 1, tzinfo=UTC)

    def key(version: int, lines: list[PlannedLine]) -> str:
        runs = wanted_runs(
            crm_closing_id="CL-1",
            time_zone="America/New_York",
            version=version,
            lines=lines,
            now=now,
        )
        return runs[0].idempotency_key

    assert key(1, [line]) == key(1, [line])
    assert key(2, [line]) != key(1, [line])
    assert key(1, [line, PlannedLine(uuid.uuid4(), line.placement_date)]) != key(1, [line])
