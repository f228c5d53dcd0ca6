"""The sandbox's seeded catalog and the reseller catalog and availability routes."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from importlib import resources
from typing import Any

import pytest
from pydantic import ValidationError

from offergrid_sandbox.catalog import (
    CATALOG_FILE,
    CATEGORIES,
    ZIP_PLACES,
    CatalogSeed,
    seed_catalog,
)
from offergrid_sandbox.config import RESELLER_TEAM
from tests.fixtures_sandbox_core import RESELLER, address, quiet_config, sandbox_client

CATALOG = seed_catalog(7)


def test_same_seed_gives_the_same_catalog() -> None:
    """Seeding twice with one seed yields identical offers, ids and prices."""
    assert seed_catalog(7).offers == seed_catalog(7).offers


def test_another_seed_changes_ids_but_not_the_shape() -> None:
    """A different seed gives other offer ids with the same providers and offer count."""
    other = seed_catalog(8)
    assert len(other.offers) == len(CATALOG.offers)
    assert {o["id"] for o in other.offers}.isdisjoint({o["id"] for o in CATALOG.offers})
    assert [o["providerId"] for o in other.offers] == [o["providerId"] for o in CATALOG.offers]


def test_catalog_is_large_and_varied() -> None:
    """At least 60 offers over all six categories from 15+ providers and 40+ ZIPs in 5+ states."""
    assert len(CATALOG.offers) >= 60
    assert set(Counter(o["category"] for o in CATALOG.offers)) == set(CATEGORIES)
    assert len({o["providerId"] for o in CATALOG.offers}) >= 15
    assert len(CATALOG.zip_codes) >= 40
    assert len({state for _, _, state in ZIP_PLACES}) >= 5


def test_offer_fields_follow_the_contract() -> None:
    """Every offer carries the documented fields plus providerId, providerName and zipCodes."""
    for offer in CATALOG.offers:
        assert offer["id"].startswith("off-")
        assert offer["category"] in CATEGORIES
        assert offer["status"] in ("draft", "active", "inactive", "archived")
        assert offer["pricingType"] in ("fixed", "variable", "tiered", "custom")
        assert offer["providerName"] and offer["providerId"].startswith("prv-")
        assert offer["zipCodes"] and all(z in CATALOG.zip_places for z in offer["zipCodes"])
        assert isinstance(offer["keyFeatures"], list) and offer["sku"]
        price = offer["monthlyPrice"]
        assert price is None or price >= 0
    assert len({o["sku"] for o in CATALOG.offers}) == len(CATALOG.offers)


def test_some_offers_price_variably_without_a_monthly_price() -> None:
    """Variable or custom offers exist with monthlyPrice null, and fee keys live in metadata."""
    unpriced = [o for o in CATALOG.offers if o["monthlyPrice"] is None]
    assert any(o["pricingType"] == "variable" for o in unpriced)
    fee_keys = {"installationFee", "equipmentFee", "activationFee", "regularPrice"}
    assert any(fee_keys & set(o["metadata"]) for o in CATALOG.offers)
    assert any("promotionalPeriod" in o["metadata"] for o in CATALOG.offers)


def test_internet_and_security_data_use_the_typed_shapes() -> None:
    """Internet offers carry min/max bandwidth, connection type and data cap; security its trio."""
    connection_types = {"fiber", "cable", "dsl", "satellite", "fixed_wireless", "5g_home"}
    for offer in CATALOG.offers:
        data = offer["serviceSpecificData"]
        if offer["category"] == "internet":
            assert set(data) == {"minBandwidth", "maxBandwidth", "connectionType", "dataCap"}
            assert 0 < data["minBandwidth"] <= data["maxBandwidth"]
            assert data["connectionType"] in connection_types
        if offer["category"] == "security":
            assert data["monitoringType"] in (
                "professional_monitoring",
                "self_monitoring",
                "hybrid",
            )
            assert data["installationType"] in ("professional", "diy")
            assert data["equipmentIncluded"]


def test_insurance_and_energy_say_what_they_cover() -> None:
    """Insurance offers name their policy form; energy offers say electricity, gas or solar."""
    insurance = {
        o["serviceSpecificData"]["insuranceType"]
        for o in CATALOG.offers
        if o["category"] == "insurance"
    }
    assert {"homeowners (HO-3)", "condo (HO-6)", "renters (HO-4)", "landlord (DP-3)"} <= insurance
    energy = [o["serviceSpecificData"] for o in CATALOG.offers if o["category"] == "energy"]
    kinds = {d["energyType"] for d in energy}
    assert {"electricity", "natural_gas", "solar"} <= kinds
    assert any(d.get("instantActivation") is True for d in energy)


def test_reseller_catalog_hides_unlisted_offers() -> None:
    """Draft, inactive, archived and selected-for-another-team offers never reach the reseller."""
    with sandbox_client() as (client, _):
        shown = {o["id"] for o in client.get("/reseller/catalog", headers=RESELLER).json()}
        for offer in CATALOG.offers:
            hidden = offer["status"] != "active" or (
                offer["visibility"] == "selected" and RESELLER_TEAM not in offer["allowedResellers"]
            )
            assert (offer["id"] in shown) is not hidden, offer["name"]
            if hidden:
                response = client.get(f"/reseller/catalog/{offer['id']}", headers=RESELLER)
                assert response.status_code == 404
                assert response.json()["message"] == "Offer not found or not available to your team"


def test_availability_differs_by_address() -> None:
    """Austin and Seattle addresses get different internet providers, both get insurance."""
    with sandbox_client() as (client, _):
        austin = client.post(
            "/reseller/availability", json=address("78701"), headers=RESELLER
        ).json()
        seattle_address = address("98103", city="Seattle", state="WA")
        seattle = client.post(
            "/reseller/availability", json=seattle_address, headers=RESELLER
        ).json()
    providers = {
        name: {o["providerName"] for o in result["byCategory"]["internet"]}
        for name, result in (("austin", austin), ("seattle", seattle))
    }
    assert (
        "Lone Star Fiber" in providers["austin"] and "Lone Star Fiber" not in providers["seattle"]
    )
    assert "Evergreen Fiber" in providers["seattle"]
    assert austin["byCategory"]["insurance"] and seattle["byCategory"]["insurance"]
    assert (
        austin["count"]
        == len(austin["offers"])
        == sum(len(v) for v in austin["byCategory"].values())
    )
    assert austin["address"]["zipCode"] == "78701"


def test_availability_with_category_and_unit() -> None:
    """A category narrows the result to one group; a unit is echoed in the address."""
    with sandbox_client() as (client, _):
        body = {**address("78701"), "unit": "Apt 4B", "category": "Energy"}
        result = client.post("/reseller/availability", json=body, headers=RESELLER).json()
    assert list(result["byCategory"]) == ["energy"]
    assert result["offers"] and all(o["category"] == "energy" for o in result["offers"])
    assert result["address"]["unit"] == "Apt 4B"


def test_availability_at_an_unserved_zip_is_empty() -> None:
    """A well-formed ZIP no provider serves answers 200 with no offers."""
    with sandbox_client() as (client, _):
        result = client.post(
            "/reseller/availability", json=address("05401", state="VT"), headers=RESELLER
        )
    assert result.status_code == 200
    assert result.json()["count"] == 0 and result.json()["offers"] == []


def _catalog(params: dict[str, str]) -> list[dict[str, Any]]:
    with sandbox_client(quiet_config()) as (client, _):
        response = client.get("/reseller/catalog", params=params, headers=RESELLER)
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


def test_category_filter_is_case_insensitive() -> None:
    """category=Internet and category=internet give the same internet-only list."""
    upper = _catalog({"category": "Internet"})
    assert upper == _catalog({"category": "internet"})
    assert upper and {o["category"] for o in upper} == {"internet"}


def test_search_matches_name_provider_and_features() -> None:
    """search looks in name, description, provider name and key features, ignoring case."""
    by_provider = _catalog({"search": "lone star"})
    assert by_provider and all("lone star" in str(o["providerName"]).lower() for o in by_provider)
    by_feature = _catalog({"search": "CLOUD DVR"})
    assert by_feature and all(o["category"] == "television" for o in by_feature)


def test_price_bounds_are_inclusive_and_drop_unpriced_offers() -> None:
    """minPrice/maxPrice include their bounds and exclude offers with no monthly price."""
    prices = sorted({o["monthlyPrice"] for o in _catalog({}) if o["monthlyPrice"] is not None})
    low, high = prices[2], prices[-3]
    result = _catalog({"minPrice": str(low), "maxPrice": str(high)})
    got = [o["monthlyPrice"] for o in result]
    assert None not in got and low in got and high in got
    assert all(low <= p <= high for p in got)


@pytest.mark.parametrize(
    ("sort_by", "key"),
    [
        ("name", lambda o: str(o["name"]).casefold()),
        ("provider", lambda o: str(o["providerName"]).casefold()),
        ("createdAt", lambda o: str(o["createdAt"])),
    ],
)
def test_sorting_both_ways(sort_by: str, key: Callable[[dict[str, Any]], str]) -> None:
    """sortBy name/provider/createdAt orders ascending, and sortOrder=desc reverses it."""
    ascending = [key(o) for o in _catalog({"sortBy": sort_by})]
    descending = [key(o) for o in _catalog({"sortBy": sort_by, "sortOrder": "desc"})]
    assert ascending == sorted(ascending)
    assert descending == sorted(descending, reverse=True)


def test_price_sort_puts_unpriced_offers_last() -> None:
    """sortBy=price orders by monthly price either way, unpriced offers at the end."""
    for order in ("asc", "desc"):
        prices = [o["monthlyPrice"] for o in _catalog({"sortBy": "price", "sortOrder": order})]
        priced = [p for p in prices if p is not None]
        assert prices[: len(priced)] == priced and all(p is None for p in prices[len(priced) :])
        assert priced == sorted(priced, reverse=order == "desc")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"category": "tv"}, "category"),
        ({"zipCode": "7870"}, "zipCode"),
        ({"minPrice": "cheap"}, "minPrice"),
        ({"maxPrice": "-1"}, "maxPrice"),
        ({"minPrice": "50", "maxPrice": "10"}, "maxPrice"),
        ({"sortBy": "popularity"}, "sortBy"),
        ({"sortOrder": "sideways"}, "sortOrder"),
    ],
)
def test_bad_catalog_parameters_answer_400_naming_the_field(
    params: dict[str, str], field: str
) -> None:
    """Each bad filter or sort value is a 400 whose body names the parameter."""
    with sandbox_client() as (client, _):
        response = client.get("/reseller/catalog", params=params, headers=RESELLER)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert response.json()["error"] == "Bad Request"


def test_the_seed_file_is_validated_on_load() -> None:
    """The catalog's data file is checked on load: an offer naming no provider is refused."""
    path = resources.files("offergrid_sandbox").joinpath("data", CATALOG_FILE)
    data = json.loads(path.read_text("utf-8"))
    CatalogSeed.model_validate(data)  # the shipped file itself is valid
    data["offers"][0]["provider"] = "prv-nobody"
    with pytest.raises(ValidationError, match="prv-nobody"):
        CatalogSeed.model_validate(data)
