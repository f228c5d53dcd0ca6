"""Catalog offers as resellers read them, with tolerant accessors for speeds, fees and promos."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from offergrid.models._base import (
    NullableList,
    ReadModel,
    UtcDatetime,
    parse_bool,
    parse_money,
    parse_months,
)
from offergrid.models.enums import CategoryField, OfferStatusField, PricingTypeField

__all__ = [
    "InternetServiceData",
    "Offer",
    "OfferFees",
    "SecurityServiceData",
    "parse_speed_mbps",
]


class _ServiceData(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", coerce_numbers_to_str=True
    )


class InternetServiceData(_ServiceData):
    """The typed internet shape of the live reference (InternetServiceDataDto); speeds in Mbps."""

    min_bandwidth: float
    max_bandwidth: float
    connection_type: str
    data_cap: float | None = None


class SecurityServiceData(_ServiceData):
    """The typed security shape of the live reference (SecurityServiceDataDto)."""

    monitoring_type: str
    installation_type: str
    equipment_included: str | bool | list[str]


def _money_or_none(value: Any) -> Any:
    # A price sent as "$59.99" is still a price; anything unreadable becomes "no price".
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    return parse_money(value)


def _text_list(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str):
        return [part for part in re.split(r"[,\s]+", value) if part]
    return value


def _dict_or_empty(value: Any) -> Any:
    return {} if value is None else value


_SPEED = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg])?", re.IGNORECASE)


def parse_speed_mbps(value: Any) -> int | None:
    """Read a speed such as 940, "1000 Mbps", "1 Gbps" or "Up to 300 Mbps" as whole Mbps."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if not isinstance(value, str):
        return None
    match = _SPEED.search(value.replace(",", ""))
    if not match:
        return None
    amount = float(match.group(1))
    unit = (match.group(2) or "m").lower()
    if unit == "g":
        amount *= 1000
    elif unit == "k":
        amount /= 1000
    return int(amount)


def _parse_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None
    return None


class OfferFees(BaseModel):
    """Fees, contract and promotion terms read from an offer's metadata or service data."""

    model_config = ConfigDict(frozen=True)

    installation_fee: float | None = None
    equipment_fee: float | None = None
    activation_fee: float | None = None
    deposit_required: bool | None = None
    deposit_amount: float | None = None
    contract_length: int | None = Field(None, description="contract length in months; 0 = none")
    early_termination_fee: float | None = None
    regular_price: float | None = Field(None, description="monthly price after any promotion")
    promo_price: float | None = Field(None, description="explicit promotional monthly price")
    promotional_period: int | None = Field(None, description="promotion length in months")
    promo_end_date: date | None = None

    @property
    def upfront_total(self) -> float:
        """The one-off charges (installation, equipment, activation) summed; unknown counts as 0."""
        return sum(
            fee or 0.0 for fee in (self.installation_fee, self.equipment_fee, self.activation_fee)
        )


# Each fee's accepted spellings: the guides use camelCase in metadata; some feeds use snake_case.
_FEE_KEYS: dict[str, tuple[str, ...]] = {
    "installation_fee": ("installationFee", "installation_fee", "setupFee", "setup_fee"),
    "equipment_fee": ("equipmentFee", "equipment_fee"),
    "activation_fee": ("activationFee", "activation_fee"),
    "deposit_required": ("depositRequired", "deposit_required", "deposit"),
    "contract_length": ("contractLength", "contract_length", "contractMonths"),
    "early_termination_fee": ("earlyTerminationFee", "early_termination_fee", "etf"),
    "regular_price": ("regularPrice", "regular_price"),
    "promo_price": ("promoPrice", "promo_price", "promotionalPrice", "promotional_price"),
    "promotional_period": ("promotionalPeriod", "promotional_period", "promoMonths", "promoPeriod"),
    "promo_end_date": ("promoEndDate", "promo_end_date"),
}


def _first(sources: Iterable[Mapping[str, Any]], keys: tuple[str, ...]) -> Any:
    for source in sources:
        for key in keys:
            if source.get(key) not in (None, ""):
                return source[key]
    return None


class Offer(ReadModel):
    """One catalog offer; only `id` is guaranteed, every other field may be missing or null."""

    id: str
    name: str | None = None
    internal_name: str | None = None
    category: CategoryField | None = None
    status: OfferStatusField | None = None
    sku: str | None = None
    external_id: str | None = None
    provider_id: str | None = None
    provider_name: str | None = None
    description: str | None = None
    internal_description: str | None = None
    marketing_headline: str | None = None
    marketing_description: str | None = None
    key_features: Annotated[list[str], NullableList] = Field(default_factory=list)
    image_url: str | None = None
    overview: str | None = None
    submission_url: str | None = None
    submission_config: dict[str, Any] | None = None
    service_specific_data: InternetServiceData | SecurityServiceData | dict[str, Any] | None = (
        Field(None, union_mode="left_to_right")
    )
    pricing_type: PricingTypeField | None = None
    monthly_price: Annotated[float | None, BeforeValidator(_money_or_none)] = None
    metadata: Annotated[dict[str, Any], BeforeValidator(_dict_or_empty)] = Field(
        default_factory=dict
    )
    compliance_data: dict[str, Any] | None = None
    compliance_status: str | None = None
    compliance_notes: str | None = None
    visibility: str | None = None
    allowed_resellers: list[str] | None = None
    zip_codes: Annotated[list[str], BeforeValidator(_text_list)] = Field(default_factory=list)
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None

    def service_data(self) -> dict[str, Any]:
        """The service-specific data as one camelCase dict, whichever shape it arrived in."""
        data = self.service_specific_data
        if data is None:
            return {}
        if isinstance(data, BaseModel):
            return data.model_dump(by_alias=True)
        return dict(data)

    def download_mbps(self) -> int | None:
        """Advertised download speed in Mbps from the typed or the free-form service data."""
        data = self.service_specific_data
        if isinstance(data, InternetServiceData):
            return int(data.max_bandwidth)
        raw = self.service_data()
        speed = _first(
            [raw], ("downloadSpeed", "download_speed", "maxBandwidth", "downloadMbps", "speed")
        )
        if speed is not None:
            return parse_speed_mbps(speed)
        return self._broadband_label("typicalDownload")

    def upload_mbps(self) -> int | None:
        """Advertised upload speed in Mbps, when the offer states one."""
        speed = _first([self.service_data()], ("uploadSpeed", "upload_speed", "uploadMbps"))
        if speed is not None:
            return parse_speed_mbps(speed)
        return self._broadband_label("typicalUpload")

    def connection_type(self) -> str | None:
        """The internet connection type in lower case (fiber, cable, dsl, ...), when stated."""
        kind = _first([self.service_data()], ("connectionType", "connection_type"))
        return str(kind).strip().lower().replace(" ", "_") if kind is not None else None

    def _broadband_label(self, key: str) -> int | None:
        label = (self.compliance_data or {}).get("broadbandLabel")
        if isinstance(label, Mapping):
            return parse_speed_mbps(label.get(key))
        return None

    @property
    def fees(self) -> OfferFees:
        """Fees and promotion terms, read from metadata first and service data second."""
        nested = self.metadata.get("fees")
        sources: list[Mapping[str, Any]] = [self.metadata]
        if isinstance(nested, Mapping):
            sources.append(nested)
        sources.append(self.service_data())

        def money(field: str) -> float | None:
            return parse_money(_first(sources, _FEE_KEYS[field]))

        deposit = _first(sources, _FEE_KEYS["deposit_required"])
        deposit_amount = parse_money(deposit) if not isinstance(deposit, bool) else None
        return OfferFees(
            installation_fee=money("installation_fee"),
            equipment_fee=money("equipment_fee"),
            activation_fee=money("activation_fee"),
            deposit_required=parse_bool(deposit),
            deposit_amount=deposit_amount or None,
            contract_length=parse_months(_first(sources, _FEE_KEYS["contract_length"])),
            early_termination_fee=money("early_termination_fee"),
            regular_price=money("regular_price"),
            promo_price=money("promo_price"),
            promotional_period=parse_months(_first(sources, _FEE_KEYS["promotional_period"])),
            promo_end_date=_parse_date(_first(sources, _FEE_KEYS["promo_end_date"])),
        )

    @property
    def regular_price(self) -> float | None:
        """The monthly price once any promotion ends (the monthly price when there is none)."""
        return (
            self.fees.regular_price if self.fees.regular_price is not None else self.monthly_price
        )

    @property
    def promo_price(self) -> float | None:
        """The promotional monthly price, or None when the offer has no promotion."""
        fees = self.fees
        if fees.promo_price is not None:
            return fees.promo_price
        # The guides publish the promo as monthlyPrice beside a higher regularPrice.
        if (
            self.monthly_price is not None
            and fees.regular_price is not None
            and self.monthly_price < fees.regular_price
        ):
            return self.monthly_price
        return None

    @property
    def promo_months(self) -> int | None:
        """How many months the promotional price lasts, when the offer says."""
        return self.fees.promotional_period if self.promo_price is not None else None

    def cost_over(self, months: int) -> float | None:
        """Total cost over `months` months: one-off fees plus promo then regular monthly prices."""
        if months < 0:
            raise ValueError("months must be zero or more")
        regular = self.regular_price
        if regular is None:
            return None
        promo = self.promo_price
        promo_months = min(months, self.promo_months or 0) if promo is not None else 0
        monthly = (promo or 0.0) * promo_months + regular * (months - promo_months)
        return round(self.fees.upfront_total + monthly, 2)

    def serves_zip(self, zip_code: str) -> bool | None:
        """Whether the offer's service area lists the ZIP, or None when it lists no ZIPs."""
        if not self.zip_codes:
            return None
        wanted = zip_code.strip()[:5]
        return any(code.strip()[:5] == wanted for code in self.zip_codes)
