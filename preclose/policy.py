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
from preclose.calendar import BusinessCalendar

__all__ = [
    "CategoryTiming",
    "EnergyRequirement",
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
    """Names the insurance forms acceptable for the homes it matches."""

    forms: list[str] = Field(min_length=1)


class InsuranceForm(BaseModel):
    """One insurance policy form (HO-3, HO-6, ...) and the words that identify it in an offer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)


class InsurancePolicy(BaseModel):
    """The insurance forms and which ones fit which home."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    forms: dict[str, InsuranceForm] = Field(min_length=1)
    fits: list[InsuranceFitRule] = Field(min_length=1)

    @field_validator("fits")
    @classmethod
    def _known_forms(
        cls, fits: list[InsuranceFitRule], info: ValidationInfo
    ) -> list[InsuranceFitRule]:
        known = info.data.get("forms") or {}
        for index, rule in enumerate(fits, start=1):
            unknown = [form for form in rule.forms if form not in known]
            if unknown:
                raise PydanticCustomError(
                    "unknown_form",
                    "rule {index} names forms not under [insurance.forms]: {unknown}",
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

    anchor: Literal["closing", "move_in"]
    offset_business_days: int = Field(0, ge=-30, le=30)
    mode: Literal["by", "after"]
    window_business_days: int = Field(0, ge=0, le=30)
    lead_business_days: int = Field(ge=0, le=60)
    lead_phrase: str = Field(min_length=1)


class TimingPolicy(BaseModel):
    """Business-day calendar settings and every category's timing rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    us_federal_holidays: bool = True
    extra_holidays: list[date] = Field(default_factory=list)
    categories: dict[Category, CategoryTiming]

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

    def insurance_forms_for(self, prop: PropertyInfo) -> list[str]:
        """The insurance form codes acceptable for `prop` (the last matching fit rule decides)."""
        forms: list[str] = []
        for rule in self.insurance.fits:
            if rule.matches(prop):
                forms = list(rule.forms)
        return forms

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

    def calendar(self) -> BusinessCalendar:
        """The business-day calendar the policy describes."""
        return BusinessCalendar(
            us_federal=self.timing.us_federal_holidays,
            extra_holidays=self.timing.extra_holidays,
        )


def default_policy_text() -> str:
    """The text of the shipped default policy (a starting point for a custom one)."""
    return resources.files("preclose").joinpath("default_policy.toml").read_text("utf-8")


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
