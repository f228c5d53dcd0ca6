"""A CRM change to a closing: whether it is taken, and what it changed (plain code, no I/O)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from models.closing import ClosingInputError, ClosingRequest
from models.tables import ClosingStatus
from preclose.rules import lifecycle
from preclose.rules.lifecycle import TransitionRefused


@dataclass(frozen=True)
class StoredChange:
    """A change as stored: the closing, its request before and after, and what changed in words."""

    closing_id: uuid.UUID
    before: ClosingRequest
    after: ClosingRequest
    status: ClosingStatus
    version: int
    changed: list[str] = field(default_factory=list)

    @property
    def dates_moved(self) -> bool:
        """Whether the closing or the effective move-in date is different now."""
        return (
            self.before.closing_date != self.after.closing_date
            or self.before.effective_move_in != self.after.effective_move_in
        )

    @property
    def address_corrected(self) -> bool:
        """Whether the property's address is different now."""
        return self.before.property.address != self.after.property.address

    @property
    def contact_corrected(self) -> bool:
        """Whether the buyer's email or phone is different now."""
        old, new = self.before.buyer, self.after.buyer
        return (old.email, old.phone) != (new.email, new.phone)


def accept_change(crm_closing_id: str, status: ClosingStatus, *, fell_through: bool) -> bool:
    """Whether a change to a closing in `status` has anything to store; refusals name the field.

    A repeated fall-through changes nothing (False); a change the closing can no longer take is a
    ClosingInputError naming `crm_closing_id`, in the CRM's words.
    """
    if fell_through and status == ClosingStatus.fell_through:
        return False
    try:
        lifecycle.may_change(crm_closing_id, status, fell_through=fell_through)
    except TransitionRefused as refused:
        raise ClosingInputError("crm_closing_id", str(refused).split(": ", 1)[1]) from None
    return True


def what_changed(before: ClosingRequest, after: ClosingRequest) -> list[str]:
    """The change in words for a summary: dates shown, personal details only named."""
    changed: list[str] = []
    if before.closing_date != after.closing_date:
        changed.append(f"closing date {before.closing_date} -> {after.closing_date}")
    if before.effective_move_in != after.effective_move_in:
        changed.append(f"move-in date {before.effective_move_in} -> {after.effective_move_in}")
    if before.buyer.email != after.buyer.email:
        changed.append("buyer email")
    if before.buyer.phone != after.buyer.phone:
        changed.append("buyer phone")
    old, new = before.property.address, after.property.address
    if old != new:
        changed.append(f"address ({old.city} {old.zip_code} -> {new.city} {new.zip_code})")
    return changed
