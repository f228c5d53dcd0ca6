"""The CRM's Python way in: each request stored first, then exactly one flow run started for it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings
from sqlmodel import col, select

from models.change import ClosingChange, ContactChange
from models.closing import ClosingInputError, ClosingRequest
from models.tables import CrmRequest, CrmRequestKind
from preclose.app import crm
from preclose.names import CHANGE, COORDINATE
from preclose.rules.lifecycle import Event
from preclose.runtime import db_session
from preclose.settings import get_settings
from preclose.storage import repository
from preclose.storage.db import dispose_engines
from tests.fixtures_planning import closing_data
from tests.fixtures_sandbox import free_port

# The real clock: crm's public calls judge dates by it, so closings are dated well ahead of it.
CLOSING_DAY = date(datetime.now(UTC).year + 1, 3, 15)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prefect_harness: None) -> Iterator[None]:
    """A fresh SQLite database through the environment, and both deployments on Prefect's server."""
    monkeypatch.setenv("PRECLOSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PRECLOSE_DATABASE_URL", f"sqlite:///{tmp_path / 'preclose.db'}")
    get_settings.cache_clear()
    asyncio.run(_register(COORDINATE, CHANGE))
    yield
    dispose_engines()
    get_settings.cache_clear()


async def _register(*names: str) -> None:
    async with get_client() as client:
        for name in names:
            flow_name, deployment = name.split("/")
            flow_id = await client.create_flow_from_name(flow_name)
            await client.create_deployment(flow_id=flow_id, name=deployment)


def _closing(**overrides: Any) -> ClosingRequest:
    data = closing_data(
        crm_closing_id=f"CL-{uuid.uuid4().hex[:8]}", closing_date=CLOSING_DAY.isoformat()
    )
    data.update(overrides)
    return ClosingRequest.model_validate(data)


def _run(run_id: uuid.UUID) -> FlowRun:
    async def read() -> FlowRun:
        async with get_client() as client:
            return await client.read_flow_run(run_id)

    return asyncio.run(read())


def _runs_tagged(tag: str) -> list[FlowRun]:
    async def read() -> list[FlowRun]:
        async with get_client() as client:
            return await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]))
            )

    return asyncio.run(read())


def _deployment_id(name: str) -> uuid.UUID:
    async def read() -> uuid.UUID:
        async with get_client() as client:
            return (await client.read_deployment_by_name(name)).id

    return asyncio.run(read())


def _requests() -> list[CrmRequest]:
    with db_session() as session:
        return list(session.exec(select(CrmRequest).order_by(col(CrmRequest.received_at))).all())


def test_start_closing_stores_first_and_starts_one_run(env: None) -> None:
    """The closing and its request are stored, then one tagged coordinate run; a resend finds it."""
    closing = _closing()
    run_id = crm.start_closing(closing)

    run = _run(run_id)
    assert run.deployment_id == _deployment_id(COORDINATE)
    assert run.name == f"coordinate {closing.crm_closing_id}"
    assert f"closing:{closing.crm_closing_id}" in run.tags
    # Our request's ID, never the closing's details: the buyer's data stays in our tables.
    with db_session() as session:
        stored = session.exec(select(CrmRequest)).one()
    assert run.parameters == {"request_id": str(stored.id)}
    assert run.state is not None and run.state.is_scheduled()  # created, not waited for
    assert "John" not in run.name and "example.com" not in run.name
    with db_session() as session:
        row = repository.get_closing_by_crm_id(
            session=session, crm_closing_id=closing.crm_closing_id
        )
    assert row is not None
    [request] = _requests()
    assert (request.kind, request.closing_id, request.flow_run_id) == (
        CrmRequestKind.start,
        row.id,
        run_id,
    )

    assert crm.start_closing(closing) == run_id
    assert [r.id for r in _runs_tagged(f"closing:{closing.crm_closing_id}")] == [run_id]
    assert len(_requests()) == 1


def test_resend_with_other_details_is_a_conflict(env: None) -> None:
    """The same CRM ID with other details raises ClosingConflictError naming the fields only."""
    closing = _closing()
    crm.start_closing(closing)
    other = closing.model_copy(deep=True)
    other.property.size_sqft = 2400
    other.buyer.email = "jdoe@example.org"
    with pytest.raises(crm.ClosingConflictError) as conflict:
        crm.start_closing(other)
    assert conflict.value.fields == ["property.size_sqft", "buyer.email"]
    assert "jdoe@example.org" not in str(conflict.value)
    assert len(_runs_tagged(f"closing:{closing.crm_closing_id}")) == 1


def test_a_new_closing_in_the_past_stores_nothing(env: None) -> None:
    """A new closing dated in the past raises ClosingInputError naming closing_date, stores none."""
    closing = _closing(closing_date="2020-01-15")
    with pytest.raises(ClosingInputError) as err:
        crm.start_closing(closing)
    assert err.value.field == "closing_date"
    with db_session() as session:
        assert repository.list_closings(session=session) == []


def test_change_runs_once_per_change_and_again_for_a_later_repeat(env: None) -> None:
    """A change starts a change run; resent, the same run; after another change, a new one."""
    closing = _closing()
    crm.start_closing(closing)
    moved = ClosingChange(closing_date=date(CLOSING_DAY.year, 3, 20), reason="lender delay")
    phone = ClosingChange(contact=ContactChange(phone="+1 512 555 0199"))

    first = crm.change_closing(closing.crm_closing_id, moved)
    assert crm.change_closing(closing.crm_closing_id, moved) == first
    second = crm.change_closing(closing.crm_closing_id, phone)
    third = crm.change_closing(closing.crm_closing_id, moved)  # moved back to that date again
    assert len({first, second, third}) == 3

    run = _run(first)
    assert run.deployment_id == _deployment_id(CHANGE)
    assert run.name == f"change {closing.crm_closing_id}"
    with db_session() as session:
        request = session.exec(select(CrmRequest).where(col(CrmRequest.flow_run_id) == first)).one()
    assert request.body == moved.model_dump(mode="json")
    assert run.parameters == {"request_id": str(request.id)}
    assert "555" not in _run(second).name
    kinds = [request.kind for request in _requests()]
    assert kinds == [CrmRequestKind.start, *[CrmRequestKind.change] * 3]


def test_change_of_unknown_or_finished_closing_is_refused(env: None) -> None:
    """A change to an unknown closing, or one that fell through, raises and starts nothing."""
    with pytest.raises(crm.ClosingNotFoundError, match="CL-NOPE"):
        crm.change_closing("CL-NOPE", ClosingChange(fell_through=True))
    closing = _closing()
    crm.start_closing(closing)
    with db_session() as session:
        row = repository.get_closing_by_crm_id(
            session=session, crm_closing_id=closing.crm_closing_id
        )
        assert row is not None
        repository.transition_closing(session=session, closing_id=row.id, event=Event.fall_through)
    with pytest.raises(crm.ClosingFinishedError, match="fell through"):
        crm.change_closing(closing.crm_closing_id, ClosingChange(fell_through=True))
    assert len(_runs_tagged(f"closing:{closing.crm_closing_id}")) == 1


def test_requests_stored_while_prefect_is_down_start_later(env: None) -> None:
    """With Prefect unreachable the request is kept; start_pending_runs starts it exactly once."""
    closing = _closing()
    down = {PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api", PREFECT_CLIENT_MAX_RETRIES: 0}
    with temporary_settings(updates=down), pytest.raises(crm.RunNotStartedError) as err:
        crm.start_closing(closing)
    assert err.value.submission.flow_run_id is None and err.value.reason == "ConnectError"
    [waiting] = _requests()
    assert waiting.flow_run_id is None

    [started] = crm.start_pending_runs()
    assert crm.start_pending_runs() == []
    assert crm.start_closing(closing) == started
    assert [r.id for r in _runs_tagged(f"closing:{closing.crm_closing_id}")] == [started]


def test_closing_differences_name_nested_paths() -> None:
    """Differences are dotted paths in document order, fields added or removed included."""
    stored = {"a": 1, "b": {"c": [1, 2], "d": "x"}, "gone": True}
    sent = {"a": 1, "b": {"c": [2, 1], "d": "x"}, "new": None, "extra": 0}
    assert crm.closing_differences(stored, sent) == ["b.c", "gone", "extra"]
    assert crm.closing_differences(stored, stored) == []
