"""Benchmark: N closings over M ZIPs, request to fulfilled, preclose against the docs' pattern.

Runs on the local Offergrid (virtual clock, default provider timing, rate limit windows scaled so a
run takes minutes, not hours) in its own process, with Prefect's server started here as `prefect
server start` (what `preclose serve` runs), so every process's CPU is read apart. For each sync
cadence asked for (the shipped 15 minutes and daily, by default), in a fresh child process, it
prints:

- CPU per closing of every process of ours: the coordinator (this child) and Prefect's server
  (its whole process tree, read from /proc), each apart and summed; the local Offergrid's apart
  (not ours); the Prefect objects per closing behind the server's share (task runs by name, flow
  runs, events, artifacts, logs), and with --profile the coordinator's CPU by package;
- where every 10 ms per closing goes (benchmarks/where.py): the coordinator's threads sampled by
  phase and step; the server's CPU as what we asked of it (flow runs, task runs, artifacts, API
  calls by route) times each one's cost measured on the same server after the run, the rest
  printed as unexplained; and the server's py-spy samples by endpoint and service;
- Prefect client retry sleeps (after 503/429 from its own server) and the server's 503s;
- Offergrid requests per closing, by endpoint, the 429s, and the floor: one catalog read per ZIP,
  one POST per order Offergrid holds, one status read per sync while an item is open, the rest
  (buyer links) as sent;
- the share of the rate ceiling used in windows where callers waited at our limiter throughout
  (benchmarks/ceiling.py; one coordinator here: scripts/scale_out.py has the two-worker figure);
- each service against its window (essential services live by the day needed, goal >= 98%;
  services live early, goal 0; closings insured on closing day, goal 100%).

Then two baselines, their orders placed for real on a second local Offergrid, their polls counted
from each order's real history rather than sent (sending them is what the ceiling forbids):

- naive: the catalog fetched per closing, one order per service, each order polled every 5 minutes
  until it ends;
- the docs' advice in full: the catalog cached per ZIP (1-6 h: every closing here arrives at once,
  so one read per ZIP), one order per service, status read through the list endpoint every 5
  minutes while any order is open.

    .venv/bin/python benchmarks/closings.py                      # 1,000 closings over 100 ZIPs
    .venv/bin/python benchmarks/closings.py --closings 200 --zips 40
    .venv/bin/python benchmarks/closings.py --closings 200 --zips 40 --sync-minutes 1440

What it leaves out is printed at the end (LEFT_OUT).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from benchmarks.where import CpuSampler, PrefectCalls

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `benchmarks.*` helpers when run as a script

START = datetime(2027, 3, 1, 15, 0, tzinfo=UTC)
POLL_EVERY = timedelta(minutes=5)
FINAL = {"completed", "active", "rejected", "failed", "cancelled"}
LIMIT = 100  # Offergrid's calls per (scaled) minute window
IDLE_SAMPLE_SECONDS = 15.0

LEFT_OUT = (
    "the reconciler (every 5 minutes as shipped) and the per-closing 08:00 placement runs: the "
    "daily placement run stands in for them",
    "webhooks and the follow-up runs they trigger: the local Offergrid here sends none, so status "
    "comes from the syncs only",
    "the HTTP app (CRM API, pages), worker process start-up (`prefect worker` spawns a Python "
    "process per flow run), and PostgreSQL: here one process runs every flow on SQLite",
    "Prefect's server start-up CPU (printed apart) and the local Offergrid's CPU (not ours)",
    "network latency to the real Offergrid: the local one answers on loopback",
    "closings that change or fall through, and rejected or failed orders beyond the sandbox's "
    "default rates",
)

_SERVER = """
import json, sys
from offergrid_sandbox.config import SandboxConfig
from offergrid_sandbox.server import serve
config = SandboxConfig.model_validate_json(sys.argv[2])
serve(host="127.0.0.1", port=int(sys.argv[1]), config=config)
"""


def start_sandbox(port: int, scale: float, seed: int) -> subprocess.Popen[bytes]:
    """A virtual-clock local Offergrid in its own process, rate windows scaled by `scale`."""
    from offergrid_sandbox.config import RateLimitConfig, SandboxConfig

    config = SandboxConfig(
        clock="virtual",
        seed=seed,
        start_time=START,
        rate_limit=RateLimitConfig(minute_seconds=60 * scale, hour_seconds=3600 * scale),
    )
    process = subprocess.Popen(  # noqa: S603  (our interpreter, our script)
        [sys.executable, "-c", _SERVER, str(port), config.model_dump_json()],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).raise_for_status()
            return process
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the local Offergrid did not start")


def make_closings(count: int, zips: int, seed: int) -> list[Any]:
    """`count` closings over the first `zips` served ZIPs, booked 21 to 45 days ahead.

    Every tenth moves in five days before closing (pre-possession), every tenth ten days after
    (rent-back); the rest move in at closing.
    """
    import random

    from models.closing import ClosingRequest
    from offergrid_sandbox.catalog import seed_catalog
    from preclose.app.samples import sample_closings

    places = seed_catalog(seed).zip_places
    chosen = sorted(places)[:zips]
    templates = sample_closings(START.date())
    rng = random.Random(seed)
    closings = []
    for index in range(count):
        template = templates[index % len(templates)]
        zip_code = chosen[index % len(chosen)]
        city, state = places[zip_code]
        closing_date = START.date() + timedelta(days=rng.randint(21, 45))
        while closing_date.weekday() >= 5:
            closing_date += timedelta(days=1)
        data = template.model_dump(mode="json")
        data["property"]["address"].update(zip_code=zip_code, city=city, state=state)
        # One closing in ten is a pre-possession (moving in 5 days early), one a rent-back.
        move_in = {3: closing_date - timedelta(days=5), 7: closing_date + timedelta(days=10)}
        data.update(
            crm_closing_id=f"BENCH-{index:05d}",
            closing_date=closing_date.isoformat(),
            move_in_date=move_in[index % 10].isoformat() if index % 10 in move_in else None,
            time_zone=None,  # from the ZIP code, as a CRM that sends none gets it
        )
        data["preferences"].update(budget_caps=[], preferred_providers=[])
        closings.append(ClosingRequest.model_validate(data))
    return closings


def live_moments(
    orders: list[dict[str, Any]],
) -> dict[str, tuple[datetime | None, datetime | None]]:
    """Per Offergrid item: when it first went live (completed or active) and when it was active.

    Read from Offergrid's own item histories: our records keep only the statuses a sync saw, and
    a service completed in the evening may first be seen active the next morning.
    """

    def parse(stamp: str) -> datetime:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))

    moments: dict[str, tuple[datetime | None, datetime | None]] = {}
    for order in orders:
        for item in order["items"]:
            history = item.get("history", [])
            live = next((e for e in history if e["status"] in ("completed", "active")), None)
            active = next((e for e in history if e["status"] == "active"), None)
            moments[item["itemId"]] = (
                parse(live["timestamp"]) if live else None,
                parse(active["timestamp"]) if active else None,
            )
    return moments


def window_figures(
    moments: dict[str, tuple[datetime | None, datetime | None]],
) -> dict[str, Any]:
    """Each service against its window, from the stored plan lines and Offergrid's histories.

    - "on_time": essential lines live (completed or active) by their needed-by day (the window's
      end), out of the essential lines (every bench closing is booked 21-45 days out);
    - "early": lines live before possession or more than one day before their requested start,
      out of the lines that went live;
    - "insured": closings whose insurance was active by the end of closing day, out of closings;
    - "late": the late essential lines counted by kind (re-picked, never live, live n days late);
    - "uninsured": the closings not insured on closing day, counted by the same kinds.
    Each category counts once per closing: its latest attempt decides.
    """
    from zoneinfo import ZoneInfo

    from sqlmodel import col, select

    from models.tables import Closing, OrderItem, PlanLineRow
    from preclose.runtime import db_session

    on_time = essential = early = live_lines = insured = 0
    late: Counter[str] = Counter()
    uninsured: Counter[str] = Counter()
    with db_session() as session:
        closings = session.exec(select(Closing)).all()
        rows = session.exec(
            select(PlanLineRow, Closing).join(
                Closing, col(Closing.id) == col(PlanLineRow.closing_id)
            )
        ).all()
        latest: dict[tuple[Any, str], tuple[PlanLineRow, Closing]] = {}
        for line, closing in rows:
            key = (closing.id, line.category)
            if key not in latest or line.attempt > latest[key][0].attempt:
                latest[key] = (line, closing)
        for line, closing in latest.values():
            zone = ZoneInfo(closing.time_zone)
            possession = min(closing.closing_date, closing.move_in_date or closing.closing_date)
            needed_by = max(line.service_window_end or line.service_date, line.service_date)
            item = session.exec(select(OrderItem).where(OrderItem.plan_line_id == line.id)).first()
            item_id = item.offergrid_item_id if item is not None else None
            live, active = moments.get(item_id or "", (None, None))
            live_day = live.astimezone(zone).date() if live is not None else None
            if line.importance == "essential":
                essential += 1
                on_time += live_day is not None and live_day <= needed_by
                if live_day is None or live_day > needed_by:
                    late[_why_late(line.attempt, live_day, needed_by)] += 1
            if live_day is not None:
                live_lines += 1
                early += live_day < possession or (line.service_date - live_day).days > 1
            if line.category == "insurance":
                active_day = active.astimezone(zone).date() if active is not None else None
                if active_day is not None and active_day <= closing.closing_date:
                    insured += 1
                else:
                    uninsured[_why_late(line.attempt, active_day, closing.closing_date)] += 1
    return {
        "on_time": (on_time, essential),
        "early": (early, live_lines),
        "insured": (insured, len(closings)),
        "late": late,
        "uninsured": uninsured,
    }


def _why_late(attempt: int, live_day: date | None, needed_by: date) -> str:
    """Which kind of late a line is against the day it was needed by, as the figures name it."""
    if attempt > 1:
        return "re-picked after a rejection or failed install" + (
            ", not live by the end" if live_day is None else ", live late"
        )
    if live_day is None:
        return "first order not live by the end"
    return f"first order live {(live_day - needed_by).days} day(s) late"


def run_preclose(
    closings: list[Any],
    url: str,
    days: int,
    sync_minutes: float,
    server_pid: int,
    sampler: CpuSampler | None = None,
) -> dict[str, Any]:
    """Coordinate every closing, then step the clock: a sync every `sync_minutes`, placing daily."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from benchmarks.cpu import own_cpu_seconds, tree_cpu_seconds
    from flows.coordinate import coordinate_closing
    from flows.place import place_due_orders
    from flows.sync import sync_orders
    from preclose.prefect_api import one_prefect_client

    def phase(name: str) -> None:
        if sampler is not None:
            sampler.phase = name

    now = START
    steps_per_day = max(1, round(1440 / sync_minutes))
    step = timedelta(days=1) / steps_per_day
    syncs: list[datetime] = []
    wall0, cpu0 = time.perf_counter(), own_cpu_seconds()
    server0 = tree_cpu_seconds(server_pid)
    with (
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        one_prefect_client(),  # as the demo runs its flows: one client, not one per flow run
    ):
        phase("coordinating")
        for closing in closings:
            coordinate_closing(closing, as_of=now)
        coordinated = own_cpu_seconds() - cpu0
        server_coordinated = tree_cpu_seconds(server_pid) - server0
        for _ in range(days):
            for index in range(steps_per_day):
                advance = {"seconds": step.total_seconds()}
                httpx.post(f"{url}/sandbox/clock/advance", json=advance).raise_for_status()
                now += step
                if index == steps_per_day - 1:
                    phase("placement runs")
                    place_due_orders(as_of=now)  # once a day, as the shipped daily run does
                phase("syncs")
                sync_orders(as_of=now)
                syncs.append(now)
    return {
        "wall": time.perf_counter() - wall0,
        "cpu": own_cpu_seconds() - cpu0,
        "cpu_coordinate": coordinated,
        "server_coordinate": server_coordinated,
        "syncs": syncs,
    }


def api_call_times() -> list[float]:
    """Epoch seconds of every Offergrid call we recorded (a row per call, dated at its answer)."""
    from sqlmodel import col, select

    from models.tables import ApiCall
    from preclose.runtime import db_session

    with db_session() as session:
        return sorted(row.timestamp() for row in session.exec(select(col(ApiCall.at))).all())


def _stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def open_spans(orders: list[dict[str, Any]], until: datetime) -> list[tuple[datetime, datetime]]:
    """Per Offergrid item: from its order's creation to its final status (or `until`)."""
    spans = []
    for order in orders:
        created = _stamp(order["createdAt"])
        for item in order["items"]:
            ends = [_stamp(e["timestamp"]) for e in item.get("history", []) if e["status"] in FINAL]
            spans.append((created, min(ends) if ends else until))
    return spans


def reads_while_open(spans: list[tuple[datetime, datetime]], moments: list[datetime]) -> int:
    """How many of `moments` fall while at least one item is open: the status reads needed."""
    merged: list[list[datetime]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return sum(any(start <= m < end for start, end in merged) for m in moments)


def prefect_objects(database: Path) -> dict[str, Counter[str]]:
    """What Prefect's server stored: task runs by task, flow runs by flow, events and rows."""
    with sqlite3.connect(database) as db:
        tasks: Counter[str] = Counter()
        for (name,) in db.execute("SELECT name FROM task_run"):
            tasks[str(name).rsplit("-", 1)[0]] += 1
        flows: Counter[str] = Counter(
            dict(
                db.execute(
                    "SELECT flow.name, count(*) FROM flow_run "
                    "JOIN flow ON flow.id = flow_run.flow_id GROUP BY flow.name"
                ).fetchall()
            )
        )
        other: Counter[str] = Counter()
        for table in ("events", "artifact", "log", "flow_run_state", "task_run_state"):
            other[table] = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
        events: Counter[str] = Counter(
            dict(db.execute("SELECT event, count(*) FROM events GROUP BY event").fetchall())
        )
    return {"task runs": tasks, "flow runs": flows, "rows": other, "events": events}


def profile_by_package(profile: cProfile.Profile) -> Counter[str]:
    """Own CPU seconds (cProfile's tottime) by top-level package of the code that spent them."""
    stats = pstats.Stats(profile)
    out: Counter[str] = Counter()
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        path = Path(filename)
        if "site-packages" in path.parts:
            package = path.parts[path.parts.index("site-packages") + 1].split(".")[0]
        elif ROOT in path.parents and ".venv" not in path.parts:
            package = "ours: " + path.relative_to(ROOT).parts[0]
        elif filename.startswith("~") or filename.startswith("<"):
            package = "builtins"
        else:
            package = "stdlib: " + path.stem
        out[package] += tottime
    return out


def our_functions(profile: cProfile.Profile, top: int = 25) -> list[tuple[str, float]]:
    """Our functions by cumulative CPU seconds (they and their callees), largest first."""
    stats = pstats.Stats(profile)
    out = []
    for (filename, line, name), (_, _, _, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        path = Path(filename)
        ours = ROOT in path.parents and not {"benchmarks", ".venv", "site-packages"} & set(
            path.parts
        )
        if ours:
            out.append((f"{path.relative_to(ROOT)}:{line} {name}", cumtime))
    return sorted(out, key=lambda entry: -entry[1])[:top]


def print_where(
    where: CpuSampler,
    calls: PrefectCalls,
    units: dict[str, tuple[float, float]],
    objects: dict[str, Counter[str]],
    timing: dict[str, Any],
    server_used: float,
    idle_ms: float,
    n: int,
) -> None:
    """Where every 10 ms per closing of both processes goes; the steps below that, named each
    with its figure."""
    from benchmarks.where import named_rest

    sampled = sum(where.spent.values())
    print(
        f"  where the coordinator's CPU goes, per closing (sampled: {sampled / n * 1000:.0f} of "
        f"its {timing['cpu'] / n * 1000:.0f} ms; the sampler's own thread is the rest), by phase "
        "and step (our innermost flow or task function), with the code it was in:"
    )
    phases: dict[str, float] = {}
    for (phase, _, _), seconds in where.spent.items():
        phases[phase] = phases.get(phase, 0.0) + seconds
    for phase, total in sorted(phases.items(), key=lambda entry: -entry[1]):
        print(f"    {phase}: {total / n * 1000:.0f} ms")
        steps: dict[str, dict[str, float]] = {}
        for (p, function, library), seconds in where.spent.items():
            if p == phase:
                inner = steps.setdefault(function, {})
                inner[library] = inner.get(library, 0.0) + seconds
        small: dict[str, float] = {}
        for function, libraries in sorted(steps.items(), key=lambda e: -sum(e[1].values())):
            spent = sum(libraries.values())
            if spent / n < 0.010:
                small[function] = spent
                continue
            inside = ", ".join(
                f"{library} {seconds / n * 1000:.0f}"
                for library, seconds in sorted(libraries.items(), key=lambda e: -e[1])
                if seconds / n >= 0.002
            )
            print(f"      {spent / n * 1000:5.0f} ms  {function} ({inside})")
        print(
            f"      {sum(small.values()) / n * 1000:5.0f} ms  the other {len(small)} steps, each "
            "under 10 ms:"
        )
        print("\n".join(named_rest(small, n, " " * 17)))
    counts = {
        "flow run": sum(objects["flow runs"].values()),
        "task run": sum(objects["task runs"].values()),
        "artifact": objects["rows"].get("artifact", 0),
        "log line": objects["rows"].get("log", 0),
        "artifact update": calls.counts.get("PATCH /artifacts/{id}", 0),
    }
    calls_total = sum(calls.counts.values())
    expected_calls = sum(counts[kind] * units[kind][1] for kind in counts)
    counts["API call"] = max(0, round(calls_total - expected_calls))
    print(
        f"  where Prefect's server CPU goes, per closing ({server_used / n * 1000:.0f} ms), from "
        "what we asked of it times what each costs it (measured on it after the run):"
    )
    explained = idle_ms
    for kind, count in counts.items():
        cost, _ = units[kind]
        share = count * cost / n * 1000
        explained += share
        extra = " beyond those above" if kind == "API call" else ""
        print(f"    {share:5.0f} ms  {count / n:.1f} {kind}s{extra} x {cost * 1000:.1f} ms")
    print(f"    {idle_ms:5.0f} ms  its services idling")
    rest = server_used / n * 1000 - explained
    print(
        f"    {rest:5.0f} ms  not explained by those unit costs (our runs are heavier than the "
        "empty ones measured: parameters, results, tags, cache lookups)"
    )
    top = ", ".join(f"{route} {count / n:.1f}" for route, count in calls.counts.most_common(8))
    print(f"    Prefect API calls per closing: {calls_total / n:.1f} ({top})")


def print_server_activity(spied: dict[str, int], server_used: float, n: int) -> None:
    """Prefect's server CPU by what it was doing (py-spy samples, scaled to its measured CPU)."""
    samples = sum(spied.values())
    if not samples:
        print("  (no py-spy: the server's CPU is not broken down by what it was doing)")
        return
    from benchmarks.where import SPY_RATE, named_rest

    busy = samples / SPY_RATE
    print(
        f"  Prefect's server CPU per closing by what it was doing: {samples} py-spy samples of its "
        f"busy threads ({busy:.0f} s busy against {server_used:.0f} s of CPU measured: py-spy "
        "guesses which threads are busy, from outside), their shares scaled to its "
        f"{server_used / n * 1000:.0f} ms; coroutines of one request can run apart from its "
        "endpoint's frame, so 'outside an endpoint' and 'other' hold request work too:"
    )
    small: dict[str, float] = {}
    for activity, count in sorted(spied.items(), key=lambda entry: -entry[1]):
        share = count / samples * server_used / n
        if share >= 0.010:
            print(f"    {share * 1000:5.0f} ms  {activity}")
        else:
            small[activity] = share * n
    print(f"    {sum(small.values()) / n * 1000:5.0f} ms  the rest, each under 10 ms:")
    print("\n".join(named_rest(small, n, " " * 15)))


def wait_until_quiet(pid: int, most: float = 180.0) -> None:
    """Wait until the tree of `pid` burns under 5% of a core (its queued events are written)."""
    from benchmarks.cpu import tree_cpu_seconds

    deadline = time.monotonic() + most
    while time.monotonic() < deadline:
        before = tree_cpu_seconds(pid)
        time.sleep(2.0)
        if tree_cpu_seconds(pid) - before < 0.1:
            return


def run_cadence(args: argparse.Namespace, sync_minutes: float) -> dict[str, Any]:
    """One preclose run at one sync cadence, in this (fresh) process; prints and returns figures.

    Its scratch folder (our database, Prefect's, the server's log) goes when the run succeeds,
    unless --keep or --profile asks for it; a failed run keeps it and says where.
    """
    work = Path(tempfile.mkdtemp(prefix="preclose-bench-"))
    try:
        figures = measure_cadence(args, sync_minutes, work)
    except BaseException:
        print(f"  the run failed; its data and Prefect's server log are in {work}", file=sys.stderr)
        raise
    if args.keep or args.profile:
        print(f"  its data and Prefect's server log are kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return figures


def measure_cadence(args: argparse.Namespace, sync_minutes: float, work: Path) -> dict[str, Any]:
    """The run `run_cadence` describes, in the scratch folder `work`."""
    prefect_port = args.port + 2
    os.environ.update(
        PRECLOSE_DATA_DIR=str(work),
        PRECLOSE_DATABASE_URL=f"sqlite:///{work / 'bench.db'}",
        PREFECT_HOME=str(work / "prefect"),
        PREFECT_API_URL=f"http://127.0.0.1:{prefect_port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_LOG_RETRYABLE_ERRORS="true",  # the server logs each 503 it sends
        PREFECT_LOGGING_LEVEL="ERROR",
        PRECLOSE_RATE_LIMIT_WINDOW_SCALE=str(args.window_scale),
    )
    from offergrid_sandbox.config import RESELLER_KEY

    url = f"http://127.0.0.1:{args.port}"
    os.environ.update(PRECLOSE_OFFERGRID_BASE_URL=url, PRECLOSE_OFFERGRID_API_KEY=RESELLER_KEY)

    from benchmarks.ceiling import BacklogSampler
    from benchmarks.cpu import CpuMeter, tree_cpu_seconds
    from benchmarks.where import CpuSampler, PrefectCalls, server_profile, server_unit_costs
    from preclose.app.prefect_retries import counting_retry_sleeps
    from preclose.app.serve import prefect_environment, prefect_server
    from preclose.prefect_api import read_server
    from preclose.settings import get_settings

    closings = make_closings(args.closings, args.zips, args.seed)
    settings = get_settings()
    os.environ.update(prefect_environment(settings))  # the server settings `preclose serve` uses
    server_log = work / "prefect-server.log"
    ours = start_sandbox(args.port, args.window_scale, args.seed)
    sandbox_cpu = CpuMeter(ours.pid)
    try:
        started = time.perf_counter()
        with prefect_server(settings, prefect_port, server_log):
            recorded = read_server(settings)
            assert recorded is not None
            server_cpu = CpuMeter(recorded.pid)
            startup = server_cpu.stop()  # from its start: the start-up, reported apart
            print(
                f"  Prefect server up in {time.perf_counter() - started:.0f} s, {startup:.1f} s CPU"
            )
            # Its services poll while nothing happens: that rate, apart, over the run's wall time.
            server_cpu.start()
            time.sleep(IDLE_SAMPLE_SECONDS)
            idle_rate = server_cpu.stop() / IDLE_SAMPLE_SECONDS
            server_cpu.start()
            sandbox_cpu.start()
            # CPU time of the main thread, where flows and their tasks run (not wall time).
            profile = cProfile.Profile(time.thread_time) if args.profile else None
            window = 60 * args.window_scale
            with server_profile(recorded.pid, work / "prefect-server.spy") as spied:
                with (
                    BacklogSampler(settings.database_url, window) as sampler,
                    counting_retry_sleeps() as retries,
                    PrefectCalls().counting() as calls,
                    CpuSampler() as where,
                ):
                    if profile is not None:
                        profile.enable()
                    timing = run_preclose(
                        closings, url, args.days, sync_minutes, recorded.pid, where
                    )
                    if profile is not None:
                        profile.disable()
                wait_until_quiet(recorded.pid)
            # The sampler's own CPU is the benchmark's, not the coordinator's.
            timing["cpu"] -= sum(where.own.values())
            timing["cpu_coordinate"] -= where.own.get("coordinating", 0.0)
            server_cpu.stop()
            sandbox_cpu.stop()
            objects = prefect_objects(work / "prefect" / "prefect.db")  # before the calibration
            # What one flow run, task run, artifact and API call cost this server, measured now.
            units = server_unit_costs(
                lambda: tree_cpu_seconds(recorded.pid),
                lambda: wait_until_quiet(recorded.pid),
                idle_rate,
            )
        stats = httpx.get(f"{url}/sandbox/requests").json()["byEndpoint"]
        orders = httpx.get(f"{url}/sandbox/orders", timeout=60).json()
    finally:
        ours.terminate()
    ceiling = sampler.share(api_call_times(), LIMIT)
    figures = window_figures(live_moments(orders))
    server_503 = server_log.read_text(errors="replace").count("retryable exception in request")
    n = len(closings)

    label = "daily" if sync_minutes >= 1440 else f"every {sync_minutes:g} minutes"
    print(f"\npreclose, syncing {label} ({len(timing['syncs'])} syncs, placing daily)")
    total = sum(sum(codes.values()) for codes in stats.values())
    too_many = sum(codes.get("429", 0) for codes in stats.values())
    for endpoint, codes in sorted(stats.items()):
        count = sum(codes.values())
        print(f"  {endpoint:<34} {count:>7}  {count / n:6.2f} per closing  {codes}")
    print(f"  {'all requests':<34} {total:>7}  {total / n:6.2f} per closing")
    print(f"  429s received: {too_many}")
    reads = reads_while_open(open_spans(orders, START + timedelta(days=args.days)), timing["syncs"])
    catalog = len({c.property.address.zip5 for c in closings})
    placed = sum(1 for _ in orders)
    rest = sum(
        sum(codes.values())
        for endpoint, codes in stats.items()
        if endpoint
        not in ("GET /reseller/catalog", "POST /reseller/orders", "GET /reseller/orders")
    )
    floor = catalog + placed + reads + rest
    print(
        f"  floor: {floor} ({catalog} catalog reads, one per ZIP; {placed} orders Offergrid holds; "
        f"{reads} syncs with an item open; {rest} other calls as sent) = {floor / n:.2f} per "
        f"closing; preclose sent {total / floor:.2f}x the floor"
    )
    print(f"  share of the ceiling used while callers waited: {ceiling.describe()}")
    coordinator = timing["cpu"] / n * 1000
    server = server_cpu.used / n * 1000
    coordinating = timing["cpu_coordinate"] / n * 1000
    print(
        f"  CPU per closing: coordinator {coordinator:.0f} ms ({coordinating:.0f}"
        f" ms of it coordinating) + Prefect server {server:.0f} ms = {coordinator + server:.0f} ms "
        f"(goal <= 300 ms); local Offergrid (not ours) {sandbox_cpu.used / n * 1000:.0f} ms"
    )
    idle = idle_rate * timing["wall"] / n * 1000
    print(
        f"  of the server's share, {idle:.0f} ms per closing is its services idling "
        f"({idle_rate:.1%} of a core, measured before the run, times the run's wall time)"
    )
    steps = len(timing["syncs"])
    if steps:
        setup = (timing["cpu_coordinate"] + timing["server_coordinate"]) / n * 1000
        ours_step = (timing["cpu"] - timing["cpu_coordinate"]) / steps * 1000
        theirs_step = (server_cpu.used - timing["server_coordinate"]) / steps * 1000
        print(
            f"  coordinating (both processes): {setup:.0f} ms CPU per closing; each sync step "
            f"(a sync; once a day a placement run too): {ours_step:.0f} ms coordinator + "
            f"{theirs_step:.0f} ms Prefect server"
        )
    print(f"  wall per closing: {timing['wall'] / n * 1000:.0f} ms ({timing['wall']:.0f} s in all)")
    print(f"  Prefect client: {retries.describe()}; server 503s sent: {server_503}")
    print("  Prefect objects per closing:")
    for kind in ("flow runs", "task runs"):
        counts = objects[kind]
        top = ", ".join(f"{name} {count / n:.1f}" for name, count in counts.most_common())
        print(f"    {kind} {sum(counts.values()) / n:.1f}: {top}")
    rows = objects["rows"]
    print("    " + ", ".join(f"{table} {count / n:.1f}" for table, count in rows.items()))
    top_events = ", ".join(f"{e} {c / n:.1f}" for e, c in objects["events"].most_common(8))
    print(f"    events by name (top 8): {top_events}")
    print_where(where, calls, units, objects, timing, server_cpu.used, idle, n)
    print_server_activity(spied, server_cpu.used, n)
    if profile is not None:
        print("  coordinator main thread CPU by package (cProfile tottime, its overhead included):")
        spent = profile_by_package(profile)
        for package, seconds in spent.most_common():
            if seconds / n >= 0.005:
                print(f"    {package:<32} {seconds / n * 1000:6.0f} ms per closing")
        dump = work / "coordinator.prof"
        profile.dump_stats(dump)  # for pstats / snakeviz
        print(f"  our functions by cumulative main-thread CPU (callees included; all in {dump}):")
        for function, cumulative in our_functions(profile):
            print(f"    {cumulative / n * 1000:6.0f} ms per closing  {function}")
    for key, text, goal in (
        ("on_time", "essential services live by the day needed", "goal >= 98%"),
        ("early", "services live before possession or > 1 day before their start", "goal 0"),
        ("insured", "closings with insurance in force on closing day", "goal 100%"),
    ):
        count, out_of = figures[key]
        share = f" ({count / out_of:.1%})" if out_of else ""
        print(f"  {text}: {count}/{out_of}{share}, {goal}")
        reasons = {"on_time": "late", "insured": "uninsured"}.get(key)
        if reasons is not None:
            for why, late in sorted(figures[reasons].items(), key=lambda kv: -kv[1]):
                print(f"    {reasons}: {late} {why}")
    return {"total": total, "floor": floor, "label": label}


def run_baseline(closings: list[Any], url: str, days: int) -> dict[str, Any]:
    """The naive pattern and the docs' advice: orders placed for real, reads counted."""
    from offergrid import OffergridClient
    from offergrid_sandbox.config import RESELLER_KEY
    from preclose.rules.placing import order_request
    from preclose.rules.recommend import recommend
    from preclose.rules.timing import plan_closing
    from preclose.runtime import policy

    rules = policy()
    due: dict[date, list[tuple[Any, str]]] = {}
    sent: Counter[str] = Counter()
    with OffergridClient(api_key=RESELLER_KEY, base_url=url, timeout=httpx.Timeout(30)) as client:
        for closing in closings:
            offers = client.list_offers(zip_code=closing.property.address.zip5)
            sent["GET /reseller/catalog"] += 1
            plan = plan_closing(
                closing, recommend(closing, offers, rules, address_scoped=True), rules, as_of=START
            )
            for line in plan.lines:
                if line.choice is not None:
                    due.setdefault(line.placement_date, []).append((closing, line.choice.offer_id))
        today = START.date()
        for day in range(days + 1):
            for closing, offer_id in due.pop(today + timedelta(days=day), []):
                request = order_request(
                    closing, [offer_id], intent_key=f"baseline-{day}-{offer_id}"
                )
                for attempt in range(30):
                    try:
                        client.place_order(
                            request, idempotency_key=f"b-{closing.crm_closing_id}-{offer_id}"
                        )
                        break
                    except Exception:  # the docs' pattern: back off and try again
                        time.sleep(min(2**attempt * 0.05, 2))
                sent["POST /reseller/orders"] += 1
            httpx.post(f"{url}/sandbox/clock/advance", json={"seconds": 86_400}).raise_for_status()
    orders = httpx.get(f"{url}/sandbox/orders", timeout=60).json()
    polls = 0
    peak: Counter[int] = Counter()
    for order in orders:
        created = _stamp(order["createdAt"])
        ends = [
            _stamp(entry["timestamp"])
            for item in order["items"]
            for entry in item.get("history", [])
            if entry.get("status") in FINAL
        ]
        end = max(ends) if ends else START + timedelta(days=days)
        count = math.ceil((end - created) / POLL_EVERY) + 1
        polls += count
        for tick in range(count):
            peak[int((created + tick * POLL_EVERY).timestamp() // 60)] += 1
    # The docs' advice: one list read every 5 minutes while any order is open.
    last = START + timedelta(days=days)
    ticks = [START + k * POLL_EVERY for k in range(int((last - START) / POLL_EVERY) + 1)]
    list_reads = reads_while_open(open_spans(orders, last), ticks)
    return {
        "sent": dict(sent),
        "polls": polls,
        "peak_per_minute": max(peak.values(), default=0),
        "list_reads": list_reads,
        "zips": len({c.property.address.zip5 for c in closings}),
    }


def print_baselines(base: dict[str, Any], n: int, ours: list[dict[str, Any]]) -> None:
    """The two baselines' requests per closing, and ours against them."""
    sent = sum(base["sent"].values())
    naive = sent + base["polls"]
    print("\nbaseline 1, naive (catalog per closing, every order polled every 5 minutes)")
    for endpoint, count in sorted(base["sent"].items()):
        print(f"  {endpoint:<34} {count:>7}  {count / n:6.2f} per closing")
    polls = base["polls"]
    print(f"  {'GET /reseller/orders/{id} (polls)':<34} {polls:>7}  {polls / n:6.2f} per closing")
    print(f"  {'all requests':<34} {naive:>7}  {naive / n:6.2f} per closing")
    print(f"  peak polling pace: {base['peak_per_minute']} requests a minute (the ceiling is 100)")
    orders = base["sent"].get("POST /reseller/orders", 0)
    advised = base["zips"] + orders + base["list_reads"]
    print("\nbaseline 2, the docs' advice (catalog cached per ZIP, list read every 5 minutes)")
    print(f"  {'GET /reseller/catalog':<34} {base['zips']:>7}  {base['zips'] / n:6.2f} per closing")
    print(f"  {'POST /reseller/orders':<34} {orders:>7}  {orders / n:6.2f} per closing")
    reads = base["list_reads"]
    print(f"  {'GET /reseller/orders (list)':<34} {reads:>7}  {reads / n:6.2f} per closing")
    print(f"  {'all requests':<34} {advised:>7}  {advised / n:6.2f} per closing")
    for run in ours:
        print(
            f"\npreclose syncing {run['label']}: {run['total'] / naive:.2%} of the naive "
            f"baseline's requests, {run['total'] / advised:.2%} of the docs' advice's"
        )


def main() -> None:
    """Run preclose at each cadence (a child process each), then the baselines; print it all."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--closings", type=int, default=1000)
    parser.add_argument("--zips", type=int, default=100)
    parser.add_argument("--days", type=int, default=60, help="simulated days to track")
    parser.add_argument("--window-scale", type=float, default=0.2, help="rate windows x this")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--sync-minutes",
        type=float,
        nargs="+",
        default=[15.0, 1440.0],
        help="sync cadences to run, each in its own process (15: as shipped; 1440: daily)",
    )
    parser.add_argument("--profile", action="store_true", help="coordinator CPU by package")
    parser.add_argument("--keep", action="store_true", help="keep each run's scratch folder")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--only-baseline", action="store_true", help="the baselines alone")
    parser.add_argument("--port", type=int, default=18_765, help="uses this port and the next 2")
    parser.add_argument("--summary", type=Path, help=argparse.SUPPRESS)  # a child's figures
    args = parser.parse_args()

    from offergrid_sandbox.catalog import seed_catalog

    served = len(seed_catalog(args.seed).zip_places)
    args.zips = min(args.zips, served)
    if args.summary is not None:  # a child: one cadence, its figures to the parent
        (minutes,) = args.sync_minutes
        args.summary.write_text(json.dumps(run_cadence(args, minutes)))
        return

    print(
        f"{args.closings} closings over {args.zips} ZIPs (the local Offergrid serves {served}), "
        f"{args.days} simulated days, rate windows x{args.window_scale} "
        f"({LIMIT} per {60 * args.window_scale:.1f} s); {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at start",
        flush=True,
    )
    ours = []
    for minutes in [] if args.only_baseline else args.sync_minutes:
        with tempfile.NamedTemporaryFile(suffix=".json") as summary:
            child = [a for a in sys.argv[1:] if a != "--skip-baseline"]
            command = [sys.executable, __file__, *child, "--sync-minutes", str(minutes)]
            subprocess.run([*command, "--summary", summary.name], check=True)  # noqa: S603
            ours.append(json.loads(Path(summary.name).read_text()))
    if not args.skip_baseline:
        closings = make_closings(args.closings, args.zips, args.seed)
        # The baseline's windows are shrunk to nothing: its reads are counted, and its orders may
        # go as fast as the sandbox takes them.
        theirs = start_sandbox(args.port + 1, 0.0001, args.seed)
        try:
            base = run_baseline(closings, f"http://127.0.0.1:{args.port + 1}", args.days)
        finally:
            theirs.terminate()
        print_baselines(base, len(closings), ours)
    print("\nLeft out of these figures:")
    for item in LEFT_OUT:
        print(f"  - {item}")


if __name__ == "__main__":
    main()
