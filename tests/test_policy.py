"""The recommendation policy: defaults per home, insurance forms, and validated overrides."""

from __future__ import annotations

import itertools
from datetime import date
from pathlib import Path

import pytest

from models.closing import Occupancy, PropertyType
from models.plan import Importance
from offergrid.models import Category
from preclose.rules.policy import Policy, PolicyError, default_policy_text, load_policy
from tests.fixtures_planning import energy, insurance, make_closing, make_offer

POLICY = load_policy()
ESSENTIAL, RECOMMENDED, OPTIONAL = Importance.essential, Importance.recommended, Importance.optional

HOMES = list(itertools.product(PropertyType, Occupancy, (True, False)))


@pytest.mark.parametrize(("property_type", "occupancy", "financed"), HOMES)
def test_every_home_gets_energy_and_a_fitting_insurance_form(
    property_type: PropertyType, occupancy: Occupancy, financed: bool
) -> None:
    """Every home gets essential energy and insurance (cash too: the owner carries the risk),
    and a known insurance form that is never renters' HO-4: the buyer is an owner."""
    closing = make_closing(
        property_type=property_type.value, occupancy=occupancy.value, financed=financed
    )
    importance = POLICY.importance_for(closing.property)
    assert importance[Category.ENERGY] == ESSENTIAL
    assert importance[Category.INSURANCE] == ESSENTIAL
    assert Category.OTHER not in importance
    forms = POLICY.insurance_forms_for(closing.property)
    assert forms and all(form in POLICY.insurance.forms for form in forms)
    assert "HO-4" not in forms
    ranks = [imp.rank for imp in importance.values()]
    assert ranks == sorted(ranks)  # essential first


@pytest.mark.parametrize(
    ("property_type", "occupancy", "expected"),
    [
        (
            "single_family",
            "owner_occupied",
            {"internet": ESSENTIAL, "security": RECOMMENDED, "television": OPTIONAL},
        ),
        (
            "condo",
            "owner_occupied",
            {"internet": ESSENTIAL, "security": OPTIONAL, "television": OPTIONAL},
        ),
        ("townhouse", "second_home", {"internet": RECOMMENDED, "security": RECOMMENDED}),
        ("single_family", "rental", {"internet": OPTIONAL, "television": None}),
        ("apartment", "owner_occupied", {"security": OPTIONAL}),
    ],
)
def test_importance_follows_the_home(
    property_type: str, occupancy: str, expected: dict[str, Importance | None]
) -> None:
    """Internet is essential when the buyer lives there, security fits houses, TV skips rentals."""
    closing = make_closing(property_type=property_type, occupancy=occupancy)
    importance = POLICY.importance_for(closing.property)
    for category, wanted in expected.items():
        assert importance.get(Category(category)) == wanted, category


@pytest.mark.parametrize(
    ("property_type", "occupancy", "forms"),
    [
        ("single_family", "owner_occupied", ["HO-3", "HO-5"]),
        ("new_construction", "second_home", ["HO-3", "HO-5"]),
        ("condo", "owner_occupied", ["HO-6"]),
        ("townhouse", "owner_occupied", ["HO-3", "HO-5", "HO-6"]),
        ("manufactured", "owner_occupied", ["HO-7"]),
        ("apartment", "owner_occupied", ["HO-6"]),
        ("rental_unit", "owner_occupied", ["HO-6"]),
        ("apartment", "second_home", ["HO-6"]),
        ("manufactured", "rental", ["DP-3", "DP-1"]),
        ("single_family", "rental", ["DP-3", "DP-1"]),
        ("multi_family", "rental", ["DP-3", "DP-1"]),
        ("condo", "rental", ["DP-3", "HO-6"]),
        ("apartment", "rental", ["DP-3", "HO-6"]),
    ],
)
def test_insurance_forms_fit_the_home(property_type: str, occupancy: str, forms: list[str]) -> None:
    """HO-3 for houses, HO-6 for owned units, HO-7 manufactured, DP-3 for a buyer's rental."""
    closing = make_closing(property_type=property_type, occupancy=occupancy)
    assert POLICY.insurance_forms_for(closing.property) == forms


@pytest.mark.parametrize(
    ("property_type", "occupancy", "ssd", "fit"),
    [
        ("condo", "owner_occupied", {"insuranceType": "condo (HO-6)"}, "HO-6"),
        ("condo", "rental", {"insuranceType": "condo (HO-6)"}, None),
        (
            "condo",
            "rental",
            {"insuranceType": "condo (HO-6)", "additionalCoverage": "Rental endorsement"},
            "HO-6 with a rental endorsement",
        ),
        (
            "apartment",
            "rental",
            {"insuranceType": "HO-6", "endorsements": ["HO 17 33 unit-owners rental to others"]},
            "HO-6 with a rental endorsement",
        ),
        ("condo", "rental", {"insuranceType": "landlord (DP-3)"}, "DP-3"),
        ("apartment", "owner_occupied", {"insuranceType": "renters (HO-4)"}, None),
        (
            "single_family",
            "rental",
            {"insuranceType": "condo (HO-6)", "additionalCoverage": "Rental endorsement"},
            None,
        ),
        ("manufactured", "owner_occupied", {"insuranceType": "manufactured home (HO-7)"}, "HO-7"),
    ],
)
def test_an_offer_fits_by_its_form_and_for_a_let_unit_its_rental_endorsement(
    property_type: str, occupancy: str, ssd: dict[str, object], fit: str | None
) -> None:
    """A let condo takes DP-3, or HO-6 only when the offer shows a rental endorsement."""
    closing = make_closing(property_type=property_type, occupancy=occupancy)
    offer = make_offer("o-ins", "insurance", ssd=ssd)
    assert POLICY.insurance_fit_of(offer, closing.property) == fit


@pytest.mark.parametrize(
    ("declared", "name", "form"),
    [
        ("homeowners (HO-3)", None, "HO-3"),
        ("condo (HO-6)", None, "HO-6"),
        ("HO6", None, "HO-6"),
        ("ho 4", None, "HO-4"),
        ("renters", None, "HO-4"),
        ("landlord (DP-3)", None, "DP-3"),
        (None, "Keystone Landlord Protection", "DP-3"),
        (None, "Homeowners Plus", "HO-3"),
        (None, "Condo Protect", "HO-6"),
        (None, "Basic Dwelling Fire Policy", "DP-1"),
        # The declared type wins over a misleading name.
        ("renters (HO-4)", "Homeowners Renters Bundle", "HO-4"),
        # A code anywhere beats an alias that comes first.
        (None, "Homeowners condo walls-in HO-6", "HO-6"),
        (None, "Auto Insurance", None),
        ("life", "Term Life 20", None),
    ],
)
def test_insurance_form_is_read_from_service_data_then_name(
    declared: str | None, name: str | None, form: str | None
) -> None:
    """The insurance form comes from insuranceType, else the offer name; unknown kinds give None."""
    ssd = {"insuranceType": declared} if declared else {}
    offer = make_offer("o1", "insurance", name=name or "Policy", ssd=ssd)
    assert POLICY.insurance_form_of(offer) == form


def test_energy_requirement_wants_electricity() -> None:
    """Electric and bundled offers supply the essential need; gas or solar alone do not."""
    requirement = POLICY.energy
    assert requirement is not None
    assert requirement.matches(energy("e1", "electricity", None))
    assert requirement.matches(energy("e2", "electricity and natural_gas", None))
    assert not requirement.matches(energy("e3", "natural_gas", 79.0))
    assert not requirement.matches(energy("e4", "solar", None))
    assert requirement.matches(make_offer("e5", "energy", name="Budget Bill Electricity"))
    assert not requirement.matches(insurance("i1", "renters", 10.0))


def test_timing_defaults_follow_the_documented_norms() -> None:
    """Installs 10 business days (review 0-48 h + install 5-10 days after acceptance), instant
    plans 3, insurance 2 before being bound 3 business days before closing; each rule sourced."""
    timing = POLICY.timing.categories
    assert {c: t.lead_business_days for c, t in timing.items()} == {
        Category.ENERGY: 10,
        Category.INSURANCE: 2,
        Category.INTERNET: 10,
        Category.SECURITY: 10,
        Category.TELEVISION: 10,
        Category.OTHER: 5,
    }
    assert timing[Category.INSURANCE].bind_before_closing_business_days == 3
    assert timing[Category.INSURANCE].instant_activation == "always"
    assert timing[Category.ENERGY].instant_lead_business_days == 3
    assert timing[Category.ENERGY].anchor == timing[Category.INSURANCE].anchor == "possession"
    assert timing[Category.INTERNET].anchor == "move_in"
    assert timing[Category.SECURITY].mode == "after"
    assert all(rule.source for rule in timing.values())
    assert POLICY.timing.us_federal_holidays and POLICY.timing.state_holidays


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text, "utf-8")
    return path


def test_a_custom_policy_file_replaces_the_default(tmp_path: Path) -> None:
    """A user's file loads as given: extra holidays and importance changes take effect."""
    text = default_policy_text().replace(
        "extra_holidays = []", 'extra_holidays = ["2026-12-24"]'
    ) + ('\n[[importance]]\nnote = "No TV ever"\ncategories = { television = "none" }\n')
    policy = load_policy(_write(tmp_path, text))
    closing = make_closing()
    assert Category.TELEVISION not in policy.importance_for(closing.property)
    assert not policy.calendar().is_business_day(date(2026, 12, 24))


BROKEN = [
    (
        'categories = { energy = "essential", internet',
        'categories = { energy = "essential", tv = "optional", internet',
        "importance[1].categories.tv",
    ),
    (
        'categories = { internet = "essential" }',
        'categories = { internet = "vital" }',
        "importance[2].categories.internet",
    ),
    (
        'lead_business_days = 10\nlead_phrase = "internet',
        'lead_business_days = -1\nlead_phrase = "internet',
        "timing.categories.internet.lead_business_days",
    ),
    ('mode = "after"', 'mode = "later"', "timing.categories.security.mode"),
    ("[timing.categories.other]", "[timing.categories.otherwise]", "timing.categories.otherwise"),
    ('forms = ["HO-7"]', 'forms = ["HO-9"]', "insurance.fits"),
    ("version = 1", "version = 2", "version"),
    (
        'occupancies = ["rental"]\ncategories',
        'occupancy = ["rental"]\ncategories',
        "importance[4].occupancy",
    ),
    (
        'property_types = ["manufactured"]\nforms',
        'property_types = ["castle"]\nforms',
        "insurance.fits[4].property_types[1]",
    ),
    ("extra_holidays = []", 'extra_holidays = ["Christmas"]', "timing.extra_holidays[1]"),
]


@pytest.mark.parametrize(("old", "new", "key"), BROKEN, ids=[k for _, _, k in BROKEN])
def test_invalid_policy_errors_name_the_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    """Each invalid policy raises PolicyError naming the TOML key at fault and the file."""
    text = default_policy_text()
    assert old in text
    path = _write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert key in caught.value.keys, caught.value.problems
    assert str(path) in str(caught.value)


def test_a_category_without_timing_is_named(tmp_path: Path) -> None:
    """Leaving out a category's timing table is an error on timing.categories naming it."""
    text = default_policy_text()
    path = _write(tmp_path, text[: text.index("[timing.categories.other]")])
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.problems == [
        (
            "timing.categories",
            "no timing for other; every category needs a [timing.categories.<name>] table",
        )
    ]


def test_unreadable_or_malformed_policy_files_raise_policy_error(tmp_path: Path) -> None:
    """A missing file or broken TOML is a PolicyError that says so, not a bare exception."""
    with pytest.raises(PolicyError, match="cannot read the file"):
        load_policy(tmp_path / "missing.toml")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(_write(tmp_path, "version = = 1"))


def test_policy_is_plain_data() -> None:
    """The default policy is built from the shipped TOML alone and round-trips as a model."""
    assert Policy.model_validate(POLICY.model_dump()) == POLICY
