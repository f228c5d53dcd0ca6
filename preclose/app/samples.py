"""Realistic sample closings, one per kind of home, at addresses the local Offergrid serves."""

from __future__ import annotations

from datetime import date, timedelta

from models.closing import (
    Agent,
    BudgetCap,
    Buyer,
    ClosingRequest,
    ContactChannel,
    Occupancy,
    Preferences,
    PropertyAddress,
    PropertyInfo,
    PropertyType,
)
from offergrid.models import Category
from preclose.rules.calendar import BusinessCalendar

__all__ = ["sample_closings"]


def _weekday_after(today: date, days: int) -> date:
    """`days` after today, moved forward to a business day: closings happen on business days."""
    return BusinessCalendar().on_or_after(today + timedelta(days=days))


def sample_closings(today: date) -> list[ClosingRequest]:
    """Five sample closings dated relative to `today`, in ZIPs the sandbox catalog serves."""
    austin = _weekday_after(today, 35)
    chicago = _weekday_after(today, 21)
    seattle = _weekday_after(today, 28)
    denver = _weekday_after(today, 45)
    atlanta = _weekday_after(today, 60)
    return [
        ClosingRequest(
            crm_closing_id="SAMPLE-AUS-001",
            property=PropertyInfo(
                address=PropertyAddress(
                    street="1208 Alta Vista Avenue", city="Austin", state="TX", zip_code="78704"
                ),
                property_type=PropertyType.single_family,
                size_sqft=1850,
                year_built=1952,
                occupancy=Occupancy.owner_occupied,
            ),
            buyer=Buyer(
                full_name="Jordan Rivera",
                email="jordan.rivera@example.com",
                phone="+1 512 555 0147",
                contact_consent=True,
                preferred_channel=ContactChannel.sms,
            ),
            agent=Agent(name="Sam Okafor", email="sam.okafor@brokerage.example"),
            closing_date=austin,
            time_zone="America/Chicago",
            preferences=Preferences(
                preferred_providers=["Lone Star Fiber"],
                min_internet_mbps=300,
                installer_notes="Side gate is unlocked; friendly dog in the yard.",
            ),
        ),
        ClosingRequest(
            crm_closing_id="SAMPLE-CHI-002",
            property=PropertyInfo(
                address=PropertyAddress(
                    street="2450 N Lakeview Avenue",
                    unit="Unit 1203",
                    city="Chicago",
                    state="IL",
                    zip_code="60614",
                ),
                property_type=PropertyType.condo,
                size_sqft=1100,
                year_built=2004,
                occupancy=Occupancy.owner_occupied,
            ),
            buyer=Buyer(
                full_name="Priya Natarajan",
                email="priya.n@example.com",
                phone="+1 312 555 0182",
                contact_consent=True,
            ),
            agent=Agent(name="Dana Kowalski", email="dana@northside-realty.example"),
            closing_date=chicago,
            time_zone="America/Chicago",
            # A three-day rent-back: the sellers stay over the weekend.
            move_in_date=chicago + timedelta(days=3),
            preferences=Preferences(
                budget_caps=[BudgetCap(category=Category.INSURANCE, max_monthly=45)],
                skip_categories=[Category.TELEVISION],
            ),
        ),
        ClosingRequest(
            crm_closing_id="SAMPLE-SEA-003",
            property=PropertyInfo(
                address=PropertyAddress(
                    street="4012 Stone Way N", city="Seattle", state="WA", zip_code="98103"
                ),
                property_type=PropertyType.single_family,
                size_sqft=1400,
                year_built=1926,
                occupancy=Occupancy.rental,
                financed=False,
            ),
            buyer=Buyer(
                full_name="Marcus Bell",
                email="marcus.bell@example.com",
                phone="+1 206 555 0111",
                contact_consent=True,
                preferred_channel=ContactChannel.phone,
            ),
            agent=Agent(name="Lena Park", email="lena.park@soundhomes.example"),
            closing_date=seattle,
            time_zone="America/Los_Angeles",
        ),
        ClosingRequest(
            crm_closing_id="SAMPLE-DEN-004",
            property=PropertyInfo(
                address=PropertyAddress(
                    street="3321 Gilpin Street", city="Denver", state="CO", zip_code="80205"
                ),
                property_type=PropertyType.townhouse,
                size_sqft=1600,
                year_built=2017,
                occupancy=Occupancy.second_home,
            ),
            buyer=Buyer(
                full_name="Alex Chen",
                email="alex.chen@example.com",
                phone="+1 720 555 0163",
                contact_consent=False,
            ),
            agent=Agent(name="Rosa Delgado", email="rosa@frontrange-realty.example"),
            closing_date=denver,
            time_zone="America/Denver",
            # Pre-possession: the sellers let the buyer move in a week early.
            move_in_date=denver - timedelta(days=7),
            preferences=Preferences(excluded_providers=["SkyReach Satellite Internet"]),
        ),
        ClosingRequest(
            crm_closing_id="SAMPLE-ATL-005",
            property=PropertyInfo(
                address=PropertyAddress(
                    street="775 Juniper Street NE", city="Atlanta", state="GA", zip_code="30308"
                ),
                property_type=PropertyType.new_construction,
                size_sqft=2300,
                year_built=today.year,
                occupancy=Occupancy.owner_occupied,
            ),
            buyer=Buyer(
                full_name="Taylor Brooks",
                email="taylor.brooks@example.com",
                phone="+1 404 555 0139",
                contact_consent=True,
            ),
            agent=Agent(name="Chris Nguyen", email="chris.nguyen@peachtree-homes.example"),
            closing_date=atlanta,
            time_zone="America/New_York",
            test_mode=True,
            preferences=Preferences(min_internet_mbps=400),
        ),
    ]
