"""Request validation and the error shape: every bad input becomes a 4xx naming the field at fault.

The sandbox answers errors in the framework style `{statusCode, message, error, field?}` that
contract.md fixes. Validators check fields in the order of the documented DTOs and stop at the
first bad one, so `field` always names a single place ("customerInfo.email", "items[0].offerId").
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from offergrid_sandbox.catalog import CATEGORIES

ORDER_STATUSES: tuple[str, ...] = (
    "pending",
    "submitted_to_provider",
    "accepted",
    "rejected",
    "scheduled",
    "in_progress",
    "completed",
    "active",
    "cancelled",
    "failed",
)
ENDED_STATUSES = frozenset({"rejected", "cancelled", "failed"})
CANCELLABLE_STATUSES = frozenset({"pending", "submitted_to_provider", "accepted", "scheduled"})
OFFER_STATUSES: tuple[str, ...] = ("draft", "active", "inactive", "archived")
PRICING_TYPES: tuple[str, ...] = ("fixed", "variable", "tiered", "custom")
VISIBILITIES: tuple[str, ...] = ("public", "preferred", "selected")
SORT_FIELDS: tuple[str, ...] = ("price", "name", "provider", "createdAt")

US_STATES = frozenset(
    [
        "AL",
        "AK",
        "AZ",
        "AR",
        "CA",
        "CO",
        "CT",
        "DE",
        "DC",
        "FL",
        "GA",
        "HI",
        "ID",
        "IL",
        "IN",
        "IA",
        "KS",
        "KY",
        "LA",
        "ME",
        "MD",
        "MA",
        "MI",
        "MN",
        "MS",
        "MO",
        "MT",
        "NE",
        "NV",
        "NH",
        "NJ",
        "NM",
        "NY",
        "NC",
        "ND",
        "OH",
        "OK",
        "OR",
        "PA",
        "RI",
        "SC",
        "SD",
        "TN",
        "TX",
        "UT",
        "VT",
        "VA",
        "WA",
        "WV",
        "WI",
        "WY",
        "PR",
        "GU",
        "VI",
        "AS",
        "MP",
    ]
)
_ZIP = re.compile(r"^\d{5}(-\d{4})?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")
MAX_ORDER_ITEMS = 25
MAX_TEXT = 5_000
MAX_ID = 200


class SandboxError(Exception):
    """An answer given instead of a result: HTTP status, a plain message, and the field at fault."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.field = field
        self.headers = headers or {}

    @property
    def detail(self) -> str:
        """The message, under the name HTTPException uses."""
        return self.message

    def body(self) -> dict[str, Any]:
        """The framework-style JSON body of this error."""
        return error_body(self.status_code, self.message, field=self.field)


def error_body(status_code: int, message: str, *, field: str | None = None) -> dict[str, Any]:
    """The framework-style error body: `{statusCode, message, error, field?}`."""
    body: dict[str, Any] = {
        "statusCode": status_code,
        "message": message,
        "error": HTTPStatus(status_code).phrase,
    }
    if field is not None:
        body["field"] = field
    return body


def bad_input(field: str, message: str) -> SandboxError:
    """A 400 naming the field at fault."""
    return SandboxError(400, message, field=field)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}.get(
        type(value), "object" if isinstance(value, dict) else type(value).__name__
    )


def require_object(value: Any, field: str, *, what: str | None = None) -> dict[str, Any]:
    """`value` as a JSON object, or a 400 naming `field`."""
    if not isinstance(value, dict):
        name = what or field or "body"
        raise bad_input(field or "body", f"{name} must be an object, not {_type_name(value)}")
    return value


def reject_unknown(obj: dict[str, Any], allowed: set[str] | frozenset[str], prefix: str) -> None:
    """Refuse properties the DTO does not declare, as a whitelisting validator does."""
    for key in obj:
        if key not in allowed:
            path = _join(prefix, str(key))
            raise bad_input(path, f"property {path} should not exist")


def req_str(obj: dict[str, Any], key: str, prefix: str = "", *, max_len: int = MAX_TEXT) -> str:
    """A required, non-blank string field."""
    path = _join(prefix, key)
    if key not in obj or obj[key] is None:
        raise bad_input(path, f"{path} is required")
    value = obj[key]
    if not isinstance(value, str):
        raise bad_input(path, f"{path} must be a string, not {_type_name(value)}")
    if not value.strip():
        raise bad_input(path, f"{path} must not be empty")
    if len(value) > max_len:
        raise bad_input(path, f"{path} must be at most {max_len} characters")
    return value.strip()


def opt_str(
    obj: dict[str, Any], key: str, prefix: str = "", *, max_len: int = MAX_TEXT
) -> str | None:
    """An optional string field (absent or null gives None)."""
    if obj.get(key) is None:
        return None
    path = _join(prefix, key)
    value = obj[key]
    if not isinstance(value, str):
        raise bad_input(path, f"{path} must be a string, not {_type_name(value)}")
    if len(value) > max_len:
        raise bad_input(path, f"{path} must be at most {max_len} characters")
    return value


def opt_object(obj: dict[str, Any], key: str, prefix: str = "") -> dict[str, Any] | None:
    """An optional JSON-object field."""
    if obj.get(key) is None:
        return None
    return require_object(obj[key], _join(prefix, key))


def opt_enum(
    obj: dict[str, Any], key: str, allowed: tuple[str, ...], prefix: str = ""
) -> str | None:
    """An optional string field restricted to `allowed`."""
    value = opt_str(obj, key, prefix)
    if value is None:
        return None
    if value not in allowed:
        path = _join(prefix, key)
        raise bad_input(path, f"{path} must be one of: {', '.join(allowed)}")
    return value


def opt_number(
    obj: dict[str, Any], key: str, prefix: str = "", *, minimum: float = 0
) -> float | None:
    """An optional finite number field at or above `minimum` (booleans are not numbers)."""
    if obj.get(key) is None:
        return None
    path = _join(prefix, key)
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_input(path, f"{path} must be a number, not {_type_name(value)}")
    if not math.isfinite(value) or value < minimum:
        raise bad_input(path, f"{path} must be a number not less than {minimum:g}")
    return float(value)


def opt_str_list(obj: dict[str, Any], key: str, prefix: str = "") -> list[str] | None:
    """An optional array of strings."""
    if obj.get(key) is None:
        return None
    path = _join(prefix, key)
    value = obj[key]
    if not isinstance(value, list):
        raise bad_input(path, f"{path} must be an array, not {_type_name(value)}")
    for i, entry in enumerate(value):
        if not isinstance(entry, str):
            raise bad_input(f"{path}[{i}]", f"{path}[{i}] must be a string")
    return list(value)


def parse_datetime(value: Any, field: str) -> datetime:
    """An ISO 8601 timestamp; a naive one is read as UTC."""
    if not isinstance(value, str):
        raise bad_input(field, f"{field} must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise bad_input(field, f"{field} must be an ISO 8601 date-time string") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def iso(moment: datetime) -> str:
    """A timezone-aware moment as ISO 8601 UTC with a `Z`, to the millisecond."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: Request) -> Any:
    """The request's JSON body (None when empty), or a 400 saying why it is not JSON."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno}"
        raise bad_input("body", f"Malformed JSON body: {err.msg} at {where}") from None
    except (ValueError, RecursionError) as err:
        reason = "nested too deeply" if isinstance(err, RecursionError) else str(err)
        raise bad_input("body", f"Malformed JSON body: {reason}") from None


# --- addresses and orders --------------------------------------------------------------------

_ADDRESS_KEYS = ("street", "city", "state", "zipCode", "country")


def parse_address(
    value: Any, prefix: str, *, extra: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """A ServiceAddressDto: every key required; US addresses need a state code and a ZIP."""
    obj = require_object(value, prefix, what=prefix or "address")
    reject_unknown(obj, frozenset(_ADDRESS_KEYS) | extra, prefix)
    street = req_str(obj, "street", prefix, max_len=200)
    city = req_str(obj, "city", prefix, max_len=100)
    state = req_str(obj, "state", prefix, max_len=50)
    zip_code = req_str(obj, "zipCode", prefix, max_len=10)
    country = req_str(obj, "country", prefix, max_len=2)
    if not _COUNTRY.match(country):
        path = _join(prefix, "country")
        raise bad_input(path, f"{path} must be a two-letter country code such as US")
    country = country.upper()
    if country == "US":
        if state.upper() not in US_STATES:
            path = _join(prefix, "state")
            raise bad_input(path, f"{path} must be a two-letter US state code such as TX")
        state = state.upper()
        if not _ZIP.match(zip_code):
            path = _join(prefix, "zipCode")
            raise bad_input(path, f"{path} must be a 5-digit ZIP code or ZIP+4")
    return {"street": street, "city": city, "state": state, "zipCode": zip_code, "country": country}


def _parse_customer(value: Any) -> dict[str, str]:
    prefix = "customerInfo"
    obj = require_object(value, prefix)
    reject_unknown(obj, frozenset({"fullName", "email", "phone"}), prefix)
    full_name = req_str(obj, "fullName", prefix, max_len=200)
    email = req_str(obj, "email", prefix, max_len=254)
    if not _EMAIL.match(email):
        raise bad_input("customerInfo.email", "customerInfo.email must be a valid email address")
    phone = req_str(obj, "phone", prefix, max_len=40)
    digits = sum(ch.isdigit() for ch in phone)
    if not 10 <= digits <= 15 or re.search(r"[^\d\s+().\-x]", phone):
        raise bad_input(
            "customerInfo.phone",
            "customerInfo.phone must be a phone number with 10 to 15 digits",
        )
    return {"fullName": full_name, "email": email, "phone": phone}


def parse_create_order(body: Any) -> dict[str, Any]:
    """A CreateOrderDto, normalised; items must name distinct offers."""
    obj = require_object(body, "body", what="request body")
    reject_unknown(
        obj, frozenset({"items", "serviceAddress", "customerInfo", "notes", "metadata"}), ""
    )
    if obj.get("items") is None:
        raise bad_input("items", "items is required")
    raw_items = obj["items"]
    if not isinstance(raw_items, list):
        raise bad_input("items", f"items must be an array, not {_type_name(raw_items)}")
    if not raw_items:
        raise bad_input("items", "items must contain at least one item")
    if len(raw_items) > MAX_ORDER_ITEMS:
        raise bad_input("items", f"items must contain at most {MAX_ORDER_ITEMS} items")
    items: list[dict[str, str]] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_items):
        prefix = f"items[{i}]"
        entry = require_object(raw, prefix)
        reject_unknown(entry, frozenset({"offerId"}), prefix)
        offer_id = req_str(entry, "offerId", prefix, max_len=MAX_ID)
        if offer_id in seen:
            raise bad_input(f"{prefix}.offerId", f"{prefix}.offerId repeats offer {offer_id}")
        seen.add(offer_id)
        items.append({"offerId": offer_id})
    if obj.get("serviceAddress") is None:
        raise bad_input("serviceAddress", "serviceAddress is required")
    address = parse_address(obj["serviceAddress"], "serviceAddress")
    if obj.get("customerInfo") is None:
        raise bad_input("customerInfo", "customerInfo is required")
    customer = _parse_customer(obj["customerInfo"])
    notes = opt_str(obj, "notes")
    metadata = opt_object(obj, "metadata") or {}
    if "test" in metadata and not isinstance(metadata["test"], bool):
        raise bad_input("metadata.test", "metadata.test must be a boolean")
    return {
        "items": items,
        "serviceAddress": address,
        "customerInfo": customer,
        "notes": notes,
        "metadata": metadata,
    }


def parse_availability(body: Any) -> tuple[dict[str, Any], str | None]:
    """An availability request: a service address, an optional `unit` and `category`."""
    obj = require_object(body, "body", what="request body")
    address = parse_address(obj, "", extra=frozenset({"unit", "category"}))
    unit = opt_str(obj, "unit", max_len=50)
    if unit:
        address["unit"] = unit
    category = opt_str(obj, "category")
    if category is not None:
        category = parse_category(category)
    return address, category


def parse_cancel(body: Any) -> str | None:
    """A cancel request: no body, or `{reason}`."""
    if body is None:
        return None
    obj = require_object(body, "body", what="request body")
    reject_unknown(obj, frozenset({"reason"}), "")
    return opt_str(obj, "reason", max_len=1_000)


def parse_category(value: str, field: str = "category") -> str:
    """A category name, case-insensitively, or a 400 listing the six."""
    lowered = value.strip().lower()
    if lowered not in CATEGORIES:
        raise bad_input(field, f"{field} must be one of: {', '.join(CATEGORIES)}")
    return lowered


def parse_status_filter(value: str | None) -> str | None:
    """An optional `status` query parameter, one of the ten order statuses."""
    if value is None or value == "":
        return None
    if value not in ORDER_STATUSES:
        raise bad_input("status", f"status must be one of: {', '.join(ORDER_STATUSES)}")
    return value


def parse_idempotency_key(value: str | None) -> str | None:
    """The optional `Idempotency-Key` header: 1 to 255 visible characters."""
    if value is None:
        return None
    if not value.strip() or len(value) > 255:
        raise bad_input("Idempotency-Key", "Idempotency-Key must be 1 to 255 characters")
    return value


# --- catalog queries -------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogQuery:
    """The reseller catalog's filters and sort, validated."""

    category: str | None = None
    zip_code: str | None = None
    search: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    sort_by: str = "name"
    descending: bool = False


def _price_param(value: str | None, field: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        price = float(value)
    except ValueError:
        raise bad_input(field, f"{field} must be a number") from None
    if not math.isfinite(price) or price < 0:
        raise bad_input(field, f"{field} must be a number not less than 0")
    return price


def parse_catalog_query(params: dict[str, str]) -> CatalogQuery:
    """Catalog query parameters; unknown parameters are ignored, bad values answer 400."""
    category = params.get("category") or None
    if category is not None:
        category = parse_category(category)
    zip_code = params.get("zipCode") or None
    if zip_code is not None:
        if not _ZIP.match(zip_code.strip()):
            raise bad_input("zipCode", "zipCode must be a 5-digit ZIP code or ZIP+4")
        zip_code = zip_code.strip()[:5]
    search = (params.get("search") or "").strip() or None
    min_price = _price_param(params.get("minPrice"), "minPrice")
    max_price = _price_param(params.get("maxPrice"), "maxPrice")
    if min_price is not None and max_price is not None and min_price > max_price:
        raise bad_input("maxPrice", "maxPrice must not be less than minPrice")
    sort_by = params.get("sortBy") or "name"
    if sort_by not in SORT_FIELDS:
        raise bad_input("sortBy", f"sortBy must be one of: {', '.join(SORT_FIELDS)}")
    sort_order = (params.get("sortOrder") or "asc").lower()
    if sort_order not in ("asc", "desc"):
        raise bad_input("sortOrder", "sortOrder must be asc or desc")
    return CatalogQuery(
        category=category,
        zip_code=zip_code,
        search=search,
        min_price=min_price,
        max_price=max_price,
        sort_by=sort_by,
        descending=sort_order == "desc",
    )


# --- provider DTOs ---------------------------------------------------------------------------

_OFFER_STRINGS = (
    "internalName",
    "sku",
    "externalId",
    "description",
    "internalDescription",
    "marketingHeadline",
    "marketingDescription",
    "imageUrl",
    "overview",
    "submissionUrl",
    "complianceStatus",
    "complianceNotes",
)
_OFFER_OBJECTS = ("metadata", "submissionConfig", "serviceSpecificData", "complianceData")
OFFER_WRITE_KEYS = frozenset(
    {
        "name",
        "category",
        "status",
        "keyFeatures",
        "pricingType",
        "monthlyPrice",
        "visibility",
        "allowedResellers",
        "zipCodes",
        "providerId",
        *_OFFER_STRINGS,
        *_OFFER_OBJECTS,
    }
)

_INTERNET_CONNECTIONS = ("fiber", "cable", "dsl", "satellite", "fixed_wireless", "5g_home")
_MONITORING = ("professional_monitoring", "self_monitoring", "hybrid")
_INSTALLATION = ("professional", "diy")


def _check_typed_ssd(category: str | None, ssd: dict[str, Any]) -> None:
    """Hold internet and security data to the live reference's typed DTOs when they use them."""
    prefix = "serviceSpecificData"
    if category == "internet" and ("minBandwidth" in ssd or "maxBandwidth" in ssd):
        low = opt_number(ssd, "minBandwidth", prefix)
        high = opt_number(ssd, "maxBandwidth", prefix)
        if low is None:
            raise bad_input(f"{prefix}.minBandwidth", f"{prefix}.minBandwidth is required")
        if high is None:
            raise bad_input(f"{prefix}.maxBandwidth", f"{prefix}.maxBandwidth is required")
        if low > high:
            raise bad_input(
                f"{prefix}.minBandwidth", f"{prefix}.minBandwidth must not exceed maxBandwidth"
            )
        if opt_enum(ssd, "connectionType", _INTERNET_CONNECTIONS, prefix) is None:
            raise bad_input(f"{prefix}.connectionType", f"{prefix}.connectionType is required")
        opt_number(ssd, "dataCap", prefix)
    if category == "security" and "monitoringType" in ssd and "installationType" in ssd:
        opt_enum(ssd, "monitoringType", _MONITORING, prefix)
        opt_enum(ssd, "installationType", _INSTALLATION, prefix)


def parse_offer(body: Any, *, partial: bool, current_category: str | None = None) -> dict[str, Any]:
    """A CreateOfferDto (`partial=False`: `name` required) or UpdateOfferDto (only sent fields)."""
    obj = require_object(body, "body", what="request body")
    reject_unknown(obj, OFFER_WRITE_KEYS, "")
    out: dict[str, Any] = {}
    if not partial or "name" in obj:
        out["name"] = req_str(obj, "name", max_len=200)
    for key in _OFFER_STRINGS:
        if key in obj:
            out[key] = opt_str(obj, key)
    for key in _OFFER_OBJECTS:
        if key in obj:
            out[key] = opt_object(obj, key)
    for key, allowed in (
        ("category", CATEGORIES),
        ("status", OFFER_STATUSES),
        ("pricingType", PRICING_TYPES),
        ("visibility", VISIBILITIES),
    ):
        # Writers are held to the exact enum: no nulls, no other casing.
        if key in obj:
            if obj[key] not in allowed:
                raise bad_input(key, f"{key} must be one of: {', '.join(allowed)}")
            out[key] = obj[key]
    if "monthlyPrice" in obj:
        out["monthlyPrice"] = opt_number(obj, "monthlyPrice")
    for key in ("keyFeatures", "allowedResellers"):
        if key in obj:
            out[key] = opt_str_list(obj, key)
    if "zipCodes" in obj:
        zips = opt_str_list(obj, "zipCodes") or []
        for i, zip_code in enumerate(zips):
            if not _ZIP.match(zip_code):
                raise bad_input(f"zipCodes[{i}]", f"zipCodes[{i}] must be a 5-digit ZIP code")
        out["zipCodes"] = [z[:5] for z in zips]
    if "providerId" in obj:
        out["providerId"] = req_str(obj, "providerId", max_len=MAX_ID)
    if out.get("serviceSpecificData"):
        _check_typed_ssd(out.get("category", current_category), out["serviceSpecificData"])
    return out


def parse_status_update(body: Any) -> dict[str, Any]:
    """An UpdateItemStatusDto: `status` required, then providerNotes, scheduledFor, metadata."""
    obj = require_object(body, "body", what="request body")
    reject_unknown(obj, frozenset({"status", "providerNotes", "scheduledFor", "metadata"}), "")
    if obj.get("status") is None:
        raise bad_input("status", "status is required")
    status = opt_enum(obj, "status", ORDER_STATUSES)
    notes = opt_str(obj, "providerNotes", max_len=2_000)
    scheduled = obj.get("scheduledFor")
    scheduled_for = None if scheduled is None else parse_datetime(scheduled, "scheduledFor")
    metadata = opt_object(obj, "metadata")
    return {
        "status": status,
        "provider_notes": notes,
        "scheduled_for": scheduled_for,
        "metadata": metadata,
    }


# --- pydantic bodies of the sandbox-only routes ----------------------------------------------

M = TypeVar("M", bound=BaseModel)


def field_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a field path: ("items", 0, "offerId") → "items[0].offerId"."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = _join(path, part)
    return path or "body"


def validate_model(model: type[M], body: Any) -> M:
    """Validate `body` into `model`, answering 400 naming the first bad field."""
    require_object(body, "body", what="request body")
    try:
        return model.model_validate(body)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        path = field_path(tuple(first["loc"]))
        message = str(first["msg"])
        if first["type"] == "missing":
            message = f"{path} is required"
        elif first["type"] == "extra_forbidden":
            message = f"property {path} should not exist"
        else:
            message = f"{path}: {message}"
        raise bad_input(path, message) from None
