"""Signed links to a closing's page: no account, an HMAC over the closing, audience and expiry.

A token is `<payload>.<signature>`, both base64url: the payload is `closing-id:audience:expiry`
(UUID, `agent` or `buyer`, Unix seconds) and the signature an HMAC-SHA256 of it with the page-link
secret. Rotating the secret (`PRECLOSE_PAGE_LINK_SECRET`, or deleting the generated secret file in
the data directory) revokes every link made before. Plain code: no web framework, no database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from models.tables import Audience
from preclose.settings import Settings

__all__ = [
    "PageAccess",
    "PageLinkError",
    "page_link_secret",
    "page_url",
    "sign_page_token",
    "verify_page_token",
]

SECRET_FILE = "page-link-secret"  # noqa: S105 - a file name, not a secret


class PageLinkError(ValueError):
    """A page link that must be refused: malformed, altered, signed with another secret, expired."""


@dataclass(frozen=True)
class PageAccess:
    """What a valid link opens: one closing, for one audience, until a moment."""

    closing_id: uuid.UUID
    audience: Audience
    expires_at: datetime


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def page_link_secret(settings: Settings) -> bytes:
    """The configured secret, or one generated once into the data directory and kept there."""
    if settings.page_link_secret is not None:
        return settings.page_link_secret.get_secret_value().encode()
    path = Path(settings.data_dir) / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Exclusive create: two processes starting at once end up with one secret.
            with path.open("x", encoding="utf-8") as handle:
                handle.write(secrets.token_urlsafe(32))
            path.chmod(0o600)
        except FileExistsError:
            pass
    return path.read_text(encoding="utf-8").strip().encode()


def _signature(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()


def sign_page_token(
    secret: bytes, closing_id: uuid.UUID, audience: Audience, expires_at: datetime
) -> str:
    """A token opening `closing_id`'s page for `audience` until `expires_at`."""
    payload = f"{closing_id}:{Audience(audience).value}:{int(expires_at.timestamp())}".encode()
    return f"{_b64(payload)}.{_b64(_signature(secret, payload))}"


def verify_page_token(secret: bytes, token: str, *, now: datetime) -> PageAccess:
    """What `token` opens, or PageLinkError when it is malformed, altered, revoked or expired."""
    try:
        encoded, signature = token.split(".")
        payload = _unb64(encoded)
        given = _unb64(signature)
    except ValueError:
        raise PageLinkError("this link is not a page link") from None
    # Altered and revoked (signed with an older secret) look the same here, and should.
    if not hmac.compare_digest(given, _signature(secret, payload)):
        raise PageLinkError("this link is not valid (changed, or no longer in use)")
    try:
        closing, audience, expiry = payload.decode().split(":")
        access = PageAccess(
            closing_id=uuid.UUID(closing),
            audience=Audience(audience),
            expires_at=datetime.fromtimestamp(int(expiry), UTC),
        )
    except ValueError:
        raise PageLinkError("this link is not a page link") from None
    if now >= access.expires_at:
        raise PageLinkError("this link has expired")
    return access


def page_url(
    settings: Settings, closing_id: uuid.UUID, audience: Audience, *, now: datetime
) -> str:
    """The full address of `closing_id`'s page for `audience`, valid for the configured days."""
    expires = now + timedelta(days=settings.page_link_days)
    token = sign_page_token(page_link_secret(settings), closing_id, audience, expires)
    return f"{settings.public_url.rstrip('/')}/pages/closing/{token}"
