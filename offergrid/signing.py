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
    "parse_timestamp",
    "sign_webhook",
    "verify_webhook",
]

SIGNATURE_HEADER = "x-offergrid-signature"
TIMESTAMP_HEADER = "x-offergrid-timestamp"
# Five minutes either way: long enough for clock skew, short enough to make replays useless.
DEFAULT_TOLERANCE_S = 300
# Unix seconds fit in 11 digits until the year 5138; anything longer is not a timestamp.
MAX_TIMESTAMP_DIGITS = 12
# Key rotation sends two or three; more is someone trying to make us hash and compare a lot.
MAX_SIGNATURES = 8

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


def parse_timestamp(timestamp: str | None) -> int:
    """The timestamp header as Unix seconds: 1 to 12 ASCII digits, else InvalidSignatureError."""
    text = (timestamp or "").strip()
    # str.isdigit() alone accepts "²" or Arabic-Indic digits, which int() then refuses or reads.
    if not (0 < len(text) <= MAX_TIMESTAMP_DIGITS and text.isascii() and text.isdigit()):
        raise InvalidSignatureError(
            f"{TIMESTAMP_HEADER} is missing or not Unix seconds "
            f"(1 to {MAX_TIMESTAMP_DIGITS} ASCII digits)"
        )
    return int(text)


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
    sent_at = parse_timestamp(timestamp)
    if not signature or not signature.strip():
        raise InvalidSignatureError(f"{SIGNATURE_HEADER} is missing")
    expected = sign_webhook(secret, sent_at, body)
    parts = signature.split(",", MAX_SIGNATURES)
    if len(parts) > MAX_SIGNATURES:
        raise InvalidSignatureError(f"{SIGNATURE_HEADER} holds more than {MAX_SIGNATURES} values")
    candidates = [part.strip().lower().removeprefix("sha256=") for part in parts]
    # Compare against every candidate so timing does not reveal which one (if any) matched.
    matched = False
    for candidate in candidates:
        # Only ASCII can be a hex digest; compare_digest refuses non-ASCII str, so compare bytes.
        matched |= hmac.compare_digest(candidate.encode("utf-8", "replace"), expected.encode())
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
