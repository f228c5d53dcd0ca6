"""A closing's life: its states, every allowed move between them and why, and the decisions
that go with them. Plain code, no Prefect and no I/O.

Everything that changes a closing's status asks `next_status` (the repository does, under the
closing's row lock), so a flow, the HTTP API and the CRM functions cannot disagree about what may
happen now. A move that is not allowed raises `TransitionRefused`, which names the current state.

    received ──plan──▶ planned ──order placed──▶ ordering ──service live──▶ active
        │                 │                          │                         │
        └──fail──▶ needs attention ◀──fail───────────┴─────────────────────────┘
                      │  ▲
                retry │  │ (a person fixes the cause, then retries)
                      ▼  │
                   received                     all services live ──▶ fulfilled
    any state but fell through ──fall through──▶ fell through (final)

A closing needs attention when a run failed for a reason a person must fix, or when a service it
ordered has no offer left to try (a person must choose one). Its orders already on their way are
still placed and followed meanwhile; a retry plans it again, keeping every order sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from models.tables import ClosingStatus, PlanLineState
from offergrid.errors import (
    APIConnectionError,
    AuthenticationError,
    InternalServerError,
    PermissionDeniedError,
    RateLimitError,
)
from offergrid.models.enums import FULFILLED, TERMINAL, OrderStatus

__all__ = [
    "FINAL_STATUSES",
    "LIVE_STATUSES",
    "RESTARTABLE_RUN_STATES",
    "TERMINAL_ITEM_STATUSES",
    "TRACKED_STATUSES",
    "WATCHED_AFTER_COMPLETED",
    "ChangeRoute",
    "Event",
    "Move",
    "RunFact",
    "TransitionRefused",
    "attention_reason",
    "change_route",
    "describe",
    "fall_through_cancels",
    "is_repickable",
    "joined_reasons",
    "may_change",
    "next_status",
    "progress_event",
    "restart_decision",
    "sync_watches",
]

S = ClosingStatus

# Closings whose services are still being arranged: plans, orders, re-picks and risks apply.
LIVE_STATUSES: frozenset[ClosingStatus] = frozenset({S.received, S.planned, S.ordering, S.active})
# Closings whose orders are placed and followed: the live ones, and those waiting for a person
# (a person choosing one service's provider does not hold up the others on their way).
TRACKED_STATUSES: frozenset[ClosingStatus] = LIVE_STATUSES | {S.needs_attention}
# Nothing more happens to these by itself.
FINAL_STATUSES: frozenset[ClosingStatus] = frozenset({S.fulfilled, S.fell_through})
TERMINAL_ITEM_STATUSES: frozenset[str] = frozenset(str(status) for status in TERMINAL)


class Event(StrEnum):
    """What happens to a closing, in the words of the transition it asks for."""

    plan = "plan"  # coordinate stored a plan
    order_placed = "order placed"  # a first order went to Offergrid
    service_live = "service live"  # a first service is completed or active
    all_live = "all live"  # every service to order is live
    fall_through = "fall through"  # the CRM reports the deal is off
    fail = "fail"  # a run failed for a reason a person must fix
    retry = "retry"  # a person asks to try again


@dataclass(frozen=True)
class Move:
    """One allowed transition: from which states, to which, and why it happens."""

    event: Event
    sources: frozenset[ClosingStatus]
    target: ClosingStatus
    reason: str


_MOVES: dict[Event, Move] = {
    move.event: move
    for move in (
        Move(Event.plan, frozenset({S.received}), S.planned, "the plan is stored"),
        Move(
            Event.order_placed,
            frozenset({S.received, S.planned}),
            S.ordering,
            "a first order went to Offergrid",
        ),
        Move(
            Event.service_live,
            frozenset({S.received, S.planned, S.ordering}),
            S.active,
            "a first service is up and running",
        ),
        Move(
            Event.all_live,
            frozenset({S.received, S.planned, S.ordering, S.active}),
            S.fulfilled,
            "every service is up and running",
        ),
        Move(
            Event.fall_through,
            frozenset({*LIVE_STATUSES, S.needs_attention, S.fulfilled}),
            S.fell_through,
            "the closing fell through",
        ),
        Move(
            Event.fail,
            LIVE_STATUSES,
            S.needs_attention,
            "a run failed, or a service has no offer left; a person must act",
        ),
        Move(Event.retry, frozenset({S.needs_attention}), S.received, "a person asked to retry"),
    )
}


def describe(status: ClosingStatus | str) -> str:
    """A status as a person reads it: `fell through`, `needs attention`."""
    return str(status).replace("_", " ")


class TransitionRefused(ValueError):
    """A closing cannot take this step in its current state; the message names the state."""

    def __init__(self, crm_closing_id: str, current: ClosingStatus, event: Event) -> None:
        """Name the closing, its current state and the step refused."""
        super().__init__(
            f"crm_closing_id: closing {crm_closing_id!r} is {describe(current)}; "
            f"it cannot take the step {event.value!r} now"
        )
        self.crm_closing_id = crm_closing_id
        self.current = current
        self.event = event


def next_status(crm_closing_id: str, current: ClosingStatus, event: Event) -> ClosingStatus:
    """The state `event` moves a closing to from `current`, or TransitionRefused."""
    current = ClosingStatus(current)
    move = _MOVES[event]
    if current not in move.sources:
        raise TransitionRefused(crm_closing_id, current, event)
    return move.target


def allows(current: ClosingStatus, event: Event) -> bool:
    """Whether `event` may happen to a closing in `current`."""
    return ClosingStatus(current) in _MOVES[event].sources


def progress_event(
    line_states: Iterable[PlanLineState | str], *, a_person_must_choose: bool = False
) -> Event | None:
    """The step the closing's current plan lines call for, from least to most advanced.

    Skipped lines (nothing to order) do not count; a line cancelled for a re-order or ended for a
    re-pick does not move the closing back. While a person must choose an essential service's
    offer (none was left to pick), the closing is not fulfilled, however many others are live.
    """
    states = [PlanLineState(s) for s in line_states if PlanLineState(s) != PlanLineState.skipped]
    if not states:
        return None
    if all(s == PlanLineState.fulfilled for s in states):
        return Event.service_live if a_person_must_choose else Event.all_live
    if any(s == PlanLineState.fulfilled for s in states):
        return Event.service_live
    if any(s in (PlanLineState.placed, PlanLineState.placing) for s in states):
        return Event.order_placed
    return None


# May this change apply now? ----------------------------------------------------------------------


class ChangeRoute(StrEnum):
    """What a change does to a closing in its current state."""

    store = "store"  # nothing planned yet: store the change; the coordination plans with it
    replan = "replan"  # planned or ordered: store it and re-time, re-order or re-plan
    fall_through = "fall through"  # cancel what can be cancelled
    nothing = "nothing"  # a fall-through repeated: already done


def may_change(crm_closing_id: str, current: ClosingStatus, *, fell_through: bool) -> None:
    """Refuse (TransitionRefused) a change the closing can no longer take.

    A fall-through is taken in every state but fell through (a fulfilled closing then has services
    to stop); any other change only while the closing is live or needs attention.
    """
    current = ClosingStatus(current)
    if fell_through:
        if current == S.fell_through:
            raise TransitionRefused(crm_closing_id, current, Event.fall_through)
        return
    if current not in LIVE_STATUSES | {S.needs_attention}:
        raise TransitionRefused(crm_closing_id, current, Event.plan)


def change_route(current: ClosingStatus, *, fell_through: bool, has_plan: bool) -> ChangeRoute:
    """How the change flow applies an accepted change, given the state it finds."""
    current = ClosingStatus(current)
    if fell_through:
        return ChangeRoute.nothing if current == S.fell_through else ChangeRoute.fall_through
    return ChangeRoute.replan if has_plan else ChangeRoute.store


# What a fall-through cancels ---------------------------------------------------------------------

_ENDED = frozenset(
    {OrderStatus.REJECTED.value, OrderStatus.CANCELLED.value, OrderStatus.FAILED.value}
)
_BLOCKING = frozenset(
    {OrderStatus.IN_PROGRESS.value, OrderStatus.COMPLETED.value, OrderStatus.ACTIVE.value}
)


def fall_through_cancels(item_statuses: Iterable[str | None]) -> bool | None:
    """Whether a fall-through cancels this order (True), leaves it for the buyer to stop (False),
    or has nothing to do with it (None: every item already ended).

    Offergrid cancels whole orders only, and none holding an item under way or live.
    """
    live = [str(s or "") for s in item_statuses if str(s or "") not in _ENDED]
    if not live:
        return None
    # Known blockers only: an unfamiliar status is tried, and Offergrid's refusal is handled then.
    return not any(s in _BLOCKING for s in live)


# Which line is re-picked -------------------------------------------------------------------------


def is_repickable(
    closing_status: ClosingStatus, line_state: PlanLineState, *, has_offer: bool
) -> bool:
    """Whether a current line is re-picked: its order ended unfulfilled in a closing whose orders
    are followed (live, or waiting for a person about another service)."""
    return (
        ClosingStatus(closing_status) in TRACKED_STATUSES
        and PlanLineState(line_state) in (PlanLineState.rejected, PlanLineState.failed)
        and has_offer
    )


# Which items the sync still reads ----------------------------------------------------------------

# `completed` may still become `active`; after this long without that, the item is left alone.
WATCHED_AFTER_COMPLETED = timedelta(days=30)
_NO_LATER_STATUS = TERMINAL_ITEM_STATUSES - {OrderStatus.COMPLETED.value}


def sync_watches(status: str | None, status_at: datetime | None, as_of: datetime) -> bool:
    """Whether the sync still reads an item: any status a newer one may follow."""
    if status in _NO_LATER_STATUS:
        return False
    if status == OrderStatus.COMPLETED.value and status_at is not None:
        return as_of - status_at <= WATCHED_AFTER_COMPLETED
    return True


def is_live_service(status: str | None) -> bool:
    """Whether an item's status means its service is up and running."""
    return status in {str(s) for s in FULFILLED}


# Failure that a person must see ------------------------------------------------------------------


def attention_reason(error: BaseException) -> str | None:
    """The plain reason a person must act on after a run failed with `error`, or None when the
    failure may pass (a crash, a database blip) and the run is simply started again."""
    if isinstance(error, AuthenticationError | PermissionDeniedError):
        return "Offergrid refused our API key; check PRECLOSE_OFFERGRID_API_KEY, then retry."
    if isinstance(error, InternalServerError | APIConnectionError | RateLimitError):
        return "Offergrid could not be reached after every retry; retry once it is back."
    if isinstance(error, NothingOrderable):
        return str(error)
    return None


def joined_reasons(held: str | None, reason: str) -> str:
    """What a person must act on, with `reason` added to the reasons already `held` (once)."""
    if not held:
        return reason
    return held if reason in held else f"{held} {reason}"


def attention_topic(since: datetime | None, reason: str) -> str:
    """The agent's message topic for one spell of needs attention: each new spell is told once."""
    return f"attention:{since.isoformat() if since else reason}"


class NothingOrderable(RuntimeError):
    """No service of the closing's plan can be ordered at its address."""


# Durable intake: which accepted requests to start again ------------------------------------------

# Prefect run states after which a request's run will never finish it.
RESTARTABLE_RUN_STATES = frozenset({"CRASHED", "CANCELLED", "FAILED"})
_WAITING = frozenset({"SCHEDULED", "PENDING", "PAUSED", "CANCELLING"})
_TAKEN = frozenset({"PENDING", "RUNNING"})


@dataclass(frozen=True)
class RunFact:
    """What the reconciler knows of an accepted request's run."""

    state: str | None  # the run's state type (COMPLETED, CRASHED...), None when there is no run
    started: datetime | None  # when the run entered its current state (pending, running)
    attempt: int  # how many runs were started for the request so far


def restart_decision(run: RunFact, *, now: datetime, stale_after: timedelta) -> str | None:
    """Why an unfinished request's run must be started again, or None to leave it.

    A run that is missing, crashed, cancelled (a stopped runner cancels its runs), failed (for a
    passing reason: a run that failed for a person's reason finished its request), or pending or
    running for longer than `stale_after` (its runner was killed) is started again; the caller
    gives up (and asks a person) after its most attempts.
    """
    if run.state is None:
        why = "its run was never started"
    elif run.state in RESTARTABLE_RUN_STATES:
        why = f"its run is {run.state.lower()}"
    elif run.state in _TAKEN and run.started is not None and now - run.started > stale_after:
        # A worker killed after taking the run leaves it pending or running for ever.
        why = f"its run has been {run.state.lower()} too long (its runner was stopped)"
    elif run.state == "COMPLETED":
        # Finished without recording the request done (a crash in between): record it.
        return None
    elif run.state in _WAITING or run.state == "RUNNING":
        return None
    else:
        why = f"its run is {run.state.lower()}"
    return why
