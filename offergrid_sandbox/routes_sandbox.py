"""Sandbox-only routes under /sandbox (no API key): clock, inspection, reset, faults, webhooks.

These exist only in the local Offergrid. Tests, demos and benchmarks use them to move virtual
time, look at every order, count requests and switch misbehaviour on and off at runtime.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from offergrid_sandbox.config import FaultConfig, RateLimitConfig, SimulationConfig
from offergrid_sandbox.schemas import (
    M,
    SandboxError,
    bad_input,
    iso,
    read_json,
    reject_unknown,
    require_object,
    validate_model,
)
from offergrid_sandbox.state import Sandbox, current_sandbox

router = APIRouter(prefix="/sandbox", tags=["sandbox"])

MAX_ADVANCE_SECONDS = 400 * 86_400


class AdvanceRequest(BaseModel):
    """How far to move the virtual clock."""

    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(ge=0, le=MAX_ADVANCE_SECONDS, allow_inf_nan=False)


class WebhookEndpoint(BaseModel):
    """Where reseller events go and the secret that signs them."""

    model_config = ConfigDict(extra="forbid")

    url: str | None
    secret: str | None = None


async def _config_body(request: Request, model: type[M]) -> M:
    """A whole sandbox config from the body; unknown keys are refused, not silently ignored."""
    body = require_object(await read_json(request), "body", what="request body")
    reject_unknown(body, frozenset(model.model_fields), "")
    return validate_model(model, body)


def _value_error(err: ValueError) -> SandboxError:
    """A collaborator's "field: message" ValueError as a 400 naming the field."""
    text = str(err)
    field, _, message = text.partition(": ")
    return bad_input(field if message else "body", text)


def _part(sandbox: Sandbox, name: str) -> Any:
    part = getattr(sandbox, name)
    if part is None:
        raise SandboxError(503, f"The sandbox runs without its {name} part")
    return part


def _clock_view(sandbox: Sandbox) -> dict[str, Any]:
    next_due = sandbox.clock.next_due()
    return {
        "now": iso(sandbox.now()),
        "virtual": sandbox.clock.is_virtual,
        "pendingTimers": sandbox.clock.pending(),
        "nextDue": iso(next_due) if next_due else None,
    }


@router.get("/clock", summary="The sandbox clock")
async def get_clock(request: Request) -> dict[str, Any]:
    """Current time, whether it is virtual, and the timers waiting."""
    return _clock_view(current_sandbox(request))


@router.post("/clock/advance", summary="Move virtual time forward")
async def advance_clock(request: Request) -> dict[str, Any]:
    """Advance a virtual clock by `seconds`, running every step and delivery that falls due."""
    sandbox = current_sandbox(request)
    body = validate_model(AdvanceRequest, await read_json(request))
    # Timers may deliver webhooks over HTTP: run them off the event loop.
    ran = await run_in_threadpool(sandbox.advance, body.seconds)
    return {"ran": ran, **_clock_view(sandbox)}


@router.get("/orders", summary="Every order of every team")
async def all_orders(request: Request) -> JSONResponse:
    """All orders, newest first, each with its reseller team."""
    return JSONResponse(current_sandbox(request).all_orders())


@router.get("/requests", summary="API request counts")
async def request_counts(request: Request) -> dict[str, Any]:
    """How many API requests came in, by endpoint template and answer status."""
    return current_sandbox(request).request_stats()


@router.post("/reset", summary="Start over")
async def reset(request: Request) -> dict[str, Any]:
    """Forget orders, timers, request counts, spent limits and switched faults."""
    sandbox = current_sandbox(request)
    await run_in_threadpool(sandbox.reset)
    return {"reset": True, **_clock_view(sandbox)}


@router.get("/faults", summary="Faults in force")
async def get_faults(request: Request) -> dict[str, Any]:
    """The current FaultConfig."""
    return current_sandbox(request).faults.config.model_dump()


@router.put("/faults", summary="Switch faults")
async def put_faults(request: Request) -> dict[str, Any]:
    """Replace the FaultConfig (missing fields take their defaults)."""
    sandbox = current_sandbox(request)
    config = await _config_body(request, FaultConfig)
    sandbox.faults.configure(config)
    return config.model_dump()


@router.get("/rate-limit", summary="Rate limits in force")
async def get_rate_limit(request: Request) -> dict[str, Any]:
    """The current RateLimitConfig."""
    return current_sandbox(request).rate_limiter.config.model_dump()


@router.put("/rate-limit", summary="Change rate limits")
async def put_rate_limit(request: Request) -> dict[str, Any]:
    """Replace the RateLimitConfig and forget what each key has spent."""
    sandbox = current_sandbox(request)
    config = await _config_body(request, RateLimitConfig)
    sandbox.rate_limiter.configure(config)
    return config.model_dump()


@router.get("/simulation", summary="Simulated providers' behaviour")
async def get_simulation(request: Request) -> dict[str, Any]:
    """The SimulationConfig in force."""
    config: SimulationConfig = _part(current_sandbox(request), "simulator").config
    return config.model_dump()


@router.put("/simulation", summary="Change simulated providers' behaviour")
async def put_simulation(request: Request) -> dict[str, Any]:
    """Replace the SimulationConfig for future steps (`enabled: false` stops simulation)."""
    simulator = _part(current_sandbox(request), "simulator")
    config = await _config_body(request, SimulationConfig)
    simulator.configure(config)
    return config.model_dump()


@router.post("/webhooks", summary="Register the webhook endpoint")
async def register_webhook(request: Request) -> dict[str, Any]:
    """Send reseller events to `url` (null stops), signed with `secret` (never echoed)."""
    webhooks = _part(current_sandbox(request), "webhooks")
    body = validate_model(WebhookEndpoint, await read_json(request))
    try:
        webhooks.register(body.url, body.secret)
    except ValueError as err:
        raise _value_error(err) from None
    return {"url": body.url, "registered": body.url is not None}


@router.get("/webhooks", summary="Webhook endpoint, switches and counts")
async def webhook_state(request: Request) -> dict[str, Any]:
    """The endpoint, the delivery switches and delivery counts (never the secret)."""
    webhooks = _part(current_sandbox(request), "webhooks")
    return {
        "config": webhooks.config.model_dump(exclude={"secret"}),
        "stats": webhooks.stats(),
    }


@router.put("/webhooks/switches", summary="Switch webhook misbehaviour")
async def webhook_switches(request: Request) -> dict[str, Any]:
    """Change drop, duplicate, delay, reorder and retry switches; only the fields sent change."""
    webhooks = _part(current_sandbox(request), "webhooks")
    body = require_object(await read_json(request), "body", what="request body")
    try:
        updated = webhooks.set_switches(**body)
    except ValueError as err:
        raise _value_error(err) from None
    return dict(updated.model_dump(exclude={"secret"}))


@router.get("/webhooks/deliveries", summary="Webhook delivery attempts")
async def webhook_deliveries(request: Request) -> JSONResponse:
    """Every delivery attempt and drop, oldest first."""
    webhooks = _part(current_sandbox(request), "webhooks")
    return JSONResponse([dict(record) for record in list(webhooks.deliveries)])


@router.get("/keys", summary="The local API keys")
async def keys(request: Request) -> JSONResponse:
    """The sandbox's documented local keys (sandbox-only, they guard nothing real)."""
    return JSONResponse(current_sandbox(request).keys.documented_keys())
