"""What a US ZIP code says about its place: state and time zone (the offline `zipcodes` data)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import zipcodes

__all__ = ["ZipFacts", "zip_facts"]


@dataclass(frozen=True)
class ZipFacts:
    """The state and IANA time zone a ZIP code belongs to, and a city there."""

    zip5: str
    state: str
    time_zone: str | None
    city: str | None


@lru_cache(maxsize=4096)
def zip_facts(zip5: str) -> ZipFacts | None:
    """The facts of a 5-digit ZIP, or None when the ZIP is not in the data (say, brand new)."""
    try:
        found = zipcodes.matching(zip5)
    except (TypeError, ValueError):
        return None
    # Prefer a current (active) record; a retired ZIP still tells its state and zone.
    found = sorted(found, key=lambda row: not row.get("active", True))
    if not found:
        return None
    row = found[0]
    zone = row.get("timezone") or None
    return ZipFacts(
        zip5=zip5,
        state=str(row["state"]).upper(),
        time_zone=str(zone) if zone else None,
        city=row.get("city") or None,
    )
