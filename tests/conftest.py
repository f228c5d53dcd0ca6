"""Shared test setup: a clean environment per test and the project's fixture modules."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# One Prefect test server for the whole session, whichever modules ask for it.
pytest_plugins = ["tests.fixtures_prefect"]

# Variables our settings read; a developer's shell must not leak into a test.
_OWN_PREFIXES = ("PRECLOSE_", "OFFERGRID_")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark slow, so `-m "not slow"` skips them: every test that needs the Prefect test server,
    and the PostgreSQL copy of a test that also runs on SQLite (the fast loop keeps that one)."""
    for item in items:
        if "prefect_harness" in getattr(item, "fixturenames", ()) or item.get_closest_marker(
            "postgres"
        ):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Remove every PRECLOSE_/OFFERGRID_ variable so each test builds its own settings."""
    for name in list(os.environ):
        if name.startswith(_OWN_PREFIXES) and name != "PRECLOSE_TEST_POSTGRES_URL":
            monkeypatch.delenv(name, raising=False)
    try:
        from preclose.settings import get_settings
    except ImportError:  # settings module not written yet
        yield
        return
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
