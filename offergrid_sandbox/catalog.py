"""The sandbox's seeded catalog: invented but plausible providers, their service areas and offers.

The facts live in `data/catalog.json` (ZIP places, providers and where they serve, one entry per
offer), validated on load; this module turns them into offers. `seed_catalog(seed)` is
deterministic: the same seed always gives the same offers, ids, prices and dates, whatever the clock
says. Providers are regional (a ZIP in Austin sees different internet and power offers from one in
Seattle) or national (insurance, satellite, security, streaming TV).
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CATEGORIES: tuple[str, ...] = (
    "internet",
    "television",
    "security",
    "energy",
    "insurance",
    "other",
)

# A reseller team that is not the sandbox's: offers "selected" for it stay hidden from ours.
PARTNER_RESELLER_TEAM = "team-partner-reseller"

CATALOG_FILE = "catalog.json"

_Category = Literal["internet", "television", "security", "energy", "insurance", "other"]


class _Seed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ZipPlace(_Seed):
    """A real ZIP of a real city, so sample closings read naturally."""

    zip: str = Field(pattern=r"^\d{5}$")
    city: str
    state: str = Field(pattern=r"^[A-Z]{2}$")


class ServiceArea(_Seed):
    """Where a provider serves: everywhere, the metros, or named states and cities."""

    everywhere: bool = False
    metros: bool = False
    states: tuple[str, ...] = ()
    cities: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _one_kind(self) -> ServiceArea:
        if sum((self.everywhere, self.metros, bool(self.states or self.cities))) != 1:
            raise ValueError("serves: give everywhere, metros, or states and/or cities")
        return self


class ProviderSeed(_Seed):
    """One provider as the data file describes it."""

    id: str = Field(pattern=r"^prv-[a-z0-9-]+$")
    name: str
    code: str = Field(pattern=r"^[A-Z0-9]{2,4}$", description="Prefix for SKUs and accounts.")
    serves: ServiceArea
    preferred_resellers: tuple[str, ...] = ()


class Broadband(_Seed):
    """The advertised speeds an internet offer's broadband label is drawn from (Mbps)."""

    download: int = Field(gt=0)
    upload: int = Field(gt=0)


class OfferSeed(_Seed):
    """One offer before the seed draws its IDs, dates and price nudge."""

    provider: str
    category: _Category
    tier: str
    # int | float keeps a whole-dollar price an int, as the wire has always shown it.
    price: int | float | None = Field(description="Base monthly price; None: no fixed price.")
    pricing: Literal["fixed", "variable", "tiered", "usage", "custom"] = "fixed"
    ssd: dict[str, Any] = Field(default_factory=dict, description="serviceSpecificData.")
    features: list[str] = Field(default_factory=list)
    fees: dict[str, Any] = Field(default_factory=dict, description="Merged into metadata.")
    status: Literal["active", "inactive", "draft", "archived"] = "active"
    visibility: Literal["public", "preferred", "selected"] = "public"
    allowed: list[str] = Field(default_factory=list, description="Teams a selected offer lets in.")
    broadband: Broadband | None = None


class CatalogSeed(_Seed):
    """The whole data file: places, providers and offers, cross-checked."""

    category_codes: dict[_Category, str]
    headlines: dict[_Category, str]
    small_cities: tuple[str, ...] = Field(description="Cities no metro-wide provider serves.")
    zip_places: tuple[ZipPlace, ...]
    providers: tuple[ProviderSeed, ...]
    offers: tuple[OfferSeed, ...]

    @model_validator(mode="after")
    def _references_resolve(self) -> CatalogSeed:
        known = {provider.id for provider in self.providers}
        for index, offer in enumerate(self.offers):
            if offer.provider not in known:
                raise ValueError(f"offers[{index}].provider: no provider {offer.provider!r}")
        if set(self.category_codes) != set(CATEGORIES) or set(self.headlines) != set(CATEGORIES):
            raise ValueError("category_codes and headlines must name every category")
        return self


@cache
def catalog_seed() -> CatalogSeed:
    """The validated contents of `data/catalog.json` (read once per process)."""
    text = resources.files("offergrid_sandbox").joinpath("data", CATALOG_FILE).read_text("utf-8")
    return CatalogSeed.model_validate(json.loads(text))


def __getattr__(name: str) -> Any:
    # The places are data: read from the file on first use, not at import.
    if name == "ZIP_PLACES":
        return tuple((p.zip, p.city, p.state) for p in catalog_seed().zip_places)
    if name == "ALL_ZIPS":
        return tuple(p.zip for p in catalog_seed().zip_places)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class ProviderInfo:
    """One simulated provider team: who it is, what it sells and where."""

    id: str
    name: str
    code: str  # short prefix for SKUs and account numbers
    zip_codes: tuple[str, ...]
    preferred_resellers: tuple[str, ...] = ()

    @property
    def slug(self) -> str:
        """The provider id without its `prv-` prefix."""
        return self.id.removeprefix("prv-")


@dataclass
class Catalog:
    """The seeded providers, offers and ZIP codes of one sandbox."""

    seed: int
    providers: list[ProviderInfo]
    offers: list[dict[str, Any]]
    zip_places: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def zip_codes(self) -> list[str]:
        """Every ZIP code some provider serves, sorted."""
        return sorted(self.zip_places)

    def provider(self, provider_id: str) -> ProviderInfo | None:
        """The provider with this id, if seeded."""
        return next((p for p in self.providers if p.id == provider_id), None)

    def offers_at(self, zip_code: str) -> list[dict[str, Any]]:
        """Copies of every offer (any status) whose service area holds `zip_code`."""
        return [copy.deepcopy(o) for o in self.offers if zip_code in o["zipCodes"]]


def _service_zips(area: ServiceArea, data: CatalogSeed) -> tuple[str, ...]:
    """The ZIPs a service area covers, in the data file's order."""
    return tuple(
        p.zip
        for p in data.zip_places
        if area.everywhere
        or (area.metros and p.city not in data.small_cities)
        or p.state in area.states
        or p.city in area.cities
    )


def providers() -> tuple[ProviderInfo, ...]:
    """Every seeded provider with the ZIPs it serves."""
    data = catalog_seed()
    return tuple(
        ProviderInfo(
            id=p.id,
            name=p.name,
            code=p.code,
            zip_codes=_service_zips(p.serves, data),
            preferred_resellers=p.preferred_resellers,
        )
        for p in data.providers
    )


_EPOCH = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def _nudge(rng: random.Random, price: float | None) -> float | None:
    """Move a base price by a few dollars, keeping the retail .99/.00 ending."""
    if price is None:
        return None
    step = rng.choice((-5, 0, 0, 0, 5))
    return round(max(price + step, 1.0), 2)


def _make_offer(
    rng: random.Random, provider: ProviderInfo, spec: OfferSeed, index: int, data: CatalogSeed
) -> dict[str, Any]:
    category, tier = spec.category, spec.tier
    # "Lone Star Fiber" + "Fiber 1 Gig" reads "Lone Star Fiber 1 Gig", not "Fiber Fiber".
    name = f"{provider.name} {tier.removeprefix(provider.name.split()[-1] + ' ')}"
    sku = f"{provider.code}-{data.category_codes[category]}-{index:03d}"
    created = _EPOCH + timedelta(days=rng.randint(0, 300), minutes=rng.randint(0, 600))
    updated = created + timedelta(days=rng.randint(0, 60), minutes=rng.randint(0, 600))
    fees: dict[str, Any] = copy.deepcopy(spec.fees)
    price = _nudge(rng, spec.price)
    if "regularPrice" in fees and price is not None:
        fees["regularPrice"] = max(fees["regularPrice"], round(price + 10, 2))
    metadata: dict[str, Any] = {
        "tags": [category, "residential"],
        "region": ", ".join(
            sorted({p.state for p in data.zip_places if p.zip in provider.zip_codes})
        ),
        **fees,
    }
    features = list(spec.features)
    description = f"{tier} from {provider.name}. " + "; ".join(features) + "."
    offer: dict[str, Any] = {
        "id": f"off-{rng.getrandbits(48):012x}",
        "name": name,
        "internalName": f"{sku}-{created:%Y}",
        "category": category,
        "status": spec.status,
        "sku": sku,
        "externalId": f"ext-{provider.code.lower()}-{rng.randint(10000, 99999)}",
        "metadata": metadata,
        "description": description,
        "internalDescription": f"Seeded sandbox offer for {provider.name}",
        "marketingHeadline": data.headlines[category],
        "marketingDescription": f"{provider.name}: {features[0] if features else tier}.",
        "keyFeatures": features,
        "imageUrl": f"https://cdn.example.com/offers/{sku.lower()}.jpg",
        "overview": description,
        "submissionUrl": f"https://orders.{provider.slug}.example.com/api/orders",
        "submissionConfig": {
            "formFields": [
                {"name": "address", "type": "text", "required": True},
                {"name": "phone", "type": "tel", "required": True},
            ],
            "metadata": [],
        },
        "serviceSpecificData": copy.deepcopy(spec.ssd),
        "pricingType": spec.pricing,
        "monthlyPrice": price,
        "complianceStatus": "unknown",
        "visibility": spec.visibility,
        "allowedResellers": list(spec.allowed),
        "providerId": provider.id,
        "providerName": provider.name,
        "zipCodes": list(provider.zip_codes),
        "createdAt": created.isoformat().replace("+00:00", "Z"),
        "updatedAt": updated.isoformat().replace("+00:00", "Z"),
    }
    if spec.broadband is not None:
        down, up = spec.broadband.download, spec.broadband.upload
        offer["complianceStatus"] = "approved"
        offer["complianceData"] = {
            "broadbandLabel": {
                "url": f"https://labels.{provider.slug}.example.com/{sku.lower()}",
                "typicalDownload": int(down * 0.94),
                "typicalUpload": int(up * 0.9),
                "typicalLatency": rng.randint(8, 40),
                "dataCapGb": spec.ssd["dataCap"],
            },
            "networkManagementUrl": f"https://{provider.slug}.example.com/network",
        }
    offer.update(_compliance(provider, category, sku, offer))
    return offer


def _compliance(
    provider: ProviderInfo, category: str, sku: str, offer: dict[str, Any]
) -> dict[str, Any]:
    """The documented complianceNotes and complianceData for a category (no random draws)."""
    site = f"https://{provider.slug}.example.com"
    if category == "internet":
        return {"complianceNotes": "Broadband label published and current"}
    if category == "energy":
        # Texas retail electricity: the facts label, terms of service and customer rights.
        return {
            "complianceStatus": "approved",
            "complianceNotes": "EFL, TOS and YRAC on file for the current term",
            "complianceData": {
                "electricityFactsLabelUrl": f"{site}/efl/{sku.lower()}.pdf",
                "termsOfServiceUrl": f"{site}/tos/{sku.lower()}.pdf",
                "yourRightsAsACustomerUrl": f"{site}/yrac.pdf",
            },
        }
    if category == "insurance":
        return {
            "complianceNotes": "Licensed carrier; quote subject to underwriting",
            "complianceData": {"licenseNumber": f"LIC-{provider.code}-{sku[-3:]}"},
        }
    return {
        "complianceNotes": "Standard consumer terms",
        "complianceData": {"termsUrl": f"{site}/terms"},
    }


def seed_catalog(seed: int = 7) -> Catalog:
    """Build the deterministic catalog for `seed`: providers, offers (every status) and ZIPs."""
    rng = random.Random(f"offergrid-sandbox-catalog:{seed}")
    data = catalog_seed()
    seeded = providers()
    by_id = {p.id: p for p in seeded}
    offers = [
        _make_offer(rng, by_id[spec.provider], spec, index, data)
        for index, spec in enumerate(data.offers, start=1)
    ]
    return Catalog(
        seed=seed,
        providers=list(seeded),
        offers=offers,
        zip_places={p.zip: (p.city, p.state) for p in data.zip_places},
    )


def is_visible_to(offer: dict[str, Any], team_id: str, provider: ProviderInfo | None) -> bool:
    """Whether a reseller team may see and order `offer`: active, and let through by visibility."""
    if offer.get("status") != "active":
        return False
    visibility = offer.get("visibility", "public")
    if visibility == "public":
        return True
    if visibility == "preferred":
        return provider is not None and team_id in provider.preferred_resellers
    if visibility == "selected":
        return team_id in (offer.get("allowedResellers") or [])
    return False
