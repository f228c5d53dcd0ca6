"""Recommendation: per category the policy lists for a home, the best offer at its ZIP and why."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from models.closing import ClosingRequest, PropertyInfo
from models.plan import CategoryPick, Importance, OfferChoice, OfferSnapshot, Recommendation
from offergrid.models import Category, Offer, OfferStatus
from preclose.rules.policy import Policy
from preclose.wording.services import service_name, service_word

__all__ = [
    "MAX_RUNNERS_UP",
    "first_year_cost",
    "instant_activation",
    "recommend",
    "recommend_detailed",
    "to_choice",
]

logger = logging.getLogger(__name__)

MAX_RUNNERS_UP = 3


def first_year_cost(offer: Offer) -> float | None:
    """12 months of price (promo months at promo price) plus one-off fees; None when unpriced."""
    return offer.cost_over(12)


def instant_activation(offer: Offer) -> bool:
    """Whether the offer says it activates instantly (serviceSpecificData or metadata)."""
    for data in (offer.service_data(), offer.metadata or {}):
        value = data.get("instantActivation") if isinstance(data, dict) else None
        if isinstance(value, str):
            if value.strip().lower() in {"true", "yes", "1"}:
                return True
        elif value is True:
            return True
    return False


def to_choice(offer: Offer, policy: Policy | None = None) -> OfferChoice:
    """The offer as a plan choice, with a snapshot of what the buyer is shown."""
    fees = offer.fees
    internet = offer.category == Category.INTERNET
    insurance = offer.category == Category.INSURANCE
    snapshot = OfferSnapshot(
        name=offer.name or offer.id,
        provider_name=offer.provider_name,
        monthly_price=offer.monthly_price,
        regular_price=fees.regular_price,
        promo_months=offer.promo_months,
        pricing_type=str(offer.pricing_type) if offer.pricing_type is not None else None,
        installation_fee=fees.installation_fee,
        equipment_fee=fees.equipment_fee,
        activation_fee=fees.activation_fee,
        contract_months=fees.contract_length,
        key_features=list(offer.key_features[:6]),
        download_mbps=offer.download_mbps() if internet else None,
        connection_type=offer.connection_type() if internet else None,
        insurance_form=policy.insurance_form_of(offer) if insurance and policy else None,
        instant_activation=instant_activation(offer),
    )
    return OfferChoice(
        offer_id=offer.id,
        offer_name=snapshot.name,
        provider_name=offer.provider_name,
        monthly_price=offer.monthly_price,
        first_year_cost=first_year_cost(offer),
        snapshot=snapshot,
    )


def _money(amount: float) -> str:
    return f"${amount:,.0f}" if amount == round(amount) else f"${amount:,.2f}"


def _dollars(amount: float) -> str:
    return f"${amount:,.0f}"


# How connection types read in a sentence; others are shown as sent, underscores as spaces.
_CONNECTIONS = {"5g_home": "5G home", "dsl": "DSL", "fixed_wireless": "fixed wireless"}


def _offers(count: int, what: str) -> str:
    return f"{count} {what} offer" + ("" if count == 1 else "s")


def _matches_any(offer: Offer, names: set[str]) -> bool:
    return any(
        value is not None and value.strip().casefold() in names
        for value in (offer.provider_name, offer.provider_id)
    )


@dataclass
class _Screen:
    """One category's offers passed through the buyer's and the policy's filters, with counts."""

    category: Category
    zip5: str
    offered_here: int = 0
    wrong_kind: int = 0
    excluded: int = 0
    too_slow: int = 0
    over_budget: int = 0
    unpriced_under_cap: int = 0
    kept: list[Offer] = field(default_factory=list)


def _fits_home(offer: Offer, category: Category, policy: Policy, prop: PropertyInfo) -> bool:
    """Whether the offer is the right kind for the home: insurance form, energy supplied."""
    if category == Category.INSURANCE:
        return policy.insurance_fit_of(offer, prop) is not None
    if category == Category.ENERGY and policy.energy is not None:
        return policy.energy.matches(offer)
    return True


def _screen(
    category: Category,
    offers: Sequence[Offer],
    closing: ClosingRequest,
    policy: Policy,
    *,
    address_scoped: bool,
) -> _Screen:
    prefs = closing.preferences
    zip5 = closing.property.address.zip5
    excluded = {name.strip().casefold() for name in prefs.excluded_providers}
    cap = prefs.cap_for(category)
    min_mbps = prefs.min_internet_mbps if category == Category.INTERNET else None
    screen = _Screen(category=category, zip5=zip5)
    for offer in offers:
        if offer.status not in (None, OfferStatus.ACTIVE):
            continue
        serves = offer.serves_zip(zip5)
        if serves is False or (serves is None and not address_scoped):
            continue
        screen.offered_here += 1
        if not _fits_home(offer, category, policy, closing.property):
            screen.wrong_kind += 1
        elif _matches_any(offer, excluded):
            screen.excluded += 1
        elif min_mbps is not None and (offer.download_mbps() or 0) < min_mbps:
            # An offer that states no speed cannot promise the minimum.
            screen.too_slow += 1
        elif cap is not None and offer.regular_price is None:
            screen.unpriced_under_cap += 1
        elif cap is not None and (offer.regular_price or 0.0) > cap:
            # The regular price, not a promo, decides: the promo ends and the bill stays.
            screen.over_budget += 1
        else:
            screen.kept.append(offer)
    return screen


def _constraints(screen: _Screen, closing: ClosingRequest) -> str:
    prefs = closing.preferences
    parts: list[str] = []
    if screen.category == Category.INTERNET and prefs.min_internet_mbps:
        parts.append(f"meeting {prefs.min_internet_mbps} Mbps")
    cap = prefs.cap_for(screen.category)
    if cap is not None:
        parts.append(f"within your {_money(cap)}/month budget")
    return (" " + " ".join(parts)) if parts else ""


def _problem(screen: _Screen, closing: ClosingRequest, policy: Policy) -> str:
    cat = screen.category.value
    head = f"No {cat} offer at {screen.zip5}"
    if screen.offered_here == 0:
        return head
    prefs = closing.preferences
    conditions: list[str] = []
    breakdown: list[str] = []
    if screen.wrong_kind and screen.category == Category.INSURANCE:
        forms = policy.insurance_forms_for(closing.property)
        home = closing.property.property_type.label
        conditions.append(f"that fits the {home} ({' or '.join(forms) or 'no form'})")
        breakdown.append(f"{screen.wrong_kind} of another form")
    elif screen.wrong_kind and policy.energy is not None:
        conditions.append(f"that supplies {policy.energy.label}")
        breakdown.append(f"{screen.wrong_kind} supplying something else")
    if screen.excluded:
        conditions.append("from a provider you did not exclude")
        breakdown.append(f"{screen.excluded} from excluded providers")
    if screen.too_slow:
        conditions.append(f"meeting {prefs.min_internet_mbps} Mbps")
        breakdown.append(f"{screen.too_slow} too slow or without a stated speed")
    cap = prefs.cap_for(screen.category)
    if screen.over_budget or screen.unpriced_under_cap:
        conditions.append(f"within your {_money(cap or 0)}/month budget")
        if screen.over_budget:
            breakdown.append(f"{screen.over_budget} over budget")
        if screen.unpriced_under_cap:
            breakdown.append(f"{screen.unpriced_under_cap} without a fixed price")
    text = f"{head} {' '.join(conditions)}"
    if len(breakdown) > 1 or screen.unpriced_under_cap:
        text += f" ({screen.offered_here} offered there: {', '.join(breakdown)})"
    return text


def _kind(offers: Sequence[Offer], category: Category, policy: Policy) -> str:
    """How to name the candidates: by connection type for internet, by form for insurance."""
    if category == Category.ENERGY and policy.energy is not None:
        return policy.energy.label
    labels: list[str] = []
    for offer in offers:
        label: str | None = None
        if category == Category.INTERNET:
            kind = offer.connection_type()
            label = _CONNECTIONS.get(kind, kind) if kind else None
        elif category == Category.INSURANCE:
            label = policy.insurance_form_of(offer)
        if label:
            label = label.replace("_", " ")
            if label not in labels:
                labels.append(label)
    if not labels or len(labels) > 3:
        return service_word(category.value)
    return "/".join(labels)


def _reason(
    screen: _Screen,
    ranked: list[Offer],
    preferred: set[str],
    closing: ClosingRequest,
    policy: Policy,
) -> str:
    text = _choice_reason(screen, ranked, preferred, closing, policy)
    if screen.category == Category.INSURANCE:
        fit = policy.insurance_fit_of(ranked[0], closing.property)
        rule = policy.insurance_fit_for(closing.property)
        if fit is not None:
            why = f": {rule.note}" if rule is not None and rule.note else ""
            text += f". Form {fit}{why}"
    return text


def _choice_reason(
    screen: _Screen,
    ranked: list[Offer],
    preferred: set[str],
    closing: ClosingRequest,
    policy: Policy,
) -> str:
    best = ranked[0]
    cost = first_year_cost(best)
    cost_text = _dollars(cost) if cost is not None else None
    provider = best.provider_name or best.provider_id or "the provider"
    kind = _kind(ranked, screen.category, policy)
    where = f"at {screen.zip5}"
    constraints = _constraints(screen, closing)
    priced = sum(1 for offer in ranked if first_year_cost(offer) is not None)
    unpriced = len(ranked) - priced
    if _matches_any(best, preferred):
        among = sum(1 for offer in ranked if _matches_any(offer, preferred))
        text = f"Preferred provider ({provider})"
        if cost_text:
            text += f"; first-year cost {cost_text}"
        if among > 1:
            text += f", lowest of {among} preferred offers"
        return text
    if cost_text is None:
        pricing = str(best.pricing_type or "variable")
        if len(ranked) == 1:
            return (
                f"Only {kind} offer {where}{constraints}; no fixed price: "
                f"{provider} sets its {pricing} price at signup"
            )
        return (
            f"None of the {_offers(len(ranked), kind)} {where}{constraints} has a fixed price; "
            f"{provider} has the lowest one-off fees and sets its {pricing} price at signup"
        )
    if len(ranked) == 1:
        return f"Only {kind} offer {where}{constraints} ({cost_text} first year)"
    # Only priced offers are compared on cost: an offer priced at signup is not "more expensive".
    others = f"; {unpriced} more set{'s' if unpriced == 1 else ''} the price at signup"
    if priced == 1:
        return (
            f"The only priced {kind} offer of {len(ranked)} {where}{constraints} "
            f"({cost_text} first year){others}"
        )
    text = f"Lowest first-year cost {where} ({cost_text}) among {priced} priced {kind} offers"
    if not unpriced:
        text = f"Lowest first-year cost {where} ({cost_text}) among {_offers(len(ranked), kind)}"
    return text + constraints + (others if unpriced else "")


def _preferred_note(
    category: Category,
    offers: Sequence[Offer],
    screen: _Screen,
    preferred_names: Sequence[str],
) -> str | None:
    """Why a preferred provider that sells this category is not the pick at this address."""
    notes = []
    for name in preferred_names:
        wanted = {name.strip().casefold()}
        if any(_matches_any(offer, wanted) for offer in screen.kept):
            continue
        if not any(_matches_any(offer, wanted) for offer in offers):
            continue  # it does not sell this category at all: nothing to say here
        serving = [o for o in offers if _matches_any(o, wanted) and o.serves_zip(screen.zip5)]
        if serving:
            notes.append(f"your preferred {name} has no {category.value} offer here that fits")
        else:
            notes.append(f"your preferred {name} does not serve {screen.zip5}")
    return "; ".join(notes) if notes else None


def _rank(offers: list[Offer], preferred: set[str]) -> list[Offer]:
    def key(offer: Offer) -> tuple[bool, bool, float, bool, float, str, str]:
        cost = first_year_cost(offer)
        monthly = offer.monthly_price
        return (
            not _matches_any(offer, preferred),
            cost is None,  # unknown prices rank after every priced offer...
            cost if cost is not None else offer.fees.upfront_total,  # ...then by one-off fees
            monthly is None,
            monthly if monthly is not None else 0.0,
            (offer.name or "").casefold(),
            offer.id,
        )

    return sorted(offers, key=key)


def _title(category: Category) -> str:
    return service_name(category.value)


def recommend_detailed(
    closing: ClosingRequest,
    offers: Sequence[Offer],
    policy: Policy,
    *,
    address_scoped: bool = False,
) -> Recommendation:
    """Pick per category, and count the offers ignored for an unknown category.

    `address_scoped` says the offers came from an address query (availability, or a catalog
    filtered by ZIP), so an offer listing no ZIP codes still counts as available there.
    """
    by_category: dict[Category, list[Offer]] = {category: [] for category in Category}
    unknown: dict[str, int] = {}
    seen: set[str] = set()
    for offer in offers:
        if offer.id in seen:
            continue
        seen.add(offer.id)
        if isinstance(offer.category, Category):
            by_category[offer.category].append(offer)
        else:
            label = str(offer.category) if offer.category is not None else "(none)"
            unknown[label] = unknown.get(label, 0) + 1
    if unknown:
        logger.warning(
            "Ignored %d offers with unknown categories: %s",
            sum(unknown.values()),
            ", ".join(sorted(unknown)),
        )

    prefs = closing.preferences
    preferred = {name.strip().casefold() for name in prefs.preferred_providers}
    picks: list[CategoryPick] = []
    for category, importance in policy.importance_for(closing.property).items():
        if category in prefs.skip_categories:
            continue
        picks.append(
            _pick(
                category,
                importance,
                by_category[category],
                closing,
                policy,
                preferred,
                address_scoped=address_scoped,
            )
        )
    notes = [
        f"{_title(category)} left out: you arrange it yourself"
        for category in dict.fromkeys(prefs.skip_categories)
    ]
    notes += [
        f"{_title(category)} left out: {why}"
        for category, why in policy.left_out_for(closing.property).items()
        if category not in prefs.skip_categories
    ]
    zip5 = closing.property.address.zip5
    for name in prefs.preferred_providers:
        wanted = {name.strip().casefold()}
        if not any(_matches_any(o, wanted) and o.serves_zip(zip5) is not False for o in offers):
            notes.append(f"Your preferred provider {name} has no offer at {zip5}")
    return Recommendation(
        picks=picks,
        unknown_category_offers=sum(unknown.values()),
        unknown_categories=sorted(unknown),
        notes=notes,
    )


def _pick(
    category: Category,
    importance: Importance,
    offers: Sequence[Offer],
    closing: ClosingRequest,
    policy: Policy,
    preferred: set[str],
    *,
    address_scoped: bool,
) -> CategoryPick:
    screen = _screen(category, offers, closing, policy, address_scoped=address_scoped)
    if not screen.kept:
        problem = _problem(screen, closing, policy)
        return CategoryPick(
            category=category, importance=importance, choice=None, reason=problem, problem=problem
        )
    ranked = _rank(screen.kept, preferred)
    reason = _reason(screen, ranked, preferred, closing, policy)
    note = _preferred_note(category, offers, screen, closing.preferences.preferred_providers)
    if note is not None and not _matches_any(ranked[0], preferred):
        reason += f" ({note})"
    return CategoryPick(
        category=category,
        importance=importance,
        choice=to_choice(ranked[0], policy),
        reason=reason,
        runners_up=[to_choice(offer, policy) for offer in ranked[1 : 1 + MAX_RUNNERS_UP]],
    )


def recommend(
    closing: ClosingRequest,
    offers: Sequence[Offer],
    policy: Policy,
    *,
    address_scoped: bool = False,
) -> list[CategoryPick]:
    """Per category the policy lists for this home (minus skips): the best offer or the problem."""
    return recommend_detailed(closing, offers, policy, address_scoped=address_scoped).picks
