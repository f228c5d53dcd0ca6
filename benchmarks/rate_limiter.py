"""Benchmark: how much of Offergrid's rate-limit ceiling each shared limiter uses, and at what cost.

Starts the local Offergrid on a loopback port with a scaled window (by default 100 calls per 3 s,
Offergrid's 100 per minute sped up 20 times), then, for each limiter in turn, runs T threads in each
of P processes that hammer GET /reseller/catalog through that limiter for a fixed number of windows,
and prints: requests sent, 429s received, and the share of the ceiling used (requests admitted /
(windows x limit)). Each limiter gets its own API key, so one run cannot eat into the next one's
window. Bounded in calls and time, loopback only.

    .venv/bin/python benchmarks/rate_limiter.py
    .venv/bin/python benchmarks/rate_limiter.py --windows 6 --processes 3 --threads 4 \
        --limiter database --database-url postgresql+psycopg://user@127.0.0.1:5432/scratch
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from offergrid import OffergridClient
from offergrid.errors import RateLimitError
from offergrid_sandbox.config import RESELLER_TEAM, ApiKeyConfig, RateLimitConfig, SandboxConfig
from offergrid_sandbox.server import running_sandbox
from preclose.storage.db import make_engine, open_database
from preclose.storage.ratelimit import (
    DatabaseRateLimiter,
    RateLimiter,
    RateWindows,
    Reservation,
    SettlingRateLimiter,
    key_fingerprint,
    rate_limited_http_client,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(
    0, str(ROOT)
)  # run as a script: the limiter beside it is benchmarks.prefect_limiter

from benchmarks.prefect_limiter import PrefectRateLimiter, ensure_offergrid_rate_limit  # noqa: E402

START_GRACE_SECONDS = 4.0  # time for the worker processes to import and connect before the start


@dataclass(frozen=True)
class Job:
    """What one worker process runs."""

    kind: str
    base_url: str
    api_key: str
    windows: dict[str, Any]
    database_url: str
    prefect_api_url: str | None
    threads: int
    start_at: float
    stop_at: float


@dataclass
class Tally:
    """What some workers saw."""

    sent: int = 0
    ok: int = 0
    rate_limited: int = 0
    other_errors: int = 0

    def add(self, other: Tally) -> None:
        """Fold another tally into this one."""
        self.sent += other.sent
        self.ok += other.ok
        self.rate_limited += other.rate_limited
        self.other_errors += other.other_errors


def _limiter(job: Job) -> RateLimiter:
    windows = RateWindows(**job.windows)
    fingerprint = key_fingerprint(job.api_key)
    if job.kind == "prefect":
        return PrefectRateLimiter(fingerprint=fingerprint, windows=windows, ensure=False)
    return DatabaseRateLimiter(
        make_engine(job.database_url), fingerprint=fingerprint, windows=windows
    )


class _TimeUp(Exception):
    """The run's time is up."""


class _UntilDeadline:
    """A limiter that stops its caller at the deadline, so a slot won too late goes unused."""

    def __init__(self, inner: RateLimiter, stop_at: float) -> None:
        self.inner = inner
        self.stop_at = stop_at

    def acquire(self, n: int = 1) -> None:
        self.reserve(n)

    def reserve(self, n: int = 1) -> Reservation:
        if isinstance(self.inner, SettlingRateLimiter):
            reservation = self.inner.reserve(n)
        else:
            self.inner.acquire(n)
            reservation = Reservation(())
        if time.time() >= self.stop_at:
            raise _TimeUp
        return reservation

    def settle(self, reservation: Reservation) -> None:
        if isinstance(self.inner, SettlingRateLimiter):
            self.inner.settle(reservation)

    def defer(self, seconds: float) -> None:
        self.inner.defer(seconds)


def run_process(job: Job) -> dict[str, int]:
    """One worker process: `job.threads` threads calling the catalog until `job.stop_at`."""
    if job.prefect_api_url:
        os.environ["PREFECT_API_URL"] = job.prefect_api_url
    limiter = _UntilDeadline(_limiter(job), job.stop_at)
    total, lock = Tally(), threading.Lock()

    def work() -> None:
        mine = Tally()
        # The production path: the client's HTTP hooks take the slot and settle it.
        http = rate_limited_http_client(limiter, timeout=10)
        with OffergridClient(job.api_key, base_url=job.base_url, http_client=http) as client:
            time.sleep(max(0.0, job.start_at - time.time()))
            while True:
                try:
                    client.list_offers()
                    mine.ok += 1
                except _TimeUp:
                    break
                except RateLimitError:
                    mine.rate_limited += 1
                except Exception:
                    mine.other_errors += 1
                mine.sent += 1
        http.close()
        with lock:
            total.add(mine)

    threads = [threading.Thread(target=work) for _ in range(job.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return asdict(total)


def bench(kind: str, args: argparse.Namespace, base_url: str, key: str, **extra: Any) -> Tally:
    """Run one limiter's workers against the sandbox and add up what they saw."""
    window = args.window_seconds
    windows = RateWindows(
        per_minute=args.limit,
        per_hour=args.per_hour,
        minute_seconds=window,
        hour_seconds=window * 60,
    )
    if kind == "prefect":
        ensure_offergrid_rate_limit(key_fingerprint(key), windows)
    start_at = time.time() + START_GRACE_SECONDS
    job = Job(
        kind=kind,
        base_url=base_url,
        api_key=key,
        windows=asdict(windows),
        threads=args.threads,
        start_at=start_at,
        stop_at=start_at + args.windows * window,
        **extra,
    )
    tally = Tally()
    with ProcessPoolExecutor(args.processes, mp_context=get_context("spawn")) as pool:
        for result in pool.map(run_process, [job] * args.processes):
            tally.add(Tally(**result))
    return tally


def main() -> None:
    """Parse the options, start the sandbox (and a Prefect server if needed), print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=4, help="windows to run per limiter")
    parser.add_argument("--limit", type=int, default=100, help="calls allowed per short window")
    parser.add_argument("--per-hour", type=int, default=10_000, help="calls per long window")
    parser.add_argument("--window-seconds", type=float, default=3.0, help="short window length")
    parser.add_argument("--processes", type=int, default=2, help="worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per process")
    parser.add_argument(
        "--limiter", nargs="+", choices=["database", "prefect"], default=["database", "prefect"]
    )
    parser.add_argument("--database-url", help="database for the sliding log (temporary SQLite)")
    args = parser.parse_args()
    if not (1 <= args.windows <= 20 and args.processes <= 8 and args.threads <= 16):
        parser.error("keep it bounded: windows 1..20, processes <= 8, threads <= 16")

    keys = {kind: f"og_bench_{kind}_{os.getpid()}" for kind in args.limiter}
    window = args.window_seconds
    config = SandboxConfig(
        rate_limit=RateLimitConfig(
            per_minute=args.limit,
            per_hour=args.per_hour,
            minute_seconds=window,
            hour_seconds=window * 60,
        ),
        extra_keys=[
            ApiKeyConfig(key=SecretStr(key), team_id=RESELLER_TEAM, role="reseller")
            for key in keys.values()
        ],
    )
    results: dict[str, tuple[Tally, float]] = {}
    with ExitStack() as stack:
        server = stack.enter_context(running_sandbox(config))
        database_url = args.database_url
        if database_url is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="ratebench-"))
            database_url = f"sqlite:///{folder}/limits.db"
        open_database(database_url).dispose()  # the app's schema, the limiter's tables included
        prefect_api_url = None
        if "prefect" in args.limiter:
            from prefect.settings import PREFECT_API_URL
            from prefect.testing.utilities import prefect_test_harness

            os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
            stack.enter_context(prefect_test_harness(server_startup_timeout=60))
            prefect_api_url = PREFECT_API_URL.value()
        for kind in args.limiter:
            started = time.monotonic()
            tally = bench(
                kind,
                args,
                server.url,
                keys[kind],
                database_url=database_url,
                prefect_api_url=prefect_api_url,
            )
            results[kind] = (tally, time.monotonic() - started)

    ceiling = args.windows * args.limit
    print(
        f"\nlocal Offergrid: {args.limit} calls per {window:g} s window, {args.windows} windows; "
        f"{args.processes} processes x {args.threads} threads; ceiling {ceiling} calls"
    )
    print(f"{'limiter':<10}{'sent':>7}{'ok':>7}{'429s':>7}{'errors':>8}{'ceiling used':>14}")
    for kind, (tally, _elapsed) in results.items():
        share = tally.sent / ceiling
        print(
            f"{kind:<10}{tally.sent:>7}{tally.ok:>7}{tally.rate_limited:>7}"
            f"{tally.other_errors:>8}{share:>13.1%}"
        )


if __name__ == "__main__":
    main()
