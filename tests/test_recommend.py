"""Recommendation: filtering, ranking, reasons, runners-up and reported problems per category."""

from __future__ import annotations

import itertools
import logging
from datetime import date
from typing import Any

import pytest

from models.closing import ClosingRequest, Occupancy, PropertyType
from models.plan import CategoryPick, Importance
from offergrid.models import Category, Offer
from offergrid_sandbox.catalog import is_visible_to, seed_catalog
from offergrid_sandbox.config import RESELLER_TEAM
from preclose.app.samples import sample_closings
from preclose.rules.policy import load_policy
from preclose.rules.recommend import first_year_cost, recommend, recommend_detailed
from preclose.rules.timing import plan_closing
from tests.fixtures_planning import (
    ZIP,
    at,
    energy,
    insurance,
    internet,
    make_closing,
    make_offer,
)

POLICY = load_policy()


def _pick(picks: list[CategoryPick], category: str) -> CategoryPick:
    return next(pick for pick in picks if pick.category == category)


def _ids(pick: CategoryPick) -> list[str]:
    chosen = [pick.choice.offer_id] if pick.choice else []
    return chosen + [choice.offer_id for choice in pick.runners_up]


def _closing(**preferences: Any) -> ClosingRequest:
    return make_closing(preferences=preferences or None)


INTERNET = [
    # 6 months at 40, 6 at 70, plus 50 installation = 710
    internet(
        "promo",
        1000,
        40.0,
        fees={"regularPrice": 70, "promotionalPeriod": "6 months", "installationFee": 50},
    ),
    internet("flat", 1000, 55.0, provider="Lone Star Fiber"),  # 660
    internet("fees", 500, 50.0, fees={"activationFee": 25, "equipmentFee": 15}),  # 640
    internet("slow", 100, 30.0),  # 360, but only 100 Mbps
]


def test_first_year_cost_counts_promo_months_and_one_off_fees() -> None:
    """First-year cost is promo months at the promo price, the rest at regular, plus fees."""
    assert [first_year_cost(offer) for offer in INTERNET] == [710.0, 660.0, 640.0, 360.0]


def test_lowest_first_year_cost_wins_with_a_reason_and_runners_up() -> None:
    """The cheapest qualifying offer is picked, the reason says why, the rest follow in order."""
    pick = _pick(recommend(_closing(min_internet_mbps=300), INTERNET, POLICY), "internet")
    assert _ids(pick) == ["fees", "flat", "promo"]
    assert pick.reason == (
        "Lowest first-year cost at 78701 ($640) among 3 fiber offers meeting 300 Mbps"
    )
    assert pick.importance == Importance.essential and pick.problem is None
    assert pick.choice is not None and pick.choice.first_year_cost == 640.0


def test_preferred_provider_ranks_first_by_name_or_id() -> None:
    """A preferred provider wins over cheaper offers, matched case-insensitively by name or id."""
    for preferred in ("lone star FIBER", "prv-lone-star-fiber"):
        closing = _closing(preferred_providers=[preferred], min_internet_mbps=300)
        pick = _pick(recommend(closing, INTERNET, POLICY), "internet")
        assert _ids(pick) == ["flat", "fees", "promo"]
        assert pick.reason == "Preferred provider (Lone Star Fiber); first-year cost $660"


def test_runners_up_stop_at_three() -> None:
    """At most three runners-up are kept, cheapest first."""
    offers = [internet(f"o{i}", 500, 40.0 + i) for i in range(6)]
    pick = _pick(recommend(_closing(), offers, POLICY), "internet")
    assert _ids(pick) == ["o0", "o1", "o2", "o3"]


PROBLEMS = [
    (
        "everything over budget",
        {"budget_caps": [{"category": "insurance", "max_monthly": 40}]},
        [insurance("a", "homeowners (HO-3)", 95.0), insurance("b", "HO-3", 41.0)],
        "insurance",
        "No insurance offer at 78701 within your $40/month budget",
    ),
    (
        "a promo under the cap but a regular price over it",
        {"budget_caps": [{"category": "insurance", "max_monthly": 40}]},
        [insurance("a", "HO-3", 30.0, fees={"regularPrice": 55, "promotionalPeriod": 3})],
        "insurance",
        "No insurance offer at 78701 within your $40/month budget",
    ),
    (
        "only unpriced offers under a cap",
        {"budget_caps": [{"category": "insurance", "max_monthly": 40}]},
        [insurance("a", "HO-3", None), insurance("b", "HO-3", 90.0)],
        "insurance",
        "No insurance offer at 78701 within your $40/month budget "
        "(2 offered there: 1 over budget, 1 without a fixed price)",
    ),
    (
        "all providers excluded",
        {"excluded_providers": ["Acme"]},
        [internet("a", 500, 40.0), internet("b", 900, 60.0)],
        "internet",
        "No internet offer at 78701 from a provider you did not exclude",
    ),
    (
        "too slow or no stated speed",
        {"min_internet_mbps": 1000},
        [internet("a", 500, 40.0), make_offer("b", "internet", price=30.0)],
        "internet",
        "No internet offer at 78701 meeting 1000 Mbps",
    ),
    (
        "two reasons at once",
        {"min_internet_mbps": 500, "budget_caps": [{"category": "internet", "max_monthly": 50}]},
        [internet("a", 300, 40.0), internet("b", 900, 60.0)],
        "internet",
        "No internet offer at 78701 meeting 500 Mbps within your $50/month budget "
        "(2 offered there: 1 too slow or without a stated speed, 1 over budget)",
    ),
    (
        "no offer at the ZIP",
        {},
        [make_offer("a", "security", zips=["98103"]), make_offer("b", "security", zips=[])],
        "security",
        "No security offer at 78701",
    ),
    (
        "only inactive offers",
        {},
        [make_offer("a", "security", status="draft"), make_offer("b", "security", status="x")],
        "security",
        "No security offer at 78701",
    ),
    (
        "gas but no electricity",
        {},
        [energy("gas", "natural_gas", 79.0), energy("sun", "solar", None)],
        "energy",
        "No energy offer at 78701 that supplies electricity",
    ),
]


@pytest.mark.parametrize(
    ("preferences", "offers", "category", "problem"),
    [case[1:] for case in PROBLEMS],
    ids=[case[0] for case in PROBLEMS],
)
def test_empty_categories_are_reported_not_skipped(
    preferences: dict[str, Any], offers: list[Offer], category: str, problem: str
) -> None:
    """A category with nothing acceptable still gets a pick, carrying a problem saying why."""
    pick = _pick(recommend(_closing(**preferences), offers, POLICY), category)
    assert pick.choice is None and pick.runners_up == []
    assert pick.problem == problem
    assert pick.reason == problem


def test_insurance_must_fit_the_home() -> None:
    """A condo gets only HO-6 offers; with none, the problem names the form it needs."""
    offers = [insurance("ho3", "homeowners (HO-3)", 20.0), insurance("ho6", "condo (HO-6)", 38.0)]
    condo = make_closing(property_type="condo")
    assert _ids(_pick(recommend(condo, offers, POLICY), "insurance")) == ["ho6"]
    pick = _pick(recommend(condo, offers[:1], POLICY), "insurance")
    assert pick.problem == "No insurance offer at 78701 that fits the condo (HO-6)"
    landlord = make_closing(occupancy="rental")
    offers.append(insurance("dp3", "landlord (DP-3)", 120.0))
    assert _ids(_pick(recommend(landlord, offers, POLICY), "insurance")) == ["dp3"]


def test_budget_cap_filters_by_regular_price_and_keeps_the_rest() -> None:
    """Offers whose regular price exceeds the cap are dropped; the cheapest one within wins."""
    offers = [
        insurance("over", "HO-3", 45.0),
        insurance("promo", "HO-3", 20.0, fees={"regularPrice": 60, "promotionalPeriod": 6}),
        insurance("ok", "HO-3", 38.0),
    ]
    closing = _closing(budget_caps=[{"category": "insurance", "max_monthly": 40}])
    pick = _pick(recommend(closing, offers, POLICY), "insurance")
    assert _ids(pick) == ["ok"]
    assert pick.reason == (
        "Only HO-3 offer at 78701 within your $40/month budget ($456 first year). Form HO-3: "
        "A house the buyer owns and lives in (or visits) is insured with a homeowners form."
    )


def test_offers_without_a_zip_list_need_an_address_scoped_query() -> None:
    """An offer listing no ZIPs counts as available only when the query was address-scoped."""
    offers = [make_offer("nozip", "security", zips=[]), make_offer("far", "security", zips=["1"])]
    unscoped = _pick(recommend(_closing(), offers, POLICY), "security")
    assert unscoped.choice is None
    scoped = _pick(recommend(_closing(), offers, POLICY, address_scoped=True), "security")
    assert _ids(scoped) == ["nozip"]


def test_status_none_counts_as_active_and_zip_plus_four_matches() -> None:
    """A catalog offer without a status is orderable, and a ZIP+4 address matches a 5-digit ZIP."""
    offer = make_offer("s", "security", status=None, zips=["78701-0001"])
    closing = make_closing(zip_code="78701-1234")
    assert _ids(_pick(recommend(closing, [offer], POLICY), "security")) == ["s"]


def test_unknown_categories_are_counted_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    """Offers in undocumented categories (or none) are ignored, counted and logged."""
    offers = [
        make_offer("m", "moving_services"),
        make_offer("t", "tv"),
        make_offer("n", None),
        make_offer("s", "security"),
    ]
    with caplog.at_level(logging.WARNING, logger="preclose.rules.recommend"):
        result = recommend_detailed(_closing(), offers, POLICY)
    assert result.unknown_category_offers == 3
    assert result.unknown_categories == ["(none)", "moving_services", "tv"]
    assert _ids(_pick(result.picks, "security")) == ["s"]
    assert "Ignored 3 offers with unknown categories" in caplog.text


def test_unknown_prices_rank_after_priced_offers_and_never_crash() -> None:
    """Variable or custom offers with no monthly price rank last; alone, the lowest fees win."""
    offers = [
        energy("var", "electricity", None, fees={"activationFee": 0}),
        energy("fixed", "electricity", 129.0),
        energy("var2", "electricity", None, fees={"activationFee": 25}),
    ]
    pick = _pick(recommend(_closing(), offers, POLICY), "energy")
    assert _ids(pick) == ["fixed", "var", "var2"]
    unpriced = _pick(recommend(_closing(), [offers[2], offers[0]], POLICY), "energy")
    assert _ids(unpriced) == ["var", "var2"]
    assert unpriced.reason == (
        "None of the 2 electricity offers at 78701 has a fixed price; "
        "Acme has the lowest one-off fees and sets its variable price at signup"
    )
    assert unpriced.choice is not None and unpriced.choice.first_year_cost is None


def test_skipped_categories_get_no_pick_and_duplicates_count_once() -> None:
    """Skipped categories are left out entirely, and an offer listed twice is considered once."""
    offers = [make_offer("tv", "television"), make_offer("s", "security")] * 2
    picks = recommend(_closing(skip_categories=["television"]), offers, POLICY)
    assert [p.category for p in picks if p.category == Category.TELEVISION] == []
    assert _ids(_pick(picks, "security")) == ["s"]


def test_choice_snapshot_keeps_what_the_buyer_saw() -> None:
    """The snapshot carries name, provider, prices, fees, features, speed and connection type."""
    pick = _pick(recommend(_closing(), INTERNET[:1], POLICY), "internet")
    assert pick.choice is not None
    snap = pick.choice.snapshot
    assert (snap.name, snap.provider_name, snap.monthly_price) == (
        "Acme internet promo",
        "Acme",
        40,
    )
    assert (snap.regular_price, snap.promo_months, snap.installation_fee) == (70, 6, 50)
    assert (snap.download_mbps, snap.connection_type) == (1000, "fiber")
    assert snap.key_features == ["feature of promo"]


def _sandbox_offers() -> list[Offer]:
    """The seeded catalog as the sandbox's reseller team sees it."""
    catalog = seed_catalog()
    return [
        Offer.model_validate(raw)
        for raw in catalog.offers
        if is_visible_to(raw, RESELLER_TEAM, catalog.provider(raw["providerId"]))
    ]


SANDBOX = _sandbox_offers()
HOMES = list(itertools.product(PropertyType, Occupancy))


@pytest.mark.parametrize(("property_type", "occupancy"), HOMES)
def test_every_home_gets_a_consistent_pick_from_the_sandbox_catalog(
    property_type: PropertyType, occupancy: Occupancy
) -> None:
    """For every home at a served ZIP, each pick is available there, fits, or states a problem."""
    closing = make_closing(property_type=property_type.value, occupancy=occupancy.value)
    picks = recommend(closing, SANDBOX, POLICY)
    assert [p.category for p in picks] == list(POLICY.importance_for(closing.property))
    forms = POLICY.insurance_forms_for(closing.property)
    for pick in picks:
        assert (pick.choice is None) == (pick.problem is not None)
        for choice in [pick.choice, *pick.runners_up]:
            if choice is None:
                continue
            offer = next(o for o in SANDBOX if o.id == choice.offer_id)
            assert offer.serves_zip(ZIP) and offer.category == pick.category
            if pick.category == Category.INSURANCE:
                assert choice.snapshot.insurance_form in forms
    assert _pick(picks, "energy").choice is not None
    plan = plan_closing(closing, picks, POLICY, as_of=at(closing.closing_date.replace(day=1)))
    assert len(plan.lines) == len(picks)


def test_sample_closings_get_realistic_plans_from_the_sandbox_catalog() -> None:
    """The samples' buyer preferences show through against the seeded sandbox catalog."""
    samples = {c.crm_closing_id: c for c in sample_closings(date(2026, 11, 20))}
    picks = {key: recommend(closing, SANDBOX, POLICY) for key, closing in samples.items()}
    austin = _pick(picks["SAMPLE-AUS-001"], "internet")
    assert austin.choice is not None and austin.choice.provider_name == "Lone Star Fiber"
    assert austin.reason.startswith("Preferred provider (Lone Star Fiber)")
    chicago = _pick(picks["SAMPLE-CHI-002"], "insurance")
    assert chicago.choice is not None and chicago.choice.snapshot.insurance_form == "HO-6"
    assert (chicago.choice.monthly_price or 0) <= 45
    assert Category.TELEVISION not in [p.category for p in picks["SAMPLE-CHI-002"]]
    seattle = _pick(picks["SAMPLE-SEA-003"], "insurance")
    assert seattle.choice is not None and seattle.choice.snapshot.insurance_form == "DP-3"
    assert Category.TELEVISION not in [p.category for p in picks["SAMPLE-SEA-003"]]
    denver = _pick(picks["SAMPLE-DEN-004"], "internet")
    assert "SkyReach Satellite Internet" not in {
        c.provider_name for c in [denver.choice, *denver.runners_up] if c
    }
    atlanta = _pick(picks["SAMPLE-ATL-005"], "internet")
    assert atlanta.choice is not None and (atlanta.choice.snapshot.download_mbps or 0) >= 400
    for key, closing_picks in picks.items():
        essentials = [p for p in closing_picks if p.importance == Importance.essential]
        assert all(p.choice is not None for p in essentials), key


def test_cost_is_compared_only_among_priced_offers() -> None:
    """With one priced plan of three, the reason says it is the only priced one, not the lowest."""
    closing = make_closing()
    offers = [
        energy("fixed", "electricity", 100.0),
        energy("var-1", "electricity", None),
        energy("var-2", "electricity", None),
    ]
    [pick] = [p for p in recommend(closing, offers, POLICY) if p.category == Category.ENERGY]
    assert pick.choice is not None and pick.choice.offer_id == "fixed"
    assert pick.reason.startswith("The only priced electricity offer of 3 at 78701")
    assert "2 more set the price at signup" in pick.reason
    assert "Lowest" not in pick.reason


def test_two_priced_offers_are_compared_and_the_unpriced_counted_apart() -> None:
    """Two priced plans are compared on cost; the one priced at signup is named apart."""
    closing = make_closing()
    offers = [
        energy("a", "electricity", 100.0),
        energy("b", "electricity", 120.0),
        energy("var", "electricity", None),
    ]
    [pick] = [p for p in recommend(closing, offers, POLICY) if p.category == Category.ENERGY]
    assert pick.reason.startswith("Lowest first-year cost at 78701")
    assert "among 2 priced electricity offers; 1 more sets the price at signup" in pick.reason


def test_a_preferred_provider_that_does_not_serve_the_address_is_named() -> None:
    """A preferred provider with no offer at the ZIP is said so, in the line and the notes."""
    closing = make_closing(preferences={"preferred_providers": ["Far Fiber"]})
    offers = [
        make_offer("near", "internet", provider="Near Net"),
        make_offer("far", "internet", provider="Far Fiber", zips=["10001"]),
    ]
    found = recommend_detailed(closing, offers, POLICY)
    [pick] = [p for p in found.picks if p.category == Category.INTERNET]
    assert pick.choice is not None and pick.choice.offer_id == "near"
    assert "your preferred Far Fiber does not serve 78701" in pick.reason
    assert "Your preferred provider Far Fiber has no offer at 78701" in found.notes


def test_left_out_categories_say_why() -> None:
    """A rental leaves TV out for the tenants; a skipped category is the buyer's own."""
    rental = make_closing(occupancy="rental", preferences={"skip_categories": ["security"]})
    notes = recommend_detailed(rental, [], POLICY).notes
    assert "Home security left out: you arrange it yourself" in notes
    assert any(note.startswith("TV left out: in a buyer's rental property") for note in notes)
    assert any(note.startswith("Home service left out: moving, cleaning") for note in notes)


@pytest.mark.parametrize(
    ("property_type", "occupancy", "financed", "form"),
    [
        ("apartment", "owner_occupied", True, "HO-6"),
        ("condo", "owner_occupied", False, "HO-6"),
        ("condo", "rental", True, "DP-3"),
        ("single_family", "owner_occupied", False, "HO-3"),
    ],
)
def test_insurance_is_essential_and_of_the_right_form_financed_or_cash(
    property_type: str, occupancy: str, financed: bool, form: str
) -> None:
    """An owner never gets renters' HO-4, a cash buyer still gets insurance, and the reason
    names the form and why."""
    closing = make_closing(property_type=property_type, occupancy=occupancy, financed=financed)
    offers = [
        insurance("renters", "HO-4", 12.0),
        insurance("condo", "HO-6", 38.0),
        insurance("landlord", "DP-3", 90.0),
        insurance("house", "HO-3", 120.0),
    ]
    [pick] = [p for p in recommend(closing, offers, POLICY) if p.category == Category.INSURANCE]
    assert pick.importance == Importance.essential
    assert pick.choice is not None and pick.choice.snapshot.insurance_form == form
    assert f"Form {form}:" in pick.reason
