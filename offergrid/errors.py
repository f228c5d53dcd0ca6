"""Every error the Offergrid client raises, and the one function mapping a status to its class.

    OffergridError
    ├── ConfigurationError              no API key (names `api_key` and OFFERGRID_API_KEY)
    ├── RequestValidationError          bad request data, caught before any call (also a ValueError)
    ├── WebhookPayloadError             a webhook body that is not a JSON object (also a ValueError)
    ├── WebhookVerificationError
    │   ├── InvalidSignatureError       signature missing or wrong
    │   └── StaleTimestampError         timestamp outside the tolerance window
    ├── APIConnectionError              no answer: DNS, refused, reset, dropped connection
    │   └── APITimeoutError             connect or read timeout
    ├── APIResponseValidationError      a 2xx answer whose body we cannot read
    └── APIStatusError                  a non-2xx answer: .status_code, .body (ErrorBody), .endpoint
        ├── BadRequestError             400, 422 (.field names the bad field when Offergrid says)
        ├── AuthenticationError         401
        ├── PermissionDeniedError       403
        ├── NotFoundError               404
        ├── ConflictError               409
        │   └── NotCancellableError     409 on cancel, or a 400 on cancel saying "not cancellable"
        ├── RateLimitError              429 (.retry_after seconds, or None)
        └── InternalServerError         5xx

Retries belong to the caller's task policy: `RETRYABLE_ERRORS` names what is safe to retry.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from offergrid.models.errors import ErrorBody

__all__ = [
    "RETRYABLE_ERRORS",
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "InternalServerError",
    "InvalidSignatureError",
    "NotCancellableError",
    "NotFoundError",
    "OffergridError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestValidationError",
    "StaleTimestampError",
    "WebhookPayloadError",
    "WebhookVerificationError",
    "make_status_error",
    "parse_retry_after",
]


class OffergridError(Exception):
    """Base of every error raised by the Offergrid client."""


class ConfigurationError(OffergridError):
    """The client cannot be built as asked (e.g. no API key)."""


class RequestValidationError(OffergridError, ValueError):
    """Request data failed local validation; `field` is its wire path, e.g. customerInfo.email."""

    def __init__(
        self, field: str, message: str, *, problems: Sequence[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        # Every problem found, first one first; `field`/`message` repeat the first.
        self.problems: list[tuple[str, str]] = list(problems or [(field, message)])


class WebhookPayloadError(OffergridError, ValueError):
    """A webhook body that is not a JSON object."""


class WebhookVerificationError(OffergridError):
    """A webhook delivery failed verification and must be rejected."""


class InvalidSignatureError(WebhookVerificationError):
    """The webhook signature is missing, malformed or does not match the body."""


class StaleTimestampError(WebhookVerificationError):
    """The webhook timestamp is too far from now (a replay, or a badly skewed clock)."""


class APIConnectionError(OffergridError):
    """No HTTP answer came back from Offergrid."""

    def __init__(self, message: str, *, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class APITimeoutError(APIConnectionError):
    """Offergrid did not connect or answer within the client's timeout."""


class APIResponseValidationError(OffergridError):
    """Offergrid answered 2xx with a body this client cannot read."""

    def __init__(self, message: str, *, status_code: int, endpoint: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.endpoint = endpoint


class APIStatusError(OffergridError):
    """Offergrid answered with a non-2xx status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: ErrorBody,
        endpoint: str,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body
        self.endpoint = endpoint
        self.request_id = request_id


class BadRequestError(APIStatusError):
    """Offergrid rejected the request's data (400 or 422)."""

    @property
    def field(self) -> str | None:
        """The wire path of the bad field, when Offergrid named one."""
        return self.body.field


class AuthenticationError(APIStatusError):
    """The API key is missing, invalid or revoked (401)."""


class PermissionDeniedError(APIStatusError):
    """The key is valid but its team role may not use this endpoint (403)."""


class NotFoundError(APIStatusError):
    """The resource does not exist or does not belong to your team (404)."""


class ConflictError(APIStatusError):
    """The request conflicts with the resource's current state (409)."""


class NotCancellableError(ConflictError):
    """The order can no longer be cancelled by the reseller."""


class RateLimitError(APIStatusError):
    """Too many requests (429); `retry_after` is the wait Offergrid asked for, in seconds."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: ErrorBody,
        endpoint: str,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            message, status_code=status_code, body=body, endpoint=endpoint, request_id=request_id
        )
        self.retry_after = retry_after


class InternalServerError(APIStatusError):
    """Offergrid failed on its side (5xx)."""


# What a task policy may retry: a retry cannot fix any other error.
RETRYABLE_ERRORS: tuple[type[OffergridError], ...] = (
    RateLimitError,
    InternalServerError,
    APIConnectionError,
)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Read a Retry-After header (seconds or an HTTP date); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


_NOT_CANCELLABLE_WORDS = ("cancel",)


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def make_status_error(
    response: httpx.Response, endpoint: str, *, redact: Sequence[str] = ()
) -> APIStatusError:
    """Build the error for a non-2xx answer: the one place status codes map to classes."""
    from offergrid.models.errors import ErrorBody

    status = response.status_code
    try:
        body = ErrorBody.from_payload(response.json())
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        body = ErrorBody(message=response.text[:500] or None)
    detail = _redact(body.detail or response.reason_phrase or "no detail", redact)
    request_id = response.headers.get("x-request-id")
    where = f"{response.request.method} {endpoint}" if _has_request(response) else endpoint
    kwargs = {"status_code": status, "body": body, "endpoint": endpoint, "request_id": request_id}
    is_cancel = endpoint.endswith("/cancel")

    if status == 401:
        return AuthenticationError(
            f"Offergrid rejected the API key (401) on {where}: check OFFERGRID_API_KEY", **kwargs
        )
    if status == 403:
        return PermissionDeniedError(
            f"Offergrid refused {where} (403): the key's team role may not use it ({detail})",
            **kwargs,
        )
    if status == 404:
        return NotFoundError(f"Not found on Offergrid (404) at {where}: {detail}", **kwargs)
    if status == 409 and is_cancel:
        return NotCancellableError(
            f"Order cannot be cancelled (409) at {where}: {detail}", **kwargs
        )
    if status == 409:
        return ConflictError(f"Conflict (409) at {where}: {detail}", **kwargs)
    if (
        status == 400
        and is_cancel
        and any(word in detail.lower() for word in _NOT_CANCELLABLE_WORDS)
    ):
        return NotCancellableError(
            f"Order cannot be cancelled (400) at {where}: {detail}", **kwargs
        )
    if status in (400, 422):
        field = f" [{body.field}]" if body.field else ""
        return BadRequestError(
            f"Offergrid rejected the request ({status}) at {where}{field}: {detail}", **kwargs
        )
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is None:
            retry_after = body.retry_after
        wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
        return RateLimitError(
            f"Rate limited by Offergrid (429) at {where}{wait}", retry_after=retry_after, **kwargs
        )
    if status >= 500:
        return InternalServerError(
            f"Offergrid server error ({status}) at {where}: {detail}", **kwargs
        )
    return APIStatusError(
        f"Unexpected answer from Offergrid ({status}) at {where}: {detail}", **kwargs
    )


def _has_request(response: httpx.Response) -> bool:
    try:
        response.request  # noqa: B018 - httpx raises when a response was built without a request
    except RuntimeError:
        return False
    return True
