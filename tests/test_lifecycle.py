"""The closing's lifecycle as plain rules: states, moves, and the decisions that go with them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models.tables import ClosingStatus, PlanLineState
from offergrid.errors import AuthenticationError, InternalServerError, NotFoundError
from offergrid.models import ErrorBody
from preclose.rules import lifecycle
from preclose.rules.lifecycle import (
    ChangeRoute,
    Event,
    NothingOrderable,
    RunFact,
    TransitionRefused,
)

S = ClosingStatus
NOW = datetime(2027, 3, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("current", "event", "expected"),
    [
        (S.received, Event.plan, S.planned),
        (S.planned, Event.order_placed, S.ordering),
        (S.ordering, Event.service_live, S.active),
        (S.active, Event.all_live, S.fulfilled),
        (S.planned, Event.all_live, S.fulfilled),  # every service live at once
        (S.received, Event.fall_through, S.fell_through),
        (S.fulfilled, Event.fall_through, S.fell_through),
        (S.needs_attention, Event.fall_through, S.fell_through),
        (S.ordering, Event.fail, S.needs_attention),
        (S.needs_attention, Event.retry, S.received),
    ],
)
def test_allowed_moves(current: ClosingStatus, event: Event, expected: ClosingStatus) -> None:
    """Each allowed step moves the closing to the state a person expects."""
    assert lifecycle.next_status("CL-1", current, event) == expected


@pytest.mark.parametrize(
    ("current", "event"),
    [
        (S.fell_through, Event.plan),
        (S.fell_through, Event.fall_through),
        (S.fell_through, Event.retry),
        (S.planned, Event.plan),  # a second coordination does not plan again
        (S.planned, Event.retry),
        (S.fulfilled, Event.fail),
        (S.needs_attention, Event.plan),
        (S.active, Event.order_placed),  # never back
    ],
)
def test_refused_moves_name_the_current_state(current: ClosingStatus, event: Event) -> None:
    """A step not allowed now is refused with a message naming the closing's current state."""
    with pytest.raises(TransitionRefused) as refused:
        lifecycle.next_status("CL-1", current, event)
    assert f"closing 'CL-1' is {lifecycle.describe(current)}" in str(refused.value)
    assert refused.value.current == current


@pytest.mark.parametrize(
    ("states", "event"),
    [
        ([], None),
        (["planned", "skipped"], None),
        (["planned", "placed"], Event.order_placed),
        (["placing"], Event.order_placed),
        (["fulfilled", "placed", "rejected"], Event.service_live),
        (["fulfilled", "skipped", "fulfilled"], Event.all_live),
    ],
)
def test_progress_from_the_plan_lines(states: list[str], event: Event | None) -> None:
    """The closing's progress follows its current lines; skipped lines do not count."""
    assert lifecycle.progress_event(PlanLineState(s) for s in states) == event


def test_a_service_a_person_must_choose_holds_the_closing_short_of_fulfilled() -> None:
    """Every ordered service live, one essential with no offer left: live, not fulfilled."""
    states = [PlanLineState.fulfilled, PlanLineState.skipped, PlanLineState.fulfilled]
    assert lifecycle.progress_event(states, a_person_must_choose=True) == Event.service_live


def test_may_change_is_one_rule() -> None:
    """A fall-through is taken until the closing fell through; other changes while it is live."""
    for status in (S.received, S.planned, S.ordering, S.active, S.needs_attention):
        lifecycle.may_change("CL-1", status, fell_through=False)
        lifecycle.may_change("CL-1", status, fell_through=True)
    lifecycle.may_change("CL-1", S.fulfilled, fell_through=True)
    with pytest.raises(TransitionRefused, match="is fulfilled"):
        lifecycle.may_change("CL-1", S.fulfilled, fell_through=False)
    with pytest.raises(TransitionRefused, match="is fell through"):
        lifecycle.may_change("CL-1", S.fell_through, fell_through=True)


def test_change_routes() -> None:
    """A change to a closing not planned yet is only stored; a planned one is re-planned."""
    assert lifecycle.change_route(S.received, fell_through=False, has_plan=False) == "store"
    assert lifecycle.change_route(S.ordering, fell_through=False, has_plan=True) == "replan"
    assert (
        lifecycle.change_route(S.received, fell_through=True, has_plan=False)
        == ChangeRoute.fall_through
    )
    assert lifecycle.change_route(S.fell_through, fell_through=True, has_plan=True) == "nothing"


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["pending", "scheduled"], True),
        (["accepted", "in_progress"], False),  # Offergrid cancels whole orders only
        (["cancelled", "rejected"], None),
        (["active", "failed"], False),
        (["some_new_status"], True),  # unknown: tried, and a refusal is handled then
    ],
)
def test_what_a_fall_through_cancels(statuses: list[str], expected: bool | None) -> None:
    """An order is cancelled unless an item is under way or live; ended orders are left alone."""
    assert lifecycle.fall_through_cancels(statuses) is expected


def test_which_line_is_repicked() -> None:
    """Only a rejected or failed line with an offer, in a live closing, is re-picked."""
    assert lifecycle.is_repickable(S.ordering, PlanLineState.rejected, has_offer=True)
    assert lifecycle.is_repickable(S.active, PlanLineState.failed, has_offer=True)
    assert not lifecycle.is_repickable(S.fell_through, PlanLineState.rejected, has_offer=True)
    assert not lifecycle.is_repickable(S.ordering, PlanLineState.cancelled, has_offer=True)
    assert not lifecycle.is_repickable(S.ordering, PlanLineState.rejected, has_offer=False)


def test_sync_watches_completed_items_for_active() -> None:
    """The sync keeps reading a completed item (it may become active), for a while, and no
    item whose status no later one follows."""
    assert lifecycle.sync_watches("completed", NOW - timedelta(days=2), NOW)
    assert not lifecycle.sync_watches("completed", NOW - timedelta(days=31), NOW)
    assert lifecycle.sync_watches("in_progress", NOW - timedelta(days=90), NOW)
    for final in ("active", "rejected", "cancelled", "failed"):
        assert not lifecycle.sync_watches(final, NOW, NOW)


def test_attention_reasons_are_plain() -> None:
    """Errors a person must fix get a plain reason; others pass and the run is started again."""
    auth = AuthenticationError("no", status_code=401, body=ErrorBody(), endpoint="/x")
    down = InternalServerError("down", status_code=503, body=ErrorBody(), endpoint="/x")
    assert "refused our API key" in (lifecycle.attention_reason(auth) or "")
    assert "could not be reached" in (lifecycle.attention_reason(down) or "")
    assert lifecycle.attention_reason(NothingOrderable("Nothing to order here.")) == (
        "Nothing to order here."
    )
    assert lifecycle.attention_reason(RuntimeError("database blip")) is None
    missing = NotFoundError("gone", status_code=404, body=ErrorBody(), endpoint="/x")
    assert lifecycle.attention_reason(missing) is None


@pytest.mark.parametrize(
    ("state", "started_ago", "restart"),
    [
        (None, None, True),
        ("CRASHED", 1, True),
        ("CANCELLED", 1, True),
        ("FAILED", 1, True),
        ("RUNNING", 1, False),
        ("RUNNING", 60, True),  # its runner was killed
        ("SCHEDULED", None, False),
        ("PENDING", 1, False),
        ("PENDING", 60, True),  # its worker was killed after taking it
        ("COMPLETED", 1, False),
    ],
)
def test_which_requests_the_reconciler_restarts(
    state: str | None, started_ago: int | None, restart: bool
) -> None:
    """A request whose run is missing, crashed, cancelled, failed or stuck running is restarted."""
    started = NOW - timedelta(minutes=started_ago) if started_ago is not None else None
    why = lifecycle.restart_decision(
        RunFact(state=state, started=started, attempt=1),
        now=NOW,
        stale_after=timedelta(minutes=15),
    )
    assert (why is not None) is restart


def test_reasons_a_person_must_act_on_are_kept_each_once() -> None:
    assert lifecycle.joined_reasons(None, "Power: none left.") == "Power: none left."
    both = lifecycle.joined_reasons("Power: none left.", "TV: none left.")
    assert both == "Power: none left. TV: none left."
    assert lifecycle.joined_reasons(both, "TV: none left.") == both


def test_a_closing_waiting_for_a_person_keeps_its_orders_followed_and_re_picked() -> None:
    assert ClosingStatus.needs_attention in lifecycle.TRACKED_STATUSES
    assert lifecycle.LIVE_STATUSES < lifecycle.TRACKED_STATUSES
    assert lifecycle.is_repickable(
        ClosingStatus.needs_attention, PlanLineState.rejected, has_offer=True
    )
    assert not lifecycle.is_repickable(
        ClosingStatus.fell_through, PlanLineState.rejected, has_offer=True
    )
