"""Per-key rate limits: both windows, both counting models, the headers and the 429 answer."""

from __future__ import annotations

import pytest

from offergrid_sandbox.config import RateLimitConfig, SandboxConfig
from offergrid_sandbox.ratelimit import RateLimiter
from tests.fixtures_sandbox_core import (
    HYBRID,
    PROVIDER,
    RESELLER,
    quiet_config,
    sandbox_client,
)


class FakeTime:
    """A hand-moved monotonic and wall clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now


def _allowed(limiter: RateLimiter, key: str) -> bool:
    decision = limiter.hit(key)
    assert decision is not None
    return decision.allowed


def _limiter(model: str, **limits: float) -> tuple[RateLimiter, FakeTime]:
    clock = FakeTime()
    config = RateLimitConfig.model_validate({"model": model, **limits})
    return RateLimiter(config, monotonic=clock.monotonic, wall=clock.wall), clock


@pytest.mark.parametrize("model", ["rolling", "token_bucket"])
def test_short_window_refuses_the_request_over_the_limit(model: str) -> None:
    """The (limit+1)th request inside the short window is refused with Retry-After >= 1."""
    limiter, _ = _limiter(model, per_minute=5, per_hour=100)
    decisions = [limiter.hit("k") for _ in range(6)]
    assert [d.allowed for d in decisions if d] == [True] * 5 + [False]
    assert [d.remaining for d in decisions[:5] if d] == [4, 3, 2, 1, 0]
    refused = decisions[-1]
    assert refused is not None and refused.retry_after is not None and refused.retry_after >= 1
    assert refused.body() == {
        "statusCode": 429,
        "message": "Too many requests",
        "error": "Too Many Requests",
        "retryAfter": refused.retry_after,
    }


def test_rolling_window_frees_a_slot_when_the_oldest_request_ages_out() -> None:
    """A rolling log lets one more request through exactly when the oldest leaves the window."""
    limiter, clock = _limiter("rolling", per_minute=3, per_hour=100, minute_seconds=60)
    for step in range(3):
        clock.now += step * 10  # requests at t=0, 10, 30
        assert _allowed(limiter, "k")
    clock.now = 1000.0 + 59.0
    refused = limiter.hit("k")
    assert refused is not None and not refused.allowed and refused.retry_after == 1
    clock.now = 1000.0 + 60.0
    assert _allowed(limiter, "k")
    assert not _allowed(limiter, "k")  # t=10 still inside


def test_refused_requests_do_not_use_up_the_window() -> None:
    """Hammering while refused does not push the moment a slot frees further away."""
    limiter, clock = _limiter("rolling", per_minute=2, per_hour=100, minute_seconds=10)
    limiter.hit("k")
    limiter.hit("k")
    for _ in range(50):
        assert not _allowed(limiter, "k")
    clock.now += 10
    assert _allowed(limiter, "k")


def test_token_bucket_refills_evenly() -> None:
    """A token bucket of 10 per 10 s gives one more request each second after it empties."""
    limiter, clock = _limiter("token_bucket", per_minute=10, per_hour=1000, minute_seconds=10)
    for _ in range(10):
        assert _allowed(limiter, "k")
    refused = limiter.hit("k")
    assert refused is not None and not refused.allowed and refused.retry_after == 1
    clock.now += 1.0
    assert _allowed(limiter, "k")
    assert not _allowed(limiter, "k")


@pytest.mark.parametrize("model", ["rolling", "token_bucket"])
def test_long_window_limits_too(model: str) -> None:
    """The hourly window refuses once spent, even when the short window has room again."""
    limiter, clock = _limiter(model, per_minute=5, per_hour=8, minute_seconds=1, hour_seconds=100)
    allowed = 0
    for _ in range(40):
        clock.now += 1.0
        decision = limiter.hit("k")
        assert decision is not None
        allowed += decision.allowed
    # Rolling: exactly 8 in 40 s of a 100 s window; a bucket also refills 0.08 tokens a second.
    assert allowed == 8 if model == "rolling" else 8 <= allowed <= 11
    refused = limiter.hit("k")
    assert refused is not None and not refused.allowed and refused.limit == 8


def test_keys_have_separate_budgets() -> None:
    """One key spending its budget leaves another key untouched."""
    limiter, _ = _limiter("rolling", per_minute=2, per_hour=100)
    limiter.hit("a")
    limiter.hit("a")
    assert not _allowed(limiter, "a")
    assert _allowed(limiter, "b")


def test_reset_header_is_epoch_seconds_of_the_window_freeing() -> None:
    """X-RateLimit-Reset is the epoch second when the oldest counted request leaves the window."""
    limiter, clock = _limiter("rolling", per_minute=5, per_hour=100, minute_seconds=60)
    decision = limiter.hit("k")
    assert decision is not None
    assert decision.headers()["X-RateLimit-Reset"] == str(int(clock.wall() + 60))
    assert decision.headers()["X-RateLimit-Limit"] == "5"


def test_disabled_limits_give_no_decision() -> None:
    """With limits switched off nothing is counted and no headers are produced."""
    limiter, _ = _limiter("rolling", per_minute=1, per_hour=1)
    limiter.configure(RateLimitConfig(enabled=False))
    assert limiter.hit("k") is None


def _small_limits(per_minute: int = 3) -> SandboxConfig:
    return quiet_config(rate_limit=RateLimitConfig(per_minute=per_minute, per_hour=1000))


def test_every_api_response_carries_the_headers() -> None:
    """200s, 404s, 400s and 403s for a known key all carry the three X-RateLimit headers."""
    with sandbox_client(_small_limits(per_minute=50)) as (client, _):
        responses = [
            client.get("/reseller/catalog", headers=RESELLER),
            client.get("/reseller/orders/ord-missing", headers=RESELLER),
            client.get("/reseller/catalog", params={"sortBy": "x"}, headers=RESELLER),
            client.get("/provider/offers", headers=RESELLER),
        ]
    assert [r.status_code for r in responses] == [200, 404, 400, 403]
    remaining = [int(r.headers["X-RateLimit-Remaining"]) for r in responses]
    assert remaining == [49, 48, 47, 46]
    assert all(r.headers["X-RateLimit-Limit"] == "50" for r in responses)
    assert all(int(r.headers["X-RateLimit-Reset"]) > 1_600_000_000 for r in responses)


def test_429_answer_over_http() -> None:
    """Past the limit the API answers 429 with Retry-After and the documented body."""
    with sandbox_client(_small_limits()) as (client, _):
        for _ in range(3):
            assert client.get("/reseller/catalog", headers=RESELLER).status_code == 200
        refused = client.get("/reseller/catalog", headers=RESELLER)
    assert refused.status_code == 429
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert refused.json() == {
        "statusCode": 429,
        "message": "Too many requests",
        "error": "Too Many Requests",
        "retryAfter": retry_after,
    }
    assert refused.headers["X-RateLimit-Remaining"] == "0"


def test_unauthenticated_and_sandbox_requests_are_not_counted() -> None:
    """401s, /sandbox routes, / and /health neither count nor carry rate-limit headers."""
    with sandbox_client(_small_limits()) as (client, _):
        for _ in range(5):
            unauthorized = client.get("/reseller/catalog", headers={"x-api-key": "wrong"})
            assert unauthorized.status_code == 401
            assert "X-RateLimit-Remaining" not in unauthorized.headers
            for path in ("/sandbox/clock", "/", "/health"):
                open_response = client.get(path)
                assert open_response.status_code == 200
                assert "X-RateLimit-Limit" not in open_response.headers
        first = client.get("/reseller/catalog", headers=RESELLER)
    assert first.headers["X-RateLimit-Remaining"] == "2"


def test_limits_are_per_key_over_http() -> None:
    """The reseller key running out leaves the provider and hybrid keys their own budgets."""
    with sandbox_client(_small_limits()) as (client, _):
        for _ in range(4):
            client.get("/reseller/catalog", headers=RESELLER)
        assert client.get("/reseller/catalog", headers=RESELLER).status_code == 429
        assert client.get("/provider/offers", headers=PROVIDER).status_code == 200
        assert client.get("/reseller/catalog", headers=HYBRID).status_code == 200


def test_put_rate_limit_changes_limits_and_forgets_spending() -> None:
    """PUT /sandbox/rate-limit installs new limits and a fresh budget for every key."""
    with sandbox_client(_small_limits()) as (client, _):
        for _ in range(4):
            client.get("/reseller/catalog", headers=RESELLER)
        changed = client.put(
            "/sandbox/rate-limit", json={"per_minute": 10, "model": "token_bucket"}
        )
        assert changed.status_code == 200 and changed.json()["per_minute"] == 10
        response = client.get("/reseller/catalog", headers=RESELLER)
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Remaining"] == "9"
        assert client.get("/sandbox/rate-limit").json()["model"] == "token_bucket"
        bad = client.put("/sandbox/rate-limit", json={"per_minute": 0})
        assert bad.status_code == 400 and bad.json()["field"] == "per_minute"
        unknown = client.put("/sandbox/rate-limit", json={"per_minut": 5})
        assert unknown.status_code == 400 and unknown.json()["field"] == "per_minut"


def test_switching_limits_off_drops_the_headers() -> None:
    """With limits disabled the API answers without X-RateLimit headers and never 429."""
    with sandbox_client(_small_limits(per_minute=1)) as (client, _):
        client.put("/sandbox/rate-limit", json={"enabled": False})
        responses = [client.get("/reseller/catalog", headers=RESELLER) for _ in range(5)]
    assert {r.status_code for r in responses} == {200}
    assert all("X-RateLimit-Limit" not in r.headers for r in responses)
