"""The closing request: validation with field-named errors, date checks, masking and samples."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from models.closing import (
    ClosingInputError,
    ClosingRequest,
    PropertyType,
    check_closing_dates,
    mask_email,
    mask_name,
    mask_phone,
)
from offergrid_sandbox.catalog import seed_catalog
from preclose.app.samples import sample_closings
from preclose.rules.calendar import BusinessCalendar
from tests.fixtures_planning import closing_data


def _with(path: str, value: Any) -> dict[str, Any]:
    """Closing data with the dotted `path` set to `value`."""
    data = closing_data()
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[leaf] = value
    return data


INVALID = [
    ("property.property_type", "castle", "unknown property type 'castle'"),
    ("property.occupancy", "vacation", "unknown occupancy 'vacation'"),
    ("buyer.email", "john.example.com", "not a valid email address"),
    ("buyer.email", "john@localhost", "not a valid email address"),
    ("agent.email", "sam at brokerage", "not a valid email address"),
    ("buyer.phone", "512-555-4567", "must start with + and the country code"),
    ("buyer.phone", "+1 512 555 456", "needs 10 digits after the country code"),
    ("buyer.phone", "+44 20 7946 0958 ext 2", "only digits"),
    ("buyer.phone", "+1234", "8 to 15 digits"),
    ("property.address.zip_code", "7870", "ZIP code must be 5 digits or ZIP+4"),
    ("property.address.zip_code", "78701-12", "ZIP code must be 5 digits or ZIP+4"),
    ("property.address.zip_code", "ABCDE", "ZIP code must be 5 digits or ZIP+4"),
    ("property.address.state", "Texas", "not a US state code"),
    ("property.address.country", "CA", "Input should be 'US'"),
    ("time_zone", "Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
    ("time_zone", "../../etc/passwd", "unknown time zone"),
    ("move_in_date", "2026-11-14", "at most 30 days before closing"),
    ("move_in_date", "2027-03-16", "at most 90 days after closing"),
    ("crm_closing_id", "", "at least 1 character"),
    ("property.size_sqft", 0, "greater than 0"),
    (
        "preferences",
        {"budget_caps": [{"category": "insurance", "max_monthly": 40}] * 2},
        "more than one budget cap for insurance",
    ),
    (
        "preferences",
        {"preferred_providers": ["Acme"], "excluded_providers": ["acme"]},
        "cannot be both preferred and excluded",
    ),
    ("preferences", {"skip_categories": ["tv"]}, "Input should be"),
    ("preferences", {"min_internet_mbps": -5}, "greater than 0"),
]


@pytest.mark.parametrize(("path", "value", "message"), INVALID)
def test_invalid_input_names_the_field(path: str, value: Any, message: str) -> None:
    """Each kind of bad input raises one error located at its field that says what is wrong."""
    with pytest.raises(ValidationError) as caught:
        ClosingRequest.model_validate(_with(path, value))
    errors = caught.value.errors()
    assert len(errors) == 1, errors
    loc = ".".join(str(part) for part in errors[0]["loc"])
    assert loc.startswith(path), loc
    assert message in errors[0]["msg"]


def test_unknown_top_level_field_is_rejected() -> None:
    """A misspelt key is an error rather than silently ignored data."""
    with pytest.raises(ValidationError) as caught:
        ClosingRequest.model_validate(closing_data(closing_day="2026-12-15"))
    assert caught.value.errors()[0]["loc"] == ("closing_day",)


@pytest.mark.parametrize(
    ("move_in", "expected"),
    [
        (None, date(2026, 12, 15)),
        ("2026-11-15", date(2026, 11, 15)),  # 30 days of pre-possession, the limit
        ("2027-03-15", date(2027, 3, 15)),  # a 90-day rent-back, the limit
    ],
)
def test_move_in_defaults_to_closing_and_accepts_the_limits(
    move_in: str | None, expected: date
) -> None:
    """Move-in defaults to the closing date, and exactly 30 days before or 90 after is allowed."""
    closing = ClosingRequest.model_validate(closing_data(move_in_date=move_in))
    assert closing.effective_move_in == expected


def test_values_are_normalised() -> None:
    """State is upper-cased, ZIP+4 gets its dash, phones become E.164 and email domains lower."""
    data = closing_data()
    data["property"]["address"].update(state="tx", zip_code="787011234")
    data["buyer"].update(phone="+1 (512) 555-4567", email="John.Doe@Example.COM")
    closing = ClosingRequest.model_validate(data)
    assert closing.property.address.state == "TX"
    assert closing.property.address.zip_code == "78701-1234"
    assert closing.property.address.zip5 == "78701"
    assert closing.buyer.phone == "+15125554567"
    assert closing.buyer.email == "John.Doe@example.com"
    assert closing.tz == ZoneInfo("America/Chicago")


def test_closing_round_trips_through_json() -> None:
    """The JSON a CRM sends and the JSON we dump validate to the same closing."""
    closing = ClosingRequest.model_validate(closing_data(move_in_date="2026-12-20"))
    again = ClosingRequest.model_validate_json(closing.model_dump_json())
    assert again == closing


def _walk_properties(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for name, model in [("ClosingRequest", schema), *schema.get("$defs", {}).items()]:
        for field, spec in model.get("properties", {}).items():
            found.append((f"{name}.{field}", spec))
    return found


def test_every_form_field_has_title_and_description() -> None:
    """Every field of the closing form carries a title and a description for the Prefect UI."""
    schema = ClosingRequest.model_json_schema()
    defs = schema["$defs"]

    def title(spec: dict[str, Any]) -> str | None:
        # A field that is a nested model or enum shows the title of what it refers to.
        ref = spec.get("$ref")
        return spec.get("title") or (defs[ref.rsplit("/", 1)[-1]].get("title") if ref else None)

    missing = [
        name
        for name, spec in _walk_properties(schema)
        if not title(spec) or not spec.get("description")
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("closing_date", "as_of", "ok"),
    [
        ("2026-12-15", datetime(2026, 12, 15, 12, tzinfo=UTC), True),  # closing today
        ("2026-12-15", datetime(2026, 12, 16, 12, tzinfo=UTC), False),
        # 03:00 UTC on the 16th is still the 15th in Chicago: not yet in the past there.
        ("2026-12-15", datetime(2026, 12, 16, 3, tzinfo=UTC), True),
        ("2027-12-20", datetime(2026, 12, 1, 12, tzinfo=UTC), False),  # over a year out
    ],
)
def test_check_closing_dates_uses_the_property_calendar(
    closing_date: str, as_of: datetime, ok: bool
) -> None:
    """A closing past at the property (or a year out) raises ClosingInputError on closing_date."""
    closing = ClosingRequest.model_validate(closing_data(closing_date=closing_date))
    if ok:
        check_closing_dates(closing, as_of=as_of)
        return
    with pytest.raises(ClosingInputError) as caught:
        check_closing_dates(closing, as_of=as_of)
    assert caught.value.field == "closing_date"
    assert isinstance(caught.value, ValueError)


def test_check_closing_dates_refuses_a_naive_moment() -> None:
    """A naive `as_of` is a programming error, not silently read as some zone."""
    closing = ClosingRequest.model_validate(closing_data())
    with pytest.raises(ValueError, match="timezone-aware"):
        check_closing_dates(closing, as_of=datetime(2026, 12, 1, 12))


@pytest.mark.parametrize(
    ("masker", "raw", "masked"),
    [
        (mask_name, "John Doe", "J*** D**"),
        (mask_email, "john@example.com", "j***@example.com"),
        (mask_phone, "+15125554567", "+1 *** *** 4567"),
        (mask_phone, "+442079460958", "+*** *** 0958"),
    ],
)
def test_maskers_follow_the_documented_shapes(masker: Any, raw: str, masked: str) -> None:
    """Names, emails and phones are masked to the shapes used in logs."""
    assert masker(raw) == masked


SAMPLES = sample_closings(date(2026, 11, 20))


@pytest.mark.parametrize("closing", SAMPLES, ids=[c.crm_closing_id for c in SAMPLES])
def test_masked_closing_and_repr_never_leak_personal_data(closing: ClosingRequest) -> None:
    """Neither masked() nor repr/str of a closing contain the raw name, email, phone or notes."""
    secrets = [
        closing.buyer.full_name,
        closing.buyer.email,
        closing.buyer.phone,
        closing.buyer.phone[-10:],
        closing.agent.email,
        closing.agent.name,
    ]
    if closing.preferences.installer_notes:
        secrets.append(closing.preferences.installer_notes)
    for text in (json.dumps(closing.masked()), repr(closing), str(closing), repr(closing.buyer)):
        leaked = [secret for secret in secrets if secret in text]
        assert leaked == []
    assert closing.masked()["buyer"]["phone"].endswith(closing.buyer.phone[-4:])


def test_samples_cover_property_types_in_sandbox_zips_on_business_days() -> None:
    """Samples are valid, varied, in ZIPs the sandbox serves, and close on business days."""
    places = seed_catalog().zip_places
    calendar = BusinessCalendar()
    assert len({c.property.property_type for c in SAMPLES}) >= 3
    for closing in SAMPLES:
        address = closing.property.address
        assert places[address.zip5] == (address.city, address.state)
        assert calendar.is_business_day(closing.closing_date)
        assert closing.closing_date > date(2026, 11, 20)
        check_closing_dates(closing, as_of=datetime(2026, 11, 20, 12, tzinfo=UTC))
    assert {c.property.property_type for c in SAMPLES} >= {
        PropertyType.single_family,
        PropertyType.condo,
        PropertyType.townhouse,
    }
    assert any(c.effective_move_in < c.closing_date for c in SAMPLES)  # pre-possession
    assert any(c.effective_move_in > c.closing_date for c in SAMPLES)  # rent-back
    assert all(c.closing_date - date(2026, 11, 20) < timedelta(days=90) for c in SAMPLES)


def _at(zip_code: str, state: str, time_zone: str | None = None, **extra: Any) -> dict[str, Any]:
    data = closing_data(**extra)
    data["property"]["address"].update(zip_code=zip_code, state=state)
    if time_zone is None:
        data.pop("time_zone", None)
    else:
        data["time_zone"] = time_zone
    return data


@pytest.mark.parametrize(
    ("zip_code", "state", "zone"),
    [
        ("98101", "WA", "America/Los_Angeles"),
        ("85004", "AZ", "America/Phoenix"),  # Arizona keeps standard time all year
        ("96813", "HI", "Pacific/Honolulu"),  # so does Hawaii
        ("78701", "TX", "America/Chicago"),
        ("10001", "NY", "America/New_York"),
    ],
)
def test_time_zone_comes_from_the_zip_when_not_given(zip_code: str, state: str, zone: str) -> None:
    """Without a time zone, the property's comes from its ZIP code, not a Central default."""
    closing = ClosingRequest.model_validate(_at(zip_code, state))
    assert closing.time_zone == zone


@pytest.mark.parametrize(
    ("zip_code", "state", "zone"),
    [
        ("98101", "WA", "America/New_York"),
        ("85004", "AZ", "America/Denver"),  # same winter clock, but Denver keeps summer time
        ("96813", "HI", "America/Anchorage"),
    ],
)
def test_a_time_zone_the_zip_contradicts_is_refused_naming_the_field(
    zip_code: str, state: str, zone: str
) -> None:
    """A Seattle address in New York time (or Phoenix in Denver time) is an error on time_zone."""
    with pytest.raises(ValidationError) as caught:
        ClosingRequest.model_validate(_at(zip_code, state, zone))
    [error] = caught.value.errors()
    assert error["loc"] == ("time_zone",)
    assert f"does not match ZIP code {zip_code}" in error["msg"]


def test_a_zone_with_the_same_clock_as_the_zips_is_accepted() -> None:
    """Detroit's own zone and New York's keep the same clock: either is fine for 48201."""
    closing = ClosingRequest.model_validate(_at("48201", "MI", "America/New_York"))
    assert closing.time_zone == "America/New_York"


@pytest.mark.parametrize(
    ("zip_code", "state", "actual"), [("78701", "CA", "TX"), ("98101", "OR", "WA")]
)
def test_a_state_the_zip_contradicts_is_refused_naming_the_field(
    zip_code: str, state: str, actual: str
) -> None:
    """ZIP 78701 with state CA is an error on the state: the order would go to the wrong place."""
    with pytest.raises(ValidationError) as caught:
        ClosingRequest.model_validate(_at(zip_code, state))
    [error] = caught.value.errors()
    assert error["loc"] == ("property", "address", "state")
    assert f"does not match ZIP code {zip_code} (which is in {actual})" in error["msg"]


def test_a_seattle_closing_today_sent_late_evening_is_not_in_the_past() -> None:
    """At 23:30 in Seattle (07:30 UTC the next day) a closing dated that day is still today."""
    closing = ClosingRequest.model_validate(
        _at("98101", "WA", closing_date="2027-03-10", move_in_date=None)
    )
    late = datetime(2027, 3, 10, 23, 30, tzinfo=ZoneInfo("America/Los_Angeles"))
    check_closing_dates(closing, as_of=late)  # does not raise
    assert closing.local_date(late.astimezone(UTC)) == date(2027, 3, 10)


@pytest.mark.parametrize(
    ("zip_code", "state", "moment", "today"),
    [
        # 06:30 UTC on 1 July: 23:30 on 30 June in Phoenix (no summer time), 1 July in Denver.
        ("85004", "AZ", datetime(2027, 7, 1, 6, 30, tzinfo=UTC), date(2027, 6, 30)),
        # 09:30 UTC on 15 March: 23:30 on 14 March in Honolulu.
        ("96813", "HI", datetime(2027, 3, 15, 9, 30, tzinfo=UTC), date(2027, 3, 14)),
    ],
)
def test_today_at_a_property_without_daylight_saving(
    zip_code: str, state: str, moment: datetime, today: date
) -> None:
    """Arizona and Hawaii never shift an hour: the property's date follows their fixed offset."""
    closing = ClosingRequest.model_validate(
        _at(zip_code, state, closing_date="2027-07-20", move_in_date=None)
    )
    assert closing.local_date(moment) == today
