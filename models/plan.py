"""The plan for one closing: which offer per category, why, and when to order it."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from offergrid.models import Category

__all__ = [
    "CategoryPick",
    "Importance",
    "OfferChoice",
    "OfferSnapshot",
    "Plan",
    "PlanLine",
    "Recommendation",
]


class Importance(StrEnum):
    """How much a category matters for this home."""

    essential = "essential"
    recommended = "recommended"
    optional = "optional"

    @property
    def rank(self) -> int:
        """Sort key: essential first."""
        return list(Importance).index(self)


class OfferSnapshot(BaseModel):
    """What the buyer was shown for an offer, so the plan still explains itself later."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(title="Offer name")
    provider_name: str | None = Field(None, title="Provider")
    monthly_price: float | None = Field(None, title="Monthly price (USD)")
    regular_price: float | None = Field(None, title="Monthly price after any promotion (USD)")
    promo_months: int | None = Field(None, title="Promotion length (months)")
    pricing_type: str | None = Field(None, title="Pricing type")
    installation_fee: float | None = Field(None, title="Installation fee (USD)")
    equipment_fee: float | None = Field(None, title="Equipment fee (USD)")
    activation_fee: float | None = Field(None, title="Activation fee (USD)")
    contract_months: int | None = Field(None, title="Contract length (months)")
    key_features: list[str] = Field(default_factory=list, title="Key features")
    download_mbps: int | None = Field(None, title="Download speed (Mbps)")
    connection_type: str | None = Field(None, title="Connection type")
    insurance_form: str | None = Field(None, title="Insurance form", examples=["HO-6"])
    instant_activation: bool = Field(
        False,
        title="Instant activation",
        description="The offer switches on remotely on the day asked (no visit to book).",
    )


class OfferChoice(BaseModel):
    """One offer considered for a category, with its first-year cost."""

    model_config = ConfigDict(frozen=True)

    offer_id: str = Field(title="Offer ID")
    offer_name: str = Field(title="Offer name")
    provider_name: str | None = Field(None, title="Provider")
    monthly_price: float | None = Field(
        None, title="Monthly price (USD)", description="None for variable or custom pricing."
    )
    first_year_cost: float | None = Field(
        None,
        title="First-year cost (USD)",
        description="12 months of price (promo months at the promo price) plus one-off fees.",
    )
    snapshot: OfferSnapshot = Field(title="As shown")


class CategoryPick(BaseModel):
    """One category's recommendation: the pick, the reason, the alternatives, or the problem."""

    category: Category = Field(title="Category")
    importance: Importance = Field(title="Importance")
    choice: OfferChoice | None = Field(None, title="Chosen offer")
    reason: str = Field(title="Why", description="Short human explanation of the choice.")
    runners_up: list[OfferChoice] = Field(
        default_factory=list,
        title="Runners-up",
        description="Next best offers in rank order, for a re-pick after a rejection.",
    )
    problem: str | None = Field(
        None,
        title="Problem",
        description="Why nothing could be picked, e.g. nothing within budget at the ZIP.",
    )


class Recommendation(BaseModel):
    """Every category's pick plus what the catalog held that the policy could not use."""

    picks: list[CategoryPick] = Field(default_factory=list)
    unknown_category_offers: int = Field(
        0, description="Offers ignored because their category is not one Offergrid documents."
    )
    unknown_categories: list[str] = Field(default_factory=list)
    notes: list[str] = Field(
        default_factory=list,
        description="Why a category is left out, or a preferred provider has no offer here.",
    )


class PlanLine(BaseModel):
    """One category of the plan: the pick and when it must be ordered and in service."""

    category: Category = Field(title="Category")
    importance: Importance = Field(title="Importance")
    choice: OfferChoice | None = Field(None, title="Chosen offer")
    reason: str = Field(title="Why")
    runners_up: list[OfferChoice] = Field(default_factory=list, title="Runners-up")
    problem: str | None = Field(None, title="Problem")
    service_date: date = Field(
        title="Service date", description="When the service must be on (or start, for 'after')."
    )
    service_window_end: date = Field(
        title="Service window end",
        description="Last acceptable service day; equals the service date for deadlines.",
    )
    placement_date: date = Field(
        title="Placement date",
        description="When to place the order; today when the ideal date has already passed.",
    )
    lead_business_days: int = Field(title="Lead time (business days)")
    due_now: bool = Field(False, title="Due now", description="The order should be placed today.")
    at_risk: bool = Field(False, title="At risk")
    risk_reason: str | None = Field(None, title="Risk")


class Plan(BaseModel):
    """The dated plan for one closing, ordered by when each order must be placed."""

    closing_id: str = Field(title="CRM closing ID")
    closing_date: date = Field(title="Closing date")
    move_in_date: date = Field(title="Move-in date")
    time_zone: str = Field(title="Time zone")
    as_of_date: date = Field(title="Planned on", description="Today at the property when planned.")
    lines: list[PlanLine] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
    notes: list[str] = Field(
        default_factory=list,
        title="Notes",
        description="Why a category is left out, or a preferred provider has no offer here.",
    )
    generated_at: datetime = Field(title="Generated at (UTC)")

    def line(self, category: Category | str) -> PlanLine | None:
        """The line for `category`, if the plan has one."""
        return next((line for line in self.lines if line.category == category), None)

    @property
    def at_risk(self) -> list[PlanLine]:
        """The lines at risk."""
        return [line for line in self.lines if line.at_risk]
