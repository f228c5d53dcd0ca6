"""The Prefect global concurrency limit as an Offergrid rate limiter: what the benchmark compares.

`benchmarks/rate_limiter.py` measures it against preclose's `DatabaseRateLimiter`; nothing in the
app uses it. A bucket of capacity C refilled at r per second admits C + r*T calls in any T seconds,
so `token_bucket` picks C and r with C + r*T <= limit for both windows. The server decays slots in
whole units counted from the limit's last update, and refused attempts update it too, so under
contention much of the refill is lost; and only processes talking to the same Prefect server share
it (the ephemeral in-process server shares nothing). Measured: 36-40% of the ceiling, against the
database limiter's 100% (see `preclose/ratelimit.py`).
"""

from __future__ import annotations

import math

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.concurrency.sync import rate_limit
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from preclose.storage.ratelimit import RateWindows

LIMIT_NAME_PREFIX = "offergrid-api"


def prefect_limit_name(fingerprint: str) -> str:
    """The Prefect global concurrency limit's name for one key: "offergrid-api:<fingerprint>"."""
    return f"{LIMIT_NAME_PREFIX}:{fingerprint}"


def token_bucket(windows: RateWindows, margin_seconds: float | None = None) -> tuple[int, float]:
    """A bucket (capacity, refill per second) that never admits more than either window allows.

    A bucket of capacity C refilled at r per second admits at most C + r * T calls in any T
    seconds, so r = (limit - C) / T for the tighter window; a small C keeps the refill fast.
    """
    margin = windows.default_margin() if margin_seconds is None else margin_seconds
    capacity = max(1, min(windows.per_minute, windows.per_hour) // 10)
    rate = min(
        (windows.per_minute - capacity) / (windows.minute_seconds + margin),
        (windows.per_hour - capacity) / (windows.hour_seconds + margin),
    )
    if rate <= 0:
        raise ValueError("the windows are too small for a token bucket (per_minute must be >= 2)")
    return capacity, rate


def ensure_offergrid_rate_limit(
    fingerprint: str, windows: RateWindows | None = None, *, margin_seconds: float | None = None
) -> str:
    """Create or update (and activate) the key's Prefect rate limit; returns its name."""
    name = prefect_limit_name(fingerprint)
    capacity, rate = token_bucket(windows or RateWindows(), margin_seconds)
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(
                        name=name, limit=capacity, slot_decay_per_second=rate, active=True
                    )
                )
                return name
            except ObjectAlreadyExists:
                existing = client.read_global_concurrency_limit_by_name(name)
        if (existing.limit, existing.slot_decay_per_second, existing.active) != (
            capacity,
            rate,
            True,
        ):
            client.update_global_concurrency_limit(
                name,
                GlobalConcurrencyLimitUpdate(
                    limit=capacity, slot_decay_per_second=rate, active=True
                ),
            )
    return name


class PrefectRateLimiter:
    """A token bucket kept by the Prefect server as a global concurrency limit with slot decay."""

    def __init__(
        self,
        *,
        fingerprint: str,
        windows: RateWindows | None = None,
        margin_seconds: float | None = None,
        ensure: bool = True,
    ) -> None:
        """Limit the key known by `fingerprint`; `ensure` creates or updates the limit first."""
        self.windows = windows or RateWindows()
        self.capacity, self.rate = token_bucket(self.windows, margin_seconds)
        self.name = (
            ensure_offergrid_rate_limit(fingerprint, self.windows, margin_seconds=margin_seconds)
            if ensure
            else prefect_limit_name(fingerprint)
        )

    def __repr__(self) -> str:
        """The limiter by limit name; never the key."""
        return f"PrefectRateLimiter(name={self.name!r}, capacity={self.capacity})"

    def acquire(self, n: int = 1) -> None:
        """Block until the bucket has `n` slots; fails if the limit does not exist (strict)."""
        if not 1 <= n <= self.capacity:
            raise ValueError(f"n must be between 1 and {self.capacity} (the bucket's capacity)")
        rate_limit(self.name, occupy=n, strict=True)

    def defer(self, seconds: float) -> None:
        """Fill the bucket past its capacity so that it takes `seconds` to admit the next call."""
        overfill = self.capacity - 1 + math.ceil(max(0.0, seconds) * self.rate)
        with get_client(sync_client=True) as client:
            current = client.read_global_concurrency_limit_by_name(self.name)
            if current.active_slots < overfill:
                client.update_global_concurrency_limit(
                    self.name, GlobalConcurrencyLimitUpdate(active_slots=overfill)
                )
