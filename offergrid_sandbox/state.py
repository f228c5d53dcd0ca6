"""The sandbox's state: offers, orders, items and idempotency records, behind one lock.

`Sandbox` is the single source of truth the routes, the simulated providers and the webhook
dispatcher share. Every change to an item goes through it and is announced as an `ItemChange` to
`listeners`, which run after the lock is released and strictly in the order the changes happened.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import random
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request

from offergrid_sandbox.auth import OPERATOR_TEAM, KeyRing
from offergrid_sandbox.catalog import CATEGORIES, Catalog, is_visible_to, seed_catalog
from offergrid_sandbox.clock import Clock, RealClock, VirtualClock
from offergrid_sandbox.config import SandboxConfig
from offergrid_sandbox.directory import Directory
from offergrid_sandbox.events import ItemChange
from offergrid_sandbox.faults import ConnectionRegistry, FaultInjector
from offergrid_sandbox.ratelimit import RateLimiter
from offergrid_sandbox.schemas import (
    CANCELLABLE_STATUSES,
    ENDED_STATUSES,
    ORDER_STATUSES,
    CatalogQuery,
    SandboxError,
    bad_input,
    iso,
    parse_datetime,
)

log = logging.getLogger(__name__)

ITEM_NOT_FOUND = "Order item not found or does not belong to your team"
OFFER_NOT_FOUND = "Offer not found or does not belong to your team"
OFFER_NOT_AVAILABLE = "Offer not found or not available to your team"
ORDER_NOT_FOUND = "Order not found or does not belong to your team"
OPERATOR_PROVIDER_NAME = "Sandbox Provider"


def derive_order_status(statuses: Iterable[str]) -> str:
    """An order's status from its items' statuses.

    While any item is still live (not rejected, cancelled or failed), the order is as far along as
    its least advanced live item, in the documented order pending → submitted_to_provider →
    accepted → scheduled → in_progress → completed → active. Once every item has ended, the order
    takes the first of its items' statuses in the documented enum order (rejected, cancelled,
    failed), so an order with one rejected and one cancelled item reads "rejected".
    """
    ranked = sorted(statuses, key=ORDER_STATUSES.index)
    if not ranked:
        return "pending"
    live = [s for s in ranked if s not in ENDED_STATUSES]
    return live[0] if live else ranked[0]


def make_clock(config: SandboxConfig) -> Clock:
    """The clock `config` asks for: virtual (starting at `start_time` or now) or real."""
    if config.clock == "virtual":
        return VirtualClock(config.start_time)
    return RealClock()


@dataclass
class _Idempotent:
    fingerprint: str
    status_code: int
    body: dict[str, Any]
    expires: datetime


def _fingerprint(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Sandbox:
    """One local Offergrid's state and rules; thread-safe (one re-entrant lock)."""

    def __init__(self, config: SandboxConfig | None = None, *, clock: Clock | None = None) -> None:
        self.config = config or SandboxConfig()
        self.clock = clock or make_clock(self.config)
        self.catalog: Catalog = seed_catalog(self.config.seed)
        self.keys = KeyRing(self.config, self.catalog.providers)
        self.rate_limiter = RateLimiter(self.config.rate_limit)
        self.faults = FaultInjector(self.config.faults, self.config.seed)
        self.connections = ConnectionRegistry()
        self.listeners: list[Callable[[ItemChange], None]] = []
        self.simulator: Any = None  # ProviderSimulator, set by create_app
        self.webhooks: Any = None  # WebhookDispatcher, set by create_app
        self._lock = threading.RLock()
        self._dispatch = threading.Lock()
        self._local = threading.local()
        self._outbox: deque[ItemChange] = deque()
        self._load()

    def __repr__(self) -> str:
        return f"Sandbox(seed={self.config.seed}, clock={type(self.clock).__name__})"

    def _load(self) -> None:
        with self._lock:
            self._offers: dict[str, dict[str, Any]] = {
                o["id"]: copy.deepcopy(o) for o in self.catalog.offers
            }
            self._team_names: dict[str, str] = {p.id: p.name for p in self.catalog.providers}
            self._team_names[OPERATOR_TEAM] = OPERATOR_PROVIDER_NAME
            self._orders: dict[str, dict[str, Any]] = {}
            self._items: dict[str, dict[str, Any]] = {}
            self._idempotency: dict[tuple[str, str], _Idempotent] = {}
            self._requests: Counter[tuple[str, str]] = Counter()
            # Virtual time means a reproducible run, so ids follow the seed; on a real clock they
            # are random, so a restarted sandbox never hands out an order id seen before.
            self._ids = random.Random(f"{self.config.seed}:ids") if self.clock.is_virtual else None
            self.directory = Directory(self._new_id, self.clock.now)
            self._outbox.clear()

    # --- time, reset and bookkeeping ------------------------------------------------------

    def now(self) -> datetime:
        """The sandbox clock's current time."""
        return self.clock.now()

    def advance(self, seconds: float) -> int:
        """Move a virtual clock forward, running due timers; returns how many ran."""
        if not isinstance(self.clock, VirtualClock):
            raise SandboxError(409, "The sandbox runs on a real clock, which cannot be advanced")
        if seconds < 0:
            raise bad_input("seconds", "seconds must not be negative")
        # Timers run outside the state lock: they call back into update_item_status.
        return self.clock.advance(timedelta(seconds=seconds))

    def reset(self) -> None:
        """A fresh sandbox again: seeded catalog, no orders or timers, initial limits and faults."""
        self.clock.clear()
        self._load()
        self.rate_limiter.configure(self.config.rate_limit)
        self.faults.reset()
        for part in (self.simulator, self.webhooks):
            reset = getattr(part, "reset", None)
            if callable(reset):
                reset()

    # --- a state file, so a restarted sandbox remembers (see offergrid_sandbox.persistence) ----

    def snapshot(self) -> dict[str, Any]:
        """Everything a restart must keep, as JSON: offers, orders, items, idempotency, links."""
        with self._lock:
            return {
                "version": 1,
                "directory": self.directory.snapshot(),
                "offers": copy.deepcopy(self._offers),
                "orders": copy.deepcopy(self._orders),
                "items": copy.deepcopy(self._items),
                "idempotency": [
                    {
                        "team": team,
                        "key": key,
                        "fingerprint": record.fingerprint,
                        "status": record.status_code,
                        "body": copy.deepcopy(record.body),
                        "expires": record.expires.isoformat(),
                    }
                    for (team, key), record in self._idempotency.items()
                ],
            }

    def restore(self, data: dict[str, Any]) -> None:
        """Take up a snapshot: the same offers, orders and items, and their providers resume."""
        with self._lock:
            self._offers = copy.deepcopy(data["offers"])
            self._orders = copy.deepcopy(data["orders"])
            self._items = copy.deepcopy(data["items"])
            self._idempotency = {
                (record["team"], record["key"]): _Idempotent(
                    record["fingerprint"],
                    int(record["status"]),
                    record["body"],
                    datetime.fromisoformat(record["expires"]),
                )
                for record in data.get("idempotency", [])
            }
            self.directory.restore(data.get("directory", {}))
            items = list(self._items.values())
        resume = getattr(self.simulator, "resume", None)
        if callable(resume):
            for item in items:
                resume(copy.deepcopy(item), item["orderId"])

    def record_request(self, endpoint: str, status: int | str) -> None:
        """Count one API request by endpoint template and answer."""
        with self._lock:
            self._requests[(endpoint, str(status))] += 1

    def request_stats(self) -> dict[str, Any]:
        """Request counts: `{total, byEndpoint: {"GET /reseller/catalog": {"200": n}}}`."""
        with self._lock:
            by_endpoint: dict[str, dict[str, int]] = {}
            for (endpoint, status), count in sorted(self._requests.items()):
                by_endpoint.setdefault(endpoint, {})[status] = count
            return {"total": sum(self._requests.values()), "byEndpoint": by_endpoint}

    def _new_id(self, prefix: str, taken: dict[str, Any]) -> str:
        while True:
            token = f"{self._ids.getrandbits(48):012x}" if self._ids else uuid.uuid4().hex[:12]
            candidate = f"{prefix}-{token}"
            if candidate not in taken:
                return candidate

    # --- change notification --------------------------------------------------------------

    def _drain(self) -> None:
        """Hand queued changes to the listeners, in order, outside the state lock."""
        if getattr(self._local, "draining", False):
            return  # a listener changed an item: the loop below picks that change up next
        with self._dispatch:
            self._local.draining = True
            try:
                while True:
                    with self._lock:
                        if not self._outbox:
                            return
                        change = self._outbox.popleft()
                    for listener in list(self.listeners):
                        try:
                            listener(change)
                        except Exception:
                            # One broken listener must not undo a committed change or starve
                            # the others.
                            log.exception("sandbox listener failed on %s", change.item_id)
            finally:
                self._local.draining = False

    def _change(self, item: dict[str, Any], previous: str | None, **extra: Any) -> None:
        order = self._orders[item["orderId"]]
        self._outbox.append(
            ItemChange(
                order_id=item["orderId"],
                item_id=item["itemId"],
                offer_id=item["offerId"],
                category=item["category"],
                previous_status=previous,
                new_status=item["status"],
                at=self.clock.now(),
                provider_notes=item.get("providerNotes"),
                scheduled_for=(
                    parse_datetime(item["scheduledFor"], "scheduledFor")
                    if item.get("scheduledFor")
                    else None
                ),
                account_number=item.get("accountNumber"),
                test=order["test"],
                **extra,
            )
        )

    # --- views ----------------------------------------------------------------------------

    def _item_view(self, item: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(
            {
                "itemId": item["itemId"],
                "offerId": item["offerId"],
                "offerName": item["offerName"],
                "category": item["category"],
                "providerId": item["providerId"],
                "providerName": item["providerName"],
                "status": item["status"],
                "scheduledFor": item["scheduledFor"],
                "providerNotes": item["providerNotes"],
                "accountNumber": item["accountNumber"],
                "history": item["history"],
                "createdAt": item["createdAt"],
                "updatedAt": item["updatedAt"],
            }
        )

    def _order_view(self, order: dict[str, Any], *, with_team: bool = False) -> dict[str, Any]:
        items = [self._items[i] for i in order["itemIds"]]
        view: dict[str, Any] = {
            "orderId": order["orderId"],
            "status": derive_order_status(i["status"] for i in items),
            "items": [self._item_view(i) for i in items],
            "customerInfo": copy.deepcopy(order["customerInfo"]),
            "serviceAddress": copy.deepcopy(order["serviceAddress"]),
            "notes": order["notes"],
            "metadata": copy.deepcopy(order["metadata"]),
            "test": order["test"],
            "createdAt": order["createdAt"],
            "updatedAt": max([order["updatedAt"], *(i["updatedAt"] for i in items)]),
        }
        if with_team:
            view["resellerTeamId"] = order["teamId"]
        return view

    def _provider_item_view(self, item: dict[str, Any]) -> dict[str, Any]:
        order = self._orders[item["orderId"]]
        view = self._item_view(item)
        view.update(
            {
                "id": item["itemId"],
                "orderId": item["orderId"],
                "offer": copy.deepcopy(item["offer"]),
                "statusMetadata": copy.deepcopy(item["metadata"]),
                "customerInfo": copy.deepcopy(order["customerInfo"]),
                "serviceAddress": copy.deepcopy(order["serviceAddress"]),
                "notes": order["notes"],
                "metadata": copy.deepcopy(order["metadata"]),
                "resellerTeamId": order["teamId"],
                "test": order["test"],
            }
        )
        return view

    # --- reseller: catalog ----------------------------------------------------------------

    def _visible(self, offer: dict[str, Any], team_id: str) -> bool:
        return is_visible_to(offer, team_id, self.catalog.provider(offer["providerId"]))

    def catalog_offers(self, team_id: str, query: CatalogQuery) -> list[dict[str, Any]]:
        """The offers `team_id` may see, filtered and sorted as `query` asks."""
        with self._lock:
            offers = [copy.deepcopy(o) for o in self._offers.values() if self._visible(o, team_id)]
        if query.category:
            offers = [o for o in offers if o["category"] == query.category]
        if query.zip_code:
            offers = [o for o in offers if query.zip_code in o["zipCodes"]]
        if query.search:
            needle = query.search.casefold()
            offers = [o for o in offers if needle in _search_text(o)]
        if query.min_price is not None or query.max_price is not None:
            low = query.min_price if query.min_price is not None else float("-inf")
            high = query.max_price if query.max_price is not None else float("inf")
            offers = [
                o
                for o in offers
                if o["monthlyPrice"] is not None and low <= o["monthlyPrice"] <= high
            ]
        return _sorted_offers(offers, query.sort_by, query.descending)

    def visible_offer(self, team_id: str, offer_id: str) -> dict[str, Any]:
        """One offer `team_id` may see, or 404."""
        with self._lock:
            offer = self._offers.get(offer_id)
            if offer is None or not self._visible(offer, team_id):
                raise SandboxError(404, OFFER_NOT_AVAILABLE)
            return copy.deepcopy(offer)

    def availability(
        self, team_id: str, address: dict[str, Any], category: str | None
    ) -> dict[str, Any]:
        """Every offer `team_id` may sell at `address`, flat and grouped by category."""
        zip5 = address["zipCode"][:5]
        with self._lock:
            offers = [
                copy.deepcopy(o)
                for o in self._offers.values()
                if self._visible(o, team_id)
                and zip5 in o["zipCodes"]
                and (category is None or o["category"] == category)
            ]
        offers.sort(key=lambda o: (CATEGORIES.index(o["category"]), o["name"].casefold()))
        groups = [category] if category else list(CATEGORIES)
        by_category = {c: [o for o in offers if o["category"] == c] for c in groups}
        return {
            "address": address,
            "offers": offers,
            "byCategory": by_category,
            "count": len(offers),
        }

    # --- reseller: orders -----------------------------------------------------------------

    def create_order(
        self, team_id: str, payload: dict[str, Any], *, idempotency_key: str | None = None
    ) -> tuple[int, dict[str, Any], bool]:
        """Place an order from a validated payload; returns (status code, body, replayed)."""
        fingerprint = _fingerprint(payload)
        with self._lock:
            now = self.clock.now()
            self._idempotency = {k: v for k, v in self._idempotency.items() if v.expires > now}
            if idempotency_key is not None:
                earlier = self._idempotency.get((team_id, idempotency_key))
                if earlier is not None:
                    if earlier.fingerprint != fingerprint:
                        raise SandboxError(
                            422,
                            "Idempotency-Key was already used with a different request body",
                            field="Idempotency-Key",
                        )
                    return earlier.status_code, copy.deepcopy(earlier.body), True
            zip5 = payload["serviceAddress"]["zipCode"][:5]
            offers = []
            for i, entry in enumerate(payload["items"]):
                offer = self._offers.get(entry["offerId"])
                if offer is None or not self._visible(offer, team_id):
                    raise bad_input(f"items[{i}].offerId", OFFER_NOT_AVAILABLE)
                if zip5 not in offer["zipCodes"]:
                    raise bad_input(
                        f"items[{i}].offerId",
                        f"Offer {offer['id']} is not available at ZIP code {zip5}",
                    )
                offers.append(offer)
            stamp = iso(now)
            order_id = self._new_id("ord", self._orders)
            test = payload["metadata"].get("test") is True
            order = {
                "orderId": order_id,
                "teamId": team_id,
                "itemIds": [],
                "customerInfo": payload["customerInfo"],
                "serviceAddress": payload["serviceAddress"],
                "notes": payload["notes"],
                "metadata": payload["metadata"],
                "test": test,
                "createdAt": stamp,
                "updatedAt": stamp,
            }
            self._orders[order_id] = order
            for offer in offers:
                item_id = self._new_id("item", self._items)
                self._items[item_id] = {
                    "itemId": item_id,
                    "orderId": order_id,
                    "offerId": offer["id"],
                    "offerName": offer["name"],
                    "category": offer["category"],
                    "providerId": offer["providerId"],
                    "providerName": offer["providerName"],
                    "status": "pending",
                    "scheduledFor": None,
                    "providerNotes": None,
                    "accountNumber": None,
                    "metadata": {},
                    # What the provider sold, as it stood when ordered (offers can change later).
                    "offer": {
                        key: copy.deepcopy(offer.get(key))
                        for key in (
                            "id",
                            "name",
                            "category",
                            "sku",
                            "serviceSpecificData",
                            "metadata",
                        )
                    },
                    "history": [
                        {
                            "status": "pending",
                            "timestamp": stamp,
                            "notes": "Order validated and created",
                        }
                    ],
                    "createdAt": stamp,
                    "updatedAt": stamp,
                }
                order["itemIds"].append(item_id)
                self._change(self._items[item_id], None)
            body: dict[str, Any] = {
                "orderId": order_id,
                "status": "pending",
                "items": [
                    {"itemId": i, "offerId": self._items[i]["offerId"], "status": "pending"}
                    for i in order["itemIds"]
                ],
                "createdAt": stamp,
            }
            if test:
                body["test"] = True
            if idempotency_key is not None:
                expires = now + timedelta(hours=self.config.idempotency_hours)
                self._idempotency[(team_id, idempotency_key)] = _Idempotent(
                    fingerprint, 201, copy.deepcopy(body), expires
                )
        self._drain()
        return 201, body, False

    def _own_order(self, team_id: str, order_id: str) -> dict[str, Any]:
        order = self._orders.get(order_id)
        if order is None or order["teamId"] != team_id:
            raise SandboxError(404, ORDER_NOT_FOUND)
        return order

    def list_orders(self, team_id: str, status: str | None = None) -> list[dict[str, Any]]:
        """The team's orders, newest first, optionally only those whose order status is `status`."""
        with self._lock:
            views = [self._order_view(o) for o in self._orders.values() if o["teamId"] == team_id]
        views.sort(key=lambda v: (v["createdAt"], v["orderId"]), reverse=True)
        return [v for v in views if status is None or v["status"] == status]

    def get_order(self, team_id: str, order_id: str) -> dict[str, Any]:
        """One of the team's orders with item history, or 404."""
        with self._lock:
            return self._order_view(self._own_order(team_id, order_id))

    def all_orders(self) -> list[dict[str, Any]]:
        """Every order of every team, newest first (sandbox operator view)."""
        with self._lock:
            views = [self._order_view(o, with_team=True) for o in self._orders.values()]
        views.sort(key=lambda v: (v["createdAt"], v["orderId"]), reverse=True)
        return views

    def cancel_order(
        self, team_id: str, order_id: str, reason: str | None = None
    ) -> dict[str, Any]:
        """Cancel every live item of an order while all of them are still cancellable.

        Items already rejected, cancelled or failed are left as they are. Cancelling an order that
        is already wholly cancelled answers it unchanged, so a retried cancel does not fail.
        """
        with self._lock:
            order = self._own_order(team_id, order_id)
            items = [self._items[i] for i in order["itemIds"]]
            live = [i for i in items if i["status"] not in ENDED_STATUSES]
            if not live:
                ended = next((i for i in items if i["status"] != "cancelled"), None)
                if ended is None:
                    return self._order_view(order)
                raise SandboxError(
                    409, f"Order cannot be cancelled: item {ended['itemId']} is {ended['status']}"
                )
            blocking = next((i for i in live if i["status"] not in CANCELLABLE_STATUSES), None)
            if blocking is not None:
                raise SandboxError(
                    409,
                    f"Order cannot be cancelled: item {blocking['itemId']} is {blocking['status']}",
                )
            stamp = iso(self.clock.now())
            for item in live:
                previous = item["status"]
                item["status"] = "cancelled"
                item["updatedAt"] = stamp
                item["history"].append(
                    {
                        "status": "cancelled",
                        "timestamp": stamp,
                        "notes": reason or "Cancelled by reseller",
                    }
                )
                self._change(item, previous, reason=reason, cancelled_by="reseller")
            order["updatedAt"] = stamp
            view = self._order_view(order)
        self._drain()
        return view

    # --- provider: order items ------------------------------------------------------------

    def _scoped_item(self, item_id: str, team_id: str | None) -> dict[str, Any]:
        item = self._items.get(item_id)
        if item is None:
            raise SandboxError(404, ITEM_NOT_FOUND)
        # A provider team's own key never sees test-mode orders: only simulated providers
        # (the operator) fulfil those.
        if team_id is not None and (
            item["providerId"] != team_id or self._orders[item["orderId"]]["test"]
        ):
            raise SandboxError(404, ITEM_NOT_FOUND)
        return item

    def get_item(self, item_id: str, *, team_id: str | None = None) -> dict[str, Any]:
        """One order item in the provider view (status, offerId, category, orderId...), or 404."""
        with self._lock:
            return self._provider_item_view(self._scoped_item(item_id, team_id))

    def provider_items(
        self, team_id: str | None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """Order items for the team's offers (every item for the operator), newest first."""
        with self._lock:
            views = [
                self._provider_item_view(item)
                for item in self._items.values()
                if (status is None or item["status"] == status)
                and (
                    team_id is None
                    or (item["providerId"] == team_id and not self._orders[item["orderId"]]["test"])
                )
            ]
        views.sort(key=lambda v: (v["createdAt"], v["itemId"]), reverse=True)
        return views

    def update_item_status(
        self,
        item_id: str,
        *,
        status: str,
        provider_notes: str | None = None,
        scheduled_for: datetime | str | None = None,
        metadata: dict[str, Any] | None = None,
        team_id: str | None = None,
    ) -> dict[str, Any]:
        """THE path for provider updates (API and simulated providers); returns the item.

        `team_id` None is the sandbox operator, who may act for any provider. Any documented status
        may be set (the docs publish no transition rules) except leaving `cancelled`, which is
        terminal (409). Setting the current status again records the update (a reschedule, a new
        note) and announces it like any other change.
        """
        if status not in ORDER_STATUSES:
            raise bad_input("status", f"status must be one of: {', '.join(ORDER_STATUSES)}")
        when = (
            parse_datetime(scheduled_for, "scheduledFor")
            if isinstance(scheduled_for, str)
            else scheduled_for
        )
        if metadata is not None and not isinstance(metadata, dict):
            raise bad_input("metadata", "metadata must be an object")
        with self._lock:
            item = self._scoped_item(item_id, team_id)
            previous = item["status"]
            if previous == "cancelled":
                if status == "cancelled":
                    return self._provider_item_view(item)
                raise SandboxError(
                    409, f"Order item {item_id} is cancelled and cannot move to {status}"
                )
            stamp = iso(self.clock.now())
            item["status"] = status
            item["updatedAt"] = stamp
            entry: dict[str, Any] = {"status": status, "timestamp": stamp}
            if provider_notes is not None:
                item["providerNotes"] = provider_notes
                entry["providerNotes"] = provider_notes
            if when is not None:
                item["scheduledFor"] = iso(when)
                entry["scheduledFor"] = item["scheduledFor"]
            if metadata:
                item["metadata"].update(copy.deepcopy(metadata))
                entry["metadata"] = copy.deepcopy(metadata)
            supplied = (metadata or {}).get("accountNumber")
            if isinstance(supplied, str) and supplied.strip():
                item["accountNumber"] = supplied.strip()  # the provider's own number wins
            elif status in ("completed", "active") and not item["accountNumber"]:
                item["accountNumber"] = self._account_number(item)
            item["history"].append(entry)
            reason = None
            if status in ENDED_STATUSES:
                meta_reason = (metadata or {}).get("reason")
                reason = meta_reason if isinstance(meta_reason, str) else provider_notes
            self._change(
                item,
                previous,
                reason=reason,
                cancelled_by="provider" if status == "cancelled" else None,
            )
            view = self._provider_item_view(item)
        self._drain()
        return view

    def _account_number(self, item: dict[str, Any]) -> str:
        provider = self.catalog.provider(item["providerId"])
        prefix = provider.code if provider else "ACCT"
        number = random.Random(f"{self.config.seed}:account:{item['itemId']}").randint(
            10_000_000, 99_999_999
        )
        return f"{prefix}-{number}"

    # --- provider: offers -----------------------------------------------------------------

    def _scoped_offer(self, offer_id: str, team_id: str | None) -> dict[str, Any]:
        offer = self._offers.get(offer_id)
        if offer is None or (team_id is not None and offer["providerId"] != team_id):
            raise SandboxError(404, OFFER_NOT_FOUND)
        return offer

    def provider_offers(self, team_id: str | None) -> list[dict[str, Any]]:
        """The team's offers in every status (all offers for the operator), by name."""
        with self._lock:
            offers = [
                copy.deepcopy(o)
                for o in self._offers.values()
                if team_id is None or o["providerId"] == team_id
            ]
        return sorted(offers, key=lambda o: (o["name"].casefold(), o["id"]))

    def get_offer(self, offer_id: str) -> dict[str, Any]:
        """Any offer by id, whatever its status or owner (operator view), or 404."""
        return self.provider_offer(None, offer_id)

    def provider_offer(self, team_id: str | None, offer_id: str) -> dict[str, Any]:
        """One of the team's offers, or 404."""
        with self._lock:
            return copy.deepcopy(self._scoped_offer(offer_id, team_id))

    def _check_sku(self, sku: str | None, offer_id: str | None) -> None:
        if sku and any(o["sku"] == sku and o["id"] != offer_id for o in self._offers.values()):
            raise SandboxError(409, f"An offer with sku {sku} already exists", field="sku")

    def create_offer(self, team_id: str | None, data: dict[str, Any]) -> dict[str, Any]:
        """Create an offer owned by the team (the operator may name a `providerId`)."""
        data = dict(data)
        owner = data.pop("providerId", None)
        if team_id is not None and owner not in (None, team_id):
            raise bad_input("providerId", "providerId must be your own team")
        owner = owner or team_id or OPERATOR_TEAM
        with self._lock:
            self._check_sku(data.get("sku"), None)
            provider = self.catalog.provider(owner)
            stamp = iso(self.clock.now())
            offer: dict[str, Any] = {
                "id": self._new_id("off", self._offers),
                "name": data["name"],
                "category": "other",
                "status": "draft",
                "sku": None,
                "metadata": {},
                "keyFeatures": [],
                "serviceSpecificData": {},
                "pricingType": "fixed",
                "monthlyPrice": None,
                "visibility": "public",
                "allowedResellers": [],
                "zipCodes": list(provider.zip_codes if provider else self.catalog.zip_codes),
            }
            offer.update({k: v for k, v in data.items() if v is not None or k == "monthlyPrice"})
            offer.update(
                {
                    "providerId": owner,
                    "providerName": self._team_names.get(owner, owner),
                    "createdAt": stamp,
                    "updatedAt": stamp,
                }
            )
            self._offers[offer["id"]] = offer
            return copy.deepcopy(offer)

    def update_offer(
        self, team_id: str | None, offer_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        """Change only the fields sent; the owner cannot change."""
        if "providerId" in data:
            raise bad_input("providerId", "providerId cannot be changed")
        with self._lock:
            offer = self._scoped_offer(offer_id, team_id)
            if "sku" in data:
                self._check_sku(data["sku"], offer_id)
            offer.update(copy.deepcopy(data))
            offer["updatedAt"] = iso(self.clock.now())
            return copy.deepcopy(offer)

    def delete_offer(self, team_id: str | None, offer_id: str) -> dict[str, Any]:
        """Delete one of the team's offers for good; existing order items keep their copies."""
        with self._lock:
            offer = self._scoped_offer(offer_id, team_id)
            del self._offers[offer_id]
            return copy.deepcopy(offer)


def _search_text(offer: dict[str, Any]) -> str:
    parts = [
        offer.get("name") or "",
        offer.get("description") or "",
        offer.get("providerName") or "",
        *(offer.get("keyFeatures") or []),
    ]
    return " ".join(str(p) for p in parts).casefold()


def _sorted_offers(
    offers: list[dict[str, Any]], sort_by: str, descending: bool
) -> list[dict[str, Any]]:
    """Sort offers; offers without a monthly price come last in either direction."""

    def name_key(o: dict[str, Any]) -> tuple[str, str]:
        return (o["name"].casefold(), o["id"])

    if sort_by == "price":
        priced = [o for o in offers if o["monthlyPrice"] is not None]
        unpriced = [o for o in offers if o["monthlyPrice"] is None]
        priced.sort(key=name_key)
        priced.sort(key=lambda o: o["monthlyPrice"], reverse=descending)
        return priced + sorted(unpriced, key=name_key)
    keys: dict[str, Callable[[dict[str, Any]], Any]] = {
        "name": name_key,
        "provider": lambda o: (o["providerName"].casefold(), *name_key(o)),
        "createdAt": lambda o: (o["createdAt"], o["id"]),
    }
    return sorted(offers, key=keys[sort_by], reverse=descending)


def current_sandbox(request: Request) -> Sandbox:
    """The sandbox behind the app serving `request`."""
    sandbox = request.app.state.sandbox
    assert isinstance(sandbox, Sandbox)
    return sandbox
