"""Builders shared by the closing, policy, recommendation, timing and view tests."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from models.closing import ClosingRequest
from offergrid.models import Offer

ZIP = "78701"


def closing_data(**overrides: Any) -> dict[str, Any]:
    """A valid closing as the JSON a CRM would send, with top-level keys replaced by `overrides`."""
    data: dict[str, Any] = {
        "crm_closing_id": "CL-2026-0042",
        "property": {
            "address": {
                "street": "1208 Elm Street",
                "city": "Austin",
                "state": "TX",
                "zip_code": ZIP,
            },
            "property_type": "single_family",
            "size_sqft": 1850,
            "occupancy": "owner_occupied",
            "financed": True,
        },
        "buyer": {
            "full_name": "John Doe",
            "email": "john.doe@example.com",
            "phone": "+1 (512) 555-4567",
            "contact_consent": True,
        },
        "agent": {"name": "Sam Okafor", "email": "sam@brokerage.example"},
        "closing_date": "2026-12-15",
    }
    data.update(overrides)
    return data


def make_closing(
    *,
    property_type: str = "single_family",
    occupancy: str = "owner_occupied",
    financed: bool = True,
    zip_code: str = ZIP,
    preferences: dict[str, Any] | None = None,
    **overrides: Any,
) -> ClosingRequest:
    """A validated closing with the property and preferences given."""
    data = closing_data(**overrides)
    prop = data["property"]
    prop.update(property_type=property_type, occupancy=occupancy, financed=financed)
    prop["address"]["zip_code"] = zip_code
    if preferences is not None:
        data["preferences"] = preferences
    return ClosingRequest.model_validate(data)


def make_offer(
    offer_id: str,
    category: str | None,
    *,
    provider: str = "Acme",
    price: float | None = 50.0,
    zips: list[str] | None = None,
    name: str | None = None,
    status: str | None = "active",
    ssd: dict[str, Any] | None = None,
    fees: dict[str, Any] | None = None,
    pricing: str | None = None,
) -> Offer:
    """An offer as the catalog sends it (camelCase JSON), parsed by the real wire model."""
    wire: dict[str, Any] = {
        "id": offer_id,
        "name": name or f"{provider} {category} {offer_id}",
        "category": category,
        "status": status,
        "providerId": f"prv-{provider.lower().replace(' ', '-')}",
        "providerName": provider,
        "monthlyPrice": price,
        "pricingType": pricing or ("fixed" if price is not None else "variable"),
        "zipCodes": [ZIP] if zips is None else zips,
        "serviceSpecificData": ssd or {},
        "metadata": fees or {},
        "keyFeatures": [f"feature of {offer_id}"],
    }
    return Offer.model_validate(wire)


def internet(offer_id: str, mbps: int, price: float | None, **kw: Any) -> Offer:
    """An internet offer with the typed service data of the live reference."""
    ssd = {"minBandwidth": mbps // 2, "maxBandwidth": mbps, "connectionType": "fiber"}
    return make_offer(offer_id, "internet", price=price, ssd=ssd, **kw)


def insurance(offer_id: str, form: str, price: float | None, **kw: Any) -> Offer:
    """An insurance offer whose serviceSpecificData names its form, e.g. "condo (HO-6)"."""
    return make_offer(offer_id, "insurance", price=price, ssd={"insuranceType": form}, **kw)


def energy(offer_id: str, kind: str, price: float | None, **kw: Any) -> Offer:
    """An energy offer supplying `kind` (electricity, natural_gas, solar)."""
    return make_offer(offer_id, "energy", price=price, ssd={"energyType": kind}, **kw)


def at(day: date, hour: int = 15) -> datetime:
    """An aware UTC moment on `day` that is the same calendar day in every US zone."""
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
