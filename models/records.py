"""What the repository reads back for people: one plan line with its order, and a closing's page.

Every view of a plan line (the report, the API's `LineView`, the closing page's service rows, the
timeline) derives from `LineRecord`, so a line has one stored shape and many renderings of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.self_serve import BuyerLink, SelfServeItem
from models.tables import Closing, CrmRequest, ItemStatusHistory, OrderItem, Placement, PlanLineRow

__all__ = ["ClosingRecord", "LineRecord", "PortfolioEntry"]


@dataclass(frozen=True)
class LineRecord:
    """A current plan line with its order item, placement and item history, when it was ordered."""

    line: PlanLineRow
    item: OrderItem | None = None
    placement: Placement | None = None
    history: tuple[ItemStatusHistory, ...] = ()

    @property
    def category(self) -> str:
        """The line's category (`internet`, `energy`...): the key every view groups by."""
        return self.line.category


@dataclass(frozen=True)
class ClosingRecord:
    """Everything a closing's page shows, read in one unit of work."""

    closing: Closing
    lines: list[LineRecord]
    crm_requests: list[CrmRequest] = field(default_factory=list)
    buyer_link: BuyerLink | None = None
    self_serve: list[SelfServeItem] = field(default_factory=list)


@dataclass(frozen=True)
class PortfolioEntry:
    """A live closing and how many of its lines are at risk."""

    closing: Closing
    at_risk: int
