"""The Offergrid reseller client: one class, transport injected, typed errors, no retries."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from offergrid.errors import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    ConfigurationError,
    OffergridError,
    RequestValidationError,
    make_status_error,
)
from offergrid.models.availability import Availability
from offergrid.models.directory import (
    CreateCustomerRequest,
    CreateLinkRequest,
    Customer,
    Link,
    UpdateCustomerRequest,
    UpdateLinkRequest,
)
from offergrid.models.enums import Category, OrderStatus
from offergrid.models.lists import parse_list_page
from offergrid.models.offers import Offer
from offergrid.models.orders import (
    AvailabilityRequest,
    CancelOrderRequest,
    CreatedOrder,
    CreateOrderRequest,
    Order,
    ServiceAddress,
    validate_order,
)

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "CallRecord",
    "OffergridClient",
    "RateLimitInfo",
]

log = logging.getLogger("offergrid")

API_KEY_ENV = "OFFERGRID_API_KEY"
BASE_URL_ENV = "OFFERGRID_BASE_URL"
DEFAULT_BASE_URL = "https://api.offergrid.io"
# Connect fails fast; a read may take a while on a busy catalog (the docs' own example uses 10 s).
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
USER_AGENT = "offergrid-python/0.1 (preclose)"
# A safety stop for following next-page pointers, should a server ever loop.
MAX_PAGES = 100

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class RateLimitInfo:
    """The rate-limit state Offergrid reported on its latest answer."""

    limit: int | None
    remaining: int | None
    reset_at: datetime | None

    @classmethod
    def from_headers(
        cls, headers: Mapping[str, str], *, now: datetime | None = None
    ) -> RateLimitInfo | None:
        """Read the X-RateLimit-* headers; None when the answer carried none of them."""
        limit = _int_header(headers, "x-ratelimit-limit")
        remaining = _int_header(headers, "x-ratelimit-remaining")
        reset = _int_header(headers, "x-ratelimit-reset")
        if limit is None and remaining is None and reset is None:
            return None
        reset_at: datetime | None = None
        if reset is not None:
            # The documented form is epoch seconds; a small number can only be "seconds from now".
            if reset >= 1_000_000_000:
                reset_at = datetime.fromtimestamp(reset, UTC)
            else:
                reset_at = (now or datetime.now(UTC)) + timedelta(seconds=reset)
        return cls(limit=limit, remaining=remaining, reset_at=reset_at)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(float(value.strip()))
    except ValueError:
        return None


@dataclass(frozen=True)
class CallRecord:
    """What one API call did, for metrics and logs; never holds keys, bodies or personal data."""

    method: str
    endpoint: str
    status_code: int | None
    latency_s: float
    error_type: str | None
    rate_limit: RateLimitInfo | None


class OffergridClient:
    """A reseller's connection to Offergrid: catalog, availability, orders, links and customers.

    The client raises typed errors (offergrid.errors) and never retries: retrying is the
    caller's task policy's job, so each failure has exactly one retry owner.
    """

    def __init__(
        self,
        api_key: str | SecretStr | None = None,
        *,
        base_url: str | None = None,
        timeout: httpx.Timeout | None = None,
        http_client: httpx.Client | None = None,
        on_call: Callable[[CallRecord], None] | None = None,
    ) -> None:
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        if key is None:
            key = os.environ.get(API_KEY_ENV)
        if not key or not key.strip():
            raise ConfigurationError(
                f"No Offergrid API key: pass api_key= to OffergridClient or set {API_KEY_ENV}"
            )
        self._api_key = SecretStr(key.strip())
        self._timeout = timeout or DEFAULT_TIMEOUT
        self._explicit_timeout = timeout is not None
        self._on_call = on_call
        self.rate_limit: RateLimitInfo | None = None

        if base_url is None and http_client is not None and str(http_client.base_url):
            # An injected client that knows its server (e.g. a TestClient) decides where calls go.
            self._base_url = str(http_client.base_url).rstrip("/")
        else:
            self._base_url = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip(
                "/"
            )
        if not self._base_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"Offergrid base_url must start with http:// or https:// (check {BASE_URL_ENV})"
            )
        self._owns_client = http_client is None
        self._http = http_client or httpx.Client(timeout=self._timeout)

    @property
    def base_url(self) -> str:
        """The Offergrid server this client talks to."""
        return self._base_url

    def __repr__(self) -> str:
        return f"OffergridClient(base_url={self._base_url!r}, api_key=SecretStr('**********'))"

    def close(self) -> None:
        """Close the HTTP connection pool, unless it was passed in by the caller."""
        if self._owns_client:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Catalog ---------------------------------------------------------------------------------

    def list_offers(
        self,
        *,
        category: Category | str | None = None,
        zip_code: str | None = None,
        search: str | None = None,
        min_price: float | None = None,
        max_price: float | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
    ) -> list[Offer]:
        """Offers visible to your team, filtered and sorted by Offergrid."""
        params: dict[str, str] = {}
        if category is not None:
            params["category"] = _category(category, "category")
        if zip_code is not None:
            params["zipCode"] = _zip(zip_code, "zipCode")
        if search is not None:
            if not search.strip():
                raise RequestValidationError("search", "must not be blank")
            params["search"] = search.strip()
        for name, price in (("minPrice", min_price), ("maxPrice", max_price)):
            if price is not None:
                if price < 0:
                    raise RequestValidationError(name, "must be zero or more")
                params[name] = f"{price:g}"
        if min_price is not None and max_price is not None and min_price > max_price:
            raise RequestValidationError("minPrice", "must not be above maxPrice")
        if sort_by is not None:
            if not sort_by.strip():
                raise RequestValidationError("sortBy", "must not be blank")
            params["sortBy"] = sort_by.strip()
        if sort_order is not None:
            order = sort_order.strip().lower()
            if order not in ("asc", "desc"):
                raise RequestValidationError("sortOrder", "must be asc or desc")
            params["sortOrder"] = order
        return self._list("GET", "/reseller/catalog", "/reseller/catalog", Offer, params=params)

    def get_offer(self, offer_id: str) -> Offer:
        """One offer with all its fields."""
        path = f"/reseller/catalog/{_segment(offer_id, 'offerId')}"
        return self._one("GET", path, "/reseller/catalog/{id}", Offer)

    def check_availability(
        self,
        address: ServiceAddress,
        *,
        unit: str | None = None,
        category: Category | str | None = None,
    ) -> Availability:
        """Every offer your team can sell at a service address, flat and by category."""
        fields = address.model_dump(by_alias=False)
        body = AvailabilityRequest(
            **fields,
            unit=unit,
            category=_category(category, "category") if category is not None else None,
        )
        return self._one(
            "POST", "/reseller/availability", "/reseller/availability", Availability, json=body
        )

    # Orders ----------------------------------------------------------------------------------

    def place_order(self, order: CreateOrderRequest, *, idempotency_key: str) -> CreatedOrder:
        """Place an order; make `idempotency_key` once per logical order and reuse it on retries."""
        validate_order(order)
        key = idempotency_key.strip() if isinstance(idempotency_key, str) else ""
        if not key or len(key) > 255 or not key.isprintable() or not key.isascii():
            raise RequestValidationError(
                "Idempotency-Key", "must be 1-255 printable ASCII characters"
            )
        return self._one(
            "POST",
            "/reseller/orders",
            "/reseller/orders",
            CreatedOrder,
            json=order,
            headers={"Idempotency-Key": key},
        )

    def list_orders(self, *, status: OrderStatus | str | None = None) -> list[Order]:
        """Your team's orders, optionally only those whose status matches."""
        params: dict[str, str] = {}
        if status is not None:
            text = str(status).strip()
            if not text:
                raise RequestValidationError("status", "must not be blank")
            params["status"] = text
        return self._list("GET", "/reseller/orders", "/reseller/orders", Order, params=params)

    def get_order(self, order_id: str) -> Order:
        """One order with its items, statuses and history."""
        path = f"/reseller/orders/{_segment(order_id, 'orderId')}"
        return self._one("GET", path, "/reseller/orders/{id}", Order)

    def cancel_order(self, order_id: str, *, reason: str | None = None) -> Order:
        """Cancel an order while every item is cancellable; raises NotCancellableError if not."""
        segment = _segment(order_id, "orderId")
        body = CancelOrderRequest(reason=reason) if reason is not None else None
        path = f"/reseller/orders/{segment}/cancel"
        response = self._send("PATCH", path, "/reseller/orders/{id}/cancel", json=body)
        if not response.content.strip():
            # The reference documents no answer body; read the cancelled order back.
            return self.get_order(order_id)
        return self._parse(response, "/reseller/orders/{id}/cancel", Order)

    # Links and customers ---------------------------------------------------------------------

    def create_link(self, link: CreateLinkRequest) -> Link:
        """A shareable link where a person orders services at one address, no account needed."""
        return self._one("POST", "/reseller/links", "/reseller/links", Link, json=link)

    def update_link(self, link_id: str, changes: UpdateLinkRequest) -> Link:
        """Change a link's property name, move-in date or status (`inactive` disables it)."""
        path = f"/reseller/links/{_segment(link_id, 'linkId')}"
        return self._one("PATCH", path, "/reseller/links/{id}", Link, json=changes)

    def get_link(self, link_id: str) -> Link:
        """One of your links."""
        path = f"/reseller/links/{_segment(link_id, 'linkId')}"
        return self._one("GET", path, "/reseller/links/{id}", Link)

    def list_links(self, *, status: str | None = None) -> list[Link]:
        """Your links, optionally only `active` or `inactive` ones."""
        params = {"status": status} if status else {}
        return self._list("GET", "/reseller/links", "/reseller/links", Link, params=params)

    def create_customer(self, customer: CreateCustomerRequest) -> Customer:
        """Add a customer or lead record of your own."""
        return self._one(
            "POST", "/reseller/customers", "/reseller/customers", Customer, json=customer
        )

    def update_customer(self, customer_id: str, changes: UpdateCustomerRequest) -> Customer:
        """Change a customer's kind, status, notes, tags or contact details."""
        path = f"/reseller/customers/{_segment(customer_id, 'customerId')}"
        return self._one("PATCH", path, "/reseller/customers/{id}", Customer, json=changes)

    def get_customer(self, customer_id: str) -> Customer:
        """One of your customers."""
        path = f"/reseller/customers/{_segment(customer_id, 'customerId')}"
        return self._one("GET", path, "/reseller/customers/{id}", Customer)

    def list_customers(
        self, *, email: str | None = None, kind: str | None = None
    ) -> list[Customer]:
        """Your customers, optionally those with this email or of this kind."""
        params = {k: v for k, v in (("email", email), ("kind", kind)) if v}
        return self._list(
            "GET", "/reseller/customers", "/reseller/customers", Customer, params=params
        )

    # Plumbing --------------------------------------------------------------------------------

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {
            "x-api-key": self._api_key.get_secret_value(),
            "accept": "application/json",
            "user-agent": USER_AGENT,
        }
        headers.update(extra or {})
        return headers

    def _send(
        self,
        method: str,
        path_or_url: str,
        endpoint: str,
        *,
        params: Mapping[str, str] | None = None,
        json: BaseModel | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Make one HTTP call, report it to `on_call`, and raise the typed error for a failure."""
        url = path_or_url if "://" in path_or_url else self._base_url + path_or_url
        body = json.model_dump(mode="json", by_alias=True, exclude_none=True) if json else None
        extra: dict[str, Any] = {}
        if self._owns_client or self._explicit_timeout:
            extra["timeout"] = self._timeout
        started = time.perf_counter()
        status: int | None = None
        error: OffergridError | None = None
        limits: RateLimitInfo | None = None
        try:
            try:
                response = self._http.request(
                    method,
                    url,
                    params=params or None,
                    json=body,
                    headers=self._headers(headers),
                    **extra,
                )
            except httpx.TimeoutException as err:
                error = APITimeoutError(
                    f"Offergrid did not answer {method} {endpoint} in time ({type(err).__name__})",
                    endpoint=endpoint,
                )
                raise error from err
            except httpx.TransportError as err:
                error = APIConnectionError(
                    f"Could not reach Offergrid at {self._base_url} for {method} {endpoint}: "
                    f"{type(err).__name__}: {err}",
                    endpoint=endpoint,
                )
                raise error from err
            status = response.status_code
            limits = RateLimitInfo.from_headers(response.headers)
            if limits is not None:
                self.rate_limit = limits
            if not response.is_success:
                response.read()
                error = make_status_error(
                    response, endpoint, redact=[self._api_key.get_secret_value()]
                )
                raise error
            return response
        finally:
            latency = time.perf_counter() - started
            record = CallRecord(
                method=method,
                endpoint=endpoint,
                status_code=status,
                latency_s=latency,
                error_type=type(error).__name__ if error is not None else None,
                rate_limit=limits,
            )
            log.debug(
                "offergrid %s %s -> %s in %.3fs%s",
                method,
                endpoint,
                status if status is not None else "no answer",
                latency,
                f" ({record.error_type})" if record.error_type else "",
            )
            self._report(record)

    def _report(self, record: CallRecord) -> None:
        if self._on_call is None:
            return
        try:
            self._on_call(record)
        except Exception:
            # A broken metrics hook must not turn a successful order into a failed one.
            log.exception("offergrid on_call hook failed for %s %s", record.method, record.endpoint)

    def _payload(self, response: httpx.Response, endpoint: str) -> Any:
        try:
            return response.json()
        except ValueError as err:
            raise APIResponseValidationError(
                f"Offergrid answered {response.status_code} on {endpoint} with a body that is "
                "not JSON",
                status_code=response.status_code,
                endpoint=endpoint,
            ) from err

    def _parse(self, response: httpx.Response, endpoint: str, model: type[M]) -> M:
        payload = self._payload(response, endpoint)
        try:
            return model.model_validate(payload)
        except ValidationError as err:
            problem = err.errors(include_input=False, include_url=False)[0]
            where = ".".join(str(part) for part in problem["loc"]) or "body"
            raise APIResponseValidationError(
                f"Offergrid's answer on {endpoint} does not read as {model.__name__}: "
                f"{where}: {problem['msg']}",
                status_code=response.status_code,
                endpoint=endpoint,
            ) from err

    def _one(
        self,
        method: str,
        path: str,
        endpoint: str,
        model: type[M],
        *,
        json: BaseModel | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> M:
        response = self._send(method, path, endpoint, json=json, headers=headers)
        return self._parse(response, endpoint, model)

    def _list(
        self,
        method: str,
        path: str,
        endpoint: str,
        model: type[M],
        *,
        params: Mapping[str, str] | None = None,
    ) -> list[M]:
        """Fetch a list, following next-page pointers should Offergrid ever send them."""
        results: list[M] = []
        target, query = path, dict(params or {})
        for _ in range(MAX_PAGES):
            response = self._send(method, target, endpoint, params=query)
            payload = self._payload(response, endpoint)
            try:
                page = parse_list_page(payload)
            except ValueError as err:
                raise APIResponseValidationError(
                    f"Offergrid's answer on {endpoint} is not a list: {err}",
                    status_code=response.status_code,
                    endpoint=endpoint,
                ) from err
            for index, item in enumerate(page.items):
                try:
                    results.append(model.model_validate(item))
                except ValidationError as err:
                    problem = err.errors(include_input=False, include_url=False)[0]
                    where = ".".join(str(part) for part in problem["loc"]) or "item"
                    raise APIResponseValidationError(
                        f"Offergrid's answer on {endpoint}: item [{index}] does not read as "
                        f"{model.__name__}: {where}: {problem['msg']}",
                        status_code=response.status_code,
                        endpoint=endpoint,
                    ) from err
            if page.next is None or not page.items:
                return results
            target, query = self._next_request(page.next, path, params, endpoint)
        raise APIResponseValidationError(
            f"Offergrid's answer on {endpoint} kept pointing to more pages after {MAX_PAGES}",
            status_code=200,
            endpoint=endpoint,
        )

    def _next_request(
        self, pointer: str, path: str, params: Mapping[str, str] | None, endpoint: str
    ) -> tuple[str, dict[str, str]]:
        """Where the next page is: a URL on the same server, a path, or a cursor for `path`."""
        if pointer.startswith(("http://", "https://")):
            ours, theirs = urlsplit(self._base_url), urlsplit(pointer)
            if (ours.scheme, ours.netloc) != (theirs.scheme, theirs.netloc):
                # Following it would send our API key to another host.
                raise APIResponseValidationError(
                    f"Offergrid's next-page link on {endpoint} points to another host",
                    status_code=200,
                    endpoint=endpoint,
                )
            return pointer, {}
        if pointer.startswith("/"):
            return self._base_url + pointer, {}
        return path, {**(params or {}), "cursor": pointer}


def _category(value: Category | str, field: str) -> str:
    try:
        return Category(str(value).strip().lower()).value
    except ValueError:
        known = ", ".join(member.value for member in Category)
        raise RequestValidationError(field, f"must be one of {known}") from None


def _zip(value: str, field: str) -> str:
    text = value.strip()
    if not (len(text) == 5 and text.isdigit()) and not (
        len(text) == 10 and text[5] == "-" and (text[:5] + text[6:]).isdigit()
    ):
        raise RequestValidationError(field, "must be a 5-digit ZIP or ZIP+4, e.g. 94102")
    return text


def _segment(value: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RequestValidationError(field, "must be a non-empty id")
    # Ids are opaque: quote everything so an id can never change the path.
    return quote(value.strip(), safe="")
