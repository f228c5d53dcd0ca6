"""Per-key rate limits in real time: a short and a long window, as a rolling log or token buckets.

Limits govern the client's real pace, so they run on the monotonic clock, never on the sandbox's
virtual clock. Only authenticated requests count (a 401 has no key to charge), and a refused
request does not use up the window, so a client that waits `Retry-After` always gets through.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from offergrid_sandbox.config import RateLimitConfig
from offergrid_sandbox.schemas import error_body


@dataclass(frozen=True)
class RateDecision:
    """Whether one request may pass, and what the X-RateLimit-* headers say about it."""

    allowed: bool
    limit: int
    remaining: int
    reset_at: float  # epoch seconds when the reported window frees up
    retry_after: int | None = None  # whole seconds, >= 1, only when refused

    def headers(self) -> dict[str, str]:
        """The rate-limit headers for this decision (plus Retry-After when refused)."""
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
        }
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers

    def body(self) -> dict[str, object]:
        """The documented 429 body."""
        body = error_body(429, "Too many requests")
        body["retryAfter"] = self.retry_after
        return body


@dataclass
class _Window:
    limit: int
    seconds: float


class _Rolling:
    """A sliding log: at most `limit` requests in any `seconds`-long stretch."""

    def __init__(self, window: _Window) -> None:
        self.window = window
        self.stamps: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self.stamps and self.stamps[0] <= now - self.window.seconds:
            self.stamps.popleft()

    def remaining(self, now: float) -> int:
        self._trim(now)
        return self.window.limit - len(self.stamps)

    def wait(self, now: float) -> float:
        """Seconds until one more request fits."""
        if self.remaining(now) > 0:
            return 0.0
        return self.stamps[0] + self.window.seconds - now

    def reset_in(self, now: float) -> float:
        """Seconds until the oldest counted request leaves the window."""
        self._trim(now)
        return self.stamps[0] + self.window.seconds - now if self.stamps else 0.0

    def take(self, now: float) -> None:
        self.stamps.append(now)


class _Bucket:
    """A token bucket of `limit` tokens refilled evenly over `seconds`."""

    def __init__(self, window: _Window, now: float) -> None:
        self.window = window
        self.tokens = float(window.limit)
        self.at = now

    @property
    def rate(self) -> float:
        return self.window.limit / self.window.seconds

    def _refill(self, now: float) -> None:
        self.tokens = min(self.window.limit, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def remaining(self, now: float) -> int:
        self._refill(now)
        return math.floor(self.tokens)

    def wait(self, now: float) -> float:
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def reset_in(self, now: float) -> float:
        """Seconds until the bucket is full again."""
        self._refill(now)
        return (self.window.limit - self.tokens) / self.rate

    def take(self, now: float) -> None:
        self.tokens -= 1


_Counter = _Rolling | _Bucket


class RateLimiter:
    """Both windows of `RateLimitConfig` for every key; thread-safe; reconfigurable at runtime."""

    def __init__(
        self,
        config: RateLimitConfig,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._monotonic = monotonic
        self._wall = wall
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[_Counter, _Counter]] = {}
        self.config = config

    def configure(self, config: RateLimitConfig) -> None:
        """Use new limits from now on, forgetting what each key has spent."""
        with self._lock:
            self.config = config
            self._keys.clear()

    def reset(self) -> None:
        """Forget what each key has spent."""
        with self._lock:
            self._keys.clear()

    def _counters(self, key_id: str, now: float) -> tuple[_Counter, _Counter]:
        counters = self._keys.get(key_id)
        if counters is None:
            short = _Window(self.config.per_minute, self.config.minute_seconds)
            long = _Window(self.config.per_hour, self.config.hour_seconds)
            if self.config.model == "token_bucket":
                counters = (_Bucket(short, now), _Bucket(long, now))
            else:
                counters = (_Rolling(short), _Rolling(long))
            self._keys[key_id] = counters
        return counters

    def hit(self, key_id: str) -> RateDecision | None:
        """Charge one request to `key_id`; None when limits are switched off."""
        with self._lock:
            if not self.config.enabled:
                return None
            now = self._monotonic()
            wall = self._wall()
            counters = self._counters(key_id, now)
            waits = [c.wait(now) for c in counters]
            if any(w > 0 for w in waits):
                worst = max(range(len(counters)), key=lambda i: waits[i])
                refused = counters[worst]
                return RateDecision(
                    allowed=False,
                    limit=refused.window.limit,
                    remaining=0,
                    reset_at=wall + refused.reset_in(now),
                    retry_after=max(1, math.ceil(waits[worst])),
                )
            for counter in counters:
                counter.take(now)
            # Report the tighter window, the one the client will run into first.
            tight = min(counters, key=lambda c: c.remaining(now))
            return RateDecision(
                allowed=True,
                limit=tight.window.limit,
                remaining=tight.remaining(now),
                reset_at=wall + tight.reset_in(now),
            )
