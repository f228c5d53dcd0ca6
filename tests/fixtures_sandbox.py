"""Reusable pytest fixtures around the local Offergrid sandbox, in process and on a loopback port.

Use them with `from tests.fixtures_sandbox import *` in a test module.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.testclient import TestClient

from offergrid import OffergridClient
from offergrid_sandbox.config import RESELLER_KEY, SandboxConfig

__all__ = [
    "SANDBOX_START",
    "ReceivedWebhook",
    "WebhookReceiver",
    "free_port",
    "live_sandbox",
    "live_sandbox_url",
    "offergrid_client",
    "run_asgi",
    "sandbox",
    "sandbox_app",
    "sandbox_config",
    "sandbox_http",
    "webhook_receiver",
]

# A fixed virtual start keeps catalog dates and schedules the same on every run.
SANDBOX_START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def run_asgi(app: Any, *, port: int | None = None) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread on 127.0.0.1; yields its base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"asgi-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError(f"test server on port {port} did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class ReceivedWebhook:
    """One POST a receiver got: the exact body bytes and the headers, as sent."""

    body: bytes
    headers: dict[str, str]


@dataclass
class WebhookReceiver:
    """A tiny webhook endpoint that records every delivery and answers with a chosen status."""

    url: str
    received: list[ReceivedWebhook] = field(default_factory=list)
    status_code: int = 200

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedWebhook]:
        """Wait until `count` deliveries arrived (deliveries come from another thread)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.received)


def _receiver_app(receiver_ref: Callable[[], WebhookReceiver]) -> FastAPI:
    app = FastAPI()

    @app.post("/hooks/offergrid")
    async def hook(request: Request) -> Response:
        receiver = receiver_ref()
        receiver.received.append(
            ReceivedWebhook(body=await request.body(), headers=dict(request.headers))
        )
        return JSONResponse({"ok": True}, status_code=receiver.status_code)

    return app


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A webhook endpoint on a loopback port; register `.url` with the sandbox."""
    holder: dict[str, WebhookReceiver] = {}
    with run_asgi(_receiver_app(lambda: holder["r"])) as base:
        holder["r"] = WebhookReceiver(url=f"{base}/hooks/offergrid")
        yield holder["r"]


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    """The sandbox settings the other fixtures use: virtual clock, seed 7, fixed start time."""
    return SandboxConfig(seed=7, clock="virtual", start_time=SANDBOX_START)


@pytest.fixture
def sandbox_app(sandbox_config: SandboxConfig) -> FastAPI:
    """A fresh local Offergrid app (virtual clock, seed 7)."""
    from offergrid_sandbox.app import create_app

    return create_app(sandbox_config)


@pytest.fixture
def sandbox(sandbox_app: FastAPI) -> Any:
    """The sandbox state behind `sandbox_app` (clock, advance, update_item_status, ...)."""
    return sandbox_app.state.sandbox


@pytest.fixture
def sandbox_http(sandbox_app: FastAPI) -> Iterator[TestClient]:
    """A starlette TestClient over `sandbox_app`.

    Server exceptions are raised, not turned into 500s: the sandbox answers every bad request
    itself, so an exception here is either a sandbox bug (which should fail loudly) or its
    deliberate "dropped connection", an httpx.RemoteProtocolError the client must see as such.
    """
    with TestClient(sandbox_app) as client:
        yield client


@pytest.fixture
def offergrid_client(sandbox_http: TestClient) -> Iterator[OffergridClient]:
    """An in-process OffergridClient using the sandbox's reseller key."""
    with OffergridClient(api_key=RESELLER_KEY, http_client=sandbox_http) as client:
        yield client


@pytest.fixture
def live_sandbox(sandbox_config: SandboxConfig) -> Iterator[Any]:
    """A local Offergrid served on a real loopback port (`.url`, `.app`, `.sandbox`)."""
    from offergrid_sandbox.server import running_sandbox

    with running_sandbox(sandbox_config) as server:
        yield server


@pytest.fixture
def live_sandbox_url(live_sandbox: Any) -> str:
    """The base URL of a local Offergrid served on a real loopback port."""
    return str(live_sandbox.url)
