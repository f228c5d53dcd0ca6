"""The buyer's own Offergrid link: its address, its request, and how a retry recognises it."""

from __future__ import annotations

from collections.abc import Iterable

from models.closing import ClosingRequest
from offergrid.models import ServiceAddress
from offergrid.models.directory import CreateLinkRequest, Link


def link_address(closing: ClosingRequest) -> ServiceAddress:
    """The closing's property as Offergrid's link address (the unit joined to the street)."""
    address = closing.property.address
    street = f"{address.street}, {address.unit}" if address.unit else address.street
    return ServiceAddress(
        street=street,
        city=address.city,
        state=address.state,
        zip_code=address.zip_code,
        country=address.country,
    )


def new_link_request(closing: ClosingRequest) -> CreateLinkRequest:
    """The request that creates the closing's link, named so a retry can recognise it."""
    return CreateLinkRequest(
        address=link_address(closing),
        # Offergrid shows it on the link page; our ID lets a retry recognise the link.
        property_name=closing.crm_closing_id,
        move_in_date=closing.effective_move_in,
    )


def find_link(links: Iterable[Link], closing: ClosingRequest) -> Link | None:
    """Our link for this closing among Offergrid's: same street, ZIP and property name."""
    street = link_address(closing).street
    for link in links:
        address = link.address
        if (
            address is not None
            and address.street == street
            and address.zip_code == closing.property.address.zip_code
            and link.property_name == closing.crm_closing_id
        ):
            return link
    return None
