"""Refuse input no route can store before any route sees it: NUL, lone surrogates, deep JSON.

PostgreSQL text cannot hold NUL; no UTF-8 column or JSON answer can hold a lone UTF-16
surrogate; JSON nested thousands deep exhausts the parser's recursion and a number thousands of
digits long its integer limit. Each is the caller's mistake, so each is a 4xx naming the field,
decided here once instead of in every route and model. The webhook receiver is left out: its body
is judged only after its signature (see preclose.app.api.webhooks).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import Scope

from offergrid.models.webhooks import MAX_INT_DIGITS, json_depth

__all__ = ["MAX_JSON_DEPTH", "judge", "unstorable_field"]

MAX_JSON_DEPTH = 32
_SKIP_BODY = ("/webhooks/",)


def unstorable_field(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (or key) holding NUL or a lone surrogate, if any."""
    if isinstance(value, str):
        return None if _storable(value) else (path or "body")
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if not _storable(str(key)):
                return _printable(path or "body")
            found = unstorable_field(item, where)
            if found is not None:
                return _printable(found)
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = unstorable_field(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\\0")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"a number longer than {MAX_INT_DIGITS} digits")
    return int(text)


def _answer(status: int, detail: Any) -> tuple[int, bytes]:
    return status, json.dumps({"detail": detail}).encode()


def judge(scope: Scope, body: bytes) -> tuple[int, bytes] | None:
    """A 4xx (status, JSON body) for a request no route could store, or None to let it through."""
    raw_path = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "replace")
    for part, name in ((raw_path, "path"), (scope.get("query_string", b""), "query")):
        decoded = unquote_to_bytes(part)
        if b"\x00" in decoded:
            return _answer(400, f"the {name} holds a NUL character")
        try:
            decoded.decode("utf-8")
        except UnicodeDecodeError:
            return _answer(400, f"the {name} is not UTF-8")
    if not body or scope.get("path", "").startswith(_SKIP_BODY):
        return None
    content_type = dict(scope.get("headers", [])).get(b"content-type", b"")
    if b"json" not in content_type.lower():
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _answer(400, "the body is not UTF-8")
    if json_depth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        return _answer(400, f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(text, parse_int=_bounded_int)
    except ValueError:
        return None  # FastAPI answers invalid JSON itself, naming where it broke
    field = unstorable_field(data)
    if field is not None:
        item = {
            "field": field,
            "loc": ["body", *field.split(".")],
            "msg": "must not hold NUL characters or lone surrogates",
            "type": "string_unstorable",
        }
        return _answer(422, [item])
    return None
