"""Prefect's server on SQLite: writes begun IMMEDIATE, batch settings a person can override."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from preclose.app.prefect_sqlite import (
    SQLITE_SERVER_SETTINGS,
    begin_writes_immediate,
    prefect_sqlite_environment,
)


def _write_mode(tmp_path: Path) -> str | None:
    from prefect.server.database.configurations import SQLITE_BEGIN_MODE, AioSqliteConfiguration

    async def inside_a_write() -> str | None:
        config = AioSqliteConfiguration(connection_url=f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
        engine = await config.engine()
        try:
            session = await config.session(engine)
            async with session, config.begin_transaction(session):
                return SQLITE_BEGIN_MODE.get()
        finally:
            await engine.dispose()

    return asyncio.run(inside_a_write())


@pytest.mark.slow  # loads Prefect's whole server, which nothing else in the fast loop needs
def test_prefects_sqlite_writes_begin_immediate_once_patched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefect's write transactions begin DEFERRED; the launcher's patch makes them IMMEDIATE."""
    from prefect.server.database.configurations import AioSqliteConfiguration

    # Restored after the test: the patch is for the server process, not this one.
    monkeypatch.setattr(
        AioSqliteConfiguration, "begin_transaction", AioSqliteConfiguration.begin_transaction
    )
    assert _write_mode(tmp_path) == "DEFERRED"
    begin_writes_immediate()
    begin_writes_immediate()  # twice is once
    assert _write_mode(tmp_path) == "IMMEDIATE"


def test_a_setting_the_environment_holds_is_kept() -> None:
    """The batch settings fill in only what the environment leaves unset."""
    name = next(iter(SQLITE_SERVER_SETTINGS))
    added = prefect_sqlite_environment({name: "1"})
    assert name not in added
    assert set(added) == set(SQLITE_SERVER_SETTINGS) - {name}
