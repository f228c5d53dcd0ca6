"""The sandbox's seeded catalog: invented but plausible providers, their service areas and offers.

`seed_catalog(seed)` is deterministic: the same seed always gives the same offers, ids, prices and
dates, whatever the clock says. Providers are regional (a ZIP in Austin sees different internet
and power offers from one in Seattle) or national (insurance, satellite, security, streaming TV).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from offergrid_sandbox.config import RESELLER_TEAM

CATEGORIES: tuple[str, ...] = (
    "internet",
    "television",
    "security",
    "energy",
    "insurance",
    "other",
)

# (zip, city, state): real ZIPs of real cities, so sample closings read naturally.
ZIP_PLACES: tuple[tuple[str, str, str], ...] = (
    ("78701", "Austin", "TX"),
    ("78702", "Austin", "TX"),
    ("78704", "Austin", "TX"),
    ("78745", "Austin", "TX"),
    ("75201", "Dallas", "TX"),
    ("75204", "Dallas", "TX"),
    ("75206", "Dallas", "TX"),
    ("77002", "Houston", "TX"),
    ("77006", "Houston", "TX"),
    ("77019", "Houston", "TX"),
    ("78205", "San Antonio", "TX"),
    ("94102", "San Francisco", "CA"),
    ("94110", "San Francisco", "CA"),
    ("94117", "San Francisco", "CA"),
    ("90012", "Los Angeles", "CA"),
    ("90026", "Los Angeles", "CA"),
    ("90034", "Los Angeles", "CA"),
    ("92101", "San Diego", "CA"),
    ("92103", "San Diego", "CA"),
    ("95814", "Sacramento", "CA"),
    ("98101", "Seattle", "WA"),
    ("98103", "Seattle", "WA"),
    ("98105", "Seattle", "WA"),
    ("98115", "Seattle", "WA"),
    ("98004", "Bellevue", "WA"),
    ("98402", "Tacoma", "WA"),
    ("99201", "Spokane", "WA"),
    ("80202", "Denver", "CO"),
    ("80205", "Denver", "CO"),
    ("80211", "Denver", "CO"),
    ("80302", "Boulder", "CO"),
    ("80903", "Colorado Springs", "CO"),
    ("33130", "Miami", "FL"),
    ("33137", "Miami", "FL"),
    ("32801", "Orlando", "FL"),
    ("33602", "Tampa", "FL"),
    ("32202", "Jacksonville", "FL"),
    ("10001", "New York", "NY"),
    ("10011", "New York", "NY"),
    ("11201", "Brooklyn", "NY"),
    ("14202", "Buffalo", "NY"),
    ("60601", "Chicago", "IL"),
    ("60614", "Chicago", "IL"),
    ("60622", "Chicago", "IL"),
    ("60201", "Evanston", "IL"),
    ("30303", "Atlanta", "GA"),
    ("30308", "Atlanta", "GA"),
    ("30309", "Atlanta", "GA"),
    ("31401", "Savannah", "GA"),
    # More neighbourhoods of the same metros, so a benchmark can spread closings over 100 ZIPs.
    ("78703", "Austin", "TX"),
    ("78705", "Austin", "TX"),
    ("78723", "Austin", "TX"),
    ("78731", "Austin", "TX"),
    ("78741", "Austin", "TX"),
    ("78751", "Austin", "TX"),
    ("75202", "Dallas", "TX"),
    ("75205", "Dallas", "TX"),
    ("75214", "Dallas", "TX"),
    ("75219", "Dallas", "TX"),
    ("77003", "Houston", "TX"),
    ("77007", "Houston", "TX"),
    ("77008", "Houston", "TX"),
    ("77098", "Houston", "TX"),
    ("78209", "San Antonio", "TX"),
    ("78212", "San Antonio", "TX"),
    ("94103", "San Francisco", "CA"),
    ("94107", "San Francisco", "CA"),
    ("94114", "San Francisco", "CA"),
    ("94122", "San Francisco", "CA"),
    ("90004", "Los Angeles", "CA"),
    ("90027", "Los Angeles", "CA"),
    ("90039", "Los Angeles", "CA"),
    ("90064", "Los Angeles", "CA"),
    ("92104", "San Diego", "CA"),
    ("92116", "San Diego", "CA"),
    ("95816", "Sacramento", "CA"),
    ("95818", "Sacramento", "CA"),
    ("98102", "Seattle", "WA"),
    ("98107", "Seattle", "WA"),
    ("98112", "Seattle", "WA"),
    ("98117", "Seattle", "WA"),
    ("98122", "Seattle", "WA"),
    ("98005", "Bellevue", "WA"),
    ("80203", "Denver", "CO"),
    ("80206", "Denver", "CO"),
    ("80210", "Denver", "CO"),
    ("80218", "Denver", "CO"),
    ("80304", "Boulder", "CO"),
    ("33131", "Miami", "FL"),
    ("33133", "Miami", "FL"),
    ("32803", "Orlando", "FL"),
    ("33606", "Tampa", "FL"),
    ("10003", "New York", "NY"),
    ("10024", "New York", "NY"),
    ("11215", "Brooklyn", "NY"),
    ("60607", "Chicago", "IL"),
    ("60613", "Chicago", "IL"),
    ("60647", "Chicago", "IL"),
    ("30306", "Atlanta", "GA"),
    ("30307", "Atlanta", "GA"),
)

ALL_ZIPS: tuple[str, ...] = tuple(z for z, _, _ in ZIP_PLACES)


def _zips(*, states: tuple[str, ...] = (), cities: tuple[str, ...] = ()) -> tuple[str, ...]:
    return tuple(z for z, city, st in ZIP_PLACES if st in states or city in cities)


_SMALL_CITIES = ("Spokane", "Savannah", "Buffalo", "Colorado Springs", "Tacoma")
_METRO = tuple(z for z, city, _ in ZIP_PLACES if city not in _SMALL_CITIES)

# A reseller team that is not the sandbox's: offers "selected" for it stay hidden from ours.
PARTNER_RESELLER_TEAM = "team-partner-reseller"


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


def _p(pid: str, name: str, code: str, zips: tuple[str, ...], *pref: str) -> ProviderInfo:
    return ProviderInfo(id=pid, name=name, code=code, zip_codes=zips, preferred_resellers=pref)


# fmt: off
PROVIDERS: tuple[ProviderInfo, ...] = (
    _p("prv-lone-star-fiber", "Lone Star Fiber", "LSF",
       _zips(cities=("Austin", "Dallas", "San Antonio")), RESELLER_TEAM),
    _p("prv-gulf-coast-cable", "Gulf Coast Cable", "GCC",
       _zips(cities=("Houston", "Tampa", "Jacksonville", "Miami"))),
    _p("prv-golden-gate-broadband", "Golden Gate Broadband", "GGB",
       _zips(cities=("San Francisco", "Sacramento"))),
    _p("prv-pacific-crest-cable", "Pacific Crest Cable", "PCC", _zips(states=("CA",))),
    _p("prv-evergreen-fiber", "Evergreen Fiber", "EGF",
       _zips(cities=("Seattle", "Bellevue", "Tacoma"))),
    _p("prv-front-range-fiber", "Front Range Fiber", "FRF", _zips(states=("CO",))),
    _p("prv-empire-state-fiber", "Empire State Fiber", "ESF", _zips(states=("NY",))),
    _p("prv-lakeshore-cable", "Lakeshore Cable", "LKC", _zips(states=("IL",))),
    _p("prv-peachtree-fiber", "Peachtree Fiber", "PTF", _zips(cities=("Atlanta",))),
    _p("prv-skyreach-satellite", "SkyReach Satellite Internet", "SKR", ALL_ZIPS),
    _p("prv-metro-5g-home", "Metro 5G Home", "M5G", _METRO),
    _p("prv-lone-star-power", "Lone Star Power & Light", "LSP",
       _zips(cities=("Dallas", "Houston"))),
    _p("prv-capital-city-utilities", "Capital City Utilities", "CCU",
       _zips(cities=("Austin", "San Antonio"))),
    _p("prv-bluebonnet-gas", "Bluebonnet Natural Gas", "BBG", _zips(states=("TX",))),
    _p("prv-cascade-power", "Cascade Power & Light", "CPL", _zips(states=("WA",))),
    _p("prv-golden-state-energy", "Golden State Energy", "GSE", _zips(states=("CA",))),
    _p("prv-rocky-mountain-energy", "Rocky Mountain Gas & Electric", "RMG", _zips(states=("CO",))),
    _p("prv-sunshine-electric", "Sunshine State Electric", "SSE", _zips(states=("FL",))),
    _p("prv-hudson-valley-energy", "Hudson Valley Energy", "HVE", _zips(states=("NY",))),
    _p("prv-prairie-energy", "Prairie Gas & Electric", "PGE", _zips(states=("IL",))),
    _p("prv-peach-state-energy", "Peach State Gas & Power", "PSG", _zips(states=("GA",))),
    _p("prv-sunpath-solar", "SunPath Community Solar", "SPS",
       _zips(states=("CA", "CO", "NY", "IL"))),
    _p("prv-keystone-insurance", "Keystone Home Insurance", "KHI", ALL_ZIPS),
    _p("prv-harborview-mutual", "Harborview Mutual", "HBM", ALL_ZIPS),
    _p("prv-bluebird-insurance", "Bluebird Renters Insurance", "BBI", ALL_ZIPS),
    _p("prv-sentinel-security", "Sentinel Home Security", "SHS", ALL_ZIPS),
    _p("prv-homewatch", "HomeWatch DIY Security", "HWD", ALL_ZIPS),
    _p("prv-guardian-peak", "Guardian Peak Alarm", "GPA", _zips(states=("CO", "WA", "TX"))),
    _p("prv-streamline-tv", "StreamLine TV", "SLT", ALL_ZIPS),
    _p("prv-skyview-tv", "SkyView Satellite TV", "SVT", ALL_ZIPS),
    _p("prv-bluebox-movers", "BlueBox Movers", "BBM", _zips(states=("TX", "CA", "WA", "CO"))),
    _p("prv-sparkle-cleaning", "Sparkle Move-In Cleaning", "SMC", _METRO),
    _p("prv-greenbin-waste", "GreenBin Waste & Recycling", "GBW",
       _zips(states=("CO", "WA", "GA", "FL"))),
)
# fmt: on

# Offer templates: (provider id, category, spec). Prices are base prices; the seed nudges them.
# Spec keys: name, price (None = no fixed monthly price), pricing, ssd (serviceSpecificData),
# features, fees (metadata), status (default active), visibility, allowed, headline, tier.
_Spec = dict[str, Any]


def _internet(
    tier: str, down: int, up: int, price: float, conn: str, *, cap: int | None = None, **kw: Any
) -> _Spec:
    features = [f"{down:,} Mbps download", f"{up:,} Mbps upload"]
    features.append("Unlimited data" if cap is None else f"{cap} GB monthly data")
    # The typed DTO has a bandwidth range: the floor is what the plan keeps under load.
    floor = {"fiber": 0.9, "cable": 0.5, "5g_home": 0.3, "satellite": 0.25}.get(conn, 0.5)
    spec: _Spec = {
        "tier": tier,
        "price": price,
        "pricing": "fixed",
        "ssd": {
            "minBandwidth": max(1, int(down * floor)),
            "maxBandwidth": down,
            "connectionType": conn,
            "dataCap": cap,
        },
        "features": features,
        "compliance": (down, up),
    }
    spec.update(kw)
    return spec


# fmt: off
_TEMPLATES: tuple[tuple[str, str, _Spec], ...] = (
    # --- internet -------------------------------------------------------------------------
    ("prv-lone-star-fiber", "internet", _internet("Fiber 300", 300, 300, 49.99, "fiber",
        fees={"installationFee": 0, "equipmentFee": 0, "contractLength": "none"})),
    ("prv-lone-star-fiber", "internet", _internet("Fiber 1 Gig", 1000, 1000, 69.99, "fiber",
        fees={"installationFee": 0, "equipmentFee": 0, "regularPrice": 79.99,
              "promotionalPeriod": "12 months", "contractLength": "none"})),
    ("prv-lone-star-fiber", "internet", _internet("Fiber 2 Gig", 2000, 2000, 99.99, "fiber",
        visibility="preferred",
        fees={"installationFee": 0, "equipmentFee": 10, "contractLength": "none"})),
    ("prv-lone-star-fiber", "internet", _internet("Fiber 5 Gig Pilot", 5000, 5000, 149.99,
        "fiber", status="draft", fees={"installationFee": 99})),
    ("prv-gulf-coast-cable", "internet", _internet("Internet 300", 300, 20, 44.99, "cable",
        fees={"installationFee": 49.99, "equipmentFee": 14, "regularPrice": 64.99,
              "promotionalPeriod": "12 months", "contractLength": "12 months",
              "earlyTerminationFee": 120})),
    ("prv-gulf-coast-cable", "internet", _internet("Internet 1 Gig", 1000, 35, 79.99, "cable",
        cap=1200, fees={"installationFee": 49.99, "equipmentFee": 14,
                         "contractLength": "12 months", "earlyTerminationFee": 120})),
    ("prv-gulf-coast-cable", "internet", _internet("Internet 100 Legacy", 100, 10, 39.99,
        "cable", status="inactive", fees={"installationFee": 49.99})),
    ("prv-golden-gate-broadband", "internet", _internet("Fiber 500", 500, 500, 55.00, "fiber",
        fees={"installationFee": 0, "equipmentFee": 0, "contractLength": "none"})),
    ("prv-golden-gate-broadband", "internet", _internet("Fiber Gig", 1000, 1000, 75.00,
        "fiber", fees={"installationFee": 0, "activationFee": 25, "contractLength": "none"})),
    ("prv-pacific-crest-cable", "internet", _internet("Connect 400", 400, 20, 50.00, "cable",
        fees={"installationFee": 89.99, "equipmentFee": 15, "regularPrice": 70.00,
              "promotionalPeriod": "24 months", "contractLength": "24 months",
              "earlyTerminationFee": 230})),
    ("prv-pacific-crest-cable", "internet", _internet("Connect Gig", 1000, 40, 70.00, "cable",
        fees={"installationFee": 89.99, "equipmentFee": 15, "contractLength": "24 months",
              "earlyTerminationFee": 230})),
    ("prv-evergreen-fiber", "internet", _internet("Fiber 500", 500, 500, 60.00, "fiber",
        fees={"installationFee": 0, "contractLength": "none"})),
    ("prv-evergreen-fiber", "internet", _internet("Fiber 1 Gig", 1000, 1000, 80.00, "fiber",
        fees={"installationFee": 0, "contractLength": "none"})),
    ("prv-evergreen-fiber", "internet", _internet("Fiber 2 Gig", 2000, 2000, 110.00, "fiber",
        fees={"installationFee": 0, "equipmentFee": 10, "contractLength": "none"})),
    ("prv-front-range-fiber", "internet", _internet("Fiber 1 Gig", 1000, 1000, 65.00, "fiber",
        fees={"installationFee": 0, "contractLength": "none"})),
    ("prv-front-range-fiber", "internet", _internet("Fiber 250", 250, 250, 45.00, "fiber",
        fees={"installationFee": 0, "contractLength": "none"})),
    ("prv-empire-state-fiber", "internet", _internet("Fiber 300", 300, 300, 49.99, "fiber",
        fees={"installationFee": 0, "equipmentFee": 0, "contractLength": "none"})),
    ("prv-empire-state-fiber", "internet", _internet("Fiber 1 Gig", 1000, 1000, 79.99, "fiber",
        fees={"installationFee": 0, "equipmentFee": 0, "contractLength": "none"})),
    ("prv-lakeshore-cable", "internet", _internet("Internet 500", 500, 20, 55.00, "cable",
        fees={"installationFee": 35, "equipmentFee": 12, "regularPrice": 75.00,
              "promotionalPeriod": "12 months", "contractLength": "none"})),
    ("prv-lakeshore-cable", "internet", _internet("Internet Gig", 1000, 35, 75.00, "cable",
        cap=1200, fees={"installationFee": 35, "equipmentFee": 12, "contractLength": "none"})),
    ("prv-peachtree-fiber", "internet", _internet("Fiber 500", 500, 500, 55.00, "fiber",
        fees={"installationFee": 0, "contractLength": "none"})),
    ("prv-peachtree-fiber", "internet", _internet("Fiber 2 Gig", 2000, 2000, 100.00, "fiber",
        visibility="selected", allowed=[PARTNER_RESELLER_TEAM],
        fees={"installationFee": 0, "contractLength": "none"})),
    ("prv-skyreach-satellite", "internet", _internet("Standard 100", 100, 10, 89.99,
        "satellite", cap=200, fees={"installationFee": 0, "equipmentFee": 15,
                                     "contractLength": "24 months", "earlyTerminationFee": 400})),
    ("prv-skyreach-satellite", "internet", _internet("Unlimited 150", 150, 20, 119.99,
        "satellite", fees={"installationFee": 0, "equipmentFee": 15,
                           "contractLength": "24 months", "earlyTerminationFee": 400})),
    ("prv-metro-5g-home", "internet", _internet("Internet", 245, 31, 50.00, "5g_home",
        fees={"installationFee": 0, "equipmentFee": 0, "contractLength": "none"})),
    ("prv-metro-5g-home", "internet", _internet("Internet Plus", 415, 55, 70.00, "5g_home",
        fees={"installationFee": 0, "equipmentFee": 0, "contractLength": "none"})),
    # --- television -----------------------------------------------------------------------
    ("prv-lone-star-fiber", "television", {"tier": "TV Select", "price": 59.99,
        "pricing": "fixed", "ssd": {"channelCount": "125+", "serviceType": "IPTV",
        "hdChannels": "110", "dvr": "Cloud DVR, 200 hours", "streamingIncluded": "Netflix Basic"},
        "features": ["125+ channels", "Cloud DVR", "Watch on 5 screens"],
        "fees": {"equipmentFee": 10, "contractLength": "none"}}),
    ("prv-gulf-coast-cable", "television", {"tier": "TV Preferred", "price": 84.99,
        "pricing": "fixed", "ssd": {"channelCount": "200+", "serviceType": "cable",
        "hdChannels": "160", "dvr": "Whole-home DVR", "premiumChannels": "Optional"},
        "features": ["200+ channels", "Whole-home DVR", "Local sports"],
        "fees": {"installationFee": 49.99, "equipmentFee": 12.5,
                 "contractLength": "12 months", "regularPrice": 104.99,
                 "promotionalPeriod": "12 months"}}),
    ("prv-pacific-crest-cable", "television", {"tier": "TV Starter", "price": 45.00,
        "pricing": "fixed", "ssd": {"channelCount": "60+", "serviceType": "cable",
        "hdChannels": "45", "dvr": "Not included"},
        "features": ["60+ channels", "Local networks"],
        "fees": {"installationFee": 89.99, "equipmentFee": 9, "contractLength": "24 months"}}),
    ("prv-empire-state-fiber", "television", {"tier": "Fiber TV", "price": 69.99,
        "pricing": "fixed", "ssd": {"channelCount": "180+", "serviceType": "IPTV",
        "4kChannels": "12", "dvr": "Cloud DVR, unlimited"},
        "features": ["180+ channels", "Unlimited cloud DVR", "4K channels"],
        "fees": {"equipmentFee": 0, "contractLength": "none"}}),
    ("prv-lakeshore-cable", "television", {"tier": "TV Essentials", "price": 64.99,
        "pricing": "fixed", "ssd": {"channelCount": "140+", "serviceType": "cable",
        "hdChannels": "120", "dvr": "Whole-home DVR"},
        "features": ["140+ channels", "Chicago sports networks"],
        "fees": {"installationFee": 35, "equipmentFee": 11, "contractLength": "none"}}),
    ("prv-streamline-tv", "television", {"tier": "Essentials", "price": 74.99,
        "pricing": "fixed", "ssd": {"channelCount": "85+", "serviceType": "live streaming",
        "dvr": "Unlimited cloud DVR", "streamingIncluded": "Yes"},
        "features": ["85+ live channels", "Unlimited cloud DVR", "No equipment needed"],
        "fees": {"installationFee": 0, "equipmentFee": 0, "contractLength": "none"}}),
    ("prv-streamline-tv", "television", {"tier": "Plus", "price": 94.99, "pricing": "fixed",
        "ssd": {"channelCount": "120+", "serviceType": "live streaming",
        "dvr": "Unlimited cloud DVR", "4kChannels": "8", "premiumChannels": "Included"},
        "features": ["120+ live channels", "Premium movie channels", "4K sports"],
        "fees": {"installationFee": 0, "equipmentFee": 0, "contractLength": "none"}}),
    ("prv-skyview-tv", "television", {"tier": "America's Top 120", "price": 84.99,
        "pricing": "fixed", "ssd": {"channelCount": "190", "serviceType": "satellite",
        "hdChannels": "Free HD for life", "dvr": "Hopper DVR, 16 tuners"},
        "features": ["190 channels", "Free professional installation", "Hopper DVR"],
        "fees": {"installationFee": 0, "equipmentFee": 15, "contractLength": "24 months",
                 "earlyTerminationFee": 480}}),
    ("prv-skyview-tv", "television", {"tier": "Latino Plus", "price": 44.99,
        "pricing": "fixed", "status": "archived",
        "ssd": {"channelCount": "60", "serviceType": "satellite"},
        "features": ["Spanish-language channels"], "fees": {"contractLength": "24 months"}}),
    # --- security -------------------------------------------------------------------------
    ("prv-sentinel-security", "security", {"tier": "Pro Monitoring", "price": 44.99,
        "pricing": "fixed", "ssd": {"monitoringType": "professional_monitoring",
        "installationType": "professional",
        "equipmentIncluded": "Hub, 2 door sensors, motion sensor, keypad, yard sign"},
        "features": ["24/7 professional monitoring", "Professional installation",
                     "Mobile app"],
        "fees": {"installationFee": 99, "equipmentFee": 0, "contractLength": "36 months",
                 "earlyTerminationFee": 450}}),
    ("prv-sentinel-security", "security", {"tier": "Smart Home Premier", "price": 64.99,
        "pricing": "fixed", "ssd": {"monitoringType": "professional_monitoring",
        "installationType": "professional",
        "equipmentIncluded": "Hub, 4 sensors, video doorbell, 2 cameras, smart lock"},
        "features": ["24/7 monitoring", "Video doorbell and cameras", "Smart lock"],
        "fees": {"installationFee": 199, "contractLength": "36 months",
                 "earlyTerminationFee": 650}}),
    ("prv-homewatch", "security", {"tier": "Self-Monitored", "price": 9.99, "pricing": "fixed",
        "ssd": {"monitoringType": "self_monitoring", "installationType": "diy",
        "equipmentIncluded": "Base station, 3 entry sensors, motion sensor"},
        "features": ["Phone alerts", "No contract", "30-day cloud video"],
        "fees": {"equipmentFee": 0, "activationFee": 0, "contractLength": "none"}}),
    ("prv-homewatch", "security", {"tier": "Hybrid Monitoring", "price": 24.99,
        "pricing": "fixed", "ssd": {"monitoringType": "hybrid", "installationType": "diy",
        "equipmentIncluded": "Base station, 5 entry sensors, indoor camera"},
        "features": ["Professional dispatch on demand", "No contract"],
        "fees": {"activationFee": 0, "contractLength": "none"}}),
    ("prv-guardian-peak", "security", {"tier": "Guardian Complete", "price": 39.99,
        "pricing": "fixed", "ssd": {"monitoringType": "professional_monitoring",
        "installationType": "professional",
        "equipmentIncluded": "Panel, 3 door sensors, glass-break sensor, smoke detector"},
        "features": ["Local monitoring center", "Fire and smoke monitoring"],
        "fees": {"installationFee": 149, "contractLength": "24 months",
                 "earlyTerminationFee": 300}}),
    # --- energy ---------------------------------------------------------------------------
    ("prv-lone-star-power", "energy", {"tier": "Freedom 12 Electricity", "price": None,
        "pricing": "variable", "ssd": {"energyType": "electricity", "planType": "fixed-rate",
        "contractLength": "12 months", "renewablePercent": "10%",
        "rateStructure": "13.9¢/kWh at 1,000 kWh", "instantActivation": True},
        "features": ["Fixed rate for 12 months", "Same-day activation"],
        "fees": {"depositRequired": False, "earlyTerminationFee": 150,
                 "contractLength": "12 months", "baseCharge": 4.95}}),
    ("prv-lone-star-power", "energy", {"tier": "Green 24 Electricity", "price": None,
        "pricing": "variable", "ssd": {"energyType": "electricity", "planType": "fixed-rate",
        "contractLength": "24 months", "renewablePercent": "100%",
        "rateStructure": "14.6¢/kWh at 1,000 kWh", "instantActivation": True},
        "features": ["100% wind power", "Fixed rate for 24 months"],
        "fees": {"depositRequired": False, "earlyTerminationFee": 200,
                 "contractLength": "24 months"}}),
    ("prv-lone-star-power", "energy", {"tier": "Budget Bill Electricity", "price": 129.00,
        "pricing": "fixed", "ssd": {"energyType": "electricity", "planType": "flat-bill",
        "contractLength": "12 months", "rateStructure": "Flat monthly bill up to 1,500 kWh",
        "instantActivation": False},
        "features": ["Same bill every month", "Usage cap 1,500 kWh"],
        "fees": {"depositRequired": True, "earlyTerminationFee": 150,
                 "contractLength": "12 months"}}),
    ("prv-capital-city-utilities", "energy", {"tier": "Residential Electric Service",
        "price": None, "pricing": "variable", "ssd": {"energyType": "electricity",
        "planType": "municipal tiered", "rateStructure": "Tiered, 4 usage bands",
        "instantActivation": False},
        "features": ["Municipal utility", "Start or transfer service"],
        "fees": {"activationFee": 20, "depositRequired": True}}),
    ("prv-bluebonnet-gas", "energy", {"tier": "Residential Natural Gas", "price": None,
        "pricing": "variable", "ssd": {"energyType": "natural_gas", "planType": "regulated",
        "rateStructure": "Monthly customer charge plus per-CCF rate",
        "instantActivation": False},
        "features": ["Gas service turn-on", "Safety check on activation"],
        "fees": {"activationFee": 35, "depositRequired": False}}),
    ("prv-cascade-power", "energy", {"tier": "Residential Electric", "price": None,
        "pricing": "variable", "ssd": {"energyType": "electricity", "planType": "regulated",
        "renewablePercent": "90% hydro", "rateStructure": "11.2¢/kWh",
        "instantActivation": True},
        "features": ["Clean hydro power", "Online start service"],
        "fees": {"activationFee": 0, "depositRequired": False}}),
    ("prv-cascade-power", "energy", {"tier": "Natural Gas Service", "price": None,
        "pricing": "variable", "ssd": {"energyType": "natural_gas", "planType": "regulated",
        "instantActivation": False},
        "features": ["Gas turn-on appointment"], "fees": {"activationFee": 25}}),
    ("prv-golden-state-energy", "energy", {"tier": "Residential Electric (E-1)", "price": None,
        "pricing": "tiered", "ssd": {"energyType": "electricity", "planType": "tiered",
        "rateStructure": "Baseline and over-baseline tiers", "instantActivation": False},
        "features": ["Start, stop or transfer service"],
        "fees": {"activationFee": 15, "tiers": [{"name": "Baseline", "price": 0.32},
                                                {"name": "Over baseline", "price": 0.40}]}}),
    ("prv-golden-state-energy", "energy", {"tier": "Residential Gas (G-1)", "price": None,
        "pricing": "variable", "ssd": {"energyType": "natural_gas", "planType": "regulated",
        "instantActivation": False},
        "features": ["Gas service start"], "fees": {"activationFee": 15}}),
    ("prv-rocky-mountain-energy", "energy", {"tier": "Electric & Gas Bundle", "price": None,
        "pricing": "variable", "ssd": {"energyType": "electricity and natural_gas",
        "planType": "regulated", "renewablePercent": "35%", "instantActivation": False},
        "features": ["One bill for power and gas", "Budget billing available"],
        "fees": {"activationFee": 0, "depositRequired": False}}),
    ("prv-sunshine-electric", "energy", {"tier": "Residential Service (RS-1)", "price": None,
        "pricing": "variable", "ssd": {"energyType": "electricity", "planType": "regulated",
        "rateStructure": "13.4¢/kWh", "instantActivation": True},
        "features": ["Online start", "Storm outage alerts"],
        "fees": {"activationFee": 0, "depositRequired": True}}),
    ("prv-hudson-valley-energy", "energy", {"tier": "Electric & Gas Supply", "price": None,
        "pricing": "variable", "ssd": {"energyType": "electricity and natural_gas",
        "planType": "variable-rate", "rateStructure": "Monthly market rate",
        "instantActivation": False},
        "features": ["Start service online", "Paperless billing"],
        "fees": {"activationFee": 0, "depositRequired": False}}),
    ("prv-prairie-energy", "energy", {"tier": "Fixed Price Electric 12", "price": None,
        "pricing": "variable", "ssd": {"energyType": "electricity", "planType": "fixed-rate",
        "contractLength": "12 months", "rateStructure": "9.8¢/kWh supply",
        "instantActivation": True},
        "features": ["Price lock 12 months", "Instant enrollment"],
        "fees": {"earlyTerminationFee": 50, "contractLength": "12 months"}}),
    ("prv-prairie-energy", "energy", {"tier": "Residential Gas", "price": None,
        "pricing": "variable", "ssd": {"energyType": "natural_gas", "planType": "regulated",
        "instantActivation": False},
        "features": ["Gas turn-on appointment"], "fees": {"activationFee": 30}}),
    ("prv-peach-state-energy", "energy", {"tier": "Residential Electric", "price": None,
        "pricing": "variable", "ssd": {"energyType": "electricity", "planType": "regulated",
        "instantActivation": False},
        "features": ["Start service", "Budget billing"],
        "fees": {"activationFee": 20, "depositRequired": True}}),
    ("prv-peach-state-energy", "energy", {"tier": "Natural Gas Fixed 12", "price": 79.00,
        "pricing": "fixed", "ssd": {"energyType": "natural_gas", "planType": "fixed-bill",
        "contractLength": "12 months", "instantActivation": True},
        "features": ["Fixed monthly gas bill", "No deposit"],
        "fees": {"depositRequired": False, "contractLength": "12 months",
                 "earlyTerminationFee": 100}}),
    ("prv-sunpath-solar", "energy", {"tier": "Community Solar Subscription", "price": None,
        "pricing": "custom", "ssd": {"energyType": "solar", "planType": "bill credit",
        "renewablePercent": "100%", "rateStructure": "10% off solar bill credits",
        "instantActivation": False},
        "features": ["Save 10% on credited power", "No panels on your roof"],
        "fees": {"activationFee": 0, "contractLength": "none"}}),
    # --- insurance ------------------------------------------------------------------------
    ("prv-keystone-insurance", "insurance", {"tier": "Homeowners HO-3", "price": None,
        "pricing": "custom", "ssd": {"insuranceType": "homeowners (HO-3)",
        "coverageDetails": "Open-perils dwelling, named-perils contents",
        "policyTerm": "12 months", "deductible": "$1,000",
        "coverageLimit": "Dwelling replacement cost", "additionalCoverage": "Water backup"},
        "features": ["Replacement-cost dwelling", "Bind before closing",
                     "Lender evidence of insurance"],
        "fees": {"estimatedMonthlyFrom": 95, "policyFee": 25}}),
    ("prv-keystone-insurance", "insurance", {"tier": "Condo HO-6", "price": None,
        "pricing": "custom", "ssd": {"insuranceType": "condo (HO-6)",
        "coverageDetails": "Walls-in, personal property, loss assessment",
        "policyTerm": "12 months", "deductible": "$500"},
        "features": ["Walls-in coverage", "Loss assessment", "Bind before closing"],
        "fees": {"estimatedMonthlyFrom": 32}}),
    ("prv-keystone-insurance", "insurance", {"tier": "Landlord DP-3", "price": None,
        "pricing": "custom", "ssd": {"insuranceType": "landlord (DP-3)",
        "coverageDetails": "Dwelling, loss of rents, liability", "policyTerm": "12 months",
        "deductible": "$1,500"},
        "features": ["Loss of rental income", "Landlord liability"],
        "fees": {"estimatedMonthlyFrom": 120}}),
    ("prv-harborview-mutual", "insurance", {"tier": "Homeowners Plus", "price": 142.00,
        "pricing": "fixed", "ssd": {"insuranceType": "homeowners (HO-3)",
        "coverageDetails": "Extended replacement cost 125%", "policyTerm": "12 months",
        "deductible": "$2,500", "coverageLimit": "$400,000 dwelling"},
        "features": ["125% extended replacement", "Identity theft coverage"],
        "fees": {"policyFee": 0}}),
    ("prv-harborview-mutual", "insurance", {"tier": "Condo Protect", "price": 38.00,
        "pricing": "fixed", "ssd": {"insuranceType": "condo (HO-6)",
        "coverageDetails": "Walls-in and personal property", "policyTerm": "12 months",
        "deductible": "$1,000", "coverageLimit": "$60,000 personal property"},
        "features": ["Walls-in coverage", "Personal liability $300k"], "fees": {}}),
    ("prv-harborview-mutual", "insurance", {"tier": "Renters Basic", "price": 15.00,
        "pricing": "fixed", "ssd": {"insuranceType": "renters (HO-4)",
        "coverageDetails": "Personal property and liability", "policyTerm": "12 months",
        "deductible": "$500", "coverageLimit": "$30,000 personal property"},
        "features": ["Personal property $30k", "Liability $100k"], "fees": {}}),
    ("prv-bluebird-insurance", "insurance", {"tier": "Renters Instant", "price": 12.00,
        "pricing": "fixed", "ssd": {"insuranceType": "renters (HO-4)",
        "coverageDetails": "Personal property, liability, loss of use",
        "policyTerm": "monthly", "deductible": "$250", "coverageLimit": "$20,000"},
        "features": ["Covered in minutes", "Cancel anytime"], "fees": {"policyFee": 0}}),
    ("prv-bluebird-insurance", "insurance", {"tier": "Renters Pet Add-On", "price": 6.00,
        "pricing": "fixed", "status": "draft", "ssd": {"insuranceType": "renters (HO-4)"},
        "features": ["Pet damage cover"], "fees": {}}),
    # --- other ----------------------------------------------------------------------------
    ("prv-bluebox-movers", "other", {"tier": "Local Move, 2 Movers", "price": None,
        "pricing": "custom", "ssd": {"serviceType": "moving", "crewSize": 2,
        "hourlyRate": "$129/hour", "minimumHours": 3},
        "features": ["Licensed and insured", "Free boxes with booking"],
        "fees": {"oneTimeEstimate": 450, "depositRequired": True}}),
    ("prv-bluebox-movers", "other", {"tier": "Full-Service Move", "price": None,
        "pricing": "custom", "ssd": {"serviceType": "moving", "crewSize": 4,
        "packing": "Included"},
        "features": ["Packing and unpacking", "Furniture assembly"],
        "fees": {"oneTimeEstimate": 1800, "depositRequired": True}}),
    ("prv-sparkle-cleaning", "other", {"tier": "Move-In Deep Clean", "price": None,
        "pricing": "custom", "ssd": {"serviceType": "cleaning", "duration": "4-6 hours"},
        "features": ["Inside cabinets and appliances", "Eco-friendly products"],
        "fees": {"oneTimeEstimate": 289}}),
    ("prv-greenbin-waste", "other", {"tier": "Curbside Trash & Recycling", "price": 32.50,
        "pricing": "fixed", "ssd": {"serviceType": "waste collection",
        "pickupSchedule": "Weekly trash, biweekly recycling", "cartSize": "96 gallon"},
        "features": ["Weekly pickup", "Recycling included"],
        "fees": {"activationFee": 0, "contractLength": "none"}}),
    ("prv-greenbin-waste", "other", {"tier": "Yard Waste Add-On", "price": 12.00,
        "pricing": "fixed", "status": "inactive", "ssd": {"serviceType": "yard waste"},
        "features": ["Seasonal yard waste pickup"], "fees": {}}),
)
# fmt: on

_CATEGORY_CODES = {
    "internet": "INT",
    "television": "TV",
    "security": "SEC",
    "energy": "NRG",
    "insurance": "INS",
    "other": "OTH",
}

_HEADLINES = {
    "internet": "Get connected on move-in day",
    "television": "Your shows, ready when you arrive",
    "security": "Protect your new home from day one",
    "energy": "Lights on when you get the keys",
    "insurance": "Coverage in place before closing",
    "other": "One less thing to do on moving day",
}

_EPOCH = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def _nudge(rng: random.Random, price: float | None) -> float | None:
    """Move a base price by a few dollars, keeping the retail .99/.00 ending."""
    if price is None:
        return None
    step = rng.choice((-5, 0, 0, 0, 5))
    return round(max(price + step, 1.0), 2)


def _make_offer(
    rng: random.Random, provider: ProviderInfo, category: str, spec: _Spec, index: int
) -> dict[str, Any]:
    tier: str = spec["tier"]
    # "Lone Star Fiber" + "Fiber 1 Gig" reads "Lone Star Fiber 1 Gig", not "Fiber Fiber".
    name = f"{provider.name} {tier.removeprefix(provider.name.split()[-1] + ' ')}"
    sku = f"{provider.code}-{_CATEGORY_CODES[category]}-{index:03d}"
    created = _EPOCH + timedelta(days=rng.randint(0, 300), minutes=rng.randint(0, 600))
    updated = created + timedelta(days=rng.randint(0, 60), minutes=rng.randint(0, 600))
    fees: dict[str, Any] = dict(spec.get("fees", {}))
    price = _nudge(rng, spec.get("price"))
    if "regularPrice" in fees and price is not None:
        fees["regularPrice"] = max(fees["regularPrice"], round(price + 10, 2))
    metadata: dict[str, Any] = {
        "tags": [category, "residential"],
        "region": ", ".join(sorted({st for z, _, st in ZIP_PLACES if z in provider.zip_codes})),
        **fees,
    }
    features: list[str] = list(spec.get("features", []))
    description = f"{tier} from {provider.name}. " + "; ".join(features) + "."
    offer: dict[str, Any] = {
        "id": f"off-{rng.getrandbits(48):012x}",
        "name": name,
        "internalName": f"{sku}-{created:%Y}",
        "category": category,
        "status": spec.get("status", "active"),
        "sku": sku,
        "externalId": f"ext-{provider.code.lower()}-{rng.randint(10000, 99999)}",
        "metadata": metadata,
        "description": description,
        "internalDescription": f"Seeded sandbox offer for {provider.name}",
        "marketingHeadline": _HEADLINES[category],
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
        "serviceSpecificData": copy.deepcopy(spec.get("ssd", {})),
        "pricingType": spec.get("pricing", "fixed"),
        "monthlyPrice": price,
        "complianceStatus": "unknown",
        "visibility": spec.get("visibility", "public"),
        "allowedResellers": list(spec.get("allowed", [])),
        "providerId": provider.id,
        "providerName": provider.name,
        "zipCodes": list(provider.zip_codes),
        "createdAt": created.isoformat().replace("+00:00", "Z"),
        "updatedAt": updated.isoformat().replace("+00:00", "Z"),
    }
    if "compliance" in spec:
        down, up = spec["compliance"]
        offer["complianceStatus"] = "approved"
        offer["complianceData"] = {
            "broadbandLabel": {
                "url": f"https://labels.{provider.slug}.example.com/{sku.lower()}",
                "typicalDownload": int(down * 0.94),
                "typicalUpload": int(up * 0.9),
                "typicalLatency": rng.randint(8, 40),
                "dataCapGb": spec["ssd"]["dataCap"],
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
    by_id = {p.id: p for p in PROVIDERS}
    offers: list[dict[str, Any]] = []
    for index, (provider_id, category, spec) in enumerate(_TEMPLATES, start=1):
        offers.append(_make_offer(rng, by_id[provider_id], category, spec, index))
    return Catalog(
        seed=seed,
        providers=list(PROVIDERS),
        offers=offers,
        zip_places={z: (city, st) for z, city, st in ZIP_PLACES},
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
