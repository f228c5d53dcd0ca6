"""Retry policies for Offergrid tasks, run by Prefect against the real local Offergrid."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import task

from offergrid import OffergridClient
from offergrid.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    PermissionDeniedError,
)
from offergrid.models.orders import CreateOrderRequest
from offergrid_sandbox.config import (
    PROVIDER_KEY,
    RESELLER_KEY,
    FaultConfig,
    RateLimitConfig,
    SandboxConfig,
)
from offergrid_sandbox.server import running_sandbox
from preclose.storage.db import make_engine, open_database
from preclose.storage.ratelimit import (
    DatabaseRateLimiter,
    RateWindows,
    key_fingerprint,
    rate_limit_hooks,
)
from tasks.policies import (
    OFFERGRID_TASK_OPTIONS,
    RetryPolicy,
    failure_message,
    offergrid_task_options,
    retry_condition,
)

NO_WAIT = RetryPolicy(retries=2, base_delay_seconds=0, jitter_factor=0)


@dataclass
class Wiring:
    """What the task under test reaches for, and what the test reads back afterwards."""

    database_url: str = ""
    sandbox_url: str = ""
    read_timeout: float = 5.0
    heal_after_5xx: bool = False
    runs: int = 0
    attempts: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def reset(self, *, database_url: str) -> None:
        """Start over for a new test."""
        fresh = Wiring(database_url=database_url)
        for item in fields(self):
            setattr(self, item.name, getattr(fresh, item.name))


# The task's parameters stay plain strings, as a flow's would; the test wires the rest here.
WIRING = Wiring()


def _observer_hooks() -> dict[str, list[Any]]:
    def on_request(request: httpx.Request) -> None:
        WIRING.attempts.append(time.monotonic())

    def on_response(response: httpx.Response) -> None:
        WIRING.statuses.append(response.status_code)
        if response.status_code >= 500 and WIRING.heal_after_5xx:
            # Offergrid recovers after its first failure: switch the fault off again.
            httpx.put(f"{WIRING.sandbox_url}/sandbox/faults", json={}).raise_for_status()

    return {"request": [on_request], "response": [on_response]}


def _bad_offer_order() -> CreateOrderRequest:
    return CreateOrderRequest.model_validate(
        {
            "items": [{"offerId": "off-does-not-exist"}],
            "serviceAddress": {
                "street": "12 Oak St",
                "city": "Austin",
                "state": "TX",
                "zipCode": "78701",
                "country": "US",
            },
            "customerInfo": {
                "fullName": "Jordan Rivera",
                "email": "jordan@example.com",
                "phone": "+15125550147",
            },
            "metadata": {"test": True},
        }
    )


@task(**OFFERGRID_TASK_OPTIONS)
def call_offergrid(operation: str, base_url: str, api_key: str) -> int:
    """A flow's Offergrid task in miniature: a rate-limited client, one call."""
    WIRING.runs += 1
    limiter = DatabaseRateLimiter(
        make_engine(WIRING.database_url),
        fingerprint=key_fingerprint(api_key),
        windows=RateWindows(per_minute=100, per_hour=10_000, minute_seconds=60, hour_seconds=3600),
    )
    limits, observe = rate_limit_hooks(limiter), _observer_hooks()
    hooks = {name: limits[name] + observe[name] for name in ("request", "response")}
    timeout = httpx.Timeout(5.0, read=WIRING.read_timeout)
    with (
        httpx.Client(event_hooks=hooks, timeout=timeout) as http,
        OffergridClient(api_key, base_url=base_url, http_client=http) as client,
    ):
        if operation == "catalog":
            return len(client.list_offers())
        if operation == "order":
            client.place_order(_bad_offer_order(), idempotency_key="policy-test-order")
            return 1
        raise ValueError(f"a bug in our own code, not Offergrid's ({operation})")


@dataclass(frozen=True)
class Case:
    """One row of the table: how Offergrid misbehaves and what the policy must do about it."""

    id: str
    expect_error: type[Exception] | None
    attempts: int  # task runs: the first plus its retries
    statuses: list[str]
    operation: str = "catalog"
    api_key: str = RESELLER_KEY
    faults: FaultConfig = field(default_factory=FaultConfig)
    heal_after_5xx: bool = False
    read_timeout: float = 5.0
    message: str = ""


CASES = [
    Case(
        "5xx-always",
        InternalServerError,
        3,
        ["5xx", "5xx", "5xx"],
        faults=FaultConfig(error_rate=1),
    ),
    Case(
        "5xx-then-recovered",
        None,
        2,
        ["5xx", "200"],
        faults=FaultConfig(error_rate=1),
        heal_after_5xx=True,
    ),
    Case(
        "timeout",
        APITimeoutError,
        3,
        [],
        faults=FaultConfig(timeout_rate=1, timeout_seconds=0.5),
        read_timeout=0.2,
    ),
    Case(
        "401-bad-key",
        AuthenticationError,
        1,
        ["401"],
        api_key="og_not_a_key",
        message="Offergrid rejected the API key; set PRECLOSE_OFFERGRID_API_KEY",
    ),
    Case("403-wrong-role", PermissionDeniedError, 1, ["403"], api_key=PROVIDER_KEY),
    Case(
        "400-bad-offer",
        BadRequestError,
        1,
        ["400"],
        operation="order",
        message="items[0].offerId is invalid",
    ),
    Case("our-own-bug", ValueError, 1, [], operation="bug"),
]


@pytest.fixture
def wiring(tmp_path: Path) -> Iterator[Wiring]:
    """A fresh wiring with the limiter's tables in a temporary SQLite file."""
    url = f"sqlite:///{tmp_path / 'preclose.db'}"
    open_database(url).dispose()  # migrated: the limiter's tables are part of the schema
    WIRING.reset(database_url=url)
    yield WIRING


def _kinds(statuses: list[int]) -> list[str]:
    """Status codes as the policy sees them: the sandbox answers a 5xx fault with 502 or 503."""
    return ["5xx" if status >= 500 else str(status) for status in statuses]


def _statuses_seen_by(base_url: str) -> list[int]:
    counts = httpx.get(f"{base_url}/sandbox/requests").json()["byEndpoint"]
    return sorted(
        int(code)
        for by_status in counts.values()
        for code, n in by_status.items()
        for _ in range(n)
    )


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_policy_against_the_sandbox(case: Case, wiring: Wiring) -> None:
    """Each failure is retried only when a retry can fix it, with the attempts Offergrid saw."""
    wiring.heal_after_5xx = case.heal_after_5xx
    wiring.read_timeout = case.read_timeout
    policy_task = call_offergrid.with_options(**offergrid_task_options(NO_WAIT))
    with running_sandbox(SandboxConfig(faults=case.faults)) as server:
        wiring.sandbox_url = server.url
        state = policy_task(case.operation, server.url, case.api_key, return_state=True)
        seen_by_offergrid = _statuses_seen_by(server.url)
    assert wiring.runs == case.attempts
    assert len(wiring.attempts) == (0 if case.operation == "bug" else case.attempts)
    assert _kinds(wiring.statuses) == case.statuses
    if case.statuses:
        assert sorted(_kinds(seen_by_offergrid)) == sorted(case.statuses)
    if case.expect_error is None:
        assert state.is_completed()
        assert state.result() > 0
        return
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, case.expect_error)
    if case.message:
        assert case.message in failure_message(error)


@pytest.mark.usefixtures("prefect_harness")
def test_connection_refused_is_retried_then_fails(wiring: Wiring) -> None:
    """A closed port is a connection error: retried, then Failed with APIConnectionError."""
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    policy_task = call_offergrid.with_options(**offergrid_task_options(NO_WAIT))
    state = policy_task("catalog", f"http://127.0.0.1:{port}", RESELLER_KEY, return_state=True)
    assert state.is_failed()
    assert isinstance(state.result(raise_on_failure=False), APIConnectionError)
    assert len(wiring.attempts) == 3 and wiring.statuses == []


@pytest.mark.usefixtures("prefect_harness")
def test_429_retry_waits_at_least_retry_after(wiring: Wiring) -> None:
    """A 429 is retried, and the retry goes no sooner than Offergrid's Retry-After, backoff zero."""
    tight = RateLimitConfig(per_minute=1, per_hour=1000, minute_seconds=1.0, hour_seconds=60)
    policy_task = call_offergrid.with_options(**offergrid_task_options(NO_WAIT))
    with running_sandbox(SandboxConfig(rate_limit=tight)) as server:
        with OffergridClient(RESELLER_KEY, base_url=server.url) as elsewhere:
            elsewhere.list_offers()  # another user of the key spends the window
        state = policy_task("catalog", server.url, RESELLER_KEY, return_state=True)
        seen_by_offergrid = _statuses_seen_by(server.url)
    assert state.is_completed()
    assert _kinds(wiring.statuses) == ["429", "200"]
    assert _kinds(seen_by_offergrid) == ["200", "200", "429"]
    assert wiring.attempts[1] - wiring.attempts[0] >= 0.9  # Retry-After: 1 s


@pytest.mark.usefixtures("prefect_harness")
def test_failure_hook_logs_the_friendly_message(
    wiring: Wiring, caplog: pytest.LogCaptureFixture
) -> None:
    """On a final failure the task's log says what to do, in words a person can act on."""
    caplog.set_level(logging.ERROR)
    policy_task = call_offergrid.with_options(**offergrid_task_options(NO_WAIT))
    with running_sandbox(SandboxConfig()) as server:
        wiring.sandbox_url = server.url
        state = policy_task("catalog", server.url, "og_not_a_key", return_state=True)
    assert state.is_failed()
    assert "Offergrid rejected the API key; set PRECLOSE_OFFERGRID_API_KEY" in caplog.text
    assert "og_not_a_key" not in caplog.text


def test_default_options_back_off_exponentially() -> None:
    """By default a call is retried 4 times after 2, 4, 8 and 16 s, with jitter, on a condition."""

    @task(**OFFERGRID_TASK_OPTIONS)
    def probe() -> None:
        """Nothing; only its options matter."""

    assert probe.retries == 4
    assert probe.retry_delay_seconds == [2.0, 4.0, 8.0, 16.0]
    assert probe.retry_jitter_factor == 0.5
    assert probe.retry_condition_fn is retry_condition


def test_retry_policy_rejects_bad_values_by_name() -> None:
    """A negative retry count or delay is refused with the field's name."""
    with pytest.raises(ValueError, match="retries"):
        RetryPolicy(retries=-1)
    with pytest.raises(ValueError, match="base_delay_seconds"):
        RetryPolicy(base_delay_seconds=-0.5)
