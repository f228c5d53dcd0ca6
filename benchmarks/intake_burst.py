"""Benchmark: a burst of closings into the HTTP API, as `preclose serve` runs it, and how it holds.

Starts what `preclose serve` starts for intake, on loopback: a Prefect server (its own
`prefect server start`, home in a temporary directory), the deployments registered on it (no
worker: this measures accepting closings, not coordinating them), and the HTTP app under uvicorn.
Then C callers POST N distinct closings to /closings at once, each waiting for its answer, and
it prints the answers by status, the per-request latency (p50, p95, p99, max), how many took over
1 s and over 10 s, closings accepted per second, and the "database is locked" errors in the
Prefect server's log (kept beside the temporary directory). `--database postgresql` puts both
preclose's tables and the Prefect server on fresh PostgreSQL databases (dropped at the end).

    .venv/bin/python benchmarks/intake_burst.py            # 500 closings, 8 callers, SQLite
    .venv/bin/python benchmarks/intake_burst.py --database postgresql
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_ADMIN = os.environ.get("PRECLOSE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def postgres_database(prefix: str) -> Any:
    """A fresh PostgreSQL database for the block (dropped after); yields its name and admin URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(PG_ADMIN).set(drivername="postgresql")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name)
    finally:
        from preclose.storage.db import dispose_engines

        dispose_engines()
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def closings(count: int) -> list[dict[str, Any]]:
    """`count` distinct closings as a CRM sends them, 3 to 8 weeks out, over the sample ZIPs."""
    from preclose.app.samples import sample_closings

    today = date.today()
    samples = [s.model_dump(mode="json") for s in sample_closings(today)]
    bodies = []
    for index in range(count):
        body = dict(samples[index % len(samples)])
        body["crm_closing_id"] = f"BURST-{index:05d}-{uuid.uuid4().hex[:6]}"
        closing_day = today + timedelta(days=21 + index % 35)
        body["closing_date"] = closing_day.isoformat()
        body["move_in_date"] = None
        bodies.append(body)
    return bodies


async def register_deployments() -> None:
    """The coordinate and change deployments, as records only (no worker will run them)."""
    from prefect.client.orchestration import get_client

    from preclose.names import CHANGE, COORDINATE

    async with get_client() as client:
        for name in (COORDINATE, CHANGE):
            flow_name, deployment = name.split("/")
            flow_id = await client.create_flow_from_name(flow_name)
            await client.create_deployment(flow_id=flow_id, name=deployment)


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(share * len(ordered) + 0.999999) - 1))]


def main() -> None:
    """Run the burst and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--closings", type=int, default=500)
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--prefect-port", type=int, default=11150)
    parser.add_argument("--api-port", type=int, default=11151)
    args = parser.parse_args()

    with ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="intake-")))
        os.environ["PRECLOSE_DATA_DIR"] = str(data_dir)
        os.environ["PREFECT_HOME"] = str(data_dir / "prefect")
        os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{args.prefect_port}/api"
        if args.database == "postgresql":
            app_url = stack.enter_context(postgres_database("preclose_burst_app"))
            prefect_url = stack.enter_context(postgres_database("preclose_burst_prefect"))
            os.environ["PRECLOSE_DATABASE_URL"] = app_url.render_as_string(hide_password=False)
            os.environ["PREFECT_API_DATABASE_CONNECTION_URL"] = prefect_url.set(
                drivername="postgresql+asyncpg"
            ).render_as_string(hide_password=False)
        else:
            os.environ["PRECLOSE_DATABASE_URL"] = f"sqlite:///{data_dir / 'preclose.db'}"

        from preclose.app.api.app import create_api
        from preclose.app.api.auth import issue_api_key
        from preclose.app.serve import prefect_server, threaded_app
        from preclose.runtime import db_session
        from preclose.settings import get_settings

        settings = get_settings()
        log_file = data_dir / "prefect" / "server.log"
        started = time.perf_counter()
        stack.enter_context(prefect_server(settings, args.prefect_port, log_file, print))
        print(f"Prefect server up in {time.perf_counter() - started:.0f} s ({args.database})")
        asyncio.run(register_deployments())
        api = stack.enter_context(threaded_app(create_api(), args.api_port, "HTTP app"))
        with db_session() as session:
            key, _ = issue_api_key(session=session, name="burst", read_only=False)

        bodies = closings(args.closings)
        local = threading.local()

        def post(body: dict[str, Any]) -> tuple[float, int | str]:
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx.Client(
                    base_url=api, headers={"x-api-key": key}, timeout=120
                )
            begin = time.perf_counter()
            try:
                status: int | str = client.post("/closings", json=body).status_code
            except httpx.HTTPError as err:
                status = type(err).__name__
            return time.perf_counter() - begin, status

        print(f"Posting {len(bodies)} closings from {args.callers} concurrent callers...")
        burst_start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.callers) as pool:
            results = list(pool.map(post, bodies))
        elapsed = time.perf_counter() - burst_start
        # Kept for a look before the temporary directory goes.
        kept_log = data_dir.parent / f"intake-burst-{args.database}-prefect-server.log"
        kept_log.write_bytes(log_file.read_bytes())
        locked = kept_log.read_text(errors="replace").count("database is locked")

    latencies = [seconds for seconds, _ in results]
    by_status = Counter(str(status) for _, status in results)
    accepted = by_status.get("202", 0)
    print(f"Answers: {dict(sorted(by_status.items()))}")
    print(
        f"Latency per request: p50 {statistics.median(latencies):.3f} s, "
        f"p95 {percentile(latencies, 0.95):.3f} s, p99 {percentile(latencies, 0.99):.3f} s, "
        f"max {max(latencies):.3f} s"
    )
    print(f"Over 1 s: {sum(t > 1 for t in latencies)}; over 10 s: {sum(t > 10 for t in latencies)}")
    print(f"Accepted {accepted} closings in {elapsed:.1f} s: {accepted / elapsed:.1f} a second")
    print(f'"database is locked" in the Prefect server log: {locked} (log: {kept_log})')


if __name__ == "__main__":
    main()
