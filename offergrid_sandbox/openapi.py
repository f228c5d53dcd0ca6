"""The local Offergrid's OpenAPI as it really answers: its errors, its key, its request bodies.

The routes read their bodies by hand (to answer in the service's own error shape), so FastAPI's
generated document knows neither the bodies nor the answers: it lists a 422 the sandbox sends
for one thing only, and nothing else. `describe(app)` rewrites the document once: the request
bodies from Offergrid's published schemas (`data/offergrid-openapi.json`) and the sandbox's
control models, the 400/401/403/404/409/413/429 each route can answer in `ErrorResponse`
shape, and the `x-api-key` scheme on every reseller and provider route.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

__all__ = ["describe"]

_PUBLISHED = Path(__file__).parent / "data" / "offergrid-openapi.json"
_SCHEME = "api-key"

_ERROR = {
    "type": "object",
    "required": ["statusCode", "message", "error"],
    "properties": {
        "statusCode": {"type": "integer", "examples": [400]},
        "message": {"type": "string", "examples": ["zipCode: must be 5 digits"]},
        "error": {"type": "string", "examples": ["Bad Request"]},
        "field": {"type": "string", "description": "The field at fault, when there is one."},
    },
}
_WORDS = {
    400: "Bad input: a missing or invalid field, named in `message` and `field`",
    401: "Missing or unknown x-api-key",
    403: "The key's team role may not use this route",
    404: "Not found, or not your team's",
    409: "Conflicts with the current state (see `message`)",
    413: "Request body larger than the limit",
    422: "Idempotency-Key already used with a different request body",
    429: "Rate limit reached: wait for Retry-After seconds",
}
_CANCEL = {
    "type": "object",
    "properties": {"reason": {"type": "string", "description": "Why the order is cancelled."}},
}
_AVAILABILITY = {
    "allOf": [
        {"$ref": "#/components/schemas/ServiceAddressDto"},
        {
            "type": "object",
            "properties": {
                "category": {"type": "string", "description": "Only offers of this category."}
            },
        },
    ]
}


_TEXT = {"type": "string"}
_DATE = {"type": "string", "description": "ISO 8601 date, e.g. 2027-03-01"}
_LINK_CREATE = {
    "type": "object",
    "required": ["address"],
    "properties": {
        "address": {"$ref": "#/components/schemas/ServiceAddressDto"},
        "propertyName": _TEXT,
        "moveInDate": _DATE,
    },
}
_LINK_UPDATE = {
    "type": "object",
    "properties": {
        "propertyName": _TEXT,
        "moveInDate": _DATE,
        "status": {"type": "string", "enum": ["active", "inactive"]},
    },
}
_CONTACT = {name: _TEXT for name in ("fullName", "email", "phone")}
_CUSTOMER_UPDATE = {
    "type": "object",
    "properties": {
        **_CONTACT,
        "kind": {"type": "string", "enum": ["lead", "customer"]},
        "status": {"type": "string", "enum": ["active", "churned", "unsubscribed"]},
        "notes": _TEXT,
        "tags": {"type": "array", "items": _TEXT},
    },
}
_CUSTOMER_CREATE = {
    "type": "object",
    "required": ["fullName"],
    "properties": {
        **_CONTACT,
        **{
            name: _TEXT
            for name in ("addressLine1", "addressLine2", "city", "state", "postalCode", "country")
        },
        "kind": {"type": "string", "enum": ["lead", "customer"]},
        "source": {
            "type": "string",
            "enum": ["order", "link", "api_import", "manual", "event"],
        },
        "notes": _TEXT,
        "tags": {"type": "array", "items": _TEXT},
        "customFields": {"type": "object"},
    },
}


@cache
def _published_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = json.loads(_PUBLISHED.read_text())["components"]["schemas"]
    return schemas


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _bodies(models: Mapping[str, type[BaseModel]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The request body schema of each (method, path) that takes one."""
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("post", "/reseller/orders"): _ref("CreateOrderDto"),
        ("post", "/reseller/availability"): _AVAILABILITY,
        ("patch", "/reseller/orders/{order_id}/cancel"): _CANCEL,
        ("post", "/provider/offers"): _ref("CreateOfferDto"),
        ("patch", "/provider/offers/{offer_id}"): _ref("UpdateOfferDto"),
        ("patch", "/provider/orders/{item_id}/status"): _ref("UpdateItemStatusDto"),
        ("post", "/reseller/links"): _LINK_CREATE,
        ("patch", "/reseller/links/{link_id}"): _LINK_UPDATE,
        ("post", "/reseller/customers"): _CUSTOMER_CREATE,
        ("patch", "/reseller/customers/{customer_id}"): _CUSTOMER_UPDATE,
    }
    # Only the fields sent change: WebhookConfig's switches, every one optional.
    switches = models["WebhookConfig"].model_json_schema()["properties"]
    bodies[("put", "/sandbox/webhooks/switches")] = {
        "type": "object",
        "properties": {k: v for k, v in switches.items() if k not in ("url", "secret")},
    }
    for (method, path), model in (
        (("post", "/sandbox/clock/advance"), models["AdvanceRequest"]),
        (("post", "/sandbox/webhooks"), models["WebhookEndpoint"]),
        (("put", "/sandbox/faults"), models["FaultConfig"]),
        (("put", "/sandbox/rate-limit"), models["RateLimitConfig"]),
        (("put", "/sandbox/simulation"), models["SimulationConfig"]),
    ):
        bodies[(method, path)] = _ref(model.__name__)
    return bodies


def _answers(method: str, path: str, has_input: bool) -> list[int]:
    """The error statuses one operation can answer, from the gateway and its route."""
    codes: list[int] = []
    guarded = path.startswith(("/reseller", "/provider"))
    if has_input:
        codes.append(400)
    if guarded:
        codes += [401, 403, 429]
    if "{" in path:
        codes.append(404)
    conflicts = {
        ("patch", "/reseller/orders/{order_id}/cancel"),
        ("patch", "/provider/orders/{item_id}/status"),
        ("post", "/provider/offers"),
        ("patch", "/provider/offers/{offer_id}"),
        ("post", "/sandbox/clock/advance"),
    }
    if (method, path) in conflicts:
        codes.append(409)
    if method in ("post", "put", "patch"):
        codes.append(413)
    if (method, path) == ("post", "/reseller/orders"):
        codes += [404, 422]
    return sorted(set(codes))


def describe(app: FastAPI, models: Mapping[str, type[BaseModel]]) -> dict[str, Any]:
    """The app's OpenAPI document as the sandbox really behaves (built once, then cached)."""
    if app.openapi_schema:
        return app.openapi_schema
    spec = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(copy.deepcopy(_published_schemas()))
    for model in models.values():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, nested in schema.pop("$defs", {}).items():
            schemas.setdefault(name, nested)
        schemas[model.__name__] = schema
    schemas["ErrorResponse"] = _ERROR
    components["securitySchemes"] = {
        _SCHEME: {
            "type": "apiKey",
            "in": "header",
            "name": "x-api-key",
            "description": "Team API key; its team's role (reseller, provider, hybrid) decides "
            "which routes it may use. Local keys: GET /sandbox/keys.",
        }
    }
    bodies = _bodies(models)
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            body = bodies.get((method, path))
            if body is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": body}},
                }
            has_input = body is not None or bool(operation.get("parameters"))
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for code in _answers(method, path, has_input):
                responses[str(code)] = {
                    "description": _WORDS[code],
                    "content": {"application/json": {"schema": _ref("ErrorResponse")}},
                }
            if path.startswith(("/reseller", "/provider")):
                operation["security"] = [{_SCHEME: []}]
    app.openapi_schema = spec
    return spec
