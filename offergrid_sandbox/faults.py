"""Fault injection: 5xx answers, added latency, hung requests, and orders committed then failed.

Each API request draws its fate from a generator seeded by the sandbox seed and restarted whenever
the faults are switched, so the same sequence of requests meets the same faults every run.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from offergrid_sandbox.config import FaultConfig


class ConnectionDropped(httpx.RemoteProtocolError):
    """The sandbox dropped the connection without an answer (raised to in-process clients).

    It is an `httpx.RemoteProtocolError`, the error an httpx client meets when a real server hangs
    up, so an in-process client sees exactly what it would see over a socket.
    """

    def __init__(self) -> None:
        super().__init__("Server disconnected without sending a response.")


@dataclass(frozen=True)
class FaultPlan:
    """What happens to one request."""

    latency: float = 0.0  # seconds added before answering
    error_status: int | None = None  # answer this 5xx instead of handling the request
    hang: float | None = None  # hang this long, then answer 504 without handling
    commit_then_fail: str | None = None  # "5xx" or "drop", for a created order

    @property
    def handled(self) -> bool:
        """Whether the request reaches its route at all."""
        return self.error_status is None and self.hang is None


class FaultInjector:
    """Decides each request's faults from the current `FaultConfig`; switchable at runtime."""

    def __init__(self, config: FaultConfig, seed: int) -> None:
        self._seed = seed
        self._initial = config
        self._lock = threading.Lock()
        self.config = config
        self._rng = random.Random(f"{seed}:faults")

    def configure(self, config: FaultConfig) -> None:
        """Switch to `config`, restarting the seeded sequence of draws."""
        with self._lock:
            self.config = config
            self._rng = random.Random(f"{self._seed}:faults")

    def reset(self) -> None:
        """Back to the faults the sandbox started with."""
        self.configure(self._initial)

    def plan(self, method: str, path: str) -> FaultPlan:
        """Draw the faults for one API request."""
        with self._lock:
            cfg = self.config
            # Always draw the same four numbers, so one switch does not shift the others' sequence.
            u_error, u_kind, u_hang, u_commit = (self._rng.random() for _ in range(4))
        latency = cfg.latency_ms / 1000
        if u_error < cfg.error_rate:
            return FaultPlan(latency=latency, error_status=502 if u_kind < 0.5 else 503)
        if u_hang < cfg.timeout_rate:
            return FaultPlan(latency=latency, hang=cfg.timeout_seconds)
        commit = None
        is_placement = method == "POST" and path.rstrip("/") == "/reseller/orders"
        if is_placement and u_commit < cfg.committed_then_failed_rate:
            commit = cfg.committed_then_failed_mode
        return FaultPlan(latency=latency, commit_then_fail=commit)


FAULT_MESSAGES = {
    500: "Internal server error",
    502: "Bad gateway: upstream service unavailable",
    503: "Service temporarily unavailable",
    504: "Gateway timeout",
}


class _Abortable(Protocol):
    def abort(self) -> None: ...


class ConnectionRegistry:
    """Open server connections by peer address, so a fault can hang up on one of them.

    `server.py` registers uvicorn's transports here; an ASGI app only sees the peer address in
    `scope["client"]`, and this is how it reaches the socket behind it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[Any, _Abortable] = {}

    def register(self, peer: Any, transport: _Abortable) -> None:
        """Remember the transport serving `peer`."""
        with self._lock:
            self._open[peer] = transport

    def unregister(self, peer: Any) -> None:
        """Forget a closed connection."""
        with self._lock:
            self._open.pop(peer, None)

    def abort(self, peer: Any) -> bool:
        """Close the connection to `peer` at once; False when it is not a registered socket."""
        with self._lock:
            transport = self._open.pop(peer, None)
        if transport is None:
            return False
        transport.abort()
        return True
