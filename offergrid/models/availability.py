"""The answer of POST /reseller/availability: offers at an address, flat and grouped by category."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from offergrid.models._base import ReadModel
from offergrid.models.enums import Category
from offergrid.models.offers import Offer
from offergrid.models.orders import OrderAddress

__all__ = ["Availability"]

_FLAT_KEYS = ("offers", "data", "items", "results")
_GROUPED_KEYS = ("byCategory", "by_category", "grouped", "categories")


class Availability(ReadModel):
    """Offers sellable at one address; `offers` and `by_category` are filled from either form."""

    address: OrderAddress | None = None
    offers: list[Offer] = Field(default_factory=list)
    by_category: dict[str, list[Offer]] = Field(default_factory=dict)
    count: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if isinstance(data, list):
            return {"offers": data}
        if not isinstance(data, dict):
            return data
        body = dict(data)
        flat = next((body.pop(k) for k in _FLAT_KEYS if isinstance(body.get(k), list)), None)
        grouped = next((body.pop(k) for k in _GROUPED_KEYS if isinstance(body.get(k), dict)), None)
        if flat is None and grouped is not None:
            flat = [
                offer for group in grouped.values() if isinstance(group, list) for offer in group
            ]
        body["offers"] = flat or []
        if grouped is not None:
            body["byCategory"] = grouped
        return body

    @model_validator(mode="after")
    def _group(self) -> Availability:
        if not self.by_category and self.offers:
            grouped: dict[str, list[Offer]] = {}
            for offer in self.offers:
                grouped.setdefault(str(offer.category or Category.OTHER), []).append(offer)
            self.by_category = grouped
        if self.count is None:
            self.count = len(self.offers)
        return self

    def for_category(self, category: Category | str) -> list[Offer]:
        """The offers in one category (empty when there are none)."""
        return list(self.by_category.get(str(category), []))

    @property
    def categories(self) -> list[str]:
        """The categories with at least one offer at this address."""
        return [name for name, offers in self.by_category.items() if offers]
