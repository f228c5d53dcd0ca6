"""Durable intake: every accepted closing reaches a run that finishes, a failure is a state a
person sees and retries, and runs a machine starts carry our IDs, never the buyer's details."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, get_current_settings, temporary_settings
from prefect.states import Crashed
from starlette.testclient import TestClient

from flows.place import place_due_orders
from flows.reconcile import reconcile_intake
from flows.sync import sync_orders
from models.closing import ClosingRequest
from models.tables import ClosingStatus, CrmRequest
from offergrid_sandbox.server import SandboxServer
from preclose import intake
from preclose.app import crm
from preclose.app.api import create_api
from preclose.app.api.auth import issue_api_key
from preclose.app.samples import sample_closings
from preclose.names import CHANGE, COORDINATE
from preclose.runtime import db_session
from preclose.settings import get_settings
from preclose.storage import repository
from tests.fixtures_flows import (
    execute_created_run,
    preclose_on_local_offergrid,
    read_run,
    register_deployments,
)

START = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def offergrid(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prefect_harness: None
) -> Iterator[SandboxServer]:
    """The local Offergrid, a fresh database, and the coordinate and change deployments (no
    runner: the tests run each created flow run themselves, as a runner would)."""
    with preclose_on_local_offergrid(monkeypatch, tmp_path, start=START) as server:
        register_deployments(COORDINATE, CHANGE)
        yield server


def _crash(run_id: uuid.UUID) -> None:
    async def crash() -> None:
        async with get_client() as client:
            await client.set_flow_run_state(run_id, Crashed(message="runner stopped"), force=True)

    asyncio.run(crash())


def _closing(server: SandboxServer, index: int, tag: str) -> ClosingRequest:
    sample = sample_closings(server.sandbox.clock.now().date())[index]
    buyer = sample.buyer.model_copy(
        update={"email": f"{tag}@buyers.example", "phone": f"+1 512 {tag[-7:-4]} {tag[-4:]}"}
    )
    return sample.model_copy(update={"crm_closing_id": f"IN-{tag}", "buyer": buyer})


def _status(crm_id: str) -> ClosingStatus:
    with db_session() as session:
        row = repository.get_closing_by_crm_id(session=session, crm_closing_id=crm_id)
        assert row is not None
        return ClosingStatus(row.status)


def _http(server: SandboxServer) -> tuple[TestClient, dict[str, str]]:
    app = create_api(get_settings())
    app.state.now = server.sandbox.clock.now
    with db_session() as session:
        key, _ = issue_api_key(session=session, name=f"crm-{uuid.uuid4().hex[:6]}", read_only=False)
    return TestClient(app, raise_server_exceptions=False), {"x-api-key": key}


def test_a_crashed_run_is_started_again_once_and_finishes(offergrid: SandboxServer) -> None:
    """A run lost with its runner is started again by the reconciler, once however often it
    looks, and that run plans the closing and finishes its request."""
    closing = _closing(offergrid, 1, "5550101")
    submitted = crm.submit_closing(closing, as_of=offergrid.sandbox.clock.now())
    assert submitted.flow_run_id is not None
    assert read_run(submitted.flow_run_id).parameters == {"request_id": str(submitted.request_id)}
    _crash(submitted.flow_run_id)
    later = datetime.now(UTC) + timedelta(minutes=1)

    first = crm.restart_stranded(now=later)
    again = crm.restart_stranded(now=later)

    assert len(first.restarted) == 1 and first.restarted[0] != submitted.flow_run_id
    assert again.restarted == []  # the new run is scheduled: nothing more to start
    assert execute_created_run(first.restarted[0], offergrid).is_completed()
    assert _status(closing.crm_closing_id) in (ClosingStatus.planned, ClosingStatus.ordering)
    with db_session() as session:
        request = session.get(CrmRequest, submitted.request_id)
        assert request is not None
        assert (request.attempt, request.outcome) == (2, f"done: {_status(closing.crm_closing_id)}")
    assert crm.restart_stranded(now=later).checked == 0


def test_runs_that_keep_stopping_hand_the_closing_to_a_person_once(
    offergrid: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a closing's last allowed run is lost too, the reconcile flow sets needs attention
    with its reason and tells the agent once, however often it runs again."""
    monkeypatch.setenv("PRECLOSE_MAX_RUN_ATTEMPTS", "1")
    get_settings.cache_clear()
    closing = _closing(offergrid, 1, "5550103")
    submitted = crm.submit_closing(closing, as_of=offergrid.sandbox.clock.now())
    assert submitted.flow_run_id is not None
    _crash(submitted.flow_run_id)
    later = datetime.now(UTC) + timedelta(minutes=1)
    monkeypatch.setattr(intake, "as_of_or_now", lambda now: later)

    first = reconcile_intake()
    again = reconcile_intake()

    assert first.needs_attention == [closing.crm_closing_id] and first.restarted == []
    assert again.checked == 0  # the request is finished: handed to a person
    assert _status(closing.crm_closing_id) == ClosingStatus.needs_attention
    with db_session() as session:
        row = repository.get_closing_by_crm_id(
            session=session, crm_closing_id=closing.crm_closing_id
        )
        assert row is not None and row.attention_at is not None
        assert "stopped 1 times without finishing" in (row.attention_reason or "")
    outbox = (Path(os.environ["PRECLOSE_DATA_DIR"]) / "outbox.jsonl").read_text().splitlines()
    told = [json.loads(line) for line in outbox]
    assert [
        (m["milestone"], m["audience"]) for m in told if m["milestone"] == "needs_attention"
    ] == [("needs_attention", "agent")]


def test_failure_needs_attention_and_every_retry_is_one_run(
    offergrid: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused key sets needs attention with its reason and time, shown over HTTP and told to
    the agent once; retrying by POST /retry, by resending the POST, or from Python starts one run,
    which plans the closing once the key is fixed."""
    http, key = _http(offergrid)
    closing = _closing(offergrid, 1, "5550102")
    body = closing.model_dump(mode="json")
    accepted = http.post("/closings", json=body, headers=key)
    assert accepted.status_code == 202
    monkeypatch.setenv("PRECLOSE_OFFERGRID_API_KEY", "og_not_a_key")
    get_settings.cache_clear()

    failed = execute_created_run(uuid.UUID(accepted.json()["flow_run_id"]), offergrid)

    assert failed.is_failed()
    shown = http.get(f"/closings/{closing.crm_closing_id}", headers=key).json()["closing"]
    assert shown["status"] == "needs_attention"
    assert "refused our API key" in shown["attention_reason"] and shown["attention_at"]
    outbox = (Path(os.environ["PRECLOSE_DATA_DIR"]) / "outbox.jsonl").read_text().splitlines()
    told = [json.loads(line) for line in outbox]
    assert [
        (m["milestone"], m["audience"]) for m in told if m["milestone"] == "needs_attention"
    ] == [("needs_attention", "agent")]

    retried = http.post(f"/closings/{closing.crm_closing_id}/retry", headers=key)
    again = http.post(f"/closings/{closing.crm_closing_id}/retry", headers=key)
    resent = http.post("/closings", json=body, headers=key)
    from_python = crm.retry_closing(closing.crm_closing_id)
    assert (retried.status_code, again.status_code, resent.status_code) == (202, 200, 200)
    run_id = retried.json()["flow_run_id"]
    assert again.json()["flow_run_id"] == resent.json()["flow_run_id"] == run_id
    assert str(from_python) == run_id

    monkeypatch.delenv("PRECLOSE_OFFERGRID_API_KEY")
    monkeypatch.setenv("PRECLOSE_OFFERGRID_API_KEY", "og_sandbox_reseller")
    get_settings.cache_clear()
    assert execute_created_run(uuid.UUID(run_id), offergrid).is_completed()
    assert _status(closing.crm_closing_id) in (ClosingStatus.planned, ClosingStatus.ordering)
    refused = http.post(f"/closings/{closing.crm_closing_id}/retry", headers=key)
    assert refused.status_code == 409
    assert refused.json()["status"] == str(_status(closing.crm_closing_id))
    assert "cannot take the step 'retry'" in refused.json()["detail"]


def _drive_to_fulfilled(server: SandboxServer, crm_ids: list[str], days: int = 70) -> None:
    for _ in range(days // 2):
        if all(_status(crm_id) == ClosingStatus.fulfilled for crm_id in crm_ids):
            return
        server.sandbox.advance(2 * 86_400)
        now = server.sandbox.clock.now()
        place_due_orders(as_of=now)
        sync_orders(as_of=now)


def _files_holding(root: Path, needles: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        hits = [needle for needle in needles if needle.encode() in data]
        if hits:
            found[str(path)] = hits
    return found


@pytest.mark.slow
def test_no_buyer_data_reaches_prefect(offergrid: SandboxServer, tmp_path: Path) -> None:
    """Closings started over HTTP and from Python, run to fulfilled: no buyer email or phone is
    found anywhere in Prefect's database or its result storage."""
    storage = tmp_path / "prefect-results"
    http, key = _http(offergrid)
    over_http = _closing(offergrid, 1, "5550103")
    from_python = _closing(offergrid, 2, "5550104")
    with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: storage}):
        accepted = http.post(
            "/closings", json=over_http.model_dump(mode="json"), headers=key
        ).json()
        started = crm.submit_closing(from_python, as_of=offergrid.sandbox.clock.now())
        assert started.flow_run_id is not None
        for run_id in (uuid.UUID(accepted["flow_run_id"]), started.flow_run_id):
            assert execute_created_run(run_id, offergrid).is_completed()
        crm_ids = [over_http.crm_closing_id, from_python.crm_closing_id]
        _drive_to_fulfilled(offergrid, crm_ids)
    assert [_status(crm_id) for crm_id in crm_ids] == [ClosingStatus.fulfilled] * 2

    needles = [
        value
        for closing in (over_http, from_python)
        for value in (
            closing.buyer.email,
            closing.buyer.phone,
            "".join(ch for ch in closing.buyer.phone if ch.isdigit()),
        )
    ]
    url = get_current_settings().server.database.connection_url
    assert url is not None
    database = Path(url.get_secret_value().split("///", 1)[1])
    assert database.exists()
    assert _files_holding(database.parent, needles) == {}
    assert storage.exists()  # the sync's cached status read was persisted here
    assert _files_holding(storage, needles) == {}
