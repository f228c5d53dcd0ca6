"""The demo's and the benchmark's count of Prefect client retry sleeps."""

from __future__ import annotations

import httpx

from preclose.app.prefect_retries import counting_retry_sleeps


def test_a_503_from_prefects_api_is_counted_as_a_retry_sleep() -> None:
    """Prefect's own client retrying a 503 is counted, even when Prefect is first used inside."""
    answers = [httpx.Response(503, headers={"Retry-After": "0"}), httpx.Response(200, json={})]

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    with counting_retry_sleeps() as retries:
        # Importing a flow decorator configures Prefect's logging: the count must survive it.
        from prefect import flow  # noqa: F401
        from prefect.client.base import PrefectHttpxSyncClient

        transport = httpx.MockTransport(handler)
        with PrefectHttpxSyncClient(transport=transport, base_url="http://prefect.test") as client:
            assert client.get("/api/health").status_code == 200
    assert (retries.sleeps, retries.statuses) == (1, {"503": 1})
    assert retries.describe().startswith("1 retry sleeps")
