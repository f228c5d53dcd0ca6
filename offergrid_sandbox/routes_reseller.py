"""Reseller routes: catalog, availability, orders and cancellation, as the documented service."""

from __future__ import annotations

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from offergrid_sandbox.auth import request_principal
from offergrid_sandbox.schemas import (
    parse_availability,
    parse_cancel,
    parse_catalog_query,
    parse_create_order,
    parse_idempotency_key,
    parse_status_filter,
    read_json,
)
from offergrid_sandbox.state import current_sandbox

router = APIRouter(prefix="/reseller", tags=["reseller"])


@router.get("/catalog", summary="Browse offers visible to your team")
async def list_catalog(
    request: Request,
    category: str | None = None,
    zipCode: str | None = None,
    search: str | None = None,
    minPrice: str | None = None,
    maxPrice: str | None = None,
    sortBy: str | None = None,
    sortOrder: str | None = None,
) -> JSONResponse:
    """A bare array of offers, filtered by category, ZIP, text and price, then sorted."""
    principal = request_principal(request)
    params = {
        "category": category,
        "zipCode": zipCode,
        "search": search,
        "minPrice": minPrice,
        "maxPrice": maxPrice,
        "sortBy": sortBy,
        "sortOrder": sortOrder,
    }
    query = parse_catalog_query({k: v for k, v in params.items() if v is not None})
    return JSONResponse(current_sandbox(request).catalog_offers(principal.team_id, query))


@router.get("/catalog/{offer_id}", summary="Offer details")
async def get_catalog_offer(request: Request, offer_id: str) -> JSONResponse:
    """One offer with every field, or 404 when it is unknown or not visible to the team."""
    principal = request_principal(request)
    return JSONResponse(current_sandbox(request).visible_offer(principal.team_id, offer_id))


@router.post("/availability", summary="Find available offers for an address")
async def check_availability(request: Request) -> JSONResponse:
    """Every offer the team can sell at a service address, flat and grouped by category."""
    principal = request_principal(request)
    address, category = parse_availability(await read_json(request))
    result = current_sandbox(request).availability(principal.team_id, address, category)
    return JSONResponse(result)


@router.post("/orders", status_code=201, summary="Place a new order")
async def place_order(
    request: Request,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key"),
) -> JSONResponse:
    """Create an order (201); an `Idempotency-Key` seen before returns the first answer again."""
    principal = request_principal(request)
    key = parse_idempotency_key(idempotency_key)
    payload = parse_create_order(await read_json(request))
    status, body, replayed = current_sandbox(request).create_order(
        principal.team_id, payload, idempotency_key=key
    )
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(body, status_code=status, headers=headers)


@router.get("/orders", summary="List your orders")
async def list_orders(request: Request, status: str | None = None) -> JSONResponse:
    """A bare array of the team's orders, newest first, optionally filtered by order status."""
    principal = request_principal(request)
    wanted = parse_status_filter(status)
    return JSONResponse(current_sandbox(request).list_orders(principal.team_id, wanted))


@router.get("/orders/{order_id}", summary="Order details")
async def get_order(request: Request, order_id: str) -> JSONResponse:
    """One order with its items and each item's status history."""
    principal = request_principal(request)
    return JSONResponse(current_sandbox(request).get_order(principal.team_id, order_id))


@router.patch("/orders/{order_id}/cancel", summary="Cancel an order")
async def cancel_order(request: Request, order_id: str) -> JSONResponse:
    """Cancel while every live item is pending, submitted, accepted or scheduled; else 409."""
    principal = request_principal(request)
    reason = parse_cancel(await read_json(request))
    return JSONResponse(current_sandbox(request).cancel_order(principal.team_id, order_id, reason))
