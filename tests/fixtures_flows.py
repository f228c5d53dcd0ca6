"""preclose configured against a virtual-clock local Offergrid on loopback, for the flow tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.flow_engine import run_flow
from prefect.settings import (
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    PREFECT_LOCAL_STORAGE_PATH,
    temporary_settings,
)
from prefect.states import State

from flows.change import change_closing
from flows.coordinate import coordinate_closing
from offergrid_sandbox.config import RESELLER_KEY, SandboxConfig, SimulationConfig
from offergrid_sandbox.server import SandboxServer, running_sandbox
from preclose.settings import get_settings
from preclose.storage.db import dispose_engines


@contextmanager
def preclose_on_local_offergrid(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    *,
    start: datetime,
    database_url: str | None = None,
    webhook_secret: str | None = None,
) -> Iterator[SandboxServer]:
    """A local Offergrid (seed 11, no rejections or failures) and preclose configured against it.

    The database is a fresh SQLite file in `tmp_path` unless a URL is given. Flow heartbeats are
    off: the flows run in this process, where they only add a second's wait to every run. Task
    results and cache records go to `tmp_path` too: a later sandbox may reuse a port, and a shared
    store would then answer its catalog from an earlier test's cache.
    """
    config = SandboxConfig(
        clock="virtual",
        seed=11,
        start_time=start,
        simulation=SimulationConfig(rejection_rate=0, failure_rate=0),
    )
    with running_sandbox(config) as server:
        monkeypatch.setenv("PRECLOSE_DATA_DIR", str(tmp_path))
        monkeypatch.setenv(
            "PRECLOSE_DATABASE_URL", database_url or f"sqlite:///{tmp_path / 'preclose.db'}"
        )
        monkeypatch.setenv("PRECLOSE_OFFERGRID_BASE_URL", server.url)
        monkeypatch.setenv("PRECLOSE_OFFERGRID_API_KEY", RESELLER_KEY)
        if webhook_secret is not None:
            monkeypatch.setenv("PRECLOSE_OFFERGRID_WEBHOOK_SECRET", webhook_secret)
        get_settings.cache_clear()
        with temporary_settings(
            updates={
                PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
                PREFECT_LOCAL_STORAGE_PATH: tmp_path / "prefect-results",
            }
        ):
            yield server
        dispose_engines()
        get_settings.cache_clear()


def register_deployments(*names: str) -> None:
    """Register deployments (`flow/deployment` names) on Prefect's test API, with no runner."""

    async def register() -> None:
        async with get_client() as client:
            for name in names:
                flow_name, deployment = name.split("/")
                flow_id = await client.create_flow_from_name(flow_name)
                await client.create_deployment(flow_id=flow_id, name=deployment)

    asyncio.run(register())


def read_run(run_id: uuid.UUID) -> FlowRun:
    """The flow run with this ID, as Prefect's API holds it."""

    async def read() -> FlowRun:
        async with get_client() as client:
            return await client.read_flow_run(run_id)

    return asyncio.run(read())


def execute_created_run(run_id: uuid.UUID, server: SandboxServer) -> State[Any]:
    """Run a created coordinate or change run in this process, as a runner would, on the
    sandbox's clock."""
    run = read_run(run_id)
    flows: dict[str, Flow[Any, Any]] = {"coordinate": coordinate_closing, "change": change_closing}
    flow = flows[run.name.split()[0]]
    parameters = {**run.parameters, "as_of": server.sandbox.clock.now()}
    if "request_id" in parameters:
        parameters["request_id"] = uuid.UUID(str(parameters["request_id"]))
    state = run_flow(flow, flow_run=run, parameters=parameters, return_type="state")
    assert isinstance(state, State)
    return state
