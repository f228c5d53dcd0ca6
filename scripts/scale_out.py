"""Scale-out, shown: a Prefect server on PostgreSQL, a process work pool, two workers, ~20 closings.

What it starts, all on loopback and all stopped again at the end:

- two fresh PostgreSQL databases on 127.0.0.1:5432 (dropped at the end): one for the Prefect
  server (PREFECT_API_DATABASE_CONNECTION_URL), one for preclose's tables (PRECLOSE_DATABASE_URL);
- the local Offergrid (virtual clock) with its rate-limit windows scaled down, and preclose's
  shared limiter scaled the same way, so the limit binds within seconds instead of minutes;
- `prefect server start` on a free port, a process work pool, every deployment deployed to it
  (`build_deployments(work_pool_name=...)`: flows from this repository as a local source);
- two `prefect worker start` processes on the pool.

Then it works like a CRM: one `coordinate closing` run per closing with `run_deployment(...,
timeout=0)`, all at once; then, day by day on the sandbox clock, two concurrent `place due orders`
runs (the same work twice, as a retry storm or two schedulers would send) and a `sync orders` run.
It prints the flow runs each worker took, the Offergrid requests in the busiest rolling window
against the limit with the 429 count, and the Offergrid order items per plan line.

    .venv/bin/python scripts/scale_out.py                    # 20 closings, about 3 minutes
    .venv/bin/python scripts/scale_out.py --closings 10 --admin-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from fastapi import Request

from offergrid_sandbox.app import create_app
from offergrid_sandbox.config import (
    RESELLER_KEY,
    RateLimitConfig,
    SandboxConfig,
    SimulationConfig,
)
from offergrid_sandbox.state import Sandbox
from preclose.app.serve import ROOT, prefect_server, threaded_app
from preclose.settings import get_settings

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # benchmarks/ helpers when run as a script
from benchmarks.ceiling import BacklogSampler, CeilingShare, SlotReuse, slot_reuse

# Prefect is imported inside functions: its settings are read at import, after the environment
# below is set.

POOL = "preclose-scale-out"
WORKERS = ("worker-a", "worker-b")
WORKER_LIMIT = 3  # flow runs each worker runs at once: 2 cores, each run is a Python process
# A deliberately tight limit (Offergrid allows 100 a minute): 6 calls per 2 s binds within seconds.
LIMIT_PER_WINDOW = 6
WINDOW_SECONDS = 2.0
# Sandbox days at which the place and sync runs go: the sample closings' orders come due here.
DAYS = (7, 14, 21, 28, 35, 45)
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def scale_limit(limit: int, window: float) -> None:
    """Use `limit` calls per `window` seconds for the sandbox, our limiter and the figures."""
    global LIMIT_PER_WINDOW, WINDOW_SECONDS
    LIMIT_PER_WINDOW, WINDOW_SECONDS = limit, window


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def fresh_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new empty PostgreSQL database (its name) for the block, dropped afterwards."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        with admin.connect() as connection:
            # FORCE: a server or worker that died mid-way may still hold a connection.
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def worker(name: str, log: IO[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """`prefect worker start` on the pool, in its own session, stopped at the end of the block."""
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
        [*command, "--type", "process", "--name", name, "--limit", str(WORKER_LIMIT)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def sandbox_config() -> SandboxConfig:
    """The local Offergrid: virtual clock, scaled rate windows, providers that always succeed."""
    scale = WINDOW_SECONDS / 60.0
    return SandboxConfig(
        clock="virtual",
        seed=23,
        rate_limit=RateLimitConfig(
            per_minute=LIMIT_PER_WINDOW,
            per_hour=10_000,
            minute_seconds=WINDOW_SECONDS,
            hour_seconds=3600.0 * scale,
        ),
        simulation=SimulationConfig(rejection_rate=0, failure_rate=0),
    )


def environment(
    *, home: Path, prefect_db: str, app_url: str, sandbox_url: str, api_url: str
) -> dict[str, str]:
    """The variables the server, the workers and their flow runs share."""
    return {
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_API_URL": api_url,
        "PREFECT_API_DATABASE_CONNECTION_URL": prefect_db,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PRECLOSE_DATA_DIR": str(home / "preclose"),
        "PRECLOSE_DATABASE_URL": app_url,
        "PRECLOSE_OFFERGRID_BASE_URL": sandbox_url,
        "PRECLOSE_OFFERGRID_API_KEY": RESELLER_KEY,
        "PRECLOSE_RATE_LIMIT_PER_MINUTE": str(LIMIT_PER_WINDOW),
        "PRECLOSE_RATE_LIMIT_WINDOW_SCALE": str(WINDOW_SECONDS / 60.0),
    }


def deploy_everything() -> list[uuid.UUID]:
    """Create the process pool and deploy every deployment to it, flows from this repository."""
    from prefect import deploy
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    from deployments.build import build_deployments

    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(
                name=POOL,
                type="process",
                base_job_template=ProcessWorker.get_default_base_job_template(),
            )
        )
    ids = deploy(
        *build_deployments(work_pool_name=POOL),
        work_pool_name=POOL,
        build=False,
        push=False,
        print_next_steps_message=False,
        ignore_warnings=True,
    )
    assert isinstance(ids, list)  # sync context: done, not a coroutine
    return ids


def start_run(name: str, parameters: dict[str, Any]) -> uuid.UUID:
    """Start a deployment run the way a CRM does: create it and return at once (timeout=0)."""
    from prefect.deployments import run_deployment

    flow_run = run_deployment(name, parameters=parameters, timeout=0, as_subflow=False)
    run_id: uuid.UUID = flow_run.id  # type: ignore[union-attr]
    return run_id


def wait_for(run_ids: list[uuid.UUID], deadline: float) -> dict[uuid.UUID, str]:
    """Wait until every run has finished (or the deadline passed); their final state names."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    states: dict[uuid.UUID, str] = {}
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids)),
                limit=len(run_ids),
            )
            states = {run.id: str(run.state_type.value if run.state_type else "?") for run in runs}
            if all(state in TERMINAL for state in states.values()) or time.monotonic() > deadline:
                return states
            time.sleep(1.0)


def sample_closings_for(today: Any, count: int) -> list[Any]:
    """`count` closings made from the five samples, each with its own CRM ID."""
    from preclose.app.samples import sample_closings

    samples = sample_closings(today)
    return [
        samples[i % len(samples)].model_copy(update={"crm_closing_id": f"SCALE-{i + 1:03d}"})
        for i in range(count)
    ]


def runs_per_worker(logs: dict[str, Path]) -> dict[str, set[str]]:
    """The flow runs each worker ran, from its log: submitted, less those the server gave away.

    Both workers see every scheduled run; the one whose Pending proposal the server accepts runs
    it, the other logs an aborted submission.
    """
    submitted = re.compile(r"Worker '[^']+' submitting flow run '([0-9a-f-]{36})'")
    aborted = re.compile(r"Aborted submission of flow run '([0-9a-f-]{36})'")
    out: dict[str, set[str]] = {}
    for name, path in logs.items():
        text = path.read_text(errors="replace")
        out[name] = set(submitted.findall(text)) - set(aborted.findall(text))
    return out


def busiest_window(times: list[float], width: float) -> int:
    """The most calls in any rolling window of `width` seconds."""
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


@dataclass
class LocalOffergrid:
    """The local Offergrid served here, and the arrival time of every reseller API request."""

    url: str
    sandbox: Sandbox
    arrivals: list[float]


@contextmanager
def local_offergrid() -> Iterator[LocalOffergrid]:
    """The local Offergrid on a free loopback port, logging when each reseller request arrives."""
    app = create_app(sandbox_config())
    arrivals: list[float] = []

    @app.middleware("http")
    async def log_arrival(request: Request, call_next: Any) -> Any:
        # Arrival is what Offergrid's limit counts, so the busiest window is measured on it.
        if request.url.path.startswith("/reseller/"):
            arrivals.append(time.time())  # epoch: the backlog sampler's clock too
        return await call_next(request)

    with threaded_app(app, free_port(), "local Offergrid") as url:
        yield LocalOffergrid(url=url, sandbox=app.state.sandbox, arrivals=arrivals)


def add_admin_url(parser: argparse.ArgumentParser) -> None:
    """The --admin-url option: where the scratch databases are created and dropped."""
    parser.add_argument(
        "--admin-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL URL allowed to create and drop databases",
    )


@dataclass
class Scratch:
    """A scratch installation: its home folder, the local Offergrid and its two databases."""

    home: Path
    offergrid: LocalOffergrid
    prefect_db: str
    app_db: str


def scratch_installation(
    stack: ExitStack,
    *,
    admin_url: str,
    name: str,
    port: int,
    extra_environment: dict[str, str] | None = None,
) -> Scratch:
    """Fresh databases, a local Offergrid, the shared environment, a Prefect server on `port`
    and every deployment; `stack` undoes all of it."""
    admin = sa.engine.make_url(admin_url)
    home = Path(tempfile.mkdtemp(prefix=f"preclose-{name}-"))
    stack.callback(shutil.rmtree, home, ignore_errors=True)
    prefect_db = stack.enter_context(fresh_database(admin_url, f"preclose_{name}_prefect"))
    app_db = stack.enter_context(fresh_database(admin_url, f"preclose_{name}_app"))
    offergrid = stack.enter_context(local_offergrid())
    os.environ.update(
        environment(
            home=home,
            prefect_db=admin.set(
                drivername="postgresql+asyncpg", database=prefect_db
            ).render_as_string(hide_password=False),
            app_url=admin.set(drivername="postgresql+psycopg", database=app_db).render_as_string(
                hide_password=False
            ),
            sandbox_url=offergrid.url,
            api_url=f"http://127.0.0.1:{port}/api",
        )
    )
    os.environ.update(extra_environment or {})
    from preclose.storage.db import dispose_engines, get_engine

    stack.callback(dispose_engines)  # before the databases are dropped (callbacks run LIFO)
    print(f"Prefect server on PostgreSQL ({prefect_db}), preclose tables in {app_db}")
    stack.enter_context(prefect_server(get_settings(), port, home / "server.log"))
    get_engine()  # migrate our tables once, before workers race to
    deploy_everything()
    return Scratch(home=home, offergrid=offergrid, prefect_db=prefect_db, app_db=app_db)


def request_figures(offergrid: LocalOffergrid) -> tuple[int, int, int, list[int]]:
    """(requests Offergrid received, busiest rolling window, 429s sent, requests per window)."""
    times = sorted(offergrid.arrivals)
    stats = offergrid.sandbox.request_stats()["byEndpoint"]
    rejected = sum(counts.get("429", 0) for counts in stats.values())
    per_window = Counter(int((t - times[0]) // WINDOW_SECONDS) for t in times) if times else {}
    windows = [per_window.get(i, 0) for i in range(max(per_window, default=-1) + 1)]
    return len(times), busiest_window(times, WINDOW_SECONDS), rejected, windows


def order_figures(offergrid: LocalOffergrid) -> tuple[int, int, int, int]:
    """(plan lines ordered, items we recorded, items at Offergrid, most Offergrid items per line).

    A plan line is one closing's one offer (no re-picks: the providers here never reject), so
    Offergrid's items per (closing, offer) are its items per plan line.
    """
    from sqlmodel import select

    from models.tables import OrderItem
    from preclose.rules.placing import CLOSING_REF_KEY
    from preclose.runtime import db_session

    with db_session() as session:
        items = session.exec(select(OrderItem).where(OrderItem.offergrid_item_id != None)).all()  # noqa: E711
    at_offergrid: Counter[tuple[str, str]] = Counter()
    for order in offergrid.sandbox.all_orders():
        ref = str((order.get("metadata") or {}).get(CLOSING_REF_KEY))
        for item in order["items"]:
            at_offergrid[(ref, item["offerId"])] += 1
    lines = len({item.plan_line_id for item in items})
    return lines, len(items), sum(at_offergrid.values()), max(at_offergrid.values(), default=0)


def main() -> int:
    """Run the scale-out and print its figures; 0 when every check held."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--closings", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=480.0, help="seconds for the whole run")
    parser.add_argument(
        "--limit",
        type=int,
        default=LIMIT_PER_WINDOW,
        help="calls allowed per scaled window (Offergrid: 100 a minute)",
    )
    parser.add_argument(
        "--window",
        type=float,
        default=WINDOW_SECONDS,
        help="the scaled window in seconds; a longer one weighs latency as a real minute does",
    )
    add_admin_url(parser)
    args = parser.parse_args()
    scale_limit(args.limit, args.window)
    started = time.monotonic()
    deadline = started + args.timeout

    with ExitStack() as stack:
        port = free_port()
        scratch = scratch_installation(stack, admin_url=args.admin_url, name="scale", port=port)
        home, offergrid = scratch.home, scratch.offergrid
        print(f"Deployed every flow to the process pool {POOL!r}; starting {len(WORKERS)} workers")
        logs = {name: home / f"{name}.log" for name in WORKERS}
        for name, path in logs.items():
            stack.enter_context(worker(name, stack.enter_context(path.open("wb"))))

        from preclose.names import COORDINATE, PLACE_DUE, SYNC

        # The limiter's attempts, sampled once a window: windows where callers waited throughout.
        sampler = stack.enter_context(
            BacklogSampler(os.environ["PRECLOSE_DATABASE_URL"], WINDOW_SECONDS)
        )

        clock = offergrid.sandbox.clock
        closings = sample_closings_for(clock.now().date(), args.closings)
        as_of = clock.now().isoformat()
        coordinate = [
            start_run(COORDINATE, {"closing": c.model_dump(mode="json"), "as_of": as_of})
            for c in closings
        ]
        print(f"Started {len(coordinate)} coordinate runs (run_deployment, timeout=0)")
        states = wait_for(coordinate, deadline)
        later: list[uuid.UUID] = []
        steps: list[tuple[float, float]] = []  # each day's place and sync runs, epoch seconds
        previous = 0
        for day in DAYS:
            if time.monotonic() > deadline:
                break
            offergrid.sandbox.advance(timedelta(days=day - previous).total_seconds())
            previous = day
            as_of = clock.now().isoformat()
            began = time.time()
            step = [
                start_run(PLACE_DUE, {"as_of": as_of}),
                start_run(PLACE_DUE, {"as_of": as_of}),  # the same work twice, concurrently
                start_run(SYNC, {"as_of": as_of}),
            ]
            later += step
            states |= wait_for(step, deadline)
            steps.append((began, time.time()))
            outcome = dict(Counter(states[run_id] for run_id in step))
            print(f"Sandbox day {day:>2}: place due orders x2 and sync orders -> {outcome}")

        sampler.close()  # stop sampling before the report reads the tables
        print_report(
            ceiling=sampler.share(offergrid.arrivals, LIMIT_PER_WINDOW),
            reuse=slot_reuse(offergrid.arrivals, steps, LIMIT_PER_WINDOW, WINDOW_SECONDS),
            closings=len(closings),
            coordinate=coordinate,
            later=later,
            states=states,
            per_worker=runs_per_worker(logs),
            offergrid=offergrid,
            seconds=time.monotonic() - started,
        )
        ok = all(state == "COMPLETED" for state in states.values())
    return 0 if ok else 1


def _others(runs: set[str]) -> str:
    return f" (+{len(runs)} scheduled runs of the deployments' own schedules)" if runs else ""


def print_report(
    *,
    ceiling: CeilingShare,
    reuse: SlotReuse,
    closings: int,
    coordinate: list[uuid.UUID],
    later: list[uuid.UUID],
    states: dict[uuid.UUID, str],
    per_worker: dict[str, set[str]],
    offergrid: LocalOffergrid,
    seconds: float,
) -> None:
    """The figures: runs per worker, requests per window against the limit, orders per line."""
    ours = {str(run_id) for run_id in [*coordinate, *later]}
    print()
    outcome = dict(Counter(states.values()))
    print(f"Flow runs: {len(coordinate)} coordinate, {len(later)} place/sync -> {outcome}")
    for name, runs in per_worker.items():
        print(f"  {name}: {len(runs & ours)} of them" + _others(runs - ours))
    both = set.intersection(*per_worker.values()) if per_worker else set()
    if both:
        print(f"  (ran by both workers, never expected: {len(both)})")
    calls, busiest, rejected, windows = request_figures(offergrid)
    print(
        f"Offergrid requests: {calls}; limit {LIMIT_PER_WINDOW} per {WINDOW_SECONDS:g} s window; "
        f"busiest rolling window {busiest}; 429 answers: {rejected}"
    )
    busy = " ".join(str(n) for n in windows if n)
    print(f"  requests per {WINDOW_SECONDS:g} s window (idle windows left out): {busy}")
    print(
        "  ceiling share sustained while the placing days held a backlog (goal >= 97%), "
        f"each slot's reuse against the window: {reuse.describe()}"
    )
    print(f"  (the limiter's attempt sampler, windows with refused tries: {ceiling.describe()})")
    lines, ours_items, offergrid_items, most = order_figures(offergrid)
    print(
        f"Orders: {closings} closings, {lines} plan lines ordered, {ours_items} items recorded, "
        f"{offergrid_items} items at Offergrid; most items for one plan line: {most}"
    )
    print(f"Elapsed: {seconds:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
