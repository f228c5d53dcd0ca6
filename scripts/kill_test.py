"""Kill test: closings accepted over HTTP survive workers stopped (SIGTERM) and killed (SIGKILL).

What it starts, all on loopback (ports 10950+) and all stopped again at the end:

- two fresh PostgreSQL databases (dropped at the end): the Prefect server's and preclose's tables;
- the local Offergrid (virtual clock, providers that always succeed; the scale-out script's tight
  rate limit, 6 calls per 2 s window, with our shared limiter scaled the same way);
- `prefect server start`, a process work pool with every deployment, two workers;
- preclose's HTTP app (the CRM closings API) with a fresh API key.

Then it POSTs N closings to `/closings` (each 202: stored, its run created), and mid-backlog
SIGTERMs the first worker and every process under it (the flow runs it started), then
SIGKILLs the second's. It starts two fresh workers and runs `reconcile intake` (the deployment
`preclose serve` also runs at start and on its schedule) until every accepted request is
finished, then `place due orders` for the day. It prints: closings accepted, planned, left
unplanned; due plan lines ordered and not; Offergrid items per plan line (duplicates); flow runs
by state; runs the reconciler started again; elapsed time.

    .venv/bin/python scripts/kill_test.py                   # 200 closings
    .venv/bin/python scripts/kill_test.py --closings 40     # a quick look
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack, suppress
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.scale_out import (  # noqa: E402
    POOL,
    add_admin_url,
    scratch_installation,
    wait_for,
)

BASE_PORT = 10950
WORKER_LIMIT = 4


def start_worker(name: str, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """`prefect worker start` on the pool, in its own process group."""
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL]
    return subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
        [*command, "--type", "process", "--name", name, "--limit", str(WORKER_LIMIT)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def process_tree(pid: int) -> list[int]:
    """`pid` and every process descended from it, read from /proc (parents first)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The parent is the 2nd field after the command in parentheses (which may hold spaces).
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, queue = [], [pid]
    while queue:
        current = queue.pop(0)
        tree.append(current)
        queue.extend(children.get(current, []))
    return tree


def stop_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> int:
    """Send `sig` to the worker and every process under it; returns how many were signalled.

    Prefect's process worker starts each flow run in a session of its own, so a signal to the
    worker's process group would miss them. This is what a service manager stopping the worker's
    unit (systemd, a container stop) does: every process of it is signalled at once.
    """
    tree = process_tree(process.pid)
    for pid in tree:
        with suppress(ProcessLookupError):
            os.kill(pid, sig)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        for pid in process_tree(process.pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=10)
    return len(tree)


def stop_if_running(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a worker and its flow runs at the end, unless it is gone already."""
    if process.poll() is None:
        stop_group(process, signal.SIGTERM)


def closing_statuses() -> Counter[str]:
    """Our closings by status."""
    from sqlmodel import select

    from models.tables import Closing
    from preclose.runtime import db_session

    with db_session() as session:
        return Counter(str(c.status) for c in session.exec(select(Closing)).all())


def unfinished_requests() -> int:
    """Accepted requests no run has finished yet."""
    from sqlmodel import col, func, select

    from models.tables import CrmRequest
    from preclose.runtime import db_session

    with db_session() as session:
        return int(
            session.exec(select(func.count()).where(col(CrmRequest.finished_at).is_(None))).one()
        )


def restarted_runs() -> int:
    """Runs started again for accepted requests (each attempt after a request's first)."""
    from sqlmodel import func, select

    from models.tables import CrmRequest
    from preclose.runtime import db_session

    with db_session() as session:
        return int(session.exec(select(func.sum(CrmRequest.attempt - 1))).one() or 0)


def run_states() -> Counter[str]:
    """Every flow run on the server, by flow and state type."""
    from prefect.client.orchestration import get_client

    counts: Counter[str] = Counter()
    with get_client(sync_client=True) as client:
        flows = {f.id: f.name for f in client.read_flows(limit=50)}
        offset = 0
        while True:
            runs = client.read_flow_runs(limit=200, offset=offset)
            for run in runs:
                state = run.state_type.value if run.state_type else "?"
                counts[f"{flows.get(run.flow_id, '?')}: {state}"] += 1
            if len(runs) < 200:
                return counts
            offset += 200


def order_figures(sandbox: Any, today: Any) -> dict[str, int]:
    """Due lines ordered and not, our items, Offergrid's items, and duplicates per intent/line."""
    from sqlmodel import select

    from models.tables import Closing, OrderItem, PlanLineRow
    from preclose.rules.placing import CLOSING_REF_KEY, INTENT_KEY
    from preclose.runtime import db_session

    with db_session() as session:
        lines = session.exec(select(PlanLineRow)).all()
        zones = {c.id: c for c in session.exec(select(Closing)).all()}
        items = session.exec(select(OrderItem).where(OrderItem.offergrid_item_id != None)).all()  # noqa: E711
    ordered = {item.plan_line_id for item in items}
    # A current line with an offer whose order date has come (a day's slack for time zones).
    due = [
        line
        for line in lines
        if line.offer_id
        and line.placement_date < today
        and zones.get(line.closing_id)
        and str(line.state) != "cancelled"
    ]
    orders = sandbox.all_orders()
    intents = Counter((o.get("metadata") or {}).get(INTENT_KEY) for o in orders)
    per_line = Counter(
        (str((o.get("metadata") or {}).get(CLOSING_REF_KEY)), item["offerId"])
        for o in orders
        for item in o["items"]
    )
    return {
        "due lines": len(due),
        "due lines ordered": sum(line.id in ordered for line in due),
        "items recorded": len(items),
        "items at Offergrid": sum(len(o["items"]) for o in orders),
        "duplicate orders (same intent)": sum(n - 1 for k, n in intents.items() if k and n > 1),
        "most Offergrid items for one plan line": max(per_line.values(), default=0),
    }


def main() -> int:
    """Run the kill test and print its figures; 0 when every accepted closing was planned and
    every due line ordered once, inside the time given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--closings", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=2400.0, help="seconds for the whole run")
    parser.add_argument("--advance-days", type=int, default=14, help="then place what is due")
    add_admin_url(parser)
    args = parser.parse_args()
    started = time.monotonic()
    deadline = started + args.timeout

    with ExitStack() as stack:
        scratch = scratch_installation(
            stack,
            admin_url=args.admin_url,
            name="kill",
            port=BASE_PORT,
            # A run its killed worker left "running" is taken as lost after this long.
            extra_environment={
                "PRECLOSE_RECONCILE_STALE_MINUTES": "1",
                "PREFECT_LOGGING_LEVEL": "WARNING",
            },
        )
        home, offergrid = scratch.home, scratch.offergrid
        from preclose.app.api import create_api
        from preclose.app.api.auth import issue_api_key
        from preclose.app.serve import threaded_app
        from preclose.runtime import db_session
        from preclose.settings import get_settings

        app = create_api(get_settings())
        clock = offergrid.sandbox.clock
        app.state.now = clock.now
        api = stack.enter_context(threaded_app(app, BASE_PORT + 1, "closings API"))
        with db_session() as session:
            key, _ = issue_api_key(session=session, name="kill-test", read_only=False)

        logs = {name: stack.enter_context((home / f"{name}.log").open("wb")) for name in "abcd"}
        workers = {name: start_worker(f"worker-{name}", logs[name]) for name in "ab"}
        for process in workers.values():
            stack.callback(stop_if_running, process)

        from scripts.scale_out import sample_closings_for

        closings = sample_closings_for(clock.now().date(), args.closings)
        codes: Counter[int] = Counter()
        with httpx.Client(base_url=api, headers={"x-api-key": key}, timeout=60) as http:
            for closing in closings:
                body = closing.model_copy(
                    update={"crm_closing_id": closing.crm_closing_id.replace("SCALE", "KILL")}
                ).model_dump(mode="json")
                codes[http.post("/closings", json=body).status_code] += 1
        print(f"POSTed {len(closings)} closings: {dict(codes)}")

        def planned() -> int:
            statuses = closing_statuses()
            return sum(n for status, n in statuses.items() if status != "received")

        target = max(1, len(closings) // 5)
        while planned() < target and time.monotonic() < deadline:
            time.sleep(1)
        count = planned()
        signalled = stop_group(workers["a"], signal.SIGTERM)
        print(f"{count} planned: SIGTERM to worker-a and its flow runs ({signalled} processes)")
        target = planned() + max(1, len(closings) // 5)
        while planned() < target and time.monotonic() < deadline:
            time.sleep(1)
        count = planned()
        signalled = stop_group(workers["b"], signal.SIGKILL)
        print(f"{count} planned: SIGKILL to worker-b and its flow runs ({signalled} processes)")
        left = len(closings) - planned()
        print(f"Both workers down; {left} closings not planned yet; starting two fresh workers")
        for name in "cd":
            process = start_worker(f"worker-{name}", logs[name])
            stack.callback(stop_if_running, process)

        from prefect.deployments import run_deployment

        from preclose.names import PLACE_DUE, RECONCILE

        reconciles = 0
        while time.monotonic() < deadline:
            # Its result is not persisted: what it did is read from our requests below.
            run_deployment(RECONCILE, timeout=300, as_subflow=False)
            reconciles += 1
            if unfinished_requests() == 0:
                break
            time.sleep(15)
        print(
            f"Reconciler ran {reconciles} times; runs started again: {restarted_runs()}; "
            f"unfinished requests: {unfinished_requests()}"
        )
        # Then the backlog's orders: days on, every line due by then, placed by two runs at once
        # (as a retry storm or two schedulers would send them).
        offergrid.sandbox.advance(timedelta(days=args.advance_days).total_seconds())
        as_of = clock.now().isoformat()
        placing = [
            run_deployment(PLACE_DUE, parameters={"as_of": as_of}, timeout=0, as_subflow=False)
            for _ in range(2)
        ]
        ended = wait_for([run.id for run in placing], deadline)  # type: ignore[union-attr]
        print(f"place due orders x2 on day {args.advance_days} -> {dict(Counter(ended.values()))}")
        statuses = closing_statuses()
        print()
        print(f"Closings accepted (202): {codes.get(202, 0)} of {len(closings)}")
        print(f"Closings by state: {dict(statuses)}")
        print(
            f"Planned: {sum(n for s, n in statuses.items() if s != 'received')}; "
            f"left unplanned: {statuses.get('received', 0)}"
        )
        figures = order_figures(offergrid.sandbox, clock.now().date())
        for name, value in figures.items():
            print(f"{name}: {value}")
        print("Flow runs by state:")
        for key_, n in sorted(run_states().items()):
            print(f"  {key_:<40} {n:>5}")
        print(f"Elapsed: {time.monotonic() - started:.0f} s")
        if time.monotonic() > deadline:
            print(f"The run did not finish inside --timeout {args.timeout:.0f} s: figures partial")
        ok = (
            time.monotonic() <= deadline
            and statuses.get("received", 0) == 0
            and figures["due lines ordered"] == figures["due lines"]
            and figures["duplicate orders (same intent)"] == 0
            and figures["most Offergrid items for one plan line"] <= 1
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
