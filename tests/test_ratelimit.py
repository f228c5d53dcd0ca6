"""The shared Offergrid rate limit: the database sliding log every process of a key shares."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy import Engine

from models.tables import RateLimitCall
from offergrid import OffergridClient
from offergrid.errors import RateLimitError
from offergrid_sandbox.config import RESELLER_KEY, RateLimitConfig, SandboxConfig
from offergrid_sandbox.server import running_sandbox
from preclose.settings import Settings
from preclose.storage.ratelimit import (
    DatabaseRateLimiter,
    RateLimiter,
    RateWindows,
    get_rate_limiter,
    key_fingerprint,
    rate_limited_http_client,
)
from tests import fixtures_db

engine = fixtures_db.engine  # a migrated database per test: SQLite file, then PostgreSQL

ROOT = Path(__file__).resolve().parents[1]


def max_in_window(stamps: list[float], span: float) -> int:
    """The most timestamps that fall inside any half-open window of `span` seconds."""
    ordered = sorted(stamps)
    best, start = 0, 0
    for end, stamp in enumerate(ordered):
        while stamp - ordered[start] >= span:
            start += 1
        best = max(best, end - start + 1)
    return best


def hammer(limiter: RateLimiter, *, threads: int, calls: int) -> list[float]:
    """Run `threads` threads making `calls` acquisitions each; the time each was admitted."""
    stamps: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(calls):
                limiter.acquire()
                with lock:
                    stamps.append(time.time())
        except BaseException as err:  # surfaced below, not lost in a thread
            errors.append(err)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not errors, errors
    return stamps


def admitted(engine: Engine, limiter: DatabaseRateLimiter) -> list[float]:
    """The admission times the limiter recorded for its key (its own clock, not a thread's)."""
    table = RateLimitCall.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(table.c.at).where(table.c.key_fingerprint == limiter.fingerprint)
        )
        return [float(at) for (at,) in rows]


# The tests time each call when acquire() returns, a little after the limiter admitted it; a margin
# wider than that scheduling jitter keeps what they measure within the window.
TEST_MARGIN = 0.1


def _db_limiter(engine: Engine, windows: RateWindows) -> DatabaseRateLimiter:
    return DatabaseRateLimiter(
        engine, fingerprint=uuid.uuid4().hex[:16], windows=windows, margin_seconds=TEST_MARGIN
    )


# Keys ----------------------------------------------------------------------------------------


def test_fingerprint_is_stable_and_one_way() -> None:
    """A key's fingerprint is 16 hex digits, the same for str and SecretStr, and not the key."""
    key = "og_live_supersecret_123"
    fingerprint = key_fingerprint(key)
    assert fingerprint == key_fingerprint(SecretStr(key))
    assert len(fingerprint) == 16 and int(fingerprint, 16) >= 0
    assert key not in fingerprint and fingerprint != key_fingerprint(key + "x")


def test_limiter_never_shows_the_key(engine: Engine) -> None:
    """The limiter built from settings knows the key only by fingerprint, in repr and in rows."""
    key = "og_live_supersecret_123"
    limiter = get_rate_limiter(key, settings=Settings(), engine=engine)
    limiter.acquire()
    assert key not in repr(limiter)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT key_fingerprint FROM rate_limit_key").all()
    assert rows == [(key_fingerprint(key),)]


def test_windows_follow_settings_scale() -> None:
    """The windows come from settings, their lengths scaled by rate_limit_window_scale."""
    settings = Settings(
        rate_limit_per_minute=50, rate_limit_per_hour=900, rate_limit_window_scale=0.5
    )
    assert RateWindows.from_settings(settings) == RateWindows(50, 900, 30.0, 1800.0)


@pytest.mark.parametrize("n", [0, -1, 11])
def test_acquire_rejects_impossible_counts(engine: Engine, n: int) -> None:
    """Asking for no calls, or more than a window holds, is an error naming `n`."""
    limiter = _db_limiter(engine, RateWindows(10, 100, 1.0, 10.0))
    with pytest.raises(ValueError, match="n must be between 1 and 10"):
        limiter.acquire(n)


# The database sliding log ----------------------------------------------------------------------


def test_database_limiter_keeps_the_minute_window(engine: Engine) -> None:
    """Four threads hammering one key never get more than per_minute calls into any window."""
    windows = RateWindows(per_minute=10, per_hour=10_000, minute_seconds=0.5, hour_seconds=60)
    limiter = _db_limiter(engine, windows)
    stamps = hammer(limiter, threads=3, calls=8)
    assert len(stamps) == 24
    # Counted on the admission times the limiter committed: a thread descheduled between its
    # admission and its own time stamp (a busy machine) would otherwise seem to crowd a window.
    # (The hour window here is 60 s, so the limiter prunes none of this log while it runs.)
    log = admitted(engine, limiter)
    assert len(log) == 24
    assert max_in_window(log, windows.minute_seconds) == 10  # the ceiling, and no more
    # The first window's burst went through at once, so the limiter is not merely slow.
    assert sorted(stamps)[9] - min(stamps) < windows.minute_seconds


def test_database_limiter_keeps_the_hour_window(engine: Engine) -> None:
    """When the long window is the tighter one, it holds too."""
    windows = RateWindows(per_minute=4, per_hour=6, minute_seconds=0.1, hour_seconds=0.6)
    stamps = hammer(_db_limiter(engine, windows), threads=3, calls=4)
    assert max_in_window(stamps, windows.hour_seconds) <= 6
    assert max_in_window(stamps, windows.minute_seconds) <= 4


def test_database_limiter_counts_several_calls_at_once(engine: Engine) -> None:
    """acquire(n) takes n slots: a second acquire(3) waits when only 5 fit in the window."""
    windows = RateWindows(per_minute=5, per_hour=100, minute_seconds=0.4, hour_seconds=10)
    limiter = _db_limiter(engine, windows)
    limiter.acquire(3)
    assert limiter.try_acquire(3) > 0
    assert limiter.try_acquire(2) == 0


def test_defer_holds_every_caller_and_never_shortens(engine: Engine) -> None:
    """After defer(s), the next call waits about s; a shorter later defer changes nothing."""
    windows = RateWindows(per_minute=100, per_hour=1000, minute_seconds=1, hour_seconds=10)
    limiter = _db_limiter(engine, windows)
    other = DatabaseRateLimiter(engine, fingerprint=limiter.fingerprint, windows=windows)
    limiter.defer(0.4)
    limiter.defer(0.1)
    wait = other.try_acquire()
    assert 0.25 < wait <= 0.4
    started = time.monotonic()
    other.acquire()
    assert time.monotonic() - started >= wait - 0.05


_CHILD = """
import json, sys, time
from preclose.storage.db import make_engine
from preclose.storage.ratelimit import DatabaseRateLimiter, RateWindows
url, fingerprint, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
windows = RateWindows(per_minute=10, per_hour=10_000, minute_seconds=0.5, hour_seconds=60)
limiter = DatabaseRateLimiter(
    make_engine(url), fingerprint=fingerprint, windows=windows, margin_seconds=0.1
)
print("ready", flush=True)
sys.stdin.readline()
stamps = []
for _ in range(calls):
    limiter.acquire()
    stamps.append(time.time())
print(json.dumps(stamps), flush=True)
"""


@pytest.mark.slow  # two real processes
def test_two_processes_share_one_database_limit(engine: Engine) -> None:
    """Two processes on one key and one database together stay within the window."""
    url = engine.url.render_as_string(hide_password=False)
    fingerprint = uuid.uuid4().hex[:16]
    children = [
        subprocess.Popen(  # noqa: S603 - our own interpreter running the script above
            [sys.executable, "-c", _CHILD, url, fingerprint, "12"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    stamps: list[float] = []
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for child in children:  # release both at once
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        for child in children:
            out, _ = child.communicate(timeout=60)
            assert child.returncode == 0
            stamps += json.loads(out.strip().splitlines()[-1])
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    assert len(stamps) == 24
    assert max_in_window(stamps, 0.5) == 10


# The Prefect global concurrency limit ---------------------------------------------------------


def test_settle_dates_a_call_by_its_answer(engine: Engine) -> None:
    """A settled call counts from its answer, not its admission, so the window ends later."""
    windows = RateWindows(per_minute=1, per_hour=100, minute_seconds=0.5, hour_seconds=10)
    limiter = _db_limiter(engine, windows)
    reservation = limiter.reserve()
    time.sleep(0.3)  # the call is on the wire
    limiter.settle(reservation)
    assert limiter.try_acquire() > 0.45  # a full window from the answer, not 0.2 s


# Against the local Offergrid ------------------------------------------------------------------


def _catalog_storm(base_url: str, limiter: RateLimiter, *, threads: int, calls: int) -> list[str]:
    """Threads calling the catalog through `limiter`'s HTTP hooks; the outcome of every call."""
    outcomes: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        with (
            rate_limited_http_client(limiter, timeout=10) as http,
            OffergridClient(RESELLER_KEY, base_url=base_url, http_client=http) as client,
        ):
            for _ in range(calls):
                try:
                    client.list_offers()
                    outcome = "ok"
                except RateLimitError:
                    outcome = "429"
                with lock:
                    outcomes.append(outcome)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    return outcomes


_SCALED = RateLimitConfig(per_minute=10, per_hour=10_000, minute_seconds=0.5, hour_seconds=30)
_SCALED_WINDOWS = RateWindows(per_minute=10, per_hour=10_000, minute_seconds=0.5, hour_seconds=30)


def test_database_limiter_gets_no_429_at_the_limit(engine: Engine) -> None:
    """Threads going flat out through the database limiter never hit the sandbox's 429."""
    limiter = DatabaseRateLimiter(
        engine, fingerprint=key_fingerprint(RESELLER_KEY), windows=_SCALED_WINDOWS
    )
    with running_sandbox(SandboxConfig(rate_limit=_SCALED)) as server:
        outcomes = _catalog_storm(server.url, limiter, threads=3, calls=7)
    assert outcomes.count("ok") == 21 and "429" not in outcomes


@pytest.mark.slow  # waits out a real Retry-After on a loopback sandbox
def test_a_429_defers_every_caller_of_the_key(engine: Engine) -> None:
    """When another user of the key spent the window, our 429 holds the limiter for Retry-After."""
    windows = RateWindows(per_minute=100, per_hour=10_000, minute_seconds=60, hour_seconds=3600)
    limiter = DatabaseRateLimiter(
        engine, fingerprint=key_fingerprint(RESELLER_KEY), windows=windows
    )
    # A 3 s window: wide enough that the other process's calls and ours share it on a busy
    # machine (a 1 s window let them fall into two windows under CI's load, and no 429 came).
    tight = RateLimitConfig(per_minute=2, per_hour=10_000, minute_seconds=3.0, hour_seconds=60)
    with running_sandbox(SandboxConfig(rate_limit=tight)) as server:
        with OffergridClient(RESELLER_KEY, base_url=server.url) as elsewhere:
            elsewhere.list_offers()  # a process that does not share our limiter
            elsewhere.list_offers()
        with (
            rate_limited_http_client(limiter, timeout=10) as http,
            OffergridClient(RESELLER_KEY, base_url=server.url, http_client=http) as client,
        ):
            with pytest.raises(RateLimitError) as raised:
                client.list_offers()
            assert raised.value.retry_after is not None
            assert 1.0 <= raised.value.retry_after <= 3.0
            assert limiter.try_acquire() > 0.8  # everyone on this key now waits out the 429
            started = time.monotonic()
            assert client.list_offers()  # the next call waits, then gets through
            assert time.monotonic() - started >= 0.8
