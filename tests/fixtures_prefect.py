"""The one Prefect test server of a test session: `prefect_harness`.

Load it as a plugin, so every module shares one server (importing the fixture into several modules
would start one per module): ``pytest_plugins = ["tests.fixtures_prefect"]``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server and database for the whole session (about 10 s to start)."""
    # The harness server is a subprocess: without this it tries to reach the internet.
    previous = os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    try:
        with prefect_test_harness(server_startup_timeout=60):
            yield
    finally:
        if previous is None:
            os.environ.pop("PREFECT_SERVER_ANALYTICS_ENABLED", None)
        else:
            os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = previous
