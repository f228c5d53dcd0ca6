"""The public page behind a shareable link: a person orders services at the link's address.

No API key: the link's token is the key. The order it places belongs to the team that made the
link and carries `metadata.linkId` (and `metadata.source = "link"`), so the reseller finds it in
`GET /reseller/orders` by link and address.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from offergrid_sandbox.schemas import SandboxError, parse_create_order
from offergrid_sandbox.state import current_sandbox

router = APIRouter(prefix="/links", tags=["links"], include_in_schema=False)

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:1rem auto;padding:0 1rem}"
    "label{display:block;margin:.4rem 0}input[type=text],input[type=email]{width:100%}"
)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(html, status_code=status)


def _price(offer: dict[str, Any]) -> str:
    price = offer.get("monthlyPrice")
    return "" if price is None else f" (${price:.2f}/month)"


def _open_link(request: Request, token: str) -> dict[str, Any] | HTMLResponse:
    link = current_sandbox(request).directory.link_by_token(token)
    if link is None:
        return _page("Link not found", "<p>This link does not exist.</p>", 404)
    if link["status"] != "active":
        return _page("Link no longer active", "<p>This link has been turned off.</p>", 410)
    return link


@router.get("/{token}", response_class=HTMLResponse)
def link_page(request: Request, token: str) -> HTMLResponse:
    """The offers at the link's address, and a form to order some of them."""
    link = _open_link(request, token)
    if isinstance(link, HTMLResponse):
        return link
    sandbox = current_sandbox(request)
    address = link["address"]
    found = sandbox.availability(link["teamId"], address, None)["offers"]
    choices = "".join(
        f'<label><input type="checkbox" name="offerId" value="{escape(o["id"])}"> '
        f"{escape(o['category'])}: {escape(o['name'])}{_price(o)}</label>"
        for o in found
    )
    where = f"{address['street']}, {address['city']}, {address['state']} {address['zipCode']}"
    move_in = f"<p>Move-in: {escape(link['moveInDate'])}</p>" if link.get("moveInDate") else ""
    body = (
        f"<p>{escape(where)}</p>{move_in}"
        f'<form method="post" action="/links/{escape(token)}/orders">'
        f"<fieldset><legend>Services</legend>{choices}</fieldset>"
        '<label>Full name <input type="text" name="fullName" required></label>'
        '<label>Email <input type="email" name="email" required></label>'
        '<label>Phone <input type="text" name="phone" required></label>'
        '<button type="submit">Order</button></form>'
    )
    return _page(link.get("propertyName") or "Order home services", body)


@router.post("/{token}/orders", response_class=HTMLResponse)
async def link_order(request: Request, token: str) -> HTMLResponse:
    """Place the order the form describes, for the link's team and address."""
    link = _open_link(request, token)
    if isinstance(link, HTMLResponse):
        return link
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    payload = {
        "items": [{"offerId": offer_id} for offer_id in form.get("offerId", [])],
        "serviceAddress": {k: link["address"][k] for k in link["address"] if k != "unit"},
        "customerInfo": {k: (form.get(k) or [""])[0] for k in ("fullName", "email", "phone")},
        "metadata": {"linkId": link["id"], "source": "link"},
    }
    try:
        order = parse_create_order(payload)
        _, created, _ = current_sandbox(request).create_order(link["teamId"], order)
    except SandboxError as err:
        return _page("Could not order", f"<p>{escape(err.message)}</p>", 400)
    return _page("Ordered", f"<p>Your order {escape(created['orderId'])} is placed.</p>", 201)
