"""Helpers for the sandbox core's tests: an in-process sandbox, keys as headers, order bodies."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from starlette.testclient import TestClient

from offergrid_sandbox.app import create_app
from offergrid_sandbox.config import (
    HYBRID_KEY,
    PROVIDER_KEY,
    RESELLER_KEY,
    RateLimitConfig,
    SandboxConfig,
    SimulationConfig,
)
from offergrid_sandbox.state import Sandbox

START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
RESELLER = {"x-api-key": RESELLER_KEY}
PROVIDER = {"x-api-key": PROVIDER_KEY}
HYBRID = {"x-api-key": HYBRID_KEY}
AUSTIN_ZIP = "78701"


def quiet_config(**overrides: Any) -> SandboxConfig:
    """A virtual-clock sandbox config with simulated providers off and limits out of the way."""
    fields: dict[str, Any] = {
        "seed": 7,
        "clock": "virtual",
        "start_time": START,
        "simulation": SimulationConfig(enabled=False),
        "rate_limit": RateLimitConfig(per_minute=10_000, per_hour=100_000),
    }
    fields.update(overrides)
    return SandboxConfig(**fields)


@contextmanager
def sandbox_client(
    config: SandboxConfig | None = None, *, raise_server_exceptions: bool = True
) -> Iterator[tuple[TestClient, Sandbox]]:
    """A TestClient over a fresh sandbox app (lifespan run), with the sandbox state beside it."""
    app = create_app(config or quiet_config())
    with TestClient(app, raise_server_exceptions=raise_server_exceptions) as client:
        yield client, app.state.sandbox


def address(zip_code: str = AUSTIN_ZIP, **overrides: Any) -> dict[str, Any]:
    """A valid service address in `zip_code`."""
    value: dict[str, Any] = {
        "street": "401 Congress Ave",
        "city": "Austin",
        "state": "TX",
        "zipCode": zip_code,
        "country": "US",
    }
    value.update(overrides)
    return value


def order_body(*offer_ids: str, zip_code: str = AUSTIN_ZIP, **overrides: Any) -> dict[str, Any]:
    """A valid CreateOrderDto body for `offer_ids` at an address in `zip_code`."""
    body: dict[str, Any] = {
        "items": [{"offerId": offer_id} for offer_id in offer_ids],
        "serviceAddress": address(zip_code),
        "customerInfo": {
            "fullName": "Jane Doe",
            "email": "jane.doe@example.com",
            "phone": "+1-512-555-0142",
        },
    }
    body.update(overrides)
    return body


def offer_ids_at(
    client: TestClient, zip_code: str = AUSTIN_ZIP, category: str | None = None
) -> list[str]:
    """Ids of offers the reseller can order at `zip_code` (optionally in one category)."""
    params = {"zipCode": zip_code, **({"category": category} if category else {})}
    response = client.get("/reseller/catalog", params=params, headers=RESELLER)
    assert response.status_code == 200, response.text
    return [offer["id"] for offer in response.json()]


def place_order(client: TestClient, *offer_ids: str, **overrides: Any) -> dict[str, Any]:
    """Place an order as the reseller and return the 201 body."""
    response = client.post(
        "/reseller/orders", json=order_body(*offer_ids, **overrides), headers=RESELLER
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
