"""Retry policies for tasks that call Offergrid: the one owner of every Offergrid retry.

What is retried: 429, 5xx, timeouts and connection errors (`offergrid.errors.RETRYABLE_ERRORS`),
with exponential backoff and jitter. What is not: 401, 403 and every other 4xx, local validation
errors, and anything that is not an Offergrid error; those fail at once, with a message a person
can act on (`failure_message`), logged by the `on_failure` hook.

A 429 waits at least what Offergrid asked (Retry-After). Prefect fixes each retry's delay up front,
so that floor is kept by the shared rate limiter instead (preclose.storage.ratelimit): the limited
HTTP client defers the key's limiter by Retry-After as soon as a 429 arrives, and the retry's first
call blocks in `acquire()` until then. A 429 is a statement about the API key, not about one task:
this way every task, worker and process using the key pauses, not only the one that was told, and
the retry condition stays a pure decision with no sleeping in it.

Flows splat the options into the decorator: ``@task(**OFFERGRID_TASK_OPTIONS)``; tests take
``offergrid_task_options(RetryPolicy(retries=2, base_delay_seconds=0))``.
"""

from __future__ import annotations

from typing import Any

from prefect import Task
from prefect.client.schemas.objects import State, TaskRun
from prefect.logging.loggers import task_run_logger
from prefect.tasks import exponential_backoff
from pydantic import BaseModel, ConfigDict, Field

from offergrid.errors import (
    RETRYABLE_ERRORS,
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    InternalServerError,
    NotCancellableError,
    NotFoundError,
    OffergridError,
    PermissionDeniedError,
    RateLimitError,
    RequestValidationError,
)

API_KEY_ENV = "PRECLOSE_OFFERGRID_API_KEY"


class RetryPolicy(BaseModel):
    """How often and how patiently an Offergrid call is retried."""

    model_config = ConfigDict(frozen=True)

    retries: int = Field(4, ge=0, le=10, description="Retries after the first attempt.")
    base_delay_seconds: float = Field(
        2.0, ge=0, description="Delay before the first retry; doubles with each retry."
    )
    jitter_factor: float = Field(
        0.5, ge=0, description="Random spread of each delay (Prefect's retry_jitter_factor)."
    )


def exception_of(state: State[Any]) -> BaseException | None:
    """The exception a failed state carries, or None."""
    if isinstance(state.data, BaseException):
        return state.data
    try:
        result = state.result(raise_on_failure=False)
    except Exception:  # an unreadable result is no reason to retry
        return None
    return result if isinstance(result, BaseException) else None


def is_retryable(exc: BaseException | None) -> bool:
    """Whether a retry can fix `exc`: 429, 5xx, timeouts and connection errors only."""
    return isinstance(exc, RETRYABLE_ERRORS)


def retry_condition(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's `retry_condition_fn`: retry only the Offergrid errors a retry can fix."""
    return is_retryable(exception_of(state))


def failure_message(exc: BaseException) -> str:
    """What a person should read when an Offergrid call failed for good; never the key."""
    detail = _detail(exc)
    match exc:
        case ConfigurationError():
            return f"No Offergrid API key is configured; set {API_KEY_ENV}."
        case AuthenticationError():
            return f"Offergrid rejected the API key; set {API_KEY_ENV} to a valid reseller key."
        case PermissionDeniedError():
            return (
                "Offergrid refused the request: the API key's team is not a reseller; "
                f"set {API_KEY_ENV} to a reseller or hybrid key."
            )
        case RequestValidationError():
            return f"The request was not sent: {exc.field} is invalid ({detail})."
        case BadRequestError() if exc.field:
            return f"Offergrid rejected the request: {exc.field} is invalid ({detail})."
        case BadRequestError():
            return f"Offergrid rejected the request as invalid ({detail})."
        case NotFoundError():
            return f"Offergrid could not find what was asked for ({detail})."
        case NotCancellableError():
            return f"Offergrid can no longer cancel the order ({detail})."
        case ConflictError():
            return f"Offergrid refused the change as conflicting ({detail})."
        case RateLimitError():
            return "Offergrid kept rate-limiting the API key; the call gave up after its retries."
        case InternalServerError():
            return "Offergrid kept failing on its side (5xx); the call gave up after its retries."
        case APITimeoutError():
            return "Offergrid did not answer in time; the call gave up after its retries."
        case APIConnectionError():
            return "Offergrid could not be reached; the call gave up after its retries."
        case OffergridError():
            return str(exc)
    return f"{type(exc).__name__}: {exc}"


def report_failure(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> None:
    """Prefect `on_failure` hook: log the failure in words a person can act on."""
    exc = exception_of(state)
    if isinstance(exc, OffergridError):
        task_run_logger(task_run, task).error(failure_message(exc))


def offergrid_task_options(policy: RetryPolicy | None = None) -> dict[str, Any]:
    """Keyword arguments for `@task(...)` or `task.with_options(...)` around an Offergrid call."""
    policy = policy or RetryPolicy()
    return {
        "retries": policy.retries,
        "retry_delay_seconds": exponential_backoff(backoff_factor=policy.base_delay_seconds),
        "retry_jitter_factor": policy.jitter_factor,
        "retry_condition_fn": retry_condition,
        "on_failure": [report_failure],
    }


# Built from the policy's defaults, not the environment, so importing a flow reads nothing.
OFFERGRID_TASK_OPTIONS: dict[str, Any] = offergrid_task_options()


def _detail(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    text = getattr(body, "detail", None) if body is not None else None
    if isinstance(exc, RequestValidationError):
        text = str(exc).removeprefix(f"{exc.field}: ")
    return str(text or "no detail")
