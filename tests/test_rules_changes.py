"""The plain decisions behind storing a change, telling the agent and finding a buyer's link."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from models.change import ClosingChange
from models.closing import ClosingInputError, ClosingRequest
from models.tables import ClosingStatus
from offergrid.models.directory import Link
from preclose.rules.changes import accept_change, what_changed
from preclose.rules.lifecycle import attention_topic
from preclose.rules.self_serve import find_link, link_address, new_link_request
from tests.fixtures_planning import closing_data

S = ClosingStatus


def _closing(**overrides: object) -> ClosingRequest:
    return ClosingRequest.model_validate(closing_data(**overrides))


@pytest.mark.parametrize(
    ("status", "fell_through", "taken"),
    [
        (S.received, False, True),
        (S.needs_attention, False, True),
        (S.fulfilled, True, True),
        (S.fell_through, True, False),
    ],
)
def test_accept_change_takes_live_changes_and_any_first_fall_through(
    status: ClosingStatus, fell_through: bool, taken: bool
) -> None:
    """A live closing takes a change, a fall-through is taken until stored, and once only."""
    assert accept_change("CL-1", status, fell_through=fell_through) is taken


@pytest.mark.parametrize("status", [S.fulfilled, S.fell_through])
def test_accept_change_refuses_a_finished_closing_naming_the_closing(status: ClosingStatus) -> None:
    """A change to a closing that is no longer live is bad input naming `crm_closing_id`."""
    with pytest.raises(ClosingInputError) as refused:
        accept_change("CL-1", status, fell_through=False)
    assert refused.value.field == "crm_closing_id"
    assert "CL-1" in str(refused.value)


def test_what_changed_shows_dates_and_only_names_personal_details() -> None:
    """Dates and the moved address's city are shown; the new email and phone never are."""
    before = _closing()
    change = ClosingChange.model_validate(
        {
            "closing_date": "2026-12-18",
            "contact": {"email": "j.doe@example.org", "phone": "+1 512 555 0000"},
        }
    )
    words = what_changed(before, change.applied_to(before))
    assert words == [
        "closing date 2026-12-15 -> 2026-12-18",
        # The move-in date follows the closing date when none was given.
        "move-in date 2026-12-15 -> 2026-12-18",
        "buyer email",
        "buyer phone",
    ]
    assert "j.doe" not in " ".join(words) and "555" not in " ".join(words)
    assert what_changed(before, before) == []


def test_attention_topic_is_one_per_spell() -> None:
    """Each spell of needs attention has its own topic; without a start, the reason names it."""
    since = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    assert attention_topic(since, "x") == "attention:2026-11-30T01:00:00+00:00"
    assert attention_topic(since, "x") != attention_topic(since.replace(hour=2), "x")
    assert attention_topic(None, "no key") == "attention:no key"


def test_find_link_recognises_only_our_closings_link() -> None:
    """A retry finds the link made for this closing by street, ZIP and property name only."""
    closing = _closing()
    request = new_link_request(closing)
    assert request.address == link_address(closing)
    assert request.move_in_date == closing.effective_move_in == date(2026, 12, 15)
    # Offergrid echoes the request's fields in the link it returns.
    wire = request.model_dump(by_alias=True, mode="json", exclude_none=True)
    ours = Link.model_validate({**wire, "id": "lnk_1", "url": "https://x/l/1"})
    other = ours.model_copy(update={"id": "lnk_2", "property_name": "CL-OTHER"})
    assert find_link([other, ours], closing) is ours
    assert find_link([other], closing) is None
