"""The recommendation and timing policy: data in TOML, validated into typed rules."""

from __future__ import annotations

import re
import tomllib
from datetime import date
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from models.closing import Occupancy, PropertyInfo, PropertyType
from models.plan import Importance
from offergrid.models import Category, Offer
from preclose.rules.calendar import BusinessCalendar

__all__ = [
    "CategoryTiming",
    "EnergyRequirement",
    "ExtraLeadRule",
    "ImportanceRule",
    "InsuranceFitRule",
    "InsuranceForm",
    "InsurancePolicy",
    "Policy",
    "PolicyError",
    "TimingPolicy",
    "default_policy_text",
    "load_policy",
]

# One literal, so a bad value gets one clear message listing every choice.
ImportanceSetting = Literal["essential", "recommended", "optional", "none"]


class PolicyError(ValueError):
    """A policy file that cannot be read or does not validate; each problem names its TOML key."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        """Record where the policy came from and its (key, message) problems."""
        self.source = source
        self.problems = problems
        listed = "; ".join(f"{key}: {message}" if key else message for key, message in problems)
        super().__init__(f"invalid policy {source}: {listed}")

    @property
    def keys(self) -> list[str]:
        """The TOML keys that have problems."""
        return [key for key, _ in self.problems]


def _normalise(text: str) -> str:
    """Lower-case words separated by single spaces, with "HO-3"/"ho 3" folded to "ho3"."""
    words = re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()
    return re.sub(r"\b([a-z]{2}) (\d)\b", r"\1\2", words)


def _contains(haystack: str, needle: str) -> bool:
    return bool(needle) and f" {needle} " in f" {haystack} "


class _Rule(BaseModel):
    """A rule's conditions; a rule with no condition matches every home."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    note: str | None = Field(None, description="Why the rule exists, for the person reading it.")
    property_types: list[PropertyType] | None = None
    occupancies: list[Occupancy] | None = None
    financed: bool | None = None

    def matches(self, prop: PropertyInfo) -> bool:
        """Whether every condition the rule gives holds for `prop`."""
        return (
            (self.property_types is None or prop.property_type in self.property_types)
            and (self.occupancies is None or prop.occupancy in self.occupancies)
            and (self.financed is None or prop.financed == self.financed)
        )


class ImportanceRule(_Rule):
    """Sets the importance of some categories for the homes it matches."""

    categories: dict[Category, ImportanceSetting] = Field(min_length=1)


class InsuranceFitRule(_Rule):
    """Names the insurance forms acceptable for the homes it matches, and why."""

    forms: list[str] = Field(min_length=1)
    endorsed_forms: dict[str, str] = Field(
        default_factory=dict,
        description="More forms that fit only with an endorsement the offer shows: form -> "
        "endorsement key under [insurance.endorsements].",
    )


class InsuranceForm(BaseModel):
    """One insurance policy form (HO-3, HO-6, ...) and the words that identify it in an offer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)


class InsurancePolicy(BaseModel):
    """The insurance forms and which ones fit which home."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    forms: dict[str, InsuranceForm] = Field(min_length=1)
    endorsements: dict[str, InsuranceForm] = Field(default_factory=dict)
    fits: list[InsuranceFitRule] = Field(min_length=1)

    @field_validator("fits")
    @classmethod
    def _known_forms(
        cls, fits: list[InsuranceFitRule], info: ValidationInfo
    ) -> list[InsuranceFitRule]:
        known = info.data.get("forms") or {}
        endorsements = info.data.get("endorsements") or {}
        for index, rule in enumerate(fits, start=1):
            unknown = [form for form in [*rule.forms, *rule.endorsed_forms] if form not in known]
            unknown += [e for e in rule.endorsed_forms.values() if e not in endorsements]
            if unknown:
                raise PydanticCustomError(
                    "unknown_form",
                    "rule {index} names forms or endorsements not under [insurance.forms] or "
                    "[insurance.endorsements]: {unknown}",
                    {"index": index, "unknown": ", ".join(unknown)},
                )
        return fits


class EnergyRequirement(BaseModel):
    """What an energy offer must supply to fill the essential energy need (electricity, say)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = Field(min_length=1, description="The need in words, e.g. electricity.")
    any_of: list[str] = Field(min_length=1, description="Words one of which the offer must show.")

    def matches(self, offer: Offer) -> bool:
        """Whether the offer's energyType (else its name) shows one of the words."""
        data = offer.service_data()
        declared = data.get("energyType") or data.get("energy_type")
        text = declared if isinstance(declared, str) and declared.strip() else offer.name
        words = _normalise(text or "")
        return any(_contains(words, _normalise(word)) for word in self.any_of)


class CategoryTiming(BaseModel):
    """When one category's service must start and how long its order needs beforehand."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    anchor: Literal["possession", "closing", "move_in"]
    offset_business_days: int = Field(0, ge=-30, le=30)
    mode: Literal["on", "by", "after"]
    window_business_days: int = Field(0, ge=0, le=30)
    lead_business_days: int = Field(ge=0, le=60)
    instant_activation: Literal["always", "when_offered", "never"] = Field(
        "never",
        description="Whether orders activate remotely on the day asked: always, when the "
        "offer says instantActivation, or never (a visit or a set-up is booked).",
    )
    instant_lead_business_days: int | None = Field(
        None, ge=0, le=60, description="The lead time when the order activates instantly."
    )
    bind_before_closing_business_days: int | None = Field(
        None,
        ge=0,
        le=30,
        description="Insurance: bound (accepted by the insurer) this many business days before "
        "closing; the lead time counts back from that day, not from the effective date.",
    )
    lead_phrase: str = Field(min_length=1)
    source: str | None = Field(None, description="Where the rule comes from, for the reader.")


class ExtraLeadRule(_Rule):
    """More lead time, in business days, for some categories of the homes it matches."""

    categories: dict[Category, int] = Field(min_length=1)


class TimingPolicy(BaseModel):
    """Business-day calendar settings and every category's timing rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    us_federal_holidays: bool = True
    state_holidays: bool = True
    extra_holidays: list[date] = Field(default_factory=list)
    categories: dict[Category, CategoryTiming]
    extra_lead: list[ExtraLeadRule] = Field(default_factory=list)

    @field_validator("categories")
    @classmethod
    def _every_category(
        cls, value: dict[Category, CategoryTiming]
    ) -> dict[Category, CategoryTiming]:
        missing = [category.value for category in Category if category not in value]
        if missing:
            raise PydanticCustomError(
                "missing_timing",
                "no timing for {missing}; every category needs a [timing.categories.<name>] table",
                {"missing": ", ".join(missing)},
            )
        return value


class Policy(BaseModel):
    """Which categories matter for a home, which insurance fits it, and when each order is due."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    importance: list[ImportanceRule] = Field(min_length=1)
    insurance: InsurancePolicy
    energy: EnergyRequirement | None = None
    timing: TimingPolicy

    def importance_for(self, prop: PropertyInfo) -> dict[Category, Importance]:
        """Each category to recommend for `prop` with its importance, essential first."""
        settled: dict[Category, ImportanceSetting] = {}
        for rule in self.importance:
            if rule.matches(prop):
                settled.update(rule.categories)
        chosen = {cat: Importance(imp) for cat, imp in settled.items() if imp != "none"}
        order = list(Category)
        return dict(sorted(chosen.items(), key=lambda item: (item[1].rank, order.index(item[0]))))

    def left_out_for(self, prop: PropertyInfo) -> dict[Category, str]:
        """The categories not recommended for `prop`, each with the reason in words."""
        settled: dict[Category, tuple[ImportanceSetting, str | None]] = {}
        for rule in self.importance:
            if rule.matches(prop):
                for category, setting in rule.categories.items():
                    settled[category] = (setting, rule.note)
        out: dict[Category, str] = {}
        for category in Category:
            setting, note = settled.get(category, ("none", None))
            if setting != "none":
                continue
            if category in settled:
                out[category] = _sentence(note or "the policy does not recommend it for this home")
            elif category == Category.OTHER:
                out[category] = (
                    "moving, cleaning and the like are not one kind of service to compare"
                )
            else:
                out[category] = "no policy rule recommends it"
        return out

    def insurance_fit_for(self, prop: PropertyInfo) -> InsuranceFitRule | None:
        """The insurance rule for `prop`: the last matching fit rule, or None when none matches."""
        fit: InsuranceFitRule | None = None
        for rule in self.insurance.fits:
            if rule.matches(prop):
                fit = rule
        return fit

    def insurance_forms_for(self, prop: PropertyInfo) -> list[str]:
        """The insurance form codes acceptable for `prop`, endorsed ones after the plain ones."""
        fit = self.insurance_fit_for(prop)
        if fit is None:
            return []
        return list(dict.fromkeys([*fit.forms, *fit.endorsed_forms]))

    def endorsements_of(self, offer: Offer) -> set[str]:
        """The endorsement keys an insurance offer shows (coverage data, features, name)."""
        data = offer.service_data()
        texts = [offer.name or "", *offer.key_features]
        for key in ("additionalCoverage", "endorsements", "coverageDetails", "insuranceType"):
            value = data.get(key)
            if isinstance(value, str):
                texts.append(value)
            elif isinstance(value, list):
                texts.extend(str(v) for v in value)
        words = [_normalise(text) for text in texts]
        return {
            key
            for key, endorsement in self.insurance.endorsements.items()
            if any(
                _contains(text, _normalise(alias))
                for alias in [endorsement.label, *endorsement.aliases]
                for text in words
            )
        }

    def insurance_fit_of(self, offer: Offer, prop: PropertyInfo) -> str | None:
        """Why the offer's form fits `prop` ("HO-6 with rental endorsement"), or None if not."""
        fit = self.insurance_fit_for(prop)
        form = self.insurance_form_of(offer)
        if fit is None or form is None:
            return None
        if form in fit.forms:
            return form
        needed = fit.endorsed_forms.get(form)
        if needed is not None and needed in self.endorsements_of(offer):
            return f"{form} with {self.insurance.endorsements[needed].label}"
        return None

    def form_label(self, code: str) -> str:
        """The human label of an insurance form code."""
        form = self.insurance.forms.get(code)
        return form.label if form else code

    @cached_property
    def _form_matchers(self) -> list[tuple[str, str, list[str]]]:
        return [
            (code, _normalise(code), [_normalise(alias) for alias in form.aliases])
            for code, form in self.insurance.forms.items()
        ]

    def insurance_form_of(self, offer: Offer) -> str | None:
        """An insurance offer's form code, from serviceSpecificData.insuranceType, else its name."""
        data = offer.service_data()
        declared = data.get("insuranceType") or data.get("insurance_type") or data.get("policyForm")
        for text in (declared, offer.name):
            if not isinstance(text, str) or not text.strip():
                continue
            words = _normalise(text)
            # Codes are unambiguous, so they win over aliases anywhere in the text.
            for code, code_words, _ in self._form_matchers:
                if _contains(words, code_words):
                    return code
            for code, _, aliases in self._form_matchers:
                if any(_contains(words, alias) for alias in aliases):
                    return code
        return None

    def timing_for(self, category: Category) -> CategoryTiming:
        """The timing rule for `category`."""
        return self.timing.categories[category]

    def extra_lead_for(self, prop: PropertyInfo, category: Category) -> int:
        """Extra lead time in business days for `category` at `prop` (the last match decides)."""
        extra = 0
        for rule in self.timing.extra_lead:
            if rule.matches(prop) and category in rule.categories:
                extra = rule.categories[category]
        return extra

    def calendar(self, state: str | None = None) -> BusinessCalendar:
        """The business-day calendar the policy describes, with `state`'s holidays if it says so."""
        return BusinessCalendar(
            us_federal=self.timing.us_federal_holidays,
            state=state if self.timing.state_holidays else None,
            extra_holidays=self.timing.extra_holidays,
        )


def _sentence(note: str) -> str:
    """A rule's note as the end of a sentence: lower-case first letter, no final period."""
    note = note.strip().rstrip(".")
    return note[:1].lower() + note[1:] if note[:2] != note[:2].upper() else note


def default_policy_text() -> str:
    """The text of the shipped default policy (a starting point for a custom one)."""
    return resources.files("preclose.rules").joinpath("default_policy.toml").read_text("utf-8")


def _key(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a TOML key; list positions count from 1, as in the file."""
    key = ""
    for part in loc:
        if isinstance(part, int):
            key += f"[{part + 1}]"
        elif part == "[key]":
            continue
        else:
            key += f".{part}" if key else str(part)
    return key


def _parse(text: str, source: str) -> Policy:
    try:
        raw: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise PolicyError(source, [("", f"not valid TOML ({err})")]) from err
    try:
        return Policy.model_validate(raw)
    except ValidationError as err:
        problems = [(_key(e["loc"]), e["msg"]) for e in err.errors(include_url=False)]
        raise PolicyError(source, problems) from err


def load_policy(path: Path | None = None) -> Policy:
    """Load and validate a policy file, or the shipped default when `path` is None."""
    if path is None:
        return _parse(default_policy_text(), "default_policy.toml")
    try:
        text = path.read_text("utf-8")
    except OSError as err:
        raise PolicyError(str(path), [("", f"cannot read the file ({err.strerror})")]) from err
    return _parse(text, str(path))
