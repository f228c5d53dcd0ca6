"""Serve the local Offergrid over real sockets: in a background thread (tests) or the foreground.

Both use uvicorn with a protocol that registers each connection's transport with the sandbox, so
the "committed then failed" fault in drop mode can hang up on a client for real.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from offergrid_sandbox.app import create_app
from offergrid_sandbox.config import SandboxConfig
from offergrid_sandbox.faults import ConnectionRegistry
from offergrid_sandbox.state import Sandbox

STARTUP_TIMEOUT_SECONDS = 10.0


def _tracking_protocol(registry: ConnectionRegistry) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, registering every connection's transport with `registry`."""
    base: Any = AutoHTTPProtocol

    class TrackingProtocol(base):
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            if self.client:
                registry.register(tuple(self.client), transport)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.client:
                registry.unregister(tuple(self.client))
            super().connection_lost(exc)

    return TrackingProtocol


def _uvicorn_config(app: FastAPI, host: str, port: int, *, quiet: bool) -> uvicorn.Config:
    sandbox: Sandbox = app.state.sandbox
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=_tracking_protocol(sandbox.connections),
        lifespan="on",
        log_level="warning" if quiet else "info",
        access_log=not quiet,
        # A request hung by the timeout fault must not hold up shutdown.
        timeout_graceful_shutdown=1,
    )


@dataclass
class SandboxServer:
    """A local Offergrid running on a loopback port in a background thread."""

    url: str
    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def sandbox(self) -> Sandbox:
        """The state behind the served app."""
        sandbox: Sandbox = self.app.state.sandbox
        return sandbox


@contextmanager
def running_sandbox(
    config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[SandboxServer]:
    """Run a local Offergrid on `host:port` (0 picks a free port) for the `with` block."""
    app = create_app(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(_uvicorn_config(app, host, bound_port, quiet=True))
    thread = threading.Thread(
        target=server.run,
        kwargs={"sockets": [sock]},
        name=f"offergrid-sandbox-{bound_port}",
        daemon=True,
    )
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not start on {host}:{bound_port}")
            time.sleep(0.01)
        yield SandboxServer(
            url=f"http://{host}:{bound_port}", app=app, server=server, thread=thread
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def serve(host: str = "127.0.0.1", port: int = 8000, config: SandboxConfig | None = None) -> None:
    """Run a local Offergrid in the foreground until interrupted, printing its URL and keys."""
    app = create_app(config)
    sandbox: Sandbox = app.state.sandbox
    print(f"Offergrid sandbox on http://{host}:{port}  (docs: http://{host}:{port}/docs)")
    print(f"clock: {sandbox.config.clock}, seed: {sandbox.config.seed}")
    print("Local API keys (sandbox-only):")
    for key in sandbox.keys.documented_keys():
        print(f"  {key['role']:<9} {key['key']:<48} {key['note']}")
    uvicorn.Server(_uvicorn_config(app, host, port, quiet=False)).run()
