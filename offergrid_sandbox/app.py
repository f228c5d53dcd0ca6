"""The local Offergrid as a FastAPI app: `create_app(config)` wires state, routes and the gateway.

The gateway is the outermost layer, in front of FastAPI's own middleware, and does what the real
service's edge does before a route runs: API-key auth and roles, per-key rate limits and their
headers, body-size limits, request counting, and the fault switches (5xx, latency, hangs, and
orders committed then failed, where the connection may be dropped without an answer).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from offergrid_sandbox.auth import (
    PRINCIPAL_SCOPE_KEY,
    UNAUTHORIZED_BODY,
    allows,
    forbidden_body,
    required_role,
)
from offergrid_sandbox.clock import RealClock
from offergrid_sandbox.config import (
    FaultConfig,
    RateLimitConfig,
    SandboxConfig,
    SimulationConfig,
    WebhookConfig,
)
from offergrid_sandbox.docs import install_offline_docs
from offergrid_sandbox.faults import FAULT_MESSAGES, ConnectionDropped, FaultPlan
from offergrid_sandbox.openapi import describe
from offergrid_sandbox.persistence import StateFile
from offergrid_sandbox.providers import ProviderSimulator
from offergrid_sandbox.routes_links import router as links_router
from offergrid_sandbox.routes_provider import app_router
from offergrid_sandbox.routes_provider import router as provider_router
from offergrid_sandbox.routes_reseller import router as reseller_router
from offergrid_sandbox.routes_sandbox import AdvanceRequest, WebhookEndpoint
from offergrid_sandbox.routes_sandbox import router as sandbox_router
from offergrid_sandbox.schemas import SandboxError, error_body, field_path
from offergrid_sandbox.state import Sandbox
from offergrid_sandbox.webhooks import WebhookDispatcher

# Endpoint templates for request counts, taken from the routes themselves ("/reseller/orders/{id}").
_TEMPLATES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (route.path_regex, route.path)
    for router in (app_router, reseller_router, provider_router)
    for route in router.routes
    if isinstance(route, APIRoute)
)


class _BodyTooLarge(SandboxError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body is larger than {limit} bytes")


async def _send_json(
    send: Send, status: int, body: Any, headers: dict[str, str] | None = None
) -> None:
    payload = json.dumps(body, separators=(",", ":")).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class Gateway:
    """The service's edge: auth, limits, body size, faults and request counting, per request."""

    def __init__(self, app: ASGIApp, owner: FastAPI) -> None:
        self.app = app
        self.owner = owner

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox of the app this gateway fronts."""
        sandbox = self.owner.state.sandbox
        assert isinstance(sandbox, Sandbox)
        return sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sandbox = self.sandbox
        if isinstance(sandbox.clock, RealClock):
            # Usable without a lifespan too: the first request starts the timer thread.
            sandbox.clock.start()
        limit = sandbox.config.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_json(send, 413, _BodyTooLarge(limit).body())
            self._count(scope, 413)
            return
        receive = self._limited(receive, limit)
        if scope["path"].startswith("/sandbox"):
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self._serve(scope, receive, counting_send)
        finally:
            # No status line sent means the client never got an answer.
            self._count(scope, status[0] if status else "dropped")

    def _count(self, scope: Scope, status: int | str) -> None:
        if scope["path"].startswith("/sandbox"):
            return
        path = scope["path"]
        template = next((t for regex, t in _TEMPLATES if regex.match(path)), "<unmatched>")
        self.sandbox.record_request(f"{scope['method']} {template}", status)

    @staticmethod
    def _limited(receive: Receive, limit: int) -> Receive:
        """Count body bytes as they arrive, for bodies sent without a Content-Length."""
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge(limit)
            return message

        return limited

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        role = required_role(scope["path"])
        if role is None:
            await self.app(scope, receive, send)
            return
        sandbox = self.sandbox
        principal = sandbox.keys.authenticate(_header(scope, b"x-api-key"))
        if principal is None:
            await _send_json(send, 401, UNAUTHORIZED_BODY)
            return
        decision = sandbox.rate_limiter.hit(principal.key_id)
        headers = decision.headers() if decision else {}
        if decision is not None and not decision.allowed:
            await _send_json(send, 429, decision.body(), headers)
            return
        if not allows(principal, role):
            await _send_json(send, 403, forbidden_body(role), headers)
            return
        plan = sandbox.faults.plan(scope["method"], scope["path"])
        if plan.latency:
            await asyncio.sleep(plan.latency)
        if plan.hang is not None:
            await asyncio.sleep(plan.hang)
            await _send_json(send, 504, error_body(504, FAULT_MESSAGES[504]), headers)
            return
        if plan.error_status is not None:
            status = plan.error_status
            await _send_json(send, status, error_body(status, FAULT_MESSAGES[status]), headers)
            return
        scope[PRINCIPAL_SCOPE_KEY] = principal
        await self._handle(scope, receive, send, headers, plan)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        plan: FaultPlan,
    ) -> None:
        extra = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        held: list[Message] = []

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
                if plan.commit_then_fail and message["status"] == 201:
                    held.append(message)
                    return
            if held:
                return  # the created order's answer never leaves the building
            await send(message)

        await self.app(scope, receive, send_with_headers)
        if not held:
            return
        if plan.commit_then_fail == "drop":
            await self._drop(scope)
            return
        await _send_json(send, 500, error_body(500, FAULT_MESSAGES[500]), headers)

    async def _drop(self, scope: Scope) -> None:
        """Hang up without an answer: abort the socket on a real server, raise in process."""
        client = scope.get("client")
        if client is not None and self.sandbox.connections.abort(tuple(client)):
            # Let the event loop run connection_lost, so the server knows nobody is listening
            # and does not answer a 500 in our place.
            for _ in range(3):
                await asyncio.sleep(0)
            return
        raise ConnectionDropped()


class SandboxApp(FastAPI):
    """FastAPI with the gateway outside every other middleware (so it can drop a connection)."""

    def build_middleware_stack(self) -> ASGIApp:
        """The usual stack, fronted by the gateway."""
        return Gateway(super().build_middleware_stack(), self)


def _install_error_handlers(app: FastAPI) -> None:
    async def sandbox_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SandboxError)
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers or None)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "Invalid input"}
        # Drop FastAPI's ("query", ...) / ("path", ...) prefix: the field is the parameter.
        loc = tuple(first.get("loc", ()))
        path = field_path(loc[1:] if loc and loc[0] in ("query", "path", "header", "body") else loc)
        body = error_body(400, f"{path}: {first.get('msg', 'Invalid input')}", field=path)
        return JSONResponse(body, status_code=400)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"Cannot {request.method} {request.url.path}"
        return JSONResponse(
            error_body(exc.status_code, message),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug still answers in the service's error shape, so clients parse it like any 500.
        return JSONResponse(error_body(500, FAULT_MESSAGES[500]), status_code=500)

    app.add_exception_handler(Exception, unexpected_error)
    app.add_exception_handler(SandboxError, sandbox_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def create_app(config: SandboxConfig | None = None) -> FastAPI:
    """Build one local Offergrid: state, simulated providers, webhook delivery and every route."""
    sandbox = Sandbox(config or SandboxConfig())
    simulator = ProviderSimulator(sandbox.config.simulation, seed=sandbox.config.seed)
    simulator.attach(sandbox)
    webhooks = WebhookDispatcher(sandbox.config.webhooks, http_client=None)
    webhooks.attach(sandbox)
    sandbox.simulator = simulator
    sandbox.webhooks = webhooks
    state_file = None
    if sandbox.config.state_file is not None:
        state_file = StateFile(sandbox.config.state_file)
        state_file.load(sandbox)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if isinstance(sandbox.clock, RealClock):
            sandbox.clock.start()
        if state_file is not None:
            state_file.start()
        try:
            yield
        finally:
            if isinstance(sandbox.clock, RealClock):
                sandbox.clock.stop()
            if state_file is not None:
                state_file.stop()
            webhooks.close()

    app = SandboxApp(
        title="Offergrid sandbox",
        description="A local Offergrid: reseller and provider APIs plus /sandbox controls.",
        version="1.0",
        lifespan=lifespan,
        # Served from this package (install_offline_docs), never from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.sandbox = sandbox
    app.state.state_file = state_file
    _install_error_handlers(app)
    app.include_router(app_router)
    app.include_router(reseller_router)
    app.include_router(provider_router)
    app.include_router(sandbox_router)
    app.include_router(links_router)
    models = {
        model.__name__: model
        for model in (
            AdvanceRequest,
            WebhookEndpoint,
            FaultConfig,
            RateLimitConfig,
            SimulationConfig,
            WebhookConfig,
        )
    }
    app.openapi = lambda: describe(app, models)  # type: ignore[method-assign]
    install_offline_docs(app)
    return app
