"""The pages people open: a closing's page through a signed link, and the portfolio with a key.

Server-rendered HTML (Jinja2 templates shipped in the package), no scripts, no external assets:
the Content-Security-Policy allows nothing but the page's own inline styles. A link that is
altered, expired or signed with a rotated secret gets a plain refusal page, never the data.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from models.tables import ApiKey, Audience
from preclose.app.api.auth import API_KEY_HEADER, Scope, hash_api_key
from preclose.rules.pagelinks import (
    PageLinkError,
    page_link_secret,
    page_url,
    verify_page_token,
)
from preclose.runtime import db_session
from preclose.storage import repository
from preclose.wording.closing_page import build_closing_page, build_portfolio

router = APIRouter(prefix="/pages", tags=["pages"], include_in_schema=False)

SESSION_COOKIE = "preclose_portfolio"
SESSION_HOURS = 12
# The link in the address bar is the key: never send it on, never keep the page in a cache.
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
}


@lru_cache(maxsize=1)
def templates() -> Environment:
    """The page templates, autoescaped, failing loudly on a missing value."""
    return Environment(
        loader=PackageLoader("preclose.app.api", "templates"),
        autoescape=select_autoescape(["j2", "html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = templates().get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _refuse(message: str, status: int = 403) -> HTMLResponse:
    return _render("refused.html.j2", status, title="This link cannot be opened", message=message)


@router.get("/closing/{token}", response_class=HTMLResponse)
def closing_page(token: str, request: Request) -> HTMLResponse:
    """The closing's page for the link's audience, or a plain refusal."""
    settings = request.app.state.settings
    now = request.app.state.now()
    try:
        access = verify_page_token(page_link_secret(settings), token, now=datetime.now(UTC))
    except PageLinkError as err:
        return _refuse(f"This link cannot be opened: {err}.")
    with db_session(settings) as session:
        record = repository.read_closing_record(session=session, closing_id=access.closing_id)
        if record is None:
            return _refuse("This closing is no longer on file.", 404)
        page = build_closing_page(record=record, as_of=now, audience=access.audience)
    return _render("closing.html.j2", page=page)


def _sign(secret: bytes, payload: str) -> str:
    return hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()


def _session_value(secret: bytes, key_id: uuid.UUID, now: datetime) -> str:
    payload = f"{key_id}:{int((now + timedelta(hours=SESSION_HOURS)).timestamp())}"
    return f"{payload}:{_sign(secret, payload)}"


def _session_key(request: Request, secret: bytes) -> ApiKey | None:
    """The API key behind the request: its header, or a signed session cookie naming it."""
    settings = request.app.state.settings
    presented = request.headers.get(API_KEY_HEADER)
    with db_session(settings) as session:
        if presented:
            row = repository.get_api_key_by_hash(session=session, key_hash=hash_api_key(presented))
        else:
            cookie = request.cookies.get(SESSION_COOKIE, "")
            parts = cookie.split(":")
            if len(parts) != 3 or not hmac.compare_digest(
                parts[2], _sign(secret, f"{parts[0]}:{parts[1]}")
            ):
                return None
            if not parts[1].isdigit() or int(parts[1]) <= datetime.now(UTC).timestamp():
                return None
            try:
                row = session.get(ApiKey, uuid.UUID(parts[0]))
            except ValueError:
                return None
    # A revoked key closes its sessions too: the row is read on every page.
    if row is None or row.revoked_at is not None or Scope.read.value not in row.scope_set:
        return None
    return row


@router.get("/portfolio", response_class=HTMLResponse)
def portfolio(request: Request) -> HTMLResponse:
    """Every live closing, those needing a person first; a sign-in form without a key."""
    settings = request.app.state.settings
    secret = page_link_secret(settings)
    if _session_key(request, secret) is None:
        problem = "That key is not valid." if request.headers.get(API_KEY_HEADER) else None
        return _render("sign_in.html.j2", 401, problem=problem)
    now = datetime.now(UTC)
    with db_session(settings) as session:
        rows = build_portfolio(repository.list_portfolio(session=session))
    shown = [
        {
            **row.__dict__,
            # A short-lived agent link per closing: the portfolio is the agent's own view.
            "url": page_url(
                settings.model_copy(update={"page_link_days": 1}),
                row.closing_id,
                Audience.agent,
                now=now,
            ),
        }
        for row in rows
    ]
    needs = sum(1 for row in rows if row.needs_person)
    return _render("portfolio.html.j2", rows=shown, needs=needs)


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    """Check the key from the form and keep a signed session cookie (not the key) for 12 hours."""
    settings = request.app.state.settings
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    with db_session(settings) as session:
        row = repository.get_api_key_by_hash(session=session, key_hash=hash_api_key(key))
    if not key or row is None or row.revoked_at is not None:
        return _render("sign_in.html.j2", 401, problem="That key is not valid.")
    response = RedirectResponse("/pages/portfolio", status_code=303, headers=_HEADERS)
    response.set_cookie(
        SESSION_COOKIE,
        _session_value(page_link_secret(settings), row.id, datetime.now(UTC)),
        max_age=SESSION_HOURS * 3600,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/pages",
    )
    return response
