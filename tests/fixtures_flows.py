"""preclose configured against a virtual-clock local Offergrid on loopback, for the flow tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

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
    off: the flows run in this process, where they only add a second's wait to every run.
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
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield server
        dispose_engines()
        get_settings.cache_clear()
