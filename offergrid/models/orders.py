"""Order shapes: strict request writers validated before any call, and tolerant readers."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel

from offergrid.errors import RequestValidationError
from offergrid.models._base import NullableList, ReadModel, UtcDatetime
from offergrid.models.enums import Category, CategoryField, OrderStatusField

__all__ = [
    "US_STATES",
    "AvailabilityRequest",
    "CancelOrderRequest",
    "CreateOrderRequest",
    "CreatedOrder",
    "CustomerInfo",
    "Order",
    "OrderAddress",
    "OrderCustomer",
    "OrderItem",
    "OrderItemRequest",
    "ServiceAddress",
    "StatusHistoryEntry",
    "validate_order",
]

# The 50 states, DC, and the inhabited territories that use USPS two-letter codes.
US_STATES: frozenset[str] = frozenset(
    (  # noqa: SIM905 - a code table reads best as one block of text
        "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ "
        "NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC PR GU VI AS MP"
    ).split()
)

_ZIP = re.compile(r"^(\d{5})-?(\d{4})?$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_PHONE_CHARS = re.compile(r"^\+[\d\s().-]+$")
_NAME_PUNCTUATION = set(" -'\u2019.,")


class FieldProblem(ValueError):
    """A validation problem located below the field being validated (e.g. one list element)."""

    def __init__(self, subpath: str, message: str) -> None:
        super().__init__(message)
        self.subpath = subpath
        self.message = message


def _wire_path(loc: tuple[int | str, ...], prefix: str) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            # The loc holds whichever key the caller used; the wire path always uses the alias.
            name = to_camel(part)
            path = f"{path}.{name}" if path else name
    return path


def _plain_message(error: Any) -> tuple[str, str]:
    """One pydantic error as (extra sub-path, plain message that never echoes the input)."""
    kind = error["type"]
    if kind == "value_error":
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, FieldProblem):
            return cause.subpath, cause.message
        return "", str(cause) if cause is not None else error["msg"]
    if kind == "missing":
        return "", "is required"
    if kind == "extra_forbidden":
        return "", "is not a field Offergrid accepts"
    if kind in {"string_type", "string_sub_type"}:
        return "", "must be a string"
    if kind == "list_type":
        return "", "must be a list"
    if kind in {"dict_type", "model_type", "model_attributes_type"}:
        return "", "must be an object"
    if kind == "too_short":
        return "", "must not be empty"
    if kind == "string_too_long":
        return "", f"must be at most {error['ctx']['max_length']} characters"
    if kind == "enum":
        return "", f"must be one of {error['ctx']['expected']}"
    return "", error["msg"]


def request_error(err: ValidationError, prefix: str = "") -> RequestValidationError:
    """Turn pydantic's error into ours, naming the first bad field by its wire path."""
    problems: list[tuple[str, str]] = []
    for error in err.errors(include_input=False, include_url=False):
        subpath, message = _plain_message(error)
        field = _wire_path(tuple(error["loc"]), prefix) + subpath
        problems.append((field or "body", message))
    field, message = problems[0]
    return RequestValidationError(field, message, problems=problems)


class WriteModel(BaseModel):
    """Base of request bodies: strict, immutable, raising RequestValidationError on bad input."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        str_strip_whitespace=True,
        frozen=True,
    )
    # Where this model sits in the request body, so a standalone error still names the wire path.
    wire_prefix: ClassVar[str] = ""

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise request_error(err, self.wire_prefix) from err

    # Tell pydantic this __init__ adds no validation of its own, so nested models are validated by
    # pydantic-core directly and their errors keep the full path from the outer request.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """Validate a dict (wire or Python names); raises RequestValidationError."""
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as err:
            raise request_error(err, cls.wire_prefix) from err

    @classmethod
    def model_validate_json(cls, json_data: Any, *args: Any, **kwargs: Any) -> Self:
        """Validate a JSON document into this request, raising RequestValidationError."""
        try:
            return super().model_validate_json(json_data, *args, **kwargs)
        except ValidationError as err:
            raise request_error(err, cls.wire_prefix) from err

    def to_wire(self) -> dict[str, Any]:
        """The JSON body Offergrid expects: camelCase keys, absent values left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _require_text(value: str, what: str) -> str:
    if not value:
        raise ValueError(f"must not be empty ({what})")
    return value


class ServiceAddress(WriteModel):
    """A US service address; every field is required by Offergrid's ServiceAddressDto."""

    wire_prefix: ClassVar[str] = "serviceAddress"

    street: str = Field(max_length=200, description="street line, unit included if any")
    city: str = Field(max_length=100)
    state: str = Field(description="two-letter USPS code, e.g. CA")
    zip_code: str = Field(description="5-digit ZIP or ZIP+4, e.g. 94102 or 94102-1234")
    country: str = Field(description="ISO 3166 two-letter code, e.g. US")

    @field_validator("street")
    @classmethod
    def _street(cls, value: str) -> str:
        _require_text(value, "a street line such as 123 Main St")
        if not any(char.isalpha() for char in value):
            raise ValueError("must name the street, e.g. 123 Main St")
        return value

    @field_validator("city")
    @classmethod
    def _city(cls, value: str) -> str:
        _require_text(value, "a city name")
        if not all(char.isalpha() or char in " -'\u2019." for char in value):
            raise ValueError("must be a city name (letters, spaces, hyphens, apostrophes)")
        return value

    @field_validator("state")
    @classmethod
    def _state(cls, value: str) -> str:
        code = value.upper()
        if code not in US_STATES:
            raise ValueError("must be a two-letter US state or territory code, e.g. CA or DC")
        return code

    @field_validator("zip_code")
    @classmethod
    def _zip(cls, value: str) -> str:
        match = _ZIP.match(value)
        if not match or (len(value) == 6 and value.endswith("-")):
            raise ValueError("must be a 5-digit ZIP or ZIP+4, e.g. 94102 or 94102-1234")
        five, four = match.groups()
        return f"{five}-{four}" if four else five

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        code = value.upper()
        if not _COUNTRY.match(code):
            raise ValueError("must be an ISO two-letter country code, e.g. US")
        return code


class AvailabilityRequest(ServiceAddress):
    """The body of POST /reseller/availability: a service address, an optional unit and category."""

    wire_prefix: ClassVar[str] = ""

    unit: str | None = Field(None, max_length=50)
    category: Category | None = None


class CustomerInfo(WriteModel):
    """The end customer on an order: full name, their own email, and a phone with country code."""

    wire_prefix: ClassVar[str] = "customerInfo"

    full_name: str = Field(max_length=100)
    email: str = Field(max_length=254)
    phone: str = Field(max_length=30)

    @field_validator("full_name")
    @classmethod
    def _full_name(cls, value: str) -> str:
        if len(value) < 3:
            raise ValueError("must be the customer's first and last name")
        if not all(char.isalpha() or char in _NAME_PUNCTUATION for char in value):
            raise ValueError("must contain only letters, spaces, hyphens, apostrophes and periods")
        if len(value.split()) < 2:
            raise ValueError("must include both a first and a last name")
        return " ".join(value.split())

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _EMAIL.match(value):
            raise ValueError("must be a valid email address, e.g. name@example.com")
        return value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        if not _PHONE_CHARS.match(value):
            raise ValueError("must start with + and the country code, e.g. +1 555 123 4567")
        digits = re.sub(r"\D", "", value)
        # E.164 allows at most 15 digits; North American numbers are exactly 1 + 10 digits.
        if digits.startswith("1") and len(digits) != 11:
            raise ValueError("must be +1 followed by a 10-digit number, e.g. +1 555 123 4567")
        if not 8 <= len(digits) <= 15:
            raise ValueError("must have 8 to 15 digits including the country code")
        return value


class OrderItemRequest(WriteModel):
    """One offer to order; Offergrid has no quantity field."""

    offer_id: str = Field(max_length=128)

    @field_validator("offer_id")
    @classmethod
    def _offer_id(cls, value: str) -> str:
        if not value or any(char.isspace() for char in value):
            raise ValueError("must be an offer id such as off-123 (no spaces)")
        return value


class CreateOrderRequest(WriteModel):
    """The body of POST /reseller/orders; each item becomes an order item at its provider."""

    items: list[OrderItemRequest] = Field(min_length=1)
    service_address: ServiceAddress
    customer_info: CustomerInfo
    notes: str | None = Field(None, max_length=2000)
    metadata: dict[str, Any] | None = None

    @field_validator("items")
    @classmethod
    def _distinct_offers(cls, items: list[OrderItemRequest]) -> list[OrderItemRequest]:
        seen: set[str] = set()
        for index, item in enumerate(items):
            if item.offer_id in seen:
                raise FieldProblem(f"[{index}].offerId", "repeats an offer already in this order")
            seen.add(item.offer_id)
        return items

    @field_validator("metadata")
    @classmethod
    def _json_metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                json.dumps(value)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    "must hold only JSON values (strings, numbers, lists, ...)"
                ) from err
        return value

    @property
    def is_test(self) -> bool:
        """Whether the order is in Offergrid test mode (metadata.test is true)."""
        return bool(self.metadata and self.metadata.get("test") is True)


class CancelOrderRequest(WriteModel):
    """The optional body of PATCH /reseller/orders/{id}/cancel."""

    reason: str | None = Field(None, max_length=500)


def validate_order(request: CreateOrderRequest) -> None:
    """Re-check an order request, even one built unvalidated; raises RequestValidationError."""
    CreateOrderRequest.model_validate(request.model_dump(by_alias=True, exclude_none=True))


class OrderAddress(ReadModel):
    """A service address as Offergrid returns it; any field may be missing."""

    street: str | None = None
    city: str | None = None
    state: str | None = None
    zip_code: str | None = None
    country: str | None = None
    unit: str | None = None


class OrderCustomer(ReadModel):
    """Customer details as Offergrid returns them; any field may be missing or masked."""

    full_name: str | None = None
    email: str | None = None
    phone: str | None = None


class StatusHistoryEntry(ReadModel):
    """One recorded status change of an item (or of an order, in the tracking guide's shape)."""

    status: OrderStatusField | None = None
    timestamp: UtcDatetime | None = None
    notes: str | None = None
    provider_notes: str | None = None
    scheduled_for: UtcDatetime | None = None
    item_id: str | None = None


class OrderItem(ReadModel):
    """One item of an order: one offer at one provider, with its own status and history."""

    item_id: str | None = Field(
        None, validation_alias=AliasChoices("itemId", "id", "item_id"), serialization_alias="itemId"
    )
    offer_id: str | None = None
    offer_name: str | None = None
    category: CategoryField | None = None
    status: OrderStatusField | None = None
    scheduled_for: UtcDatetime | None = None
    provider_notes: str | None = None
    account_number: str | None = None
    history: Annotated[list[StatusHistoryEntry], NullableList] = Field(default_factory=list)
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None


class Order(ReadModel):
    """An order as the reseller sees it: overall status, items, parties and history."""

    order_id: str = Field(
        validation_alias=AliasChoices("orderId", "id", "order_id"), serialization_alias="orderId"
    )
    status: OrderStatusField | None = None
    items: Annotated[list[OrderItem], NullableList] = Field(default_factory=list)
    customer_info: OrderCustomer | None = None
    service_address: OrderAddress | None = None
    notes: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None
    history: Annotated[list[StatusHistoryEntry], NullableList] = Field(default_factory=list)

    def item(self, item_id: str) -> OrderItem | None:
        """The item with this id, if the order has it."""
        return next((item for item in self.items if item.item_id == item_id), None)

    def item_for_offer(self, offer_id: str) -> OrderItem | None:
        """The item that orders this offer, if any."""
        return next((item for item in self.items if item.offer_id == offer_id), None)

    @property
    def is_test(self) -> bool:
        """Whether the order was placed in test mode (metadata.test is true)."""
        return bool(self.metadata and self.metadata.get("test") is True)


class CreatedOrder(Order):
    """The answer to placing an order (200 or 201): ids, initial statuses and creation time."""
