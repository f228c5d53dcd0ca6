"""Webhook signatures: HMAC-SHA256 (hex) over "{timestamp}.{raw body}", checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

from pydantic import SecretStr

from offergrid.errors import InvalidSignatureError, StaleTimestampError

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "sign_webhook",
    "verify_webhook",
]

SIGNATURE_HEADER = "x-offergrid-signature"
TIMESTAMP_HEADER = "x-offergrid-timestamp"
# Five minutes either way: long enough for clock skew, short enough to make replays useless.
DEFAULT_TOLERANCE_S = 300

Secret = str | bytes | SecretStr


def _key(secret: Secret) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("webhook secret must not be empty")
    return key


def sign_webhook(secret: Secret, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 signature Offergrid sends for `body` at `timestamp` (Unix seconds)."""
    message = f"{int(timestamp)}.".encode() + body
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def verify_webhook(
    secret: Secret,
    *,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    now: datetime | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> None:
    """Accept a delivery only if its signature matches the raw body and its timestamp is recent.

    Raises InvalidSignatureError or StaleTimestampError; both say what is wrong, never the secret.
    `signature` may carry a "sha256=" prefix or several comma-separated signatures (key rotation).
    """
    if not timestamp or not timestamp.strip().lstrip("-").isdigit():
        raise InvalidSignatureError(f"{TIMESTAMP_HEADER} is missing or not Unix seconds")
    if not signature or not signature.strip():
        raise InvalidSignatureError(f"{SIGNATURE_HEADER} is missing")
    sent_at = int(timestamp.strip())
    expected = sign_webhook(secret, sent_at, body)
    candidates = [part.strip().lower().removeprefix("sha256=") for part in signature.split(",")]
    # Compare against every candidate so timing does not reveal which one (if any) matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(candidate.encode(), expected.encode())
    if not matched:
        raise InvalidSignatureError(
            f"{SIGNATURE_HEADER} does not match the body: wrong secret, or the body was changed"
        )
    current = (now or datetime.now(UTC)).timestamp()
    skew = current - sent_at
    if abs(skew) > tolerance_s:
        direction = "old" if skew > 0 else "far in the future"
        raise StaleTimestampError(
            f"{TIMESTAMP_HEADER} is {abs(skew):.0f} s {direction} (tolerance {tolerance_s} s)"
        )
