"""`preclose demo`: sample closings coordinated to fulfilment on the local Offergrid, in seconds."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from offergrid_sandbox.state import Sandbox

# A simulated day per step: providers act on the sandbox's virtual clock between steps.
STEP = timedelta(days=1)
MAX_DAYS = 90
DEMO_SERVICES_OFF = (
    "CANCELLATION_CLEANUP",
    "CLEANUP_RECONCILER",
    "FOREMAN",
    "LATE_RUNS",
    "PAUSE_EXPIRATIONS",
    "REPOSSESSOR",
    "SCHEDULER",
    "TRIGGERS",
)


@dataclass(frozen=True)
class DemoOutcome:
    """What the demo did: closings fulfilled, days simulated, Offergrid requests, wall time."""

    closings: int
    fulfilled: int
    days: int
    requests: int
    seconds: float
    # How often (and how long) Prefect's client slept after a 503 or 429 from its own API.
    prefect_retry_sleeps: int = 0
    prefect_retry_seconds: float = 0.0


def prepare_environment(data_dir: Path) -> None:
    """Point preclose and Prefect at a fresh demo data directory, before Prefect is imported."""
    demo_dir = data_dir / "demo"
    shutil.rmtree(demo_dir, ignore_errors=True)
    demo_dir.mkdir(parents=True)
    os.environ.update(
        PRECLOSE_DATA_DIR=str(demo_dir),
        PRECLOSE_DATABASE_URL=f"sqlite:///{demo_dir / 'preclose.db'}",
        # Kept across runs (outside demo/), so the Prefect UI shows every demo's runs.
        PREFECT_HOME=str(data_dir / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_LOGGING_LOG_PRINTS="false",
    )
    # Prefect's server on a free loopback port for the demo's length (never someone else's), its
    # SQLite writes begun IMMEDIATE (preclose.app.prefect_sqlite): no 503s, no retry sleeps. No UI
    # while the demo runs: the closing words say how to look at the runs afterwards.
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{_free_port()}/api"
    os.environ["PREFECT_UI_ENABLED"] = "false"
    # The demo runs its flows directly: no deployments to schedule, no automations, no workers to
    # watch. Only the services that record runs and events stay on (less CPU while it runs).
    for service in DEMO_SERVICES_OFF:
        os.environ.setdefault(f"PREFECT_SERVER_SERVICES_{service}_ENABLED", "false")
    from preclose.app.prefect_sqlite import prefect_sqlite_environment

    os.environ.update(prefect_sqlite_environment())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run_demo(*, closings: int, seed: int, console: Console) -> DemoOutcome:
    """Coordinate sample closings on a virtual-clock local Offergrid until all are fulfilled."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from offergrid_sandbox.config import RESELLER_KEY, SandboxConfig, SimulationConfig
    from offergrid_sandbox.server import running_sandbox
    from preclose.app.prefect_retries import counting_retry_sleeps
    from preclose.app.serve import prefect_server
    from preclose.prefect_api import one_prefect_client
    from preclose.settings import get_settings

    started = time.perf_counter()
    # The happy path: rejected orders and failed installs are handled by the re-plan flows.
    config = SandboxConfig(
        clock="virtual", seed=seed, simulation=SimulationConfig(rejection_rate=0, failure_rate=0)
    )
    port = int(os.environ["PREFECT_API_URL"].rsplit(":", 1)[1].split("/")[0])
    data_dir = Path(os.environ["PRECLOSE_DATA_DIR"])
    server_log = data_dir / "prefect-server.log"
    with (
        # The flows are imported while Prefect's server starts: a second or two less to wait.
        prefect_server(get_settings(), port, server_log, console.print, meanwhile=_import_flows),
        running_sandbox(config) as server,
    ):
        os.environ["PRECLOSE_OFFERGRID_BASE_URL"] = server.url
        os.environ["PRECLOSE_OFFERGRID_API_KEY"] = RESELLER_KEY
        get_settings.cache_clear()
        # Heartbeats find crashed runs of remote workers; in this one process they only add a
        # second of shutdown wait to every flow run.
        with (
            temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
            counting_retry_sleeps() as retries,
            one_prefect_client(),
        ):
            outcome = _drive(server.sandbox, closings=closings, console=console)
        requests = sum(
            sum(counts.values()) for counts in server.sandbox.request_stats()["byEndpoint"].values()
        )
    return DemoOutcome(
        closings=outcome[0],
        fulfilled=outcome[1],
        days=outcome[2],
        requests=requests,
        seconds=time.perf_counter() - started,
        prefect_retry_sleeps=retries.sleeps,
        prefect_retry_seconds=retries.seconds,
    )


def _import_flows() -> None:
    import flows.coordinate
    import flows.place
    import flows.sync  # noqa: F401


def _drive(sandbox: Sandbox, *, closings: int, console: Console) -> tuple[int, int, int]:
    from flows.coordinate import coordinate_closing
    from flows.place import place_due_orders
    from flows.sync import sync_orders
    from models.tables import ClosingStatus
    from preclose.app.samples import sample_closings
    from preclose.runtime import db_session
    from preclose.storage import repository
    from preclose.wording.reports import closing_report, report_table

    now: Callable[[], datetime] = sandbox.clock.now
    samples = sample_closings(now().date())[:closings]
    ids = []
    with _progress(console) as progress:
        task = progress.add_task("Planning the closings", total=len(samples))
        for closing in samples:
            summary = coordinate_closing(closing, as_of=now())
            ids.append(summary.closing_id)
            progress.advance(task)
        last_service = max(sample.effective_move_in for sample in samples) + timedelta(days=10)
        days = 0
        fulfilled = 0
        tracking = progress.add_task("Tracking orders", total=len(ids))
        while fulfilled < len(ids) and days < MAX_DAYS and now().date() <= last_service:
            sandbox.advance(STEP.total_seconds())
            days += 1
            if _anything_due(now()):
                place_due_orders(as_of=now())
            sync_orders(as_of=now())
            with db_session() as session:
                fulfilled = sum(
                    1
                    for closing_id in ids
                    if (row := repository.get_closing(session=session, closing_id=closing_id))
                    and row.status == ClosingStatus.fulfilled
                )
            progress.update(
                tracking,
                completed=fulfilled,
                description=f"Tracking orders: day {days}, {now():%a %b %-d}",
            )
    with db_session() as session:
        for closing_id in ids:
            record = repository.read_closing_record(session=session, closing_id=closing_id)
            assert record is not None  # coordinated above
            report = closing_report(record, as_of=now())
            console.print(report_table(report))
            console.print(Panel(report.chart, title="Timeline", expand=False))
    return len(ids), fulfilled, days


def _anything_due(as_of: datetime) -> bool:
    from preclose.runtime import db_session
    from preclose.storage import repository

    # A cheap look before starting a flow run: the flow itself decides in each closing's zone.
    with db_session() as session:
        return bool(
            repository.list_due_plan_lines(
                session=session, as_of_date=(as_of + timedelta(days=1)).date()
            )
        )


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def closing_words(outcome: DemoOutcome, data_dir: Path) -> Group:
    """The demo's last words: the figures, and where to look next."""
    prefect_home = data_dir / "prefect"
    return Group(
        f"[bold]{outcome.fulfilled} of {outcome.closings} closings fulfilled[/] over "
        f"{outcome.days} simulated days, {outcome.requests} Offergrid requests, "
        f"{outcome.seconds:.0f} s.",
        f"Prefect client retry sleeps (its API busy): {outcome.prefect_retry_sleeps}"
        + (f", {outcome.prefect_retry_seconds:.0f} s" if outcome.prefect_retry_sleeps else ""),
        f"Messages to buyers and agents: {data_dir / 'demo' / 'outbox.jsonl'}",
        "See the runs and each closing's plan and timeline in the Prefect UI:",
        f"  PREFECT_HOME={prefect_home} .venv/bin/prefect server start",
        "  then open http://127.0.0.1:4200/runs (artifacts: http://127.0.0.1:4200/artifacts)",
    )
