"""Reseller webhook events, read from the flat documented payloads or the provider envelope."""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar

from pydantic import AliasChoices, Field, ValidationError

from offergrid.errors import WebhookPayloadError
from offergrid.models._base import ReadModel, UtcDatetime
from offergrid.models.enums import OrderStatus, OrderStatusField

__all__ = [
    "EVENT_TYPES",
    "OrderCancelled",
    "OrderCompleted",
    "OrderRejected",
    "OrderScheduled",
    "OrderStatusChanged",
    "UnknownEvent",
    "WebhookEvent",
    "json_depth",
    "parse_webhook_event",
]


class WebhookEvent(ReadModel):
    """Fields every reseller event shares; `new_status` is None when the payload lacks it."""

    # The status an event of this name means when the payload leaves newStatus out.
    implied: ClassVar[OrderStatus | None] = None

    event: str = ""
    event_id: str | None = Field(None, description="the envelope's id, when the event had one")
    order_id: str | None = None
    item_id: str | None = None
    previous_status: OrderStatusField | None = None
    new_status: OrderStatusField | None = Field(
        None, validation_alias=AliasChoices("newStatus", "status", "new_status")
    )
    provider_notes: str | None = None
    timestamp: UtcDatetime | None = None
    raw: dict[str, Any] = Field(default_factory=dict, exclude=True, repr=False)

    @property
    def implied_status(self) -> OrderStatus | str | None:
        """The status this event reports: newStatus if given, else the one its name implies."""
        return self.new_status if self.new_status is not None else self.implied

    @property
    def dedupe_key(self) -> str:
        """A stable key for de-duplicating deliveries: the envelope id, else a hash of the event."""
        if self.event_id:
            return self.event_id
        canonical = {
            "event": self.event,
            "orderId": self.order_id,
            "itemId": self.item_id,
            "previousStatus": self.previous_status,
            "newStatus": self.implied_status,
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
            "extra": self._identity(),
        }
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def _identity(self) -> Any:
        return None


class OrderStatusChanged(WebhookEvent):
    """order.status_changed: an item moved from previousStatus to newStatus."""


class OrderScheduled(WebhookEvent):
    """order.scheduled: the provider set the installation or activation date."""

    implied: ClassVar[OrderStatus | None] = OrderStatus.SCHEDULED
    scheduled_for: UtcDatetime | None = None

    def _identity(self) -> Any:
        return self.scheduled_for.isoformat() if self.scheduled_for else None


class OrderCompleted(WebhookEvent):
    """order.completed: the service was installed or activated; carries the account number."""

    implied: ClassVar[OrderStatus | None] = OrderStatus.COMPLETED
    account_number: str | None = None


class OrderRejected(WebhookEvent):
    """order.rejected: the provider cannot fulfil the item."""

    implied: ClassVar[OrderStatus | None] = OrderStatus.REJECTED
    reason: str | None = None


class OrderCancelled(WebhookEvent):
    """order.cancelled: the item was cancelled by the reseller or the provider."""

    implied: ClassVar[OrderStatus | None] = OrderStatus.CANCELLED
    reason: str | None = None
    cancelled_by: str | None = None


class UnknownEvent(WebhookEvent):
    """An event this client does not know; `raw` holds the payload exactly as received."""


EVENT_TYPES: dict[str, type[WebhookEvent]] = {
    "order.status_changed": OrderStatusChanged,
    "order.scheduled": OrderScheduled,
    "order.completed": OrderCompleted,
    "order.rejected": OrderRejected,
    "order.cancelled": OrderCancelled,
}


# An event is a flat object or one envelope deep; these bounds leave room and refuse abuse
# (30,000 nested arrays exhaust the parser's recursion; a 5,000-digit number its int limit).
MAX_DEPTH = 16
MAX_INT_DIGITS = 20


def _load(payload: bytes | str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(payload, dict):
        return payload
    try:
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
    except UnicodeDecodeError as err:
        raise WebhookPayloadError("webhook body is not UTF-8 JSON") from err
    if json_depth(text) > MAX_DEPTH:
        raise WebhookPayloadError(f"webhook body is nested deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError) as err:
        raise WebhookPayloadError(f"webhook body is not valid JSON ({_why(err)})") from err
    if not isinstance(data, dict):
        raise WebhookPayloadError("webhook body must be a JSON object")
    _check_strings(data)
    return data


def _why(err: ValueError) -> str:
    return err.msg if isinstance(err, json.JSONDecodeError) else str(err)


def json_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """The deepest nesting of arrays and objects in JSON text (stopping past `limit`), unparsed."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest  # enough: no need to read the rest
        elif char in "]}":
            depth -= 1
    return deepest


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"a number longer than {MAX_INT_DIGITS} digits")
    return int(text)


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _check_strings(value: Any) -> None:
    """Refuse text no database column can hold: NUL characters and lone UTF-16 surrogates."""
    if isinstance(value, str):
        if "\x00" in value:
            raise WebhookPayloadError("webhook body holds a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            raise WebhookPayloadError("webhook body holds a lone surrogate (\\ud8xx)") from err
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)


def _flatten(data: dict[str, Any]) -> dict[str, Any]:
    """Lift the provider-style envelope {id, event, timestamp, data:{...}} to a flat event."""
    inner = data.get("data")
    if not isinstance(inner, dict) or "orderId" in data:
        return dict(data)
    flat = dict(inner)
    for key in ("event", "timestamp"):
        if data.get(key) is not None:
            flat.setdefault(key, data[key])
    if data.get("id") is not None:
        flat["eventId"] = str(data["id"])
    return flat


def parse_webhook_event(payload: bytes | str | dict[str, Any]) -> WebhookEvent:
    """Parse one webhook body into its typed event; an unknown event name gives an UnknownEvent."""
    raw = _load(payload)
    flat = _flatten(raw)
    name = flat.get("event")
    kind = EVENT_TYPES.get(name, UnknownEvent) if isinstance(name, str) else UnknownEvent
    if not isinstance(name, str):
        flat["event"] = ""
    try:
        event = kind.model_validate(flat)
    except ValidationError as err:
        first = err.errors(include_input=False, include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise WebhookPayloadError(f"webhook field {field}: {first['msg']}") from err
    event.raw = raw
    return event
