"""The one Prefect test server of a test session: `prefect_harness`.

tests/conftest.py loads it as a plugin, so every module shares one server (importing the fixture
into several modules would start one per module).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

_QUIET = {
    # The harness server is a subprocess: without this it tries to reach the internet.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # Tests run tasks outside flows; their logs stay local instead of warning about it.
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server and database for the whole session (about 10 s to start)."""
    # Imported here: it loads Prefect's whole server, which the fast loop never starts.
    from prefect.testing.utilities import prefect_test_harness

    previous = {name: os.environ.get(name) for name in _QUIET}
    os.environ.update(_QUIET)
    try:
        with prefect_test_harness(server_startup_timeout=60):
            yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
