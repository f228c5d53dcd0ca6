"""Helpers for the simulated-provider and webhook tests: place orders and read item histories."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from starlette.testclient import TestClient

from offergrid_sandbox.config import (
    PROVIDER_KEY,
    RESELLER_KEY,
    SandboxConfig,
    SimulationConfig,
    WebhookConfig,
)

RESELLER = {"x-api-key": RESELLER_KEY}
PROVIDER = {"x-api-key": PROVIDER_KEY}
START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # a Monday, 8am in Austin
AUSTIN = {
    "street": "1100 Congress Ave",
    "city": "Austin",
    "state": "TX",
    "zipCode": "78701",
    "country": "US",
}
DALLAS = {**AUSTIN, "street": "2100 Ross Ave", "city": "Dallas", "zipCode": "75201"}
BUYER = {"fullName": "Jordan Buyer", "email": "jordan@example.com", "phone": "+1-512-555-0100"}
DAY = 86_400.0
FULFILLED = ("completed", "active")
SUCCESS_PATH = [
    "pending",
    "submitted_to_provider",
    "accepted",
    "scheduled",
    "in_progress",
    "completed",
    "active",
]
INSTANT_PATH = ["pending", "accepted", "active"]


def make_config(
    *,
    seed: int = 7,
    simulation: dict[str, Any] | None = None,
    webhooks: dict[str, Any] | None = None,
) -> SandboxConfig:
    """A virtual-clock sandbox config starting at START; rejections and failures off by default."""
    sim = {"rejection_rate": 0.0, "failure_rate": 0.0, **(simulation or {})}
    return SandboxConfig(
        seed=seed,
        clock="virtual",
        start_time=START,
        simulation=SimulationConfig(**sim),
        webhooks=WebhookConfig(**(webhooks or {})),
    )


def sandbox_of(app: FastAPI) -> Any:
    """The Sandbox behind an app made by create_app."""
    return app.state.sandbox


def offer_ids(
    app: FastAPI, category: str, *, zip_code: str = "78701", instant: bool | None = None
) -> list[str]:
    """Every active offer of `category` served at `zip_code`, optionally by instantActivation."""
    found = []
    for offer in sandbox_of(app).provider_offers(None):
        if offer["category"] != category or offer.get("status") != "active":
            continue
        if zip_code not in offer.get("zipCodes", []):
            continue
        flag = bool((offer.get("serviceSpecificData") or {}).get("instantActivation"))
        if instant is None or flag == instant:
            found.append(str(offer["id"]))
    if not found:
        raise LookupError(f"no {category} offer at {zip_code} (instant={instant})")
    return found


def offer_id(
    app: FastAPI, category: str, *, zip_code: str = "78701", instant: bool | None = None
) -> str:
    """The first such offer (offers are listed by name)."""
    return offer_ids(app, category, zip_code=zip_code, instant=instant)[0]


def place_order(
    http: TestClient,
    offer_ids: Iterable[str],
    *,
    address: dict[str, str] | None = None,
    test: bool = False,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """POST /reseller/orders with the reseller key; returns the 201 body."""
    body: dict[str, Any] = {
        "items": [{"offerId": oid} for oid in offer_ids],
        "serviceAddress": address or AUSTIN,
        "customerInfo": BUYER,
    }
    if test or metadata:
        body["metadata"] = {**(metadata or {}), **({"test": True} if test else {})}
    response = http.post("/reseller/orders", json=body, headers=RESELLER)
    assert response.status_code == 201, response.text
    return dict(response.json())


def advance(http: TestClient, seconds: float) -> None:
    """Move the sandbox's virtual clock through its sandbox route."""
    response = http.post("/sandbox/clock/advance", json={"seconds": seconds})
    assert response.status_code == 200, response.text


def items_of(http: TestClient, order_id: str) -> list[dict[str, Any]]:
    """The order's items (with history) as the reseller reads them."""
    response = http.get(f"/reseller/orders/{order_id}", headers=RESELLER)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def statuses(item: dict[str, Any]) -> list[str]:
    """The statuses an item went through, in order."""
    return [entry["status"] for entry in item["history"]]


def provider_patch(http: TestClient, item_id: str, **body: Any) -> dict[str, Any]:
    """PATCH /provider/orders/{itemId}/status as a person playing the provider."""
    response = http.patch(f"/provider/orders/{item_id}/status", json=body, headers=PROVIDER)
    assert response.status_code == 200, response.text
    return dict(response.json())
