"""A change to a closing after it was coordinated: new dates, a fall-through, corrected details."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field, model_validator

from models.closing import Buyer, PropertyAddress


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
        return self
