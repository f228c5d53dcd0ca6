"""List answers: a bare JSON array, or an object holding the array and maybe a next pointer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ListPage", "parse_list", "parse_list_page"]

_ITEM_KEYS = ("data", "items", "results")
_NEXT_KEYS = ("next", "nextCursor", "next_cursor", "cursor", "nextPage", "next_page")


@dataclass(frozen=True)
class ListPage:
    """One page of a list answer: its raw items and where the next page is, if anywhere."""

    items: list[Any]
    next: str | None = None


def parse_list_page(payload: Any) -> ListPage:
    """Read a list answer in any documented form; raises ValueError when no array is found."""
    if isinstance(payload, list):
        return ListPage(items=payload)
    if isinstance(payload, dict):
        for key in _ITEM_KEYS:
            if isinstance(payload.get(key), list):
                return ListPage(items=payload[key], next=_next_pointer(payload))
        raise ValueError(
            "expected a JSON array or an object with data/items/results, got keys "
            + ", ".join(sorted(map(str, payload))[:10])
        )
    raise ValueError(f"expected a JSON array, got {type(payload).__name__}")


def _next_pointer(payload: dict[str, Any]) -> str | None:
    sources = [payload]
    for key in ("pagination", "meta", "links", "page"):
        if isinstance(payload.get(key), dict):
            sources.append(payload[key])
    for source in sources:
        for key in _NEXT_KEYS:
            value = source.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)
    return None


def parse_list(payload: Any) -> list[Any]:
    """The items of a list answer, whether a bare array or wrapped under data/items/results."""
    return parse_list_page(payload).items
