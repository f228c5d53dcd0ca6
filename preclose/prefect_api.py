"""Which Prefect API to talk to: PREFECT_API_URL, else the server `preclose serve` runs.

`preclose serve` records the server it starts in `<prefect home>/server.json` (its pid, process
group and URL). The next `preclose serve` reads it to stop a server an earlier one left behind
(after a kill -9), and the Python CRM functions read it to find the running server without any
setting. Nothing here imports Prefect at module level.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from preclose.settings import Settings, get_settings

__all__ = [
    "NoPrefectApiError",
    "RecordedServer",
    "find_prefect_api",
    "forget_server",
    "one_prefect_client",
    "prefect_api",
    "read_server",
    "record_server",
    "stop_recorded_server",
]

SERVER_FILE = "server.json"


class NoPrefectApiError(RuntimeError):
    """No Prefect API is configured and no `preclose serve` server is running."""


@dataclass(frozen=True)
class RecordedServer:
    """A Prefect server started by `preclose serve`: its process (group leader) and API URL."""

    pid: int
    api_url: str


def _path(settings: Settings) -> Path:
    return settings.prefect_home / SERVER_FILE


def record_server(settings: Settings, server: RecordedServer) -> None:
    """Write down the server just started, for the next start and for CRM callers."""
    path = _path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": server.pid, "api_url": server.api_url}))


def read_server(settings: Settings) -> RecordedServer | None:
    """The recorded server, if the file is there and readable."""
    try:
        data = json.loads(_path(settings).read_text())
        return RecordedServer(pid=int(data["pid"]), api_url=str(data["api_url"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def forget_server(settings: Settings) -> None:
    """Remove the record (the server it names has stopped)."""
    _path(settings).unlink(missing_ok=True)


def _is_prefect_server(pid: int) -> bool:
    # The pid may have been reused by something else since: only a Prefect server is stopped.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\x00", b" ")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (not Linux): trust the record, which only we write
    return b"prefect" in cmdline and b"server" in cmdline


def stop_recorded_server(settings: Settings, timeout: float = 20.0) -> int | None:
    """Stop a server an earlier `preclose serve` left running; returns its pid if there was one."""
    server = read_server(settings)
    if server is None:
        return None
    if not _is_prefect_server(server.pid):
        forget_server(settings)
        return None
    try:
        # It leads its own process group: its workers go with it.
        os.killpg(server.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _is_prefect_server(server.pid):
            time.sleep(0.2)
        if _is_prefect_server(server.pid):
            os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    forget_server(settings)
    return server.pid


def _healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def find_prefect_api(settings: Settings | None = None) -> str:
    """PREFECT_API_URL when set, else the running `preclose serve` server's API URL.

    Raises NoPrefectApiError, one sentence saying what to set, when there is neither.
    """
    from prefect.settings import PREFECT_API_URL

    configured = PREFECT_API_URL.value()
    if configured:
        return str(configured)
    settings = settings or get_settings()
    server = read_server(settings)
    if server is not None and _healthy(server.api_url):
        return server.api_url
    raise NoPrefectApiError(
        f"no Prefect server to start the run on: run `preclose serve` with this data directory "
        f"({settings.data_dir}), or set PREFECT_API_URL to your Prefect server's API"
    )


@contextmanager
def prefect_api(settings: Settings | None = None) -> Iterator[str]:
    """Talk to the Prefect API `find_prefect_api` finds for the block; yields its URL."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = find_prefect_api(settings)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield url


@contextmanager
def one_prefect_client() -> Iterator[None]:
    """Flow runs started in this thread during the block share one Prefect client.

    Each flow run otherwise builds its own, and with it an SSL context that loads the CA bundle
    (about 15 ms of CPU, even for an `http://` API): a third of a flow run's cost in the caller.
    """
    from prefect.context import SyncClientContext

    with SyncClientContext.get_or_create():
        yield
