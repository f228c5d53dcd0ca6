"""The API app: closings for CRMs, Offergrid's webhooks and health, with limits and plain errors.

`create_api(settings)` builds it without touching the database or Prefect. `app.state.now` is the
clock the API judges time by (webhook timestamps, closing dates, report days): the real one by
default; a test of the local Offergrid on a virtual clock sets it to that clock.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from preclose.app.api import closings, health, pages, webhooks
from preclose.app.api.guard import judge
from preclose.settings import Settings, get_settings

__all__ = ["MAX_BODY_BYTES", "create_api", "field_path"]

logger = logging.getLogger(__name__)

# A closing is a few kilobytes and a webhook event far less: anything bigger is a mistake or abuse.
MAX_BODY_BYTES = 64 * 1024
_LOCATIONS = ("body", "query", "path", "header", "cookie")


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """A pydantic error location as a field path: ("body", "buyer", "email") → "buyer.email"."""
    parts = list(loc)
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def _detail(text: str) -> bytes:
    return json.dumps({"detail": text}).encode()


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse oversized (413) and unstorable input (guard.judge) before any route runs."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        """Wrap `app`."""
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the whole body (up to the limit) first, then hand it to the app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = _detail(f"request body is larger than {self.limit} bytes")
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _send(send, 413, too_large, [(b"connection", b"close")])
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the app sees the disconnect below
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _send(send, 413, too_large, [(b"connection", b"close")])
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        refusal = judge(scope, body)
        if refusal is not None:
            await _send(send, *refusal, [])
            return
        delivered = False

        async def replay() -> Message:
            """The buffered body once, then whatever the client sends next (a disconnect)."""
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class PlainErrors:
    """Answer any unexpected exception with a plain 500: no traceback, no message to the caller.

    The server log gets the exception type and where it happened, not its message, which may
    carry personal data (a database error quotes the values it was given).
    """

    def __init__(self, app: ASGIApp) -> None:
        """Wrap `app`."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; turn an escaped exception into a 500 if nothing was sent yet."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            """Pass the message on, noting when the response has begun."""
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as err:
            where = "".join(traceback.format_tb(err.__traceback__, limit=-3)).strip()
            logger.error(
                "Unexpected %s on %s %s\n%s",
                type(err).__name__,
                scope.get("method"),
                scope.get("path"),
                where,
            )
            if not started:
                await _send(send, 500, _detail("internal error"), [])


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """A 422 naming each bad field, without the values sent (they may be personal data)."""
    assert isinstance(exc, RequestValidationError)
    items = [
        {
            # A JSON syntax error's location is a character offset, not a field.
            "field": "body"
            if error.get("type") == "json_invalid"
            else _printable(field_path(tuple(error.get("loc", ())))),
            "loc": [
                part if isinstance(part, int) else _printable(str(part))
                for part in error.get("loc", ())
            ],
            "msg": _printable(str(error.get("msg", "invalid")).removeprefix("Value error, ")),
            "type": str(error.get("type", "value_error")),
        }
        for error in exc.errors()
    ]
    return JSONResponse({"detail": items}, status_code=422)


def _printable(text: str) -> str:
    # A message may quote what was sent; a lone surrogate in it would make the answer unsendable.
    return text.encode("utf-8", "replace").decode("utf-8")


def _real_now() -> datetime:
    return datetime.now(UTC)


def create_api(settings: Settings | None = None) -> FastAPI:
    """The preclose API for `settings` (default: the process's): routes, limits, docs at /docs."""
    # FastAPIOffline: /docs and /redoc load Swagger UI and ReDoc from the installed package, not a
    # CDN, so the docs work without internet.
    app = FastAPIOffline(
        title="preclose",
        summary="Pre-close services coordination for CRMs, and Offergrid's webhook receiver.",
        description=(
            "Start a closing with `POST /closings`, follow it with `GET /closings/{crm_id}`, "
            "change it with `PATCH`. Send your key in the `x-api-key` header "
            "(`preclose api-key create NAME`). Offergrid delivers signed order events to "
            "`POST /webhooks/offergrid`."
        ),
        version="1.0",
    )
    app.state.settings = settings or get_settings()
    now: Callable[[], datetime] = _real_now
    app.state.now = now
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(closings.router)
    app.include_router(webhooks.router)
    app.include_router(health.router)
    app.include_router(pages.router)
    # Added last, so outermost: the body is read once, within its limit, and what no route
    # could store (preclose.app.api.guard.judge) is refused before anything else sees it.
    app.add_middleware(PlainErrors)
    app.add_middleware(BodyLimit)
    return app
