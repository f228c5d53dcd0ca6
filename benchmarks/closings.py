"""Benchmark: N closings over M ZIPs, request to fulfilled, preclose against the docs' own pattern.

Runs on the local Offergrid (virtual clock, default provider timing, rate limit windows scaled so a
run takes minutes, not hours) in a separate process, so this process's CPU time is the
coordinator's alone (the Prefect API is its own subprocess too). Prints:

- Offergrid requests per closing, by endpoint, and the 429s received;
- the share of the rate ceiling used while a backlog of orders waits (target >= 97%, zero 429s);
- coordinator wall and CPU time per closing;
- each service against its window: essential services live by the day needed (closings booked
  >= 21 days out; goal >= 98%), services live before possession or more than a day before their
  requested start (goal 0), closings with insurance in force on closing day (goal 100%);
- the same request figures for a baseline that follows the docs' integration pattern: catalog
  fetched per closing, one order per service, each order polled every 5 minutes until it ends.
  The baseline places its orders for real on a second sandbox; its polls are counted from each
  order's real history rather than sent, because sending them is what the ceiling forbids.

    .venv/bin/python benchmarks/closings.py                      # 1,000 closings over 100 ZIPs
    .venv/bin/python benchmarks/closings.py --closings 200 --zips 40
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2027, 3, 1, 15, 0, tzinfo=UTC)
POLL_EVERY = timedelta(minutes=5)
FINAL = {"completed", "active", "rejected", "failed", "cancelled"}

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


def run_preclose(closings: list[Any], url: str, scale: float, days: int) -> dict[str, Any]:
    """Coordinate every closing through the flows; returns the figures."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.coordinate import coordinate_closing
    from flows.place import place_due_orders
    from flows.sync import sync_orders
    from offergrid_sandbox.config import RESELLER_KEY

    os.environ.update(
        PRECLOSE_OFFERGRID_BASE_URL=url,
        PRECLOSE_OFFERGRID_API_KEY=RESELLER_KEY,
        PRECLOSE_RATE_LIMIT_WINDOW_SCALE=str(scale),
    )
    now = START
    wall0, cpu0 = time.perf_counter(), time.process_time()
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        for closing in closings:
            coordinate_closing(closing, as_of=now)
        for _ in range(days):
            httpx.post(f"{url}/sandbox/clock/advance", json={"seconds": 86_400}).raise_for_status()
            now += timedelta(days=1)
            place_due_orders(as_of=now)
            sync_orders(as_of=now)
    return {"wall": time.perf_counter() - wall0, "cpu": time.process_time() - cpu0}


def ceiling_share(scale: float, limit: int) -> tuple[float, int]:
    """Share of the ceiling used over the windows where calls queued (a window's worth or more)."""
    from sqlmodel import col, select

    from models.tables import ApiCall
    from preclose.app.runtime import db_session

    window = 60 * scale
    with db_session() as session:
        stamps = sorted(row.timestamp() for row in session.exec(select(col(ApiCall.at))).all())
    # Bursts: runs of calls with gaps shorter than a second of waiting for the limiter.
    bursts: list[list[float]] = []
    for stamp in stamps:
        if bursts and stamp - bursts[-1][-1] < 1.0:
            bursts[-1].append(stamp)
        else:
            bursts.append([stamp])
    used = capacity = 0.0
    for burst in bursts:
        if len(burst) <= limit:
            continue  # no backlog: the whole burst fitted in one window
        span = burst[-1] - burst[0]
        used += len(burst) - 1
        capacity += span / window * limit
    return (used / capacity if capacity else float("nan")), len(bursts)


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
) -> dict[str, tuple[int, int]]:
    """Each service against its window, from the stored plan lines and Offergrid's histories.

    - "on_time": essential lines live (completed or active) by their needed-by day (the window's
      end), out of the essential lines (every bench closing is booked 21-45 days out);
    - "early": lines live before possession or more than one day before their requested start,
      out of the lines that went live;
    - "insured": closings whose insurance was active by the end of closing day, out of closings.
    Each category counts once per closing: its latest attempt decides.
    """
    from zoneinfo import ZoneInfo

    from sqlmodel import col, select

    from models.tables import Closing, OrderItem, PlanLineRow
    from preclose.app.runtime import db_session

    on_time = essential = early = live_lines = insured = 0
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
            if live_day is not None:
                live_lines += 1
                early += live_day < possession or (line.service_date - live_day).days > 1
            if line.category == "insurance" and active is not None:
                insured += active.astimezone(zone).date() <= closing.closing_date
    return {
        "on_time": (on_time, essential),
        "early": (early, live_lines),
        "insured": (insured, len(closings)),
    }


def run_baseline(closings: list[Any], url: str, days: int) -> dict[str, Any]:
    """The docs' pattern: catalog per closing, an order per service, 5-minute polls (counted)."""
    from offergrid import OffergridClient
    from offergrid_sandbox.config import RESELLER_KEY
    from preclose.app.runtime import policy
    from preclose.rules.placing import order_request
    from preclose.rules.recommend import recommend
    from preclose.rules.timing import plan_closing

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
        created = datetime.fromisoformat(order["createdAt"].replace("Z", "+00:00"))
        ends = [
            datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
            for item in order["items"]
            for entry in item.get("history", [])
            if entry.get("status") in FINAL
        ]
        end = max(ends) if ends else START + timedelta(days=days)
        count = math.ceil((end - created) / POLL_EVERY) + 1
        polls += count
        for tick in range(count):
            peak[int((created + tick * POLL_EVERY).timestamp() // 60)] += 1
    return {"sent": dict(sent), "polls": polls, "peak_per_minute": max(peak.values(), default=0)}


def main() -> None:
    """Run both coordinators and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--closings", type=int, default=1000)
    parser.add_argument("--zips", type=int, default=100)
    parser.add_argument("--days", type=int, default=60, help="simulated days to track")
    parser.add_argument("--window-scale", type=float, default=0.2, help="rate windows x this")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--port", type=int, default=18_765, help="local Offergrids on this and +1")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="preclose-bench-"))
    os.environ.update(
        PRECLOSE_DATA_DIR=str(work),
        PRECLOSE_DATABASE_URL=f"sqlite:///{work / 'bench.db'}",
        PREFECT_HOME=str(work / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # A busy machine can take a while to bring Prefect's local API up.
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="300",
        PREFECT_LOGGING_LEVEL="ERROR",
    )
    from offergrid_sandbox.catalog import seed_catalog

    served = len(seed_catalog(args.seed).zip_places)
    zips = min(args.zips, served)
    closings = make_closings(args.closings, zips, args.seed)
    print(
        f"{len(closings)} closings over {zips} ZIPs (the local Offergrid serves {served}), "
        f"{args.days} simulated days, rate windows x{args.window_scale} "
        f"(100 per {60 * args.window_scale:.1f} s)"
    )

    ours = start_sandbox(args.port, args.window_scale, args.seed)
    try:
        url = f"http://127.0.0.1:{args.port}"
        timing = run_preclose(closings, url, args.window_scale, args.days)
        stats = httpx.get(f"{url}/sandbox/requests").json()["byEndpoint"]
        moments = live_moments(httpx.get(f"{url}/sandbox/orders", timeout=60).json())
    finally:
        ours.terminate()
    share, bursts = ceiling_share(args.window_scale, 100)
    figures = window_figures(moments)
    total = sum(sum(codes.values()) for codes in stats.values())
    too_many = sum(codes.get("429", 0) for codes in stats.values())
    print("\npreclose")
    for endpoint, codes in sorted(stats.items()):
        count = sum(codes.values())
        print(f"  {endpoint:<34} {count:>7}  {count / len(closings):6.2f} per closing  {codes}")
    print(f"  {'all requests':<34} {total:>7}  {total / len(closings):6.2f} per closing")
    print(f"  429s received: {too_many}")
    used = "no backlog formed" if math.isnan(share) else f"{share:.1%}"
    print(f"  share of the rate ceiling used while orders queued: {used} ({bursts} bursts)")
    print(
        f"  coordinator time per closing: {timing['wall'] / len(closings) * 1000:.0f} ms wall, "
        f"{timing['cpu'] / len(closings) * 1000:.0f} ms CPU"
    )
    for key, label, goal in (
        ("on_time", "essential services live by the day needed", "goal >= 98%"),
        ("early", "services live before possession or > 1 day before their start", "goal 0"),
        ("insured", "closings with insurance in force on closing day", "goal 100%"),
    ):
        count, total = figures[key]
        percent = f" ({count / total:.1%})" if total else ""
        print(f"  {label}: {count}/{total}{percent}, {goal}")

    if not args.skip_baseline:
        # The baseline's windows are shrunk to nothing: its polls are counted, and its orders may
        # go as fast as the sandbox takes them.
        theirs = start_sandbox(args.port + 1, 0.0001, args.seed)
        try:
            base = run_baseline(closings, f"http://127.0.0.1:{args.port + 1}", args.days)
        finally:
            theirs.terminate()
        sent = sum(base["sent"].values())
        base_total = sent + base["polls"]
        print("\nbaseline (the docs' pattern)")
        for endpoint, count in sorted(base["sent"].items()):
            print(f"  {endpoint:<34} {count:>7}  {count / len(closings):6.2f} per closing")
        print(
            f"  {'GET /reseller/orders/{id} (polls)':<34} {base['polls']:>7}  "
            f"{base['polls'] / len(closings):6.2f} per closing"
        )
        print(
            f"  {'all requests':<34} {base_total:>7}  {base_total / len(closings):6.2f} per closing"
        )
        print(
            f"  peak polling pace: {base['peak_per_minute']} requests a minute (the ceiling is 100)"
        )
        print(f"\nratio: preclose uses {total / base_total:.2%} of the baseline's requests")


if __name__ == "__main__":
    main()
