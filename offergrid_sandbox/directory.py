"""Reseller links and customers: the shareable order links and the reseller's own customer records.

The reference documents create and update for both (`POST`/`PATCH /reseller/links`,
`/reseller/customers`); list and get are settled here (contract.md leaves the answers open). A link
answers `{id, token, url, address, propertyName, moveInDate, status, createdAt, updatedAt}`, its
`url` being the page where a person orders without an account; a customer answers its fields with
`id`, `status`, `createdAt` and `updatedAt`. Both belong to the team that made them.
"""

from __future__ import annotations

import copy
import secrets
import threading
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from offergrid_sandbox.schemas import (
    SandboxError,
    bad_input,
    iso,
    opt_enum,
    opt_object,
    opt_str,
    opt_str_list,
    parse_address,
    reject_unknown,
    req_str,
    require_object,
)

LINK_STATUSES = ("active", "inactive")
CUSTOMER_KINDS = ("lead", "customer")
CUSTOMER_SOURCES = ("order", "link", "api_import", "manual", "event")
CUSTOMER_STATUSES = ("active", "churned", "unsubscribed")
LINK_NOT_FOUND = "Link not found or does not belong to your team"
CUSTOMER_NOT_FOUND = "Customer not found or does not belong to your team"
_CONTACT = ("fullName", "email", "phone")
_CUSTOMER_ADDRESS = ("addressLine1", "addressLine2", "city", "state", "postalCode", "country")


def parse_move_in(obj: dict[str, Any]) -> str | None:
    """An optional ISO 8601 `moveInDate` (a date or a date-time), kept as sent."""
    value = opt_str(obj, "moveInDate", max_len=40)
    if value is None:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            date.fromisoformat(text)
        else:
            datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise bad_input("moveInDate", "moveInDate must be an ISO 8601 date") from None
    return text


def parse_create_link(body: Any) -> dict[str, Any]:
    """A link to create: `address` (required), `propertyName`, `moveInDate`."""
    obj = require_object(body, "body", what="request body")
    reject_unknown(obj, frozenset({"address", "propertyName", "moveInDate"}), "")
    if obj.get("address") is None:
        raise bad_input("address", "address is required")
    return {
        "address": parse_address(obj["address"], "address", extra=frozenset({"unit"})),
        "propertyName": opt_str(obj, "propertyName", max_len=200),
        "moveInDate": parse_move_in(obj),
    }


def parse_update_link(body: Any) -> dict[str, Any]:
    """A link update: any of `propertyName`, `moveInDate`, `status`; only those sent change."""
    obj = require_object(body, "body", what="request body")
    reject_unknown(obj, frozenset({"propertyName", "moveInDate", "status"}), "")
    changes: dict[str, Any] = {}
    if "propertyName" in obj:
        changes["propertyName"] = opt_str(obj, "propertyName", max_len=200)
    if "moveInDate" in obj:
        changes["moveInDate"] = parse_move_in(obj)
    if "status" in obj:
        changes["status"] = opt_enum(obj, "status", LINK_STATUSES)
    return changes


def _contact(obj: dict[str, Any], *, required: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if required or "fullName" in obj:
        out["fullName"] = req_str(obj, "fullName", max_len=200)
    for key in ("email", "phone", *_CUSTOMER_ADDRESS):
        if key in obj:
            out[key] = opt_str(obj, key, max_len=254)
    if out.get("email") and "@" not in out["email"]:
        raise bad_input("email", "email must be a valid email address")
    return out


def parse_create_customer(body: Any) -> dict[str, Any]:
    """A customer or lead to add: `fullName` required, contact, address, kind, source, notes."""
    obj = require_object(body, "body", what="request body")
    allowed = {*_CONTACT, *_CUSTOMER_ADDRESS, "kind", "source", "notes", "tags", "customFields"}
    reject_unknown(obj, frozenset(allowed), "")
    out = _contact(obj, required=True)
    out["kind"] = opt_enum(obj, "kind", CUSTOMER_KINDS) or "lead"
    out["source"] = opt_enum(obj, "source", CUSTOMER_SOURCES) or "manual"
    out["notes"] = opt_str(obj, "notes", max_len=5_000)
    out["tags"] = opt_str_list(obj, "tags") or []
    out["customFields"] = opt_object(obj, "customFields") or {}
    return out


def parse_update_customer(body: Any) -> dict[str, Any]:
    """A customer update: kind, status, notes, tags as documented, and corrected contact fields."""
    obj = require_object(body, "body", what="request body")
    reject_unknown(obj, frozenset({"kind", "status", "notes", "tags", *_CONTACT}), "")
    changes = _contact(obj, required=False)
    if "kind" in obj:
        changes["kind"] = opt_enum(obj, "kind", CUSTOMER_KINDS)
    if "status" in obj:
        changes["status"] = opt_enum(obj, "status", CUSTOMER_STATUSES)
    if "notes" in obj:
        changes["notes"] = opt_str(obj, "notes", max_len=5_000)
    if "tags" in obj:
        changes["tags"] = opt_str_list(obj, "tags") or []
    return {k: v for k, v in changes.items() if v is not None or k == "notes"}


class Directory:
    """Every team's links and customers, behind one lock; ids from the sandbox's id maker."""

    def __init__(self, new_id: Callable[[str, dict[str, Any]], str], now: Callable[[], datetime]):
        self._new_id = new_id
        self._now = now
        self._lock = threading.RLock()
        self._links: dict[str, dict[str, Any]] = {}
        self._by_token: dict[str, str] = {}
        self._customers: dict[str, dict[str, Any]] = {}

    def snapshot(self) -> dict[str, Any]:
        """Every link and customer as JSON data, for the sandbox's state file."""
        with self._lock:
            return {
                "links": copy.deepcopy(self._links),
                "customers": copy.deepcopy(self._customers),
            }

    def restore(self, data: dict[str, Any]) -> None:
        """Take up a snapshot's links and customers (a file without them leaves none)."""
        with self._lock:
            self._links = copy.deepcopy(data.get("links", {}))
            self._by_token = {link["token"]: link_id for link_id, link in self._links.items()}
            self._customers = copy.deepcopy(data.get("customers", {}))

    @staticmethod
    def _view(record: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy({k: v for k, v in record.items() if k != "teamId"})

    # --- links ------------------------------------------------------------------------------

    def create_link(self, team_id: str, data: dict[str, Any], base_url: str) -> dict[str, Any]:
        """A new active link for an address and move-in date."""
        with self._lock:
            link_id = self._new_id("lnk", self._links)
            token = secrets.token_urlsafe(12)
            stamp = iso(self._now())
            link = {
                "id": link_id,
                "teamId": team_id,
                "token": token,
                "url": f"{base_url.rstrip('/')}/links/{token}",
                **data,
                "status": "active",
                "createdAt": stamp,
                "updatedAt": stamp,
            }
            self._links[link_id] = link
            self._by_token[token] = link_id
            return self._view(link)

    def _own_link(self, team_id: str, link_id: str) -> dict[str, Any]:
        link = self._links.get(link_id)
        if link is None or link["teamId"] != team_id:
            raise SandboxError(404, LINK_NOT_FOUND)
        return link

    def update_link(self, team_id: str, link_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change the fields sent; status `inactive` disables the link without deleting it."""
        with self._lock:
            link = self._own_link(team_id, link_id)
            link.update(changes)
            link["updatedAt"] = iso(self._now())
            return self._view(link)

    def get_link(self, team_id: str, link_id: str) -> dict[str, Any]:
        """One of the team's links, or 404."""
        with self._lock:
            return self._view(self._own_link(team_id, link_id))

    def list_links(self, team_id: str, status: str | None = None) -> list[dict[str, Any]]:
        """The team's links, newest first, optionally only `active` or `inactive` ones."""
        with self._lock:
            views = [self._view(v) for v in self._links.values() if v["teamId"] == team_id]
        views.sort(key=lambda v: (v["createdAt"], v["id"]), reverse=True)
        return [v for v in views if status is None or v["status"] == status]

    def link_by_token(self, token: str) -> dict[str, Any] | None:
        """The link a page token opens, with its team (for the public link page)."""
        with self._lock:
            link_id = self._by_token.get(token)
            return copy.deepcopy(self._links[link_id]) if link_id else None

    # --- customers --------------------------------------------------------------------------

    def create_customer(self, team_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """A new customer or lead record."""
        with self._lock:
            customer_id = self._new_id("cus", self._customers)
            stamp = iso(self._now())
            record = {
                "id": customer_id,
                "teamId": team_id,
                **data,
                "status": "active",
                "createdAt": stamp,
                "updatedAt": stamp,
            }
            self._customers[customer_id] = record
            return self._view(record)

    def _own_customer(self, team_id: str, customer_id: str) -> dict[str, Any]:
        record = self._customers.get(customer_id)
        if record is None or record["teamId"] != team_id:
            raise SandboxError(404, CUSTOMER_NOT_FOUND)
        return record

    def update_customer(
        self, team_id: str, customer_id: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        """Change the fields sent."""
        with self._lock:
            record = self._own_customer(team_id, customer_id)
            record.update(changes)
            record["updatedAt"] = iso(self._now())
            return self._view(record)

    def get_customer(self, team_id: str, customer_id: str) -> dict[str, Any]:
        """One of the team's customers, or 404."""
        with self._lock:
            return self._view(self._own_customer(team_id, customer_id))

    def list_customers(
        self, team_id: str, *, email: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """The team's customers, newest first, filtered by email (any case) and kind."""
        with self._lock:
            views = [self._view(v) for v in self._customers.values() if v["teamId"] == team_id]
        views.sort(key=lambda v: (v["createdAt"], v["id"]), reverse=True)
        if email is not None:
            wanted = email.strip().casefold()
            views = [v for v in views if (v.get("email") or "").casefold() == wanted]
        return [v for v in views if kind is None or v["kind"] == kind]
