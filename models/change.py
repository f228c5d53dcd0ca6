"""A change to a closing after it was coordinated: new dates, a fall-through, corrected details."""

from __future__ import annotations

import uuid
from datetime import date
from enum import StrEnum

from pydantic import BaseModel, Field, ValidationError, model_validator

from models.closing import Buyer, ClosingInputError, ClosingRequest, PropertyAddress

__all__ = [
    "ChangeOutcome",
    "ChangeSummary",
    "ClosingChange",
    "ContactChange",
    "ServiceConsequence",
]


class ContactChange(BaseModel):
    """The buyer's corrected contact details; fields left empty stay as they were."""

    email: str | None = Field(None, title="Buyer email", description="The buyer's new email.")
    phone: str | None = Field(
        None, title="Buyer phone", description="The buyer's new phone, with country code."
    )

    @model_validator(mode="after")
    def _valid(self) -> ContactChange:
        # Reuse the closing form's own checks, so a phone or email is judged the same everywhere.
        probe = {"full_name": "Check Only", "email": "check@example.com", "phone": "+15555550100"}
        if self.email is not None:
            probe["email"] = self.email
        if self.phone is not None:
            probe["phone"] = self.phone
        Buyer.model_validate({**probe, "contact_consent": True})
        return self


class ClosingChange(BaseModel):
    """What changed about a closing; only the fields given are changed."""

    closing_date: date | None = Field(
        None, title="New closing date", description="The closing moved to this date."
    )
    move_in_date: date | None = Field(
        None, title="New move-in date", description="The buyer now moves in on this date."
    )
    fell_through: bool = Field(
        False,
        title="Deal fell through",
        description="The closing is off: cancel what can be cancelled and place nothing more.",
    )
    reason: str | None = Field(
        None, title="Reason", description="Why it changed, in words for the agent.", max_length=500
    )
    contact: ContactChange | None = Field(None, title="Buyer contact correction")
    address: PropertyAddress | None = Field(
        None,
        title="Corrected address",
        description="Only before any order is placed: the whole plan is made again.",
    )

    @model_validator(mode="after")
    def _something(self) -> ClosingChange:
        if not (
            self.fell_through
            or self.closing_date
            or self.move_in_date
            or self.contact
            or self.address
        ):
            raise ValueError(
                "give at least one of closing_date, move_in_date, fell_through, contact, address"
            )
        if self.fell_through and (
            self.closing_date or self.move_in_date or self.contact or self.address
        ):
            # A deal that is off has no dates or details left to change: say so rather than guess.
            raise ValueError(
                "fell_through: give it alone (with a reason); a closing that fell through has "
                "no dates, contact or address to change"
            )
        return self

    @property
    def moves_dates(self) -> bool:
        """Whether the closing or move-in date is given."""
        return self.closing_date is not None or self.move_in_date is not None

    def applied_to(self, closing: ClosingRequest) -> ClosingRequest:
        """`closing` with this change's fields replaced, checked again as a whole closing.

        Only the fields given change: a new closing date keeps an explicit move-in date, so the
        pair must still be valid together. A problem raises ClosingInputError naming the field
        (e.g. `move_in_date`, `buyer.email`).
        """
        data = closing.model_dump(mode="json")
        if self.closing_date is not None:
            data["closing_date"] = self.closing_date.isoformat()
        if self.move_in_date is not None:
            data["move_in_date"] = self.move_in_date.isoformat()
        if self.contact is not None:
            if self.contact.email is not None:
                data["buyer"]["email"] = self.contact.email
            if self.contact.phone is not None:
                data["buyer"]["phone"] = self.contact.phone
        if self.address is not None:
            data["property"]["address"] = self.address.model_dump(mode="json")
        try:
            return ClosingRequest.model_validate(data)
        except ValidationError as err:
            first = err.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "change"
            raise ClosingInputError(where, first["msg"].removeprefix("Value error, ")) from None


class ChangeOutcome(StrEnum):
    """What a change did to one service."""

    moved = "moved"  # not ordered yet: it will be ordered on its new date
    kept = "kept"  # the order stands as it is
    replaced = "replaced"  # cancelled and ordered again with the new details
    flagged = "flagged"  # a person has to act
    cancelled = "cancelled"  # cancelled for good (the deal fell through)
    not_cancellable = "not_cancellable"  # could not be cancelled: someone must call the provider
    replanned = "replanned"  # planned again from scratch (address correction)
    old_contact = "old_contact"  # the order carries the buyer's old email or phone


class ServiceConsequence(BaseModel):
    """What a change meant for one service, in words for the agent."""

    category: str = Field(title="Service")
    provider: str | None = Field(None, title="Provider")
    outcome: ChangeOutcome = Field(title="Outcome")
    detail: str = Field(title="What happens", description="One plain sentence.")
    action_by: str | None = Field(
        None,
        title="Who has to act",
        description="'buyer' when the buyer must call the provider; None when we handle it.",
    )


class ChangeSummary(BaseModel):
    """The outcome of applying one change to a closing."""

    closing_id: uuid.UUID = Field(title="preclose closing ID")
    crm_closing_id: str = Field(title="CRM closing ID")
    status: str = Field(title="Closing status after the change")
    changed: list[str] = Field(
        default_factory=list,
        title="What changed",
        description="E.g. 'closing date 2027-03-22 -> 2027-04-05'; personal details not repeated.",
    )
    consequences: list[ServiceConsequence] = Field(default_factory=list, title="Per service")
    orders_cancelled: list[str] = Field(default_factory=list, title="Offergrid orders cancelled")
    orders_placed: list[str] = Field(default_factory=list, title="Offergrid orders placed now")
    needs_action: list[str] = Field(
        default_factory=list, title="Who has to act", description="One sentence per action."
    )
