"""Fault soak: closings request to fulfilled against a local Offergrid on a bad day.

The local Offergrid runs on loopback (in this process, on its own thread) on a virtual clock with
default provider timing (5% rejections, 3% failed installs) and every fault switched on: 10% of
requests answered 5xx, 2% of order placements committed then answered 5xx, `Idempotency-Key`
ignored, and webhooks 20% dropped, 20% duplicated and reordered, delivered to preclose's own
receiver (the HTTP app on loopback).
preclose runs its flows in this process, as its schedules would: `place due orders` and
`sync orders` every simulated day, and `follow up closing` for each closing a webhook moved
(what the deployment trigger does in `preclose serve`). Rate windows are scaled so a run takes
minutes. Prints:

- flow runs by final state, and every failed one with its error;
- closings by state, and for each one not fulfilled the named state and its reason;
- items: ours against Offergrid's, line by line (disagreeing, missing, orphaned), and duplicate
  orders per intent (Offergrid ignoring the key);
- webhook deliveries by outcome; Offergrid requests and 429s.

    .venv/bin/python benchmarks/fault_soak.py                  # 100 closings
    .venv/bin/python benchmarks/fault_soak.py --closings 20    # a quick look
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.closings import START, make_closings  # noqa: E402

SECRET = "whsec_fault_soak"  # noqa: S105  (a scratch secret shared with our own sandbox)


def sandbox_config(receiver: str, scale: float, seed: int) -> Any:
    """The local Offergrid's settings with every fault on."""
    from offergrid_sandbox.config import (
        FaultConfig,
        RateLimitConfig,
        SandboxConfig,
        WebhookConfig,
    )

    return SandboxConfig(
        clock="virtual",
        seed=seed,
        start_time=START,
        rate_limit=RateLimitConfig(minute_seconds=60 * scale, hour_seconds=3600 * scale),
        faults=FaultConfig(
            error_rate=0.10, committed_then_failed_rate=0.02, ignore_idempotency_key=True
        ),
        webhooks=WebhookConfig(
            url=f"{receiver}/webhooks/offergrid",
            secret=SECRET,
            drop_rate=0.20,
            duplicate_rate=0.20,
            reorder=True,
        ),
    )


def _moved_by_webhooks(since: datetime) -> set[str]:
    """CRM IDs of the closings whose items a webhook moved since `since` (the trigger's work)."""
    from sqlmodel import col, select

    from models.tables import WebhookEvent
    from preclose.runtime import db_session
    from preclose.storage import repository

    with db_session() as session:
        item_ids = session.exec(
            select(WebhookEvent.offergrid_item_id).where(
                col(WebhookEvent.outcome) == "applied", col(WebhookEvent.processed_at) > since
            )
        ).all()
        found = set()
        for item_id in set(item_ids):
            if item_id is None:
                continue
            context = repository.get_item_context(session=session, offergrid_item_id=item_id)
            if context is not None:
                found.add(context.crm_closing_id)
    return found


def run(args: argparse.Namespace) -> bool:
    """Run the soak and print its figures; True when every run ended and the records agree."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.coordinate import coordinate_closing
    from flows.follow_up import follow_up_closing
    from flows.place import place_due_orders
    from flows.sync import sync_orders
    from offergrid_sandbox.config import RESELLER_KEY
    from offergrid_sandbox.server import running_sandbox
    from preclose.app.api import create_api
    from preclose.app.serve import threaded_app
    from preclose.settings import get_settings

    base = 10900 + args.port_offset
    url = f"http://127.0.0.1:{base}"
    os.environ.update(
        PRECLOSE_OFFERGRID_BASE_URL=url,
        PRECLOSE_OFFERGRID_API_KEY=RESELLER_KEY,
        PRECLOSE_OFFERGRID_WEBHOOK_SECRET=SECRET,
        PRECLOSE_RATE_LIMIT_WINDOW_SCALE=str(args.window_scale),
    )
    get_settings.cache_clear()
    closings = make_closings(args.closings, args.zips, args.seed)
    print(
        f"{len(closings)} closings over {args.zips} ZIPs, {args.days} simulated days; faults: "
        "10% 5xx, 2% committed-then-failed, Idempotency-Key ignored, webhooks 20% dropped, "
        f"20% duplicated, reordered; rate windows x{args.window_scale}"
    )
    states: Counter[str] = Counter()
    failures: list[str] = []

    def tally(kind: str, state: Any) -> Any:
        states[f"{kind}: {state.name}"] += 1
        if state.is_failed():
            error = state.result(raise_on_failure=False)
            failures.append(f"{kind}: {type(error).__name__}: {str(error)[:160]}")
        return state

    wall0 = time.perf_counter()
    app = create_api(get_settings())
    receiver_port = base + 1
    receiver_url = f"http://127.0.0.1:{receiver_port}"
    config = sandbox_config(receiver_url, args.window_scale, args.seed)
    with running_sandbox(config, port=base) as server, threaded_app(app, receiver_port, "receiver"):
        # The receiver holds signatures to the sandbox's (virtual) clock.
        app.state.now = server.sandbox.clock.now
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            now = START
            for closing in closings:
                tally("coordinate", coordinate_closing(closing, as_of=now, return_state=True))
            print(f"  coordinated in {time.perf_counter() - wall0:.0f} s", flush=True)
            step = timedelta(days=1)
            seen = datetime.now(START.tzinfo)
            for index in range(int(args.days)):
                server.sandbox.advance(step.total_seconds())
                now = server.sandbox.clock.now()
                marker = datetime.now(START.tzinfo)
                for crm_id in sorted(_moved_by_webhooks(seen)):
                    tally("follow up", follow_up_closing(crm_id, as_of=now, return_state=True))
                seen = marker
                tally("place", place_due_orders(as_of=now, return_state=True))
                tally("sync", sync_orders(as_of=now, return_state=True))
                if index % 10 == 9:
                    print(f"  day {index + 1}: {time.perf_counter() - wall0:.0f} s", flush=True)
        stats = httpx.get(f"{url}/sandbox/requests").json()["byEndpoint"]
        offergrid_orders = httpx.get(f"{url}/sandbox/orders").json()
    return report(
        states, failures, offergrid_orders, stats, len(closings), time.perf_counter() - wall0
    )


def report(
    states: Counter[str],
    failures: list[str],
    offergrid_orders: list[dict[str, Any]],
    stats: dict[str, dict[str, int]],
    count: int,
    wall: float,
) -> bool:
    """Print the figures; True when every run ended and Offergrid's records match ours."""
    from sqlmodel import col, func, select

    from models.tables import Closing, ClosingStatus, OrderItem, WebhookEvent
    from preclose.rules.lifecycle import describe
    from preclose.rules.placing import INTENT_KEY
    from preclose.runtime import db_session
    from preclose.storage import repository

    print(f"\nflow runs by final state ({sum(states.values())}):")
    for key, n in sorted(states.items()):
        print(f"  {key:<40} {n:>6}")
    print(f"  failed: {len(failures)}")
    for line in failures[:20]:
        print(f"    {line}")

    with db_session() as session:
        closings = list(session.exec(select(Closing)).all())
        ours = {
            str(i.offergrid_item_id): i
            for i in session.exec(
                select(OrderItem).where(col(OrderItem.offergrid_item_id).is_not(None))
            ).all()
        }
        outcomes = dict(
            session.exec(
                select(WebhookEvent.outcome, func.count()).group_by(WebhookEvent.outcome)
            ).all()
        )
        by_status = Counter(str(c.status) for c in closings)
        print(f"\nclosings by state ({len(closings)} of {count}):")
        for status, n in sorted(by_status.items()):
            print(f"  {describe(status):<20} {n:>5}")
        for closing in closings:
            if closing.status == ClosingStatus.fulfilled:
                continue
            lines = repository.list_plan_lines(session=session, closing_id=closing.id)
            reasons = closing.attention_reason or "; ".join(
                f"{line.category} {line.state}"
                + (f" ({line.risk_reason or line.problem})" if line.at_risk else "")
                for line in lines
                if str(line.state) not in ("fulfilled", "skipped")
            )
            print(f"  {closing.crm_closing_id}: {describe(closing.status)}: {reasons[:200]}")

    theirs = {
        item["itemId"]: (item, order) for order in offergrid_orders for item in order["items"]
    }
    disagree = [
        item_id
        for item_id, item in ours.items()
        if item_id in theirs and item.status != theirs[item_id][0]["status"]
    ]
    missing = [item_id for item_id in ours if item_id not in theirs]
    orphans = [item_id for item_id in theirs if item_id not in ours]
    intents = Counter((order.get("metadata") or {}).get(INTENT_KEY) for order in offergrid_orders)
    duplicates = sum(n - 1 for key, n in intents.items() if key and n > 1)
    print(f"\nitems: ours {len(ours)}, Offergrid's {len(theirs)}")
    print(f"  disagreeing with Offergrid: {len(disagree)}")
    for item_id in disagree[:10]:
        print(
            f"    {item_id}: ours {ours[item_id].status}, Offergrid {theirs[item_id][0]['status']}"
        )
    print(f"  ours not at Offergrid: {len(missing)}; Offergrid's not in ours: {len(orphans)}")
    print(f"  duplicate orders for one intent: {duplicates}")
    print(
        f"\nwebhook deliveries by outcome: {dict(sorted((str(k), v) for k, v in outcomes.items()))}"
    )
    total = sum(sum(codes.values()) for codes in stats.values())
    too_many = sum(codes.get("429", 0) for codes in stats.values())
    errors = sum(n for codes in stats.values() for code, n in codes.items() if code.startswith("5"))
    print(
        f"Offergrid requests: {total} ({total / count:.2f} per closing), "
        f"5xx answered {errors}, 429s {too_many}"
    )
    print(f"elapsed: {wall:.0f} s")
    return not (failures or disagree or missing or orphans or duplicates)


def main() -> None:
    """Parse the options, set up a scratch data directory and Prefect home, and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--closings", type=int, default=100)
    parser.add_argument("--zips", type=int, default=20)
    parser.add_argument("--days", type=float, default=60, help="simulated days to track")
    parser.add_argument("--window-scale", type=float, default=0.05, help="rate windows x this")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--port-offset", type=int, default=10, help="ports 10900+offset, +1")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="preclose-soak-"))
    os.environ.update(
        PRECLOSE_DATA_DIR=str(work),
        PRECLOSE_DATABASE_URL=f"sqlite:///{work / 'soak.db'}",
        PREFECT_HOME=str(work / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="ERROR",
        # A shared 2-core machine: give Prefect's local API time to start.
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
    )
    try:
        held = run(args)
    except BaseException:
        print(f"the run failed; its data and Prefect's database are in {work}", file=sys.stderr)
        raise
    if not held:
        # What went wrong is in those tables: keep them for a person to read.
        sys.exit(f"a run failed or our records differ from Offergrid's; the data is in {work}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
