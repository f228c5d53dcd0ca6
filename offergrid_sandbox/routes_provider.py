"""Provider routes of provider-openapi.json: the team's offers, its order items, status updates."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from offergrid_sandbox.auth import request_principal
from offergrid_sandbox.schemas import (
    iso,
    parse_offer,
    parse_status_filter,
    parse_status_update,
    read_json,
)
from offergrid_sandbox.state import current_sandbox

router = APIRouter(prefix="/provider", tags=["provider"])
app_router = APIRouter(tags=["App"])


@app_router.get("/", summary="Service banner")
async def hello() -> dict[str, Any]:
    """A greeting that says what answers here (no auth)."""
    return {"name": "Offergrid sandbox", "message": "Local Offergrid is running", "docs": "/docs"}


@app_router.get("/health", summary="Health check")
async def health(request: Request) -> dict[str, Any]:
    """Liveness and the sandbox clock (no auth)."""
    sandbox = current_sandbox(request)
    return {
        "status": "ok",
        "clock": "virtual" if sandbox.clock.is_virtual else "real",
        "now": iso(sandbox.now()),
    }


@router.post("/offers", status_code=201, summary="Create a new offer")
async def create_offer(request: Request) -> JSONResponse:
    """Create an offer for the team (CreateOfferDto; only `name` is required)."""
    principal = request_principal(request)
    data = parse_offer(await read_json(request), partial=False)
    offer = current_sandbox(request).create_offer(principal.provider_scope, data)
    return JSONResponse(offer, status_code=201)


@router.get("/offers", summary="List all your offers")
async def list_offers(request: Request) -> JSONResponse:
    """Every offer of the team, in every status."""
    principal = request_principal(request)
    return JSONResponse(current_sandbox(request).provider_offers(principal.provider_scope))


@router.get("/offers/{offer_id}", summary="Get a specific offer")
async def get_offer(request: Request, offer_id: str) -> JSONResponse:
    """One of the team's offers, or 404."""
    principal = request_principal(request)
    return JSONResponse(current_sandbox(request).provider_offer(principal.provider_scope, offer_id))


@router.patch("/offers/{offer_id}", summary="Update an offer")
async def update_offer(request: Request, offer_id: str) -> JSONResponse:
    """Change only the fields sent (UpdateOfferDto)."""
    principal = request_principal(request)
    sandbox = current_sandbox(request)
    current = sandbox.provider_offer(principal.provider_scope, offer_id)
    data = parse_offer(await read_json(request), partial=True, current_category=current["category"])
    return JSONResponse(sandbox.update_offer(principal.provider_scope, offer_id, data))


@router.delete("/offers/{offer_id}", summary="Delete an offer")
async def delete_offer(request: Request, offer_id: str) -> JSONResponse:
    """Delete one of the team's offers for good; answers the deleted offer."""
    principal = request_principal(request)
    return JSONResponse(current_sandbox(request).delete_offer(principal.provider_scope, offer_id))


@router.get("/orders", summary="List order items to fulfill")
async def list_items(request: Request, status: str | None = None) -> JSONResponse:
    """Order items for the team's offers, optionally by status."""
    principal = request_principal(request)
    wanted = parse_status_filter(status)
    return JSONResponse(current_sandbox(request).provider_items(principal.provider_scope, wanted))


@router.get("/orders/{item_id}", summary="Get order item details")
async def get_item(request: Request, item_id: str) -> JSONResponse:
    """One order item with its order's customer, address and history."""
    principal = request_principal(request)
    return JSONResponse(
        current_sandbox(request).get_item(item_id, team_id=principal.provider_scope)
    )


@router.patch("/orders/{item_id}/status", summary="Update order item status")
async def update_item_status(request: Request, item_id: str) -> JSONResponse:
    """Move an item to any documented status (UpdateItemStatusDto), as a provider does."""
    principal = request_principal(request)
    update = parse_status_update(await read_json(request))
    item = current_sandbox(request).update_item_status(
        item_id, team_id=principal.provider_scope, **update
    )
    return JSONResponse(item)
