"""Webhook delivery of reseller events: signed, at least once, with switches that misbehave.

Every item change except creation becomes exactly one flat reseller event (contract.md, "Webhook
payloads"). Delivery never happens inside the listener: each attempt is a timer on the sandbox
clock, so with a virtual clock deliveries happen during `advance`, and with a real clock on the
clock's thread. A failed attempt (non-2xx, timeout, connection error) is retried after
`backoff_seconds * 2**(attempt-1)` sandbox seconds, up to `max_attempts`, then given up.

Each event keeps the URL and secret registered when it happened, for all its attempts.
While no endpoint is registered, events are not queued: they are counted as `unrouted` and lost,
as a real service would lose them; the receiver catches up through the periodic order sync.

The signature is this module's own implementation (the sandbox never imports the client):
hex HMAC-SHA256 with the secret over "{timestamp}.{body}", body being the exact bytes sent.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, TypedDict

import httpx
from pydantic import SecretStr, ValidationError

from offergrid_sandbox.clock import Clock
from offergrid_sandbox.config import WebhookConfig
from offergrid_sandbox.events import ItemChange

SIGNATURE_HEADER = "x-offergrid-signature"
TIMESTAMP_HEADER = "x-offergrid-timestamp"

# With `reorder`, events are held at least this long so that events falling due together form a
# batch that can be delivered back to front.
REORDER_HOLD_SECONDS = 1.0

# A long-running sandbox keeps only the newest delivery records.
MAX_RECORDS = 10_000

# The fields `set_switches` may change; the secret and URL go through `register`.
SWITCHES = frozenset(
    {"timeout_seconds", "max_attempts", "backoff_seconds", "drop_rate", "duplicate_rate"}
    | {"delay_seconds", "reorder"}
)

Outcome = Literal["delivered", "failed", "given_up", "dropped"]


class DeliveryRecord(TypedDict):
    """One delivery attempt (or a drop) as the /sandbox/webhooks/deliveries route shows it."""

    eventId: str
    event: str
    orderId: str
    itemId: str
    url: str | None
    attempt: int
    copy: int  # 1, or 2 for the duplicate of an event
    outcome: Outcome
    statusCode: int | None
    error: str | None
    at: str  # ISO 8601 UTC, sandbox clock


class WebhookSandbox(Protocol):
    """What the dispatcher needs from the sandbox core: its clock and its listeners."""

    clock: Clock
    listeners: list[Callable[[ItemChange], None]]


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, as JavaScript's toISOString writes it."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of "{timestamp}.{body}" keyed with `secret`."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def encode_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent: compact JSON, as JSON.stringify writes it."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def event_for(change: ItemChange) -> dict[str, Any] | None:
    """The reseller event for one item change, or None for a creation (which has no event)."""
    if change.previous_status is None:
        return None
    timestamp = iso_utc(change.at)
    if change.new_status == "cancelled":
        return {
            "event": "order.cancelled",
            "orderId": change.order_id,
            "itemId": change.item_id,
            "reason": change.reason,
            "cancelledBy": change.cancelled_by or "provider",
            "timestamp": timestamp,
        }
    head: dict[str, Any] = {
        "orderId": change.order_id,
        "itemId": change.item_id,
        "previousStatus": change.previous_status,
        "newStatus": change.new_status,
    }
    extra: dict[str, Any]
    if change.new_status == "scheduled":
        name = "order.scheduled"
        scheduled = change.scheduled_for
        extra = {"scheduledFor": iso_utc(scheduled) if scheduled is not None else None}
    elif change.new_status == "completed" or (
        change.new_status == "active" and change.previous_status != "completed"
    ):
        name = "order.completed"
        extra = {"accountNumber": change.account_number}
    elif change.new_status == "rejected":
        name = "order.rejected"
        extra = {"reason": change.reason or change.provider_notes}
    else:
        name = "order.status_changed"
        extra = {}
    return {
        "event": name,
        **head,
        **extra,
        "providerNotes": change.provider_notes,
        "timestamp": timestamp,
    }


@dataclass
class _Delivery:
    """One copy of one event on its way to one endpoint."""

    event_id: str
    payload: dict[str, Any]
    url: str
    secret: SecretStr
    copy: int
    generation: int
    attempt: int = 0
    done: bool = field(default=False)


class WebhookDispatcher:
    """Turns item changes into reseller events and delivers them to the registered endpoint."""

    def __init__(
        self,
        config: WebhookConfig,
        *,
        http_client: httpx.Client | None = None,
        seed: int | None = None,
    ) -> None:
        self._initial = config.model_copy()
        self._config = config.model_copy()
        self._http_client = http_client
        self._own_client: httpx.Client | None = None
        self._seed = seed
        self._clock: Clock | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._generation = 0
        self._held: list[_Delivery] = []
        self._flush_due: datetime | None = None
        self._in_flight = 0
        self._counts = dict.fromkeys(_STAT_NAMES, 0)
        self.deliveries: list[DeliveryRecord] = []

    def __repr__(self) -> str:
        return f"WebhookDispatcher(url={self._config.url!r}, attempts={len(self.deliveries)})"

    @property
    def config(self) -> WebhookConfig:
        """The endpoint and switches in force (the secret stays a SecretStr)."""
        return self._config

    def attach(self, sandbox: WebhookSandbox) -> None:
        """Listen to the sandbox's item changes and deliver on its clock."""
        self._clock = sandbox.clock
        if self._seed is None:
            config = getattr(sandbox, "config", None)
            self._seed = int(getattr(config, "seed", 7))
        sandbox.listeners.append(self.on_change)

    def register(self, url: str | None, secret: str | SecretStr | None = None) -> None:
        """Send future events to `url` (None stops sending), signed with `secret` when given."""
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("url: must be an http:// or https:// URL")
        if secret is not None and not (
            secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        ):
            raise ValueError("secret: must not be empty")
        changes: dict[str, Any] = {"url": url}
        if secret is not None:
            changes["secret"] = secret if isinstance(secret, SecretStr) else SecretStr(secret)
        with self._lock:
            self._config = self._config.model_copy(update=changes)

    def set_switches(self, **fields: Any) -> WebhookConfig:
        """Change delivery switches (drop, duplicate, delay, reorder, retry shape) at runtime.

        Raises ValueError naming the field when a name is unknown or a value out of range.
        """
        unknown = sorted(set(fields) - SWITCHES)
        if unknown:
            raise ValueError(f"{unknown[0]}: not a webhook switch (one of {sorted(SWITCHES)})")
        with self._lock:
            merged = {**self._config.model_dump(), **fields, "secret": self._config.secret}
            try:
                updated = WebhookConfig.model_validate(merged)
            except ValidationError as err:
                first = err.errors()[0]
                name = ".".join(str(part) for part in first["loc"]) or "switches"
                raise ValueError(f"{name}: {first['msg']}") from None
            if updated.max_attempts < 1:
                raise ValueError("max_attempts: must be at least 1")
            self._config = updated
            return updated

    def stats(self) -> dict[str, int]:
        """Counts: sent, delivered, failed, given_up, dropped, duplicated, unrouted, pending."""
        with self._lock:
            return {**self._counts, "pending": self._in_flight}

    def reset(self) -> None:
        """Back to the construction-time configuration, with no history and nothing in flight."""
        with self._lock:
            self._generation += 1
            self._config = self._initial.model_copy()
            self._held.clear()
            self._flush_due = None
            self._in_flight = 0
            self._counts = dict.fromkeys(_STAT_NAMES, 0)
            self.deliveries = []
            self._ids = itertools.count(1)

    def close(self) -> None:
        """Close the private HTTP client, if one was made."""
        with self._lock:
            client, self._own_client = self._own_client, None
        if client is not None:
            client.close()

    # -- listener -------------------------------------------------------------------------

    def on_change(self, change: ItemChange) -> None:
        """Queue the reseller event for one item change; never sends from here."""
        payload = event_for(change)
        if payload is None or self._clock is None:
            return
        key = f"{self._seed}:{change.item_id}:{change.previous_status}:{change.new_status}"
        key += f":{change.at.isoformat()}"
        drop = random.Random(f"{key}:drop").random()
        duplicate = random.Random(f"{key}:duplicate").random()
        with self._lock:
            config = self._config
            event_id = f"evt-{next(self._ids):06d}"
            if config.url is None:
                self._counts["unrouted"] += 1
                return
            if drop < config.drop_rate:
                self._counts["dropped"] += 1
                self._record(event_id, payload, config.url, 0, 1, "dropped", None, None)
                return
            copies = 2 if duplicate < config.duplicate_rate else 1
            if copies == 2:
                self._counts["duplicated"] += 1
            deliveries = [
                _Delivery(event_id, payload, config.url, config.secret, copy, self._generation)
                for copy in range(1, copies + 1)
            ]
            self._in_flight += len(deliveries)
            if config.reorder:
                self._hold(deliveries, config)
                return
        for delivery in deliveries:
            self._later(delivery, config.delay_seconds)

    # -- delivery -------------------------------------------------------------------------

    def _hold(self, deliveries: list[_Delivery], config: WebhookConfig) -> None:
        """Keep events back and flush them as one batch, newest first (caller holds the lock)."""
        assert self._clock is not None
        self._held.extend(deliveries)
        if self._flush_due is None:
            hold = max(config.delay_seconds, REORDER_HOLD_SECONDS)
            self._flush_due = self._clock.now() + timedelta(seconds=hold)
            generation = self._generation
            self._clock.call_at(
                self._flush_due, lambda: self._flush(generation), label="webhook reorder flush"
            )

    def _flush(self, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return
            batch, self._held = self._held, []
            self._flush_due = None
        for delivery in reversed(batch):
            self._attempt(delivery)

    def _later(self, delivery: _Delivery, seconds: float) -> None:
        assert self._clock is not None
        self._clock.call_later(
            timedelta(seconds=seconds),
            lambda: self._attempt(delivery),
            label=f"webhook {delivery.event_id}",
        )

    def _attempt(self, delivery: _Delivery) -> None:
        """POST one attempt; on failure schedule the next one or give up."""
        with self._lock:
            if delivery.generation != self._generation or delivery.done:
                return
            config = self._config
        assert self._clock is not None
        delivery.attempt += 1
        body = encode_body(delivery.payload)
        timestamp = int(self._clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(delivery.secret.get_secret_value(), timestamp, body),
            TIMESTAMP_HEADER: str(timestamp),
        }
        status_code: int | None = None
        error: str | None = None
        try:
            client = self._client()
            # build_request + send carries the timeout on the request itself, which a real
            # client honours and a test transport (starlette's TestClient) ignores quietly.
            request = client.build_request(
                "POST", delivery.url, content=body, headers=headers, timeout=config.timeout_seconds
            )
            response = client.send(request)
            status_code = response.status_code
        except httpx.TimeoutException:
            error = "timeout"
        except httpx.TransportError as err:
            # The exception's class says what went wrong without echoing headers or secrets.
            error = f"connection error ({type(err).__name__})"
        ok = status_code is not None and 200 <= status_code < 300
        with self._lock:
            if delivery.generation != self._generation:
                return
            self._counts["sent"] += 1
            if ok:
                outcome: Outcome = "delivered"
                self._counts["delivered"] += 1
            elif delivery.attempt >= config.max_attempts:
                outcome = "given_up"
                self._counts["failed"] += 1
                self._counts["given_up"] += 1
            else:
                outcome = "failed"
                self._counts["failed"] += 1
            if outcome != "failed":
                delivery.done = True
                self._in_flight -= 1
            self._record(
                delivery.event_id,
                delivery.payload,
                delivery.url,
                delivery.attempt,
                delivery.copy,
                outcome,
                status_code,
                error,
            )
        if outcome == "failed":
            self._later(delivery, config.backoff_seconds * 2 ** (delivery.attempt - 1))

    def _client(self) -> httpx.Client:
        if self._http_client is not None:
            return self._http_client
        with self._lock:
            if self._own_client is None:
                self._own_client = httpx.Client(follow_redirects=False)
            return self._own_client

    def _record(
        self,
        event_id: str,
        payload: dict[str, Any],
        url: str | None,
        attempt: int,
        copy: int,
        outcome: Outcome,
        status_code: int | None,
        error: str | None,
    ) -> None:
        """Append one record (caller holds the lock); never the secret or the signature."""
        assert self._clock is not None
        self.deliveries.append(
            DeliveryRecord(
                eventId=event_id,
                event=str(payload["event"]),
                orderId=str(payload["orderId"]),
                itemId=str(payload["itemId"]),
                url=url,
                attempt=attempt,
                copy=copy,
                outcome=outcome,
                statusCode=status_code,
                error=error,
                at=iso_utc(self._clock.now()),
            )
        )
        if len(self.deliveries) > MAX_RECORDS:
            del self.deliveries[: len(self.deliveries) - MAX_RECORDS]


_STAT_NAMES = ("sent", "delivered", "failed", "given_up", "dropped", "duplicated", "unrouted")
