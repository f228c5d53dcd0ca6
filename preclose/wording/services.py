"""One table of what each service is called, and the words for a closing's and a line's states.

Every message, page, report and reason names a service from here, so "energy" reads "Power"
everywhere and "television" reads "TV".
"""

from __future__ import annotations

__all__ = [
    "CLOSING_STATUS_WORDS",
    "ITEM_STATUS_WORDS",
    "LINE_STATE_WORDS",
    "SERVICE_NAMES",
    "service_name",
    "service_word",
]

# Each Offergrid category as a person names it, at the start of a sentence or as a heading.
SERVICE_NAMES: dict[str, str] = {
    "internet": "Internet",
    "television": "TV",
    "security": "Home security",
    "energy": "Power",
    "insurance": "Home insurance",
    "other": "Home service",
}
_ACRONYMS = frozenset({"TV"})

# Words for the states a closing may hold; a state not listed is shown by its own name.
CLOSING_STATUS_WORDS: dict[str, str] = {
    "received": "Received",
    "planning": "Being planned",
    "planned": "Planned",
    "ordering": "Ordering",
    "active": "In progress",
    "fulfilled": "Every service is set up",
    "fell_through": "Fell through",
    "cancelled": "Cancelled",
    "needs_attention": "Needs attention",
}

# Words for the states of a plan line (what we did about the service).
LINE_STATE_WORDS: dict[str, str] = {
    "planned": "to order",
    "placing": "ordering",
    "placed": "ordered",
    "fulfilled": "live",
    "rejected": "rejected",
    "failed": "failed",
    "cancelled": "cancelled",
    "skipped": "nothing to order",
}

# Words for the statuses of an Offergrid order item (what the provider did).
ITEM_STATUS_WORDS: dict[str, str] = {
    "pending": "ordered, waiting for the provider",
    "submitted_to_provider": "sent to the provider",
    "accepted": "accepted by the provider",
    "scheduled": "scheduled",
    "in_progress": "installation under way",
    "completed": "installed",
    "active": "live",
    "rejected": "rejected by the provider",
    "failed": "installation failed",
    "cancelled": "cancelled",
}


def service_name(category: str) -> str:
    """A category as a heading or at the start of a sentence: "Home security", "TV"."""
    key = category.lower()
    return SERVICE_NAMES.get(key, key.replace("_", " ").capitalize())


def service_word(category: str | None) -> str:
    """A category inside a sentence: "home security", "power", "TV"."""
    name = SERVICE_NAMES.get((category or "other").lower(), SERVICE_NAMES["other"])
    return name if name in _ACRONYMS else name.lower()
