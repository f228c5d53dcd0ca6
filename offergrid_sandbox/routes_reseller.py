"""Reseller routes: catalog, availability, orders, cancellation, links and customers."""

from __future__ import annotations

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from offergrid_sandbox.auth import request_principal
from offergrid_sandbox.directory import (
    CUSTOMER_KINDS,
    LINK_STATUSES,
    parse_create_customer,
    parse_create_link,
    parse_update_customer,
    parse_update_link,
)
from offergrid_sandbox.schemas import (
    bad_input,
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
    sandbox = current_sandbox(request)
    if sandbox.faults.config.ignore_idempotency_key:
        key = None  # the fault switch: the key is read (and validated) but never honoured
    status, body, replayed = sandbox.create_order(principal.team_id, payload, idempotency_key=key)
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


@router.post("/links", status_code=201, summary="Create a shareable link")
async def create_link(request: Request) -> JSONResponse:
    """A link where a tenant orders services at one address, no account needed (201)."""
    principal = request_principal(request)
    data = parse_create_link(await read_json(request))
    base = str(request.base_url)
    link = current_sandbox(request).directory.create_link(principal.team_id, data, base)
    return JSONResponse(link, status_code=201)


@router.get("/links", summary="List your links")
async def list_links(request: Request, status: str | None = None) -> JSONResponse:
    """A bare array of the team's links, newest first, optionally only one status."""
    principal = request_principal(request)
    if status is not None and status not in LINK_STATUSES:
        raise bad_input("status", f"status must be one of: {', '.join(LINK_STATUSES)}")
    return JSONResponse(current_sandbox(request).directory.list_links(principal.team_id, status))


@router.get("/links/{link_id}", summary="Get a link")
async def get_link(request: Request, link_id: str) -> JSONResponse:
    """One of the team's links, or 404."""
    principal = request_principal(request)
    return JSONResponse(current_sandbox(request).directory.get_link(principal.team_id, link_id))


@router.patch("/links/{link_id}", summary="Update a link")
async def update_link(request: Request, link_id: str) -> JSONResponse:
    """Change the property name, move-in date or status (`inactive` disables the link)."""
    principal = request_principal(request)
    changes = parse_update_link(await read_json(request))
    directory = current_sandbox(request).directory
    return JSONResponse(directory.update_link(principal.team_id, link_id, changes))


@router.post("/customers", status_code=201, summary="Add a customer or lead manually")
async def create_customer(request: Request) -> JSONResponse:
    """A customer or lead record of the reseller's own (201)."""
    principal = request_principal(request)
    data = parse_create_customer(await read_json(request))
    record = current_sandbox(request).directory.create_customer(principal.team_id, data)
    return JSONResponse(record, status_code=201)


@router.get("/customers", summary="List your customers")
async def list_customers(
    request: Request, email: str | None = None, kind: str | None = None
) -> JSONResponse:
    """A bare array of the team's customers, newest first, filtered by email and kind."""
    principal = request_principal(request)
    if kind is not None and kind not in CUSTOMER_KINDS:
        raise bad_input("kind", f"kind must be one of: {', '.join(CUSTOMER_KINDS)}")
    directory = current_sandbox(request).directory
    return JSONResponse(directory.list_customers(principal.team_id, email=email, kind=kind))


@router.get("/customers/{customer_id}", summary="Get a customer")
async def get_customer(request: Request, customer_id: str) -> JSONResponse:
    """One of the team's customers, or 404."""
    principal = request_principal(request)
    directory = current_sandbox(request).directory
    return JSONResponse(directory.get_customer(principal.team_id, customer_id))


@router.patch("/customers/{customer_id}", summary="Update customer notes / tags / status / kind")
async def update_customer(request: Request, customer_id: str) -> JSONResponse:
    """Change the fields sent (also corrected contact details)."""
    principal = request_principal(request)
    changes = parse_update_customer(await read_json(request))
    directory = current_sandbox(request).directory
    return JSONResponse(directory.update_customer(principal.team_id, customer_id, changes))
