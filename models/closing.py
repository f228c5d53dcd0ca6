"""The closing request: the form a person fills in the Prefect UI and the JSON a CRM sends."""

from __future__ import annotations

import builtins
import re
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from models.zips import zip_facts
from offergrid.models import US_STATES, Category  # a closing we take must be orderable

__all__ = [
    "MAX_MOVE_IN_AFTER_DAYS",
    "MAX_MOVE_IN_BEFORE_DAYS",
    "Agent",
    "BudgetCap",
    "Buyer",
    "ClosingInputError",
    "ClosingRequest",
    "ContactChannel",
    "Occupancy",
    "Preferences",
    "PropertyAddress",
    "PropertyInfo",
    "PropertyType",
    "check_closing_dates",
    "mask_email",
    "mask_name",
    "mask_phone",
    "same_clock",
]

MAX_MOVE_IN_BEFORE_DAYS = 30  # pre-possession: the buyer moves in before closing
MAX_MOVE_IN_AFTER_DAYS = 90  # rent-back: the seller stays on after closing
MAX_CLOSING_DAYS_AHEAD = 366  # further out than a year is almost always a typo in the year

_ZIP = re.compile(r"^(\d{5})(?:-?(\d{4}))?$")
# Deliberately simple (one @, no spaces, a dotted domain): deliverability is the mail server's call.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")
_PHONE_CHARS = re.compile(r"^\+[\d\s().-]+$")


class ClosingInputError(ValueError):
    """A closing that is well-formed but not acceptable now; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        """Record the field and the human message."""
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PropertyType(StrEnum):
    """What kind of home is being bought."""

    single_family = "single_family"
    condo = "condo"
    townhouse = "townhouse"
    multi_family = "multi_family"
    manufactured = "manufactured"
    apartment = "apartment"
    rental_unit = "rental_unit"
    new_construction = "new_construction"

    @builtins.property
    def label(self) -> str:
        """The kind of home in words: "single-family home", "condo"."""
        return _PROPERTY_LABELS[self]


_PROPERTY_LABELS = {
    PropertyType.single_family: "single-family home",
    PropertyType.condo: "condo",
    PropertyType.townhouse: "townhouse",
    PropertyType.multi_family: "multi-family home",
    PropertyType.manufactured: "manufactured home",
    PropertyType.apartment: "apartment",
    PropertyType.rental_unit: "rental unit",
    PropertyType.new_construction: "newly built home",
}


class Occupancy(StrEnum):
    """How the buyer will use the home."""

    owner_occupied = "owner_occupied"
    rental = "rental"
    second_home = "second_home"


class ContactChannel(StrEnum):
    """How the buyer prefers to be reached."""

    email = "email"
    sms = "sms"
    phone = "phone"


def _error(kind: str, message: str, **context: Any) -> PydanticCustomError:
    return PydanticCustomError(kind, message, context or None)


def _check_email(value: str) -> str:
    value = value.strip()
    if not _EMAIL.match(value):
        raise _error("email", "not a valid email address (expected name@example.com)")
    local, domain = value.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def _check_phone(value: str) -> str:
    value = value.strip()
    if not value.startswith("+"):
        raise _error("phone", "phone must start with + and the country code, e.g. +1 512 555 0147")
    if not _PHONE_CHARS.match(value):
        raise _error("phone", "phone may contain only digits, spaces, ( ) . and - after the +")
    digits = re.sub(r"\D", "", value)
    if not 8 <= len(digits) <= 15:
        raise _error("phone", "phone must have 8 to 15 digits including the country code")
    if digits.startswith("1") and len(digits) != 11:
        raise _error("phone", "a +1 (US/Canada) phone needs 10 digits after the country code")
    return f"+{digits}"


Email = Annotated[str, AfterValidator(_check_email)]
Phone = Annotated[str, AfterValidator(_check_phone)]


def mask_name(name: str) -> str:
    """Mask a person's name for logs: "John Doe" → "J*** D**"."""
    return " ".join(part[0] + "*" * (len(part) - 1) for part in name.split())


def mask_email(email: str) -> str:
    """Mask an email for logs, keeping the domain: "john@example.com" → "j***@example.com"."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def mask_phone(phone: str) -> str:
    """Mask a phone for logs, keeping the last four digits: "+15125554567" → "+1 *** *** 4567"."""
    digits = re.sub(r"\D", "", phone)
    if len(digits) == 11 and digits.startswith("1"):
        return f"+1 *** *** {digits[-4:]}"
    return f"+*** *** {digits[-4:]}" if len(digits) >= 8 else "***"


class PropertyAddress(BaseModel):
    """The service address of the home (US only)."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    street: str = Field(
        min_length=3,
        max_length=200,
        title="Street",
        description="House number and street.",
        examples=["1208 Elm Street"],
    )
    unit: str | None = Field(
        None,
        max_length=50,
        title="Unit",
        description="Apartment, suite or unit, if any.",
        examples=["Unit 4B"],
    )
    city: str = Field(
        min_length=2, max_length=100, title="City", description="City or town.", examples=["Austin"]
    )
    zip_code: str = Field(
        title="ZIP code",
        description="5-digit ZIP or ZIP+4.",
        examples=["78701", "78701-1234"],
    )
    state: str = Field(
        title="State",
        description="Two-letter US state or territory code.",
        examples=["TX"],
    )
    country: Literal["US"] = Field(
        "US", title="Country", description="Only US addresses are served."
    )

    @field_validator("state")
    @classmethod
    def _state(cls, value: str, info: ValidationInfo) -> str:
        code = value.upper()
        if code not in US_STATES:
            raise _error("state", "not a US state code (expected two letters such as TX)")
        # The ZIP is validated first (it is declared first), so a state it contradicts is caught
        # here: an order must never go out with an address the provider cannot place.
        zip_code = info.data.get("zip_code")
        facts = zip_facts(zip_code[:5]) if zip_code else None
        if facts is not None and facts.state != code:
            raise _error(
                "state_mismatch",
                "state {state} does not match ZIP code {zip} (which is in {expected})",
                state=code,
                zip=zip_code,
                expected=facts.state,
            )
        return code

    @field_validator("zip_code")
    @classmethod
    def _zip(cls, value: str) -> str:
        match = _ZIP.match(value)
        if match is None:
            raise _error("zip_code", "ZIP code must be 5 digits or ZIP+4 (12345 or 12345-6789)")
        zip5, plus4 = match.groups()
        return f"{zip5}-{plus4}" if plus4 else zip5

    @builtins.property
    def zip5(self) -> str:
        """The 5-digit ZIP, which is what offers list as their service area."""
        return self.zip_code[:5]

    def one_line(self) -> str:
        """The address on one line, unit included."""
        street = f"{self.street}, {self.unit}" if self.unit else self.street
        return f"{street}, {self.city}, {self.state} {self.zip_code}"


def _known(enum: type[StrEnum], what: str) -> Any:
    """A before-validator naming the bad value and the choices, e.g. "unknown property type"."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and value not in enum.__members__.values():
            raise _error(
                f"unknown_{what.replace(' ', '_')}",
                "unknown {what} '{value}'; expected one of {choices}",
                what=what,
                value=value,
                choices=", ".join(member.value for member in enum),
            )
        return value

    return check


class PropertyInfo(BaseModel):
    """The home being bought and how it will be used."""

    model_config = ConfigDict(extra="forbid")

    address: PropertyAddress = Field(title="Address", description="Service address of the home.")
    property_type: PropertyType = Field(
        title="Property type",
        description="Decides which services are essential and which insurance form fits.",
        examples=["single_family"],
    )
    size_sqft: int = Field(
        gt=0, le=100_000, title="Size (sq ft)", description="Finished living area.", examples=[1850]
    )
    year_built: int | None = Field(
        None,
        ge=1700,
        le=2100,
        title="Year built",
        description="Helps insurers quote; leave empty if unknown.",
        examples=[1998],
    )
    occupancy: Occupancy = Field(
        Occupancy.owner_occupied,
        title="Occupancy",
        description="Owner-occupied, a rental the buyer will let out, or a second home.",
    )
    financed: bool = Field(
        True,
        title="Financed",
        description="Bought with a mortgage: the lender requires insurance bound before closing.",
    )

    _property_type = field_validator("property_type", mode="before")(
        _known(PropertyType, "property type")
    )
    _occupancy = field_validator("occupancy", mode="before")(_known(Occupancy, "occupancy"))


class Buyer(BaseModel):
    """The person buying the home, who will own the service accounts."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    full_name: str = Field(
        min_length=3,
        max_length=120,
        title="Full name",
        description="First and last name, as providers will put on the account.",
        examples=["Jordan Rivera"],
    )
    email: Email = Field(
        title="Email", description="The buyer's own email.", examples=["jordan@example.com"]
    )
    phone: Phone = Field(
        title="Phone",
        description="With country code; stored as +15125550147.",
        examples=["+1 512 555 0147"],
    )
    contact_consent: bool = Field(
        False,
        title="Contact consent",
        description="The buyer agreed that providers and we may contact them about these services.",
    )
    preferred_channel: ContactChannel = Field(
        ContactChannel.email, title="Preferred channel", description="How to reach the buyer."
    )

    def __repr_args__(self) -> Any:
        # Reprs end up in logs and tracebacks: keep the personal fields masked there.
        yield "full_name", mask_name(self.full_name)
        yield "email", mask_email(self.email)
        yield "phone", mask_phone(self.phone)
        yield "contact_consent", self.contact_consent
        yield "preferred_channel", self.preferred_channel


class Agent(BaseModel):
    """The buyer's real-estate agent, who gets copies of plan updates."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    name: str = Field(
        min_length=2,
        max_length=120,
        title="Agent name",
        description="The agent's full name.",
        examples=["Sam Okafor"],
    )
    email: Email = Field(
        title="Agent email",
        description="Where plan updates are copied.",
        examples=["sam@brokerage.example"],
    )

    def __repr_args__(self) -> Any:
        yield "name", mask_name(self.name)
        yield "email", mask_email(self.email)


class BudgetCap(BaseModel):
    """The most the buyer will pay per month for one category."""

    model_config = ConfigDict(extra="forbid")

    category: Category = Field(
        title="Category", description="The service category capped.", examples=["insurance"]
    )
    max_monthly: float = Field(
        gt=0,
        le=100_000,
        title="Max per month (USD)",
        description="Offers whose regular monthly price is higher are left out.",
        examples=[40.0],
    )


class Preferences(BaseModel):
    """The buyer's choices that narrow the recommendation."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    skip_categories: list[Category] = Field(
        default_factory=list,
        title="Skip categories",
        description="Services the buyer arranges themselves.",
        examples=[["television"]],
    )
    budget_caps: list[BudgetCap] = Field(
        default_factory=list,
        title="Budget caps",
        description="At most one cap per category, in USD per month.",
    )
    preferred_providers: list[str] = Field(
        default_factory=list,
        title="Preferred providers",
        description="Provider names or IDs ranked first when they serve the address.",
        examples=[["Lone Star Fiber"]],
    )
    excluded_providers: list[str] = Field(
        default_factory=list,
        title="Excluded providers",
        description="Provider names or IDs never to use.",
    )
    min_internet_mbps: int | None = Field(
        None,
        gt=0,
        le=100_000,
        title="Minimum internet speed (Mbps)",
        description="Leave out internet offers slower than this (or not stating a speed).",
        examples=[300],
    )
    installer_notes: str | None = Field(
        None,
        max_length=1000,
        title="Installer notes",
        description="Passed to providers with each order (gate code, pets, parking).",
    )

    @field_validator("skip_categories")
    @classmethod
    def _unique_skips(cls, value: list[Category]) -> list[Category]:
        return list(dict.fromkeys(value))

    @field_validator("budget_caps")
    @classmethod
    def _one_cap_per_category(cls, value: list[BudgetCap]) -> list[BudgetCap]:
        seen: set[str] = set()
        for cap in value:
            if cap.category in seen:
                raise _error(
                    "budget_caps",
                    "more than one budget cap for {category}",
                    category=str(cap.category),
                )
            seen.add(cap.category)
        return value

    @field_validator("excluded_providers")
    @classmethod
    def _not_both(cls, value: list[str], info: ValidationInfo) -> list[str]:
        preferred = {p.casefold() for p in info.data.get("preferred_providers", [])}
        clash = sorted(p for p in value if p.casefold() in preferred)
        if clash:
            raise _error(
                "excluded_providers",
                "{providers} cannot be both preferred and excluded",
                providers=", ".join(clash),
            )
        return value

    def __repr_args__(self) -> Any:
        # Installer notes carry gate codes and the like: keep them out of reprs and logs.
        for name, value in super().__repr_args__():
            if name == "installer_notes" and value:
                yield name, f"[{len(value)} characters]"
            else:
                yield name, value

    def cap_for(self, category: str) -> float | None:
        """The monthly budget cap for `category`, if the buyer set one."""
        return next((c.max_monthly for c in self.budget_caps if c.category == category), None)


class ClosingRequest(BaseModel):
    """One home purchase to arrange services for: who, where, what kind of home, and when."""

    model_config = ConfigDict(extra="forbid")

    crm_closing_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        title="CRM closing ID",
        description="The closing's ID in your CRM; letters, digits and . _ : -",
        examples=["CL-2026-0042"],
    )
    property: PropertyInfo = Field(title="Property", description="The home being bought.")
    buyer: Buyer = Field(title="Buyer", description="Who will own the service accounts.")
    agent: Agent = Field(title="Agent", description="The buyer's agent.")
    closing_date: date = Field(
        title="Closing date", description="The day the sale closes.", examples=["2026-06-15"]
    )
    time_zone: str = Field(
        None,  # filled from the ZIP code by the validator below
        validate_default=True,
        # The longest IANA name is 32 characters; a longer one is never a zone (and a very long
        # one makes the zone lookup fail on the file system).
        max_length=64,
        title="Time zone",
        description=(
            "IANA time zone of the property; all dates are local to it. Leave empty to take it "
            "from the ZIP code; one the ZIP code contradicts is refused."
        ),
        examples=["America/Chicago", "America/New_York"],
    )
    move_in_date: date | None = Field(
        None,
        title="Move-in date",
        description=(
            "Defaults to the closing date. Up to 30 days earlier (pre-possession) "
            "or 90 days later (rent-back)."
        ),
    )
    preferences: Preferences = Field(
        default_factory=Preferences,
        title="Preferences",
        description="Budget, providers and speed that narrow the recommendation.",
    )
    test_mode: bool = Field(
        False,
        title="Test mode",
        description="Place orders in Offergrid test mode: nothing is really fulfilled.",
    )

    @field_validator("time_zone", mode="before")
    @classmethod
    def _time_zone(cls, value: Any, info: ValidationInfo) -> Any:
        prop = info.data.get("property")
        facts = zip_facts(prop.address.zip5) if isinstance(prop, PropertyInfo) else None
        if value is None or (isinstance(value, str) and not value.strip()):
            if facts is None or facts.time_zone is None:
                if prop is None:
                    # The property is refused already; a stand-in keeps that the only error.
                    return "UTC"
                raise _error(
                    "time_zone",
                    "no time zone is known for ZIP code {zip}; give the property's IANA time zone",
                    zip=prop.address.zip_code if isinstance(prop, PropertyInfo) else "",
                )
            return facts.time_zone
        if not isinstance(value, str):
            return value  # the str type check names the problem
        value = value.strip()
        try:
            zone = ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise _error(
                "time_zone",
                "unknown time zone '{value}' (expected an IANA name such as America/Chicago)",
                value=value,
            ) from None
        if (
            facts is not None
            and facts.time_zone
            and not same_clock(zone, ZoneInfo(facts.time_zone))
        ):
            raise _error(
                "time_zone_mismatch",
                "time zone {value} does not match ZIP code {zip} (which keeps {expected} time)",
                value=value,
                zip=facts.zip5,
                expected=facts.time_zone,
            )
        return value

    @field_validator("move_in_date")
    @classmethod
    def _move_in_in_range(cls, value: date | None, info: ValidationInfo) -> date | None:
        closing = info.data.get("closing_date")
        if value is None or closing is None:
            return value
        if value < closing - timedelta(days=MAX_MOVE_IN_BEFORE_DAYS):
            raise _error(
                "move_in_range",
                "move-in {move_in} is {days} days before closing {closing}; "
                "pre-possession can be at most 30 days before closing",
                move_in=value.isoformat(),
                closing=closing.isoformat(),
                days=(closing - value).days,
            )
        if value > closing + timedelta(days=MAX_MOVE_IN_AFTER_DAYS):
            raise _error(
                "move_in_range",
                "move-in {move_in} is {days} days after closing {closing}; "
                "a rent-back can be at most 90 days after closing",
                move_in=value.isoformat(),
                closing=closing.isoformat(),
                days=(value - closing).days,
            )
        return value

    @builtins.property
    def effective_move_in(self) -> date:
        """The day the buyer moves in: `move_in_date`, or the closing date when not given."""
        return self.move_in_date or self.closing_date

    @builtins.property
    def possession_date(self) -> date:
        """The day the buyer gets the keys: the closing, or the move-in when it is earlier."""
        return min(self.closing_date, self.effective_move_in)

    @builtins.property
    def tz(self) -> ZoneInfo:
        """The property's time zone."""
        return ZoneInfo(self.time_zone)

    def local_date(self, moment: datetime) -> date:
        """The calendar date at the property when it is `moment` (an aware datetime)."""
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("as_of must be timezone-aware (e.g. datetime.now(UTC))")
        return moment.astimezone(self.tz).date()

    def masked(self) -> dict[str, Any]:
        """The closing as JSON-ready data safe for logs: names, emails, phones and notes masked."""
        data = self.model_dump(mode="json")
        buyer, agent = data["buyer"], data["agent"]
        buyer["full_name"] = mask_name(self.buyer.full_name)
        buyer["email"] = mask_email(self.buyer.email)
        buyer["phone"] = mask_phone(self.buyer.phone)
        agent["name"] = mask_name(self.agent.name)
        agent["email"] = mask_email(self.agent.email)
        notes = self.preferences.installer_notes
        if notes:
            # Installer notes carry gate codes and the like: keep only that there are some.
            data["preferences"]["installer_notes"] = f"[{len(notes)} characters]"
        return data


def same_clock(one: ZoneInfo, other: ZoneInfo) -> bool:
    """Whether two zones keep the same clock (America/Detroit and America/New_York do).

    Compared at a winter and a summer moment of the last few years and the next: daylight saving
    is what sets Arizona and Hawaii apart from their neighbours.
    """
    if one.key == other.key:
        return True
    this_year = datetime.now(UTC).year
    for year in range(this_year - 1, this_year + 2):
        for month in (1, 4, 7, 11):
            moment = datetime(year, month, 15, 12, tzinfo=UTC)
            if moment.astimezone(one).utcoffset() != moment.astimezone(other).utcoffset():
                return False
    return True


def check_closing_dates(closing: ClosingRequest, *, as_of: datetime) -> None:
    """Reject a closing dated in the past at the property, or over a year out, as of `as_of`."""
    today = closing.local_date(as_of)
    if closing.closing_date < today:
        raise ClosingInputError(
            "closing_date",
            f"closing date {closing.closing_date.isoformat()} is in the past "
            f"(today is {today.isoformat()} in {closing.time_zone})",
        )
    if closing.closing_date > today + timedelta(days=MAX_CLOSING_DAYS_AHEAD):
        raise ClosingInputError(
            "closing_date",
            f"closing date {closing.closing_date.isoformat()} is more than a year away; "
            "check the year",
        )
