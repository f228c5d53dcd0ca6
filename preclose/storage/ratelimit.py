"""One Offergrid rate limit shared by every process and worker that uses the same API key.

Offergrid allows 100 requests in any rolling minute and 10,000 in any rolling hour per key. Two
limiters keep us under both, behind one small interface (`RateLimiter.acquire(n)` blocks until the
calls may go; `RateLimiter.defer(seconds)` holds every caller of the key, for a 429's Retry-After):

- `DatabaseRateLimiter`, the default, keeps a sliding log of call times per key fingerprint in our
  own database (SQLite or PostgreSQL, the app's URL). Each attempt is one short transaction holding
  the key's lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: SELECT ... FOR UPDATE on the key's row) that
  counts the calls in both windows and admits, or says how long until the oldest call leaves.
  Through the HTTP hooks (`rate_limited_http_client`) each call is re-dated when its answer arrives
  (`reserve`/`settle`): Offergrid counted it somewhere in between, so our window never ends before
  Offergrid's, however long the call queued. It mirrors Offergrid's own rolling windows.
- The alternative measured against it, a Prefect global concurrency limit with slot decay (a token
  bucket on the Prefect server), lives beside its benchmark in `benchmarks/prefect_limiter.py`:
  only processes talking to the same Prefect server share it, and under contention much of its
  refill is lost.

Measured with benchmarks/rate_limiter.py (local Offergrid at 100 calls per 3 s window, 4 windows,
2 processes x 4 threads): the database limiter sent 400 of 400 possible calls (100% of the
ceiling) with zero 429s, on SQLite and on PostgreSQL; the Prefect limit sent 145-160 (36-40%), also
with zero 429s, and no choice of capacity lifted it above about 40%. Hence the default. Both add a
small margin (2% of the minute window) to each window, for calls whose answer never comes.

Keys never appear in plain text: limits and rows are named by `key_fingerprint` (a SHA-256 prefix).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import httpx
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from models.tables import RateLimitCall, RateLimitKey

if TYPE_CHECKING:
    from preclose.settings import Settings

logger = logging.getLogger(__name__)

# Share of the minute window added to both windows: covers calls never settled (no answer came,
# or a limiter used without the HTTP hooks), dated by admission though Offergrid counts them later.
DEFAULT_MARGIN_SHARE = 0.02


def key_fingerprint(api_key: str | SecretStr) -> str:
    """A short, stable, one-way name for an API key (16 hex digits of its SHA-256)."""
    secret = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
    if not secret:
        raise ValueError("api_key must not be empty")
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RateWindows:
    """Offergrid's two rolling windows: calls allowed and their lengths in real seconds."""

    per_minute: int = 100
    per_hour: int = 10_000
    minute_seconds: float = 60.0
    hour_seconds: float = 3600.0

    def __post_init__(self) -> None:
        """Reject windows that cannot admit anything."""
        for name in ("per_minute", "per_hour", "minute_seconds", "hour_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> RateWindows:
        """The windows from settings, lengths scaled by `rate_limit_window_scale`."""
        scale = settings.rate_limit_window_scale
        return cls(
            per_minute=settings.rate_limit_per_minute,
            per_hour=settings.rate_limit_per_hour,
            minute_seconds=60.0 * scale,
            hour_seconds=3600.0 * scale,
        )

    def default_margin(self) -> float:
        """The default safety margin in seconds added to both windows."""
        return DEFAULT_MARGIN_SHARE * self.minute_seconds

    def check(self, n: int) -> None:
        """Reject a request for more calls than a window can ever admit."""
        if n < 1 or n > min(self.per_minute, self.per_hour):
            raise ValueError(f"n must be between 1 and {min(self.per_minute, self.per_hour)}")


class RateLimiter(Protocol):
    """Blocks callers so that every process using one API key stays within Offergrid's limits."""

    def acquire(self, n: int = 1) -> None:
        """Block until `n` more calls may go, and count them."""
        ...

    def defer(self, seconds: float) -> None:
        """Hold every caller of this key for `seconds` from now (Offergrid's Retry-After)."""
        ...


@dataclass(frozen=True)
class Reservation:
    """Calls a limiter admitted, to settle once their answer arrives."""

    ids: tuple[int, ...]


@runtime_checkable
class SettlingRateLimiter(RateLimiter, Protocol):
    """A limiter that can date a call by its answer's arrival instead of its admission."""

    def reserve(self, n: int = 1) -> Reservation:
        """Block until `n` more calls may go, count them, and return them for `settle`."""
        ...

    def settle(self, reservation: Reservation) -> None:
        """Count the reserved calls from now: Offergrid has counted them by its answer."""
        ...


# Database sliding log ----------------------------------------------------------------------------


_KEYS: sa.Table = RateLimitKey.__table__  # type: ignore[attr-defined]
_CALLS: sa.Table = RateLimitCall.__table__  # type: ignore[attr-defined]


class DatabaseRateLimiter:
    """A sliding-log limiter whose log lives in our database, shared by every process using it."""

    def __init__(
        self,
        engine: Engine,
        *,
        fingerprint: str,
        windows: RateWindows | None = None,
        margin_seconds: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Limit the key known by `fingerprint` through the tables behind `engine`."""
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(f"engine: unsupported database {engine.dialect.name!r}")
        self.engine = engine
        self.fingerprint = fingerprint
        self.windows = windows or RateWindows()
        margin = self.windows.default_margin() if margin_seconds is None else margin_seconds
        if margin < 0:
            raise ValueError("margin_seconds must not be negative")
        self.minute_span = self.windows.minute_seconds + margin
        self.hour_span = self.windows.hour_seconds + margin
        self._sleep = sleep
        self._ensure_key_row()

    def __repr__(self) -> str:
        """The limiter by fingerprint and windows; never the key."""
        return f"DatabaseRateLimiter(fingerprint={self.fingerprint!r}, windows={self.windows!r})"

    def acquire(self, n: int = 1) -> None:
        """Block until `n` more calls fit in both windows, then record them."""
        self.reserve(n)

    def reserve(self, n: int = 1) -> Reservation:
        """Block until `n` more calls fit in both windows; record them and return them to settle."""
        self.windows.check(n)
        while True:
            wait, ids = self._attempt(n)
            if wait <= 0:
                return Reservation(ids)
            self._sleep(wait)

    def try_acquire(self, n: int = 1) -> float:
        """Record `n` calls and return 0 if they fit now, else return the seconds to wait."""
        self.windows.check(n)
        return self._attempt(n)[0]

    def settle(self, reservation: Reservation) -> None:
        """Re-date reserved calls to now, their answer's arrival: Offergrid counted them by then."""
        if not reservation.ids:
            return
        with self.engine.begin() as conn:
            now = self._now(conn)
            conn.execute(
                sa.update(_CALLS)
                .where(_CALLS.c.id.in_(reservation.ids), _CALLS.c.at < now)
                .values(at=now)
            )

    def _attempt(self, n: int) -> tuple[float, tuple[int, ...]]:
        """One locked look at the log: (0, new call ids) when `n` calls fit, else (wait, ())."""
        with self.engine.connect() as conn, conn.begin():
            paused_until = self._lock(conn)
            now = self._now(conn)
            fp = _CALLS.c.key_fingerprint == self.fingerprint
            conn.execute(sa.delete(_CALLS).where(fp, _CALLS.c.at <= now - self.hour_span))
            waits = [paused_until - now]
            for span, allowed in (
                (self.minute_span, self.windows.per_minute),
                (self.hour_span, self.windows.per_hour),
            ):
                in_window = sa.and_(fp, _CALLS.c.at > now - span)
                count = conn.execute(sa.select(sa.func.count()).where(in_window)).scalar_one()
                excess = count + n - allowed
                if excess > 0:
                    # The window has room again once the `excess`-th oldest call leaves it.
                    leaving = conn.execute(
                        sa.select(_CALLS.c.at)
                        .where(in_window)
                        .order_by(_CALLS.c.at)
                        .offset(excess - 1)
                        .limit(1)
                    ).scalar_one()
                    waits.append(leaving + span - now)
            wait = max(waits)
            if wait > 0:
                return wait, ()
            ids = conn.execute(
                sa.insert(_CALLS).returning(_CALLS.c.id, sort_by_parameter_order=True),
                [{"key_fingerprint": self.fingerprint, "at": now}] * n,
            ).scalars()
            return 0.0, tuple(ids)

    def defer(self, seconds: float) -> None:
        """Hold every caller of this key until `seconds` from now (never shortens a pause)."""
        with self.engine.connect() as conn, conn.begin():
            paused_until = self._lock(conn)
            until = self._now(conn) + max(0.0, seconds)
            if until > paused_until:
                conn.execute(
                    sa.update(_KEYS)
                    .where(_KEYS.c.key_fingerprint == self.fingerprint)
                    .values(paused_until=until)
                )

    def _lock(self, conn: sa.Connection) -> float:
        """Take the key's lock for this transaction; returns its `paused_until`."""
        key = _KEYS.c.key_fingerprint == self.fingerprint
        if conn.dialect.name == "sqlite":
            # The write lock up front: the count and the insert below see no other writer.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            conn.execute(sa.update(_KEYS).where(key).values(attempts=_KEYS.c.attempts + 1))
            paused = conn.execute(sa.select(_KEYS.c.paused_until).where(key)).scalar_one()
        else:
            paused = conn.execute(
                sa.select(_KEYS.c.paused_until).where(key).with_for_update()
            ).scalar_one()
            conn.execute(sa.update(_KEYS).where(key).values(attempts=_KEYS.c.attempts + 1))
        return float(paused)

    @staticmethod
    def _now(conn: sa.Connection) -> float:
        if conn.dialect.name == "postgresql":
            # The database's clock, so workers on several hosts share one time line.
            return float(
                conn.execute(sa.text("SELECT extract(epoch from clock_timestamp())")).scalar_one()
            )
        return time.time()  # SQLite: every user is on this host

    def _ensure_key_row(self) -> None:
        try:
            with self.engine.begin() as conn:
                exists = conn.execute(
                    sa.select(_KEYS.c.key_fingerprint).where(
                        _KEYS.c.key_fingerprint == self.fingerprint
                    )
                ).first()
                if exists is None:
                    conn.execute(sa.insert(_KEYS).values(key_fingerprint=self.fingerprint))
        except IntegrityError:
            pass  # another process inserted it first: exactly what was needed


# Wiring ------------------------------------------------------------------------------------------


def get_rate_limiter(
    api_key: str | SecretStr,
    *,
    settings: Settings | None = None,
    engine: Engine | None = None,
) -> RateLimiter:
    """The shared database limiter for `api_key`, windows from settings."""
    from preclose.settings import get_settings

    settings = settings or get_settings()
    windows = RateWindows.from_settings(settings)
    fingerprint = key_fingerprint(api_key)
    if engine is None:
        from preclose.storage.db import get_engine

        engine = get_engine(settings.database_url)
    return DatabaseRateLimiter(engine, fingerprint=fingerprint, windows=windows)


_RESERVATION = "preclose.rate_limit_reservation"


def rate_limit_hooks(limiter: RateLimiter) -> dict[str, list[Callable[..., Any]]]:
    """httpx event hooks: take a slot before every request; defer the key on a 429's Retry-After."""

    def before_request(request: httpx.Request) -> None:
        if isinstance(limiter, SettlingRateLimiter):
            request.extensions[_RESERVATION] = limiter.reserve()
        else:
            limiter.acquire()

    def after_response(response: httpx.Response) -> None:
        reservation = response.request.extensions.get(_RESERVATION)
        if isinstance(reservation, Reservation) and isinstance(limiter, SettlingRateLimiter):
            # Offergrid counted the call somewhere between admission and this answer: dating it
            # by the answer keeps our window at least as long as Offergrid's.
            limiter.settle(reservation)
        if response.status_code != 429:
            return
        from offergrid.errors import RateLimitError, make_status_error

        response.read()
        # The client's own mapping reads Retry-After (header or body), so both agree on the wait.
        error = make_status_error(response, response.request.url.path)
        if isinstance(error, RateLimitError) and error.retry_after:
            logger.info(
                "Offergrid asked to wait %.1f s: holding every caller of the key", error.retry_after
            )
            limiter.defer(error.retry_after)

    return {"request": [before_request], "response": [after_response]}


def rate_limited_http_client(limiter: RateLimiter, **kwargs: Any) -> httpx.Client:
    """An httpx client (for `OffergridClient(http_client=...)`) whose every request is limited."""
    return httpx.Client(event_hooks=rate_limit_hooks(limiter), **kwargs)
