"""`preclose serve`: Prefect's UI and API, the deployments' runner, the HTTP app, local Offergrid.

Everything runs on loopback from one command. Prefect's server is started as a subprocess (with
its home in the data directory) unless PREFECT_API_URL names one already; the deployments are
served in this process; the HTTP app (CRM API and webhook receiver) runs under uvicorn in a
thread; with `sandbox`, a real-clock local Offergrid delivers its webhooks to the HTTP app.
Prefect is imported only once its environment is set, which is why the imports sit in functions.
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from preclose.settings import Settings, get_settings

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from offergrid_sandbox.config import SandboxConfig

# The repository root: deployment entrypoints are relative to it, so flow runs start there.
ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
PREFECT_PORT = 4200
API_PORT = 8000
SANDBOX_PORT = 8765
# The receiver's route in preclose.app.api (the Offergrid webhook endpoint of the HTTP app).
WEBHOOK_PATH = "/webhooks/offergrid"
# The local Offergrid's orders, items and offers, kept across restarts of `serve --sandbox`.
SANDBOX_STATE_FILE = "offergrid-sandbox.json"
# A busy machine (load 6 on 2 cores) takes a minute or more to start Prefect's server: wait long,
# saying so every few seconds, rather than give up at 20 s as Prefect's ephemeral start does.
PREFECT_STARTUP_SECONDS = 600.0
PROGRESS_EVERY_SECONDS = 10.0
THREAD_STARTUP_SECONDS = 15.0


class ServeError(RuntimeError):
    """Something `preclose serve` needs is unavailable (a port taken, a server that won't start)."""


@dataclass(frozen=True)
class ServeOptions:
    """What `preclose serve` starts, and on which loopback ports."""

    sandbox: bool = False
    fresh: bool = False  # start the local Offergrid empty instead of from its state file
    api_port: int = API_PORT
    prefect_port: int = PREFECT_PORT
    sandbox_port: int = SANDBOX_PORT


@dataclass(frozen=True)
class Endpoints:
    """Where the running pieces answer, for the start message."""

    prefect_ui: str
    prefect_started: bool
    api: str
    sandbox: str | None
    log_file: Path | None


def check_port_free(port: int, what: str) -> None:
    """Fail with a clear message when `port` on loopback is already taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if probe.connect_ex((HOST, port)) == 0:
            raise ServeError(
                f"port {port} on {HOST} is already in use, so the {what} cannot start there; "
                "stop whatever is listening, or pick another port (preclose serve --help)"
            )


def prefect_environment(settings: Settings) -> dict[str, str]:
    """Environment for Prefect in this process and its children: home in the data dir, quiet."""
    from preclose.app.prefect_sqlite import prefect_sqlite_environment

    return {
        "PREFECT_HOME": str(settings.prefect_home),
        # The server would otherwise phone home; everything here stays on loopback.
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # Fewer, larger write batches: its SQLite database stays out of 503s under our runs.
        **prefect_sqlite_environment(),
    }


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the kernel sends this child SIGTERM when `preclose serve` dies, even by kill -9."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the pidfile stops it at the next start instead


@contextmanager
def prefect_server(
    settings: Settings,
    port: int,
    log_file: Path,
    progress: Progress = _quiet,
    meanwhile: Callable[[], object] | None = None,
) -> Iterator[str]:
    """`prefect server start` on loopback for the block, output in `log_file`; yields its API.

    `meanwhile` runs while the server starts (it takes seconds): work that does not need it.

    Started through `preclose.app.prefect_sqlite`, so a SQLite database never answers 503.

    It never outlives us: it leads its own process group, gets SIGTERM from the kernel if we die
    (Linux), and is recorded in the Prefect home, so a server left by a `kill -9` on another
    system is stopped at the next start.
    """
    from preclose.prefect_api import (
        RecordedServer,
        forget_server,
        record_server,
        stop_recorded_server,
    )

    left = stop_recorded_server(settings)
    if left is not None:
        progress(f"Stopped the Prefect server an earlier preclose serve left running (pid {left})")
    check_port_free(port, "Prefect server")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://{HOST}:{port}"
    with log_file.open("ab") as log:
        # Prefect's own CLI, its SQLite write transactions begun IMMEDIATE (no 503 storms).
        command = [sys.executable, "-m", "preclose.app.prefect_sqlite", "server", "start"]
        process = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
            [*command, "--host", HOST, "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own session: Ctrl-C reaches us only, and we stop it in order, without its noise.
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        record_server(settings, RecordedServer(pid=process.pid, api_url=f"{url}/api"))
        try:
            if meanwhile is not None:
                meanwhile()
            _wait_healthy(process, f"{url}/api/health", log_file, progress)
            yield f"{url}/api"
        finally:
            _stop(process)
            forget_server(settings)


def _wait_healthy(
    process: subprocess.Popen[bytes], health_url: str, log_file: Path, progress: Progress
) -> None:
    started = time.monotonic()
    next_word = started + PROGRESS_EVERY_SECONDS
    while (waited := time.monotonic() - started) < PREFECT_STARTUP_SECONDS:
        if process.poll() is not None:
            raise ServeError(f"the Prefect server exited at start; see {log_file}")
        try:
            if httpx.get(health_url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() >= next_word:
            progress(f"Waiting for the Prefect server to answer ({waited:.0f} s so far)")
            next_word += PROGRESS_EVERY_SECONDS
        time.sleep(0.5)
    raise ServeError(
        f"the Prefect server did not answer within {PREFECT_STARTUP_SECONDS:.0f} s; see {log_file}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # The whole group: `prefect server start` runs its web server in a child of its own.
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


@contextmanager
def threaded_app(app: FastAPI, port: int, what: str) -> Iterator[str]:
    """Serve `app` with uvicorn on loopback in a daemon thread for the block; yields its URL."""
    import uvicorn

    check_port_free(port, what)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=HOST,
            port=port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
    )
    thread = threading.Thread(target=server.run, name=f"{what}-{port}", daemon=True)
    thread.start()
    try:
        _wait_started(server, thread, what)
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _wait_started(server: uvicorn.Server, thread: threading.Thread, what: str) -> None:
    deadline = time.monotonic() + THREAD_STARTUP_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ServeError(f"the {what} did not start")
        time.sleep(0.05)


def local_offergrid_config(settings: Settings, *, fresh: bool = False) -> SandboxConfig:
    """The local Offergrid `serve --sandbox` runs: real clock, state kept in the data dir."""
    from offergrid_sandbox.config import SandboxConfig

    state_file = settings.data_dir / SANDBOX_STATE_FILE
    if fresh:
        state_file.unlink(missing_ok=True)
    return SandboxConfig(clock="real", state_file=state_file)


def register_webhooks(sandbox_url: str, receiver_url: str, secret: str) -> None:
    """Have the local Offergrid deliver reseller events to `receiver_url`, signed with `secret`."""
    response = httpx.post(
        f"{sandbox_url}/sandbox/webhooks", json={"url": receiver_url, "secret": secret}, timeout=5
    )
    if response.status_code != 200:
        raise ServeError(
            f"the local Offergrid refused the webhook endpoint ({response.status_code})"
        )


def _use_local_offergrid(settings: Settings, port: int) -> str:
    """Point preclose at the local Offergrid on `port`; returns the webhook secret to use."""
    from offergrid_sandbox.config import RESELLER_KEY

    secret = settings.offergrid_webhook_secret
    value = secret.get_secret_value() if secret else secrets.token_urlsafe(32)
    os.environ.update(
        PRECLOSE_OFFERGRID_BASE_URL=f"http://{HOST}:{port}",
        PRECLOSE_OFFERGRID_API_KEY=RESELLER_KEY,
        # The HTTP app reads it to verify signatures; flow runs never need it.
        PRECLOSE_OFFERGRID_WEBHOOK_SECRET=value,
    )
    get_settings.cache_clear()
    return value


def preflight(settings: Settings, options: ServeOptions) -> None:
    """Check what serving needs before anything starts; StartupError says what to fix."""
    from preclose.app.checks import (
        check_data_dir,
        check_database,
        check_offergrid,
        check_port,
        check_webhook_secret,
    )
    from preclose.runtime import offergrid_endpoint

    check_port(options.api_port, "--api-port")
    check_port(options.prefect_port, "--prefect-port")
    check_port(options.sandbox_port, "--sandbox-port")
    check_data_dir(settings)
    check_database(settings)
    if options.sandbox:
        return
    if settings.offergrid_base_url is None:
        from preclose.app.checks import StartupError

        raise StartupError(
            "PRECLOSE_OFFERGRID_BASE_URL is not set: set it (and PRECLOSE_OFFERGRID_API_KEY) "
            "to use Offergrid, or run `preclose serve --sandbox` for the local one"
        )
    base_url, key = offergrid_endpoint(settings)
    check_offergrid(base_url, key.get_secret_value())
    check_webhook_secret(settings)


def prepare(options: ServeOptions) -> tuple[Settings, bool]:
    """Check, then set the environment every piece shares; True when a Prefect server must start."""
    settings = get_settings()
    preflight(settings, options)
    # Flow runs start in the repository root: give them the same data directory and database.
    os.environ.update(
        PRECLOSE_DATA_DIR=str(settings.data_dir),
        PRECLOSE_DATABASE_URL=settings.database_url,
        **prefect_environment(settings),
    )
    start_server = not os.environ.get("PREFECT_API_URL")
    if start_server:
        os.environ["PREFECT_API_URL"] = f"http://{HOST}:{options.prefect_port}/api"
    return settings, start_server


@contextmanager
def running(options: ServeOptions, progress: Progress = _quiet) -> Iterator[Endpoints]:
    """Start the Prefect server (if needed), the HTTP app and the local Offergrid for the block."""
    settings, start_server = prepare(options)
    with ExitStack() as stack:
        log_file = None
        if start_server:
            log_file = settings.prefect_home / "server.log"
            progress(f"Starting the Prefect server (log: {log_file})")
            api_url = stack.enter_context(
                prefect_server(settings, options.prefect_port, log_file, progress)
            )
        else:
            from preclose.app.checks import check_prefect_api

            api_url = os.environ["PREFECT_API_URL"]
            check_prefect_api(api_url)
        secret = _use_local_offergrid(settings, options.sandbox_port) if options.sandbox else None

        from preclose.app.api.app import create_api

        api = stack.enter_context(threaded_app(create_api(), options.api_port, "HTTP app"))
        sandbox_url = None
        if secret is not None:
            from offergrid_sandbox.server import running_sandbox

            check_port_free(options.sandbox_port, "local Offergrid")
            server = stack.enter_context(
                running_sandbox(
                    local_offergrid_config(settings, fresh=options.fresh),
                    HOST,
                    options.sandbox_port,
                )
            )
            sandbox_url = server.url
            register_webhooks(sandbox_url, f"{api}{WEBHOOK_PATH}", secret)
        yield Endpoints(
            prefect_ui=api_url.removesuffix("/api"),
            prefect_started=start_server,
            api=api,
            sandbox=sandbox_url,
            log_file=log_file,
        )


def serve_deployments() -> None:
    """Serve every deployment in this process until Ctrl-C, flow runs starting in the repo root."""
    from prefect import serve

    from deployments.build import build_deployments

    os.chdir(ROOT)
    threading.Thread(target=reconcile_at_start, name="reconcile at start", daemon=True).start()
    serve(*build_deployments())


def reconcile_at_start(wait_seconds: float = 60.0) -> None:
    """Run `reconcile intake` once, as soon as the served deployments exist: accepted requests
    whose runs were lost while nothing was serving are started again now, not at the schedule."""
    from prefect.deployments import run_deployment

    from preclose.names import RECONCILE

    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        try:
            run_deployment(
                RECONCILE, timeout=0, idempotency_key=f"reconcile-at-start-{os.getpid()}"
            )
            return
        except Exception:  # the deployment is not registered yet: serve() is still starting
            time.sleep(2)
    logger.warning("Could not start the reconciler at start; its schedule will run it")


def start_message(endpoints: Endpoints) -> str:
    """What is running and what to open, for the terminal."""
    lines = [
        f"Prefect UI       {endpoints.prefect_ui}"
        + ("" if endpoints.prefect_started else "  (the server PREFECT_API_URL names)"),
        f"HTTP API         {endpoints.api}/docs  (CRM closings API, Offergrid webhooks)",
    ]
    if endpoints.sandbox:
        lines.append(
            f"Local Offergrid  {endpoints.sandbox}/docs  (real clock; webhooks to "
            f"{endpoints.api}{WEBHOOK_PATH}; state kept in the data dir, --fresh to start empty)"
        )
    if endpoints.log_file:
        lines.append(f"Prefect log      {endpoints.log_file}")
    lines.append(
        "In the UI: Deployments > coordinate closing > Run > Custom run, fill in the closing. "
        "Ctrl-C stops everything."
    )
    return "\n".join(lines)
