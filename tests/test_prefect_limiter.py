"""The Prefect global concurrency limit the rate-limiter benchmark compares against (slow: each
test talks to the session's Prefect test server)."""

from __future__ import annotations

import time
import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.responses import GlobalConcurrencyLimitResponse

from benchmarks.prefect_limiter import (
    PrefectRateLimiter,
    ensure_offergrid_rate_limit,
    prefect_limit_name,
    token_bucket,
)
from offergrid_sandbox.config import SandboxConfig
from offergrid_sandbox.server import running_sandbox
from preclose.storage.ratelimit import RateWindows
from tests.test_ratelimit import (
    _SCALED,
    _SCALED_WINDOWS,
    TEST_MARGIN,
    _catalog_storm,
    hammer,
    max_in_window,
)


def test_limit_is_named_by_fingerprint() -> None:
    """The Prefect limit for a key is named by its fingerprint, never the key."""
    assert prefect_limit_name("0123456789abcdef") == "offergrid-api:0123456789abcdef"


@pytest.mark.parametrize(
    "windows",
    [RateWindows(), RateWindows(100, 10_000, 3.0, 180.0), RateWindows(10, 50, 1.0, 60.0)],
    ids=["offergrid", "scaled", "hour-bound"],
)
def test_token_bucket_never_admits_more_than_a_window(windows: RateWindows) -> None:
    """Capacity C and refill r keep C + r * T within the limit of both windows."""
    capacity, rate = token_bucket(windows)
    assert capacity >= 1 and rate > 0
    assert capacity + rate * windows.minute_seconds <= windows.per_minute
    assert capacity + rate * windows.hour_seconds <= windows.per_hour


def _read_limit(name: str) -> GlobalConcurrencyLimitResponse:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_prefect_limit_exists_after_ensure() -> None:
    """ensure creates the key's limit with the bucket's capacity and decay, active."""
    windows = RateWindows(per_minute=100, per_hour=10_000, minute_seconds=3.0, hour_seconds=180)
    fingerprint = uuid.uuid4().hex[:16]
    name = ensure_offergrid_rate_limit(fingerprint, windows)
    capacity, rate = token_bucket(windows)
    limit = _read_limit(name)
    assert name == f"offergrid-api:{fingerprint}"
    assert (limit.limit, limit.slot_decay_per_second, limit.active) == (capacity, rate, True)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_prefect_ensure_repairs_a_changed_limit() -> None:
    """ensure on an existing limit restores its size and decay and re-activates it."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    windows = RateWindows(per_minute=20, per_hour=1000, minute_seconds=1.0, hour_seconds=60)
    name = ensure_offergrid_rate_limit(uuid.uuid4().hex[:16], windows)
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(
            name, GlobalConcurrencyLimitUpdate(limit=500, slot_decay_per_second=50.0, active=False)
        )
    assert ensure_offergrid_rate_limit(name.split(":")[1], windows) == name
    limit = _read_limit(name)
    assert (limit.limit, limit.slot_decay_per_second, limit.active) == (
        *token_bucket(windows),
        True,
    )


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_prefect_limit_missing_is_an_error_not_a_free_pass() -> None:
    """Without ensure, acquiring fails loudly (strict) instead of running unlimited."""
    from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError

    limiter = PrefectRateLimiter(fingerprint=uuid.uuid4().hex[:16], ensure=False)
    with pytest.raises(ConcurrencySlotAcquisitionError):
        limiter.acquire()


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_prefect_limiter_keeps_the_window() -> None:
    """Threads sharing the Prefect limit never get more than per_minute calls into a window."""
    windows = RateWindows(per_minute=10, per_hour=10_000, minute_seconds=0.5, hour_seconds=60)
    limiter = PrefectRateLimiter(
        fingerprint=uuid.uuid4().hex[:16], windows=windows, margin_seconds=TEST_MARGIN
    )
    stamps = hammer(limiter, threads=2, calls=7)
    assert len(stamps) == 14
    assert max_in_window(stamps, windows.minute_seconds) <= 10


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_prefect_defer_holds_the_next_call() -> None:
    """defer(s) on the Prefect limit makes the next call wait at least about s."""
    windows = RateWindows(per_minute=20, per_hour=10_000, minute_seconds=1.0, hour_seconds=60)
    limiter = PrefectRateLimiter(fingerprint=uuid.uuid4().hex[:16], windows=windows)
    limiter.defer(1.0)
    started = time.monotonic()
    limiter.acquire()
    assert time.monotonic() - started >= 0.9


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_prefect_limiter_gets_no_429_at_the_limit() -> None:
    """Threads going flat out through the Prefect limit never hit the sandbox's 429."""
    limiter = PrefectRateLimiter(fingerprint=uuid.uuid4().hex[:16], windows=_SCALED_WINDOWS)
    with running_sandbox(SandboxConfig(rate_limit=_SCALED)) as server:
        outcomes = _catalog_storm(server.url, limiter, threads=3, calls=5)
    assert outcomes.count("ok") == 15 and "429" not in outcomes
