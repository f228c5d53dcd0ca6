"""The plain rules of a changed closing: which orders stand, which go again, what to re-pick."""

from __future__ import annotations

import re
import uuid
from datetime import date

import pytest
from pydantic import ValidationError

from models.change import ChangeOutcome, ClosingChange, ContactChange
from models.plan import OfferChoice, OfferSnapshot
from models.tables import Audience, PlanLineRow, PlanLineState
from offergrid.models import Category
from preclose.rules.policy import load_policy
from preclose.rules.replanning import (
    Decision,
    OrderedService,
    Step,
    Window,
    carry_flags,
    decide_date_change,
    exhausted_reason,
    may_try_again,
    next_offer,
    not_cancellable_detail,
    picks_from_lines,
    service_window,
    stale_contact_fields,
)
from preclose.rules.timing import plan_closing, service_timing
from preclose.wording.notify import Milestone, MilestoneFacts, NotificationContext, compose
from tests.fixtures_planning import at, make_closing

POLICY = load_policy()
D = date.fromisoformat
TODAY = D("2026-11-02")
NEW_MOVE_IN = D("2026-12-18")
WINDOWS = {
    "internet": Window(D("2026-12-04"), D("2026-12-18")),
    "security": Window(D("2026-12-21"), D("2026-12-23")),
}
ORDER_ON = {"internet": D("2026-12-04"), "security": D("2026-12-07")}
# What must never reach a buyer or an agent (as in the notification tests): IDs, codes, internals.
_TECHNICAL = [
    re.compile(r"\b(?:ord|item|off)-\w+", re.IGNORECASE),
    re.compile(r"\b(?:HTTP|status|error|exception|traceback|none|null)\b", re.IGNORECASE),
    re.compile(r"\b[a-z]+_[a-z_]+\b"),
    re.compile(r"[{}\[\]<>]"),
]


def _service(category: str = "internet", **facts: object) -> OrderedService:
    values: dict[str, object] = {
        "line_id": uuid.uuid4(),
        "category": category,
        "provider": "Lone Star Fiber",
        "state": "placed",
        "order_id": "ord-1",
    }
    values.update(facts)
    return OrderedService(**values)  # type: ignore[arg-type]


def _decide(
    *services: OrderedService, statuses: dict[str, list[tuple[str, str]]] | None = None
) -> list[Decision]:
    return decide_date_change(
        services,
        windows=WINDOWS,
        new_move_in=NEW_MOVE_IN,
        order_dates=ORDER_ON,
        today=TODAY,
        order_statuses=statuses,
    )


def _choice(
    offer_id: str, provider: str, price: float, regular: float | None = None
) -> OfferChoice:
    return OfferChoice(
        offer_id=offer_id,
        offer_name=f"{provider} plan",
        provider_name=provider,
        monthly_price=price,
        snapshot=OfferSnapshot(name=f"{provider} plan", regular_price=regular),
    )


# Windows and per-service decisions ---------------------------------------------------------------


def test_window_runs_from_the_requested_start_to_the_end_of_its_window() -> None:
    """Internet (by move-in) fits on its day, never before; security (after) over its window."""
    closing = make_closing(closing_date="2026-12-18")
    internet = service_timing(closing, Category.INTERNET, POLICY)
    security = service_timing(closing, Category.SECURITY, POLICY)
    assert service_window(internet) == Window(D("2026-12-18"), D("2026-12-18"))
    assert service_window(security) == Window(security.service_date, security.window_end)
    assert security.service_date > D("2026-12-18")


@pytest.mark.parametrize(
    ("facts", "step", "words"),
    [
        ({"state": "planned", "order_id": None}, Step.move, "will be ordered on Fri Dec 4"),
        ({"state": "fulfilled", "item_status": "active"}, Step.keep, "already in service"),
        (
            {"item_status": "accepted", "conveyed_move_in": D("2026-12-04")},
            Step.reorder,
            "carries the old move-in date",
        ),
        (
            {"item_status": "pending", "conveyed_move_in": NEW_MOVE_IN},
            Step.keep,
            "already carries the move-in date",
        ),
        (
            {"item_status": "scheduled", "scheduled_on": D("2026-12-10")},
            Step.keep,
            "which still fits",
        ),
        (
            {"item_status": "scheduled", "scheduled_on": D("2026-11-20")},
            Step.reorder,
            "which no longer fits (needed between Fri Dec 4 and Fri Dec 18)",
        ),
        (
            {"item_status": "in_progress", "scheduled_on": D("2026-11-20")},
            Step.flag,
            "the buyer needs to call Lone Star Fiber",
        ),
        ({"state": "rejected", "item_status": "rejected"}, Step.leave, ""),
        ({"state": "skipped", "order_id": None}, Step.leave, ""),
    ],
    ids=[
        "not ordered",
        "live",
        "undated order with old date",
        "undated order with new date",
        "booked inside window",
        "booked outside window",
        "under way outside window",
        "rejected",
        "nothing to order",
    ],
)
def test_each_service_gets_the_step_its_order_allows(
    facts: dict[str, object], step: Step, words: str
) -> None:
    """A date change moves, keeps, re-orders or flags each service by what its order can take."""
    [decision] = _decide(_service(**facts))
    assert decision.step == step
    assert words in decision.detail
    assert (decision.action_by == "buyer") is (step == Step.flag)


def test_a_reordered_service_takes_its_order_companions_with_it() -> None:
    """Offergrid cancels whole orders: a service sharing the order is ordered again too."""
    internet = _service(item_status="accepted", conveyed_move_in=D("2026-12-04"))
    security = _service(
        "security", provider="Guardian", item_status="scheduled", scheduled_on=D("2026-12-21")
    )
    decisions = _decide(
        internet,
        security,
        statuses={"ord-1": [("internet", "accepted"), ("security", "scheduled")]},
    )
    assert [d.step for d in decisions] == [Step.reorder, Step.reorder]
    assert "ordered together with internet" in decisions[1].detail


def test_an_order_holding_a_live_service_cannot_be_cancelled_so_the_service_is_flagged() -> None:
    """When the order also holds a live service, the one to re-order is flagged for the buyer."""
    security = _service(
        "security", provider="Guardian", item_status="scheduled", scheduled_on=D("2026-11-20")
    )
    insurance = _service("insurance", provider="Harbor", state="fulfilled", item_status="active")
    decisions = _decide(
        security,
        insurance,
        statuses={"ord-1": [("security", "scheduled"), ("insurance", "active")]},
    )
    assert [d.step for d in decisions] == [Step.flag, Step.keep]
    assert "home insurance in the same order is already in service" in decisions[0].detail
    assert decisions[0].outcome == ChangeOutcome.flagged
    assert decisions[0].sentence.startswith("Home security with Guardian: booked for Fri Nov 20")


def test_not_cancellable_detail_names_the_state_and_the_call_to_make() -> None:
    """A fell-through closing's stuck service says why and who must call which provider."""
    assert not_cancellable_detail("active", provider="Harbor") == (
        "already in service, so it could not be cancelled; "
        "the buyer needs to call Harbor to stop it."
    )
    assert "being installed right now" in not_cancellable_detail("in_progress", provider=None)
    blocked = not_cancellable_detail("scheduled", provider="Guardian", why="power is live")
    assert "can no longer be cancelled (power is live)" in blocked


# Re-picks ---------------------------------------------------------------------------------------


def test_next_offer_skips_tried_excluded_and_over_budget_offers_in_rank_order() -> None:
    """The re-pick is the best runner-up not tried, not excluded, and within the regular budget."""
    closing = make_closing(
        preferences={
            "excluded_providers": ["Skyreach"],
            "budget_caps": [{"category": "internet", "max_monthly": 60}],
        }
    )
    runners = [
        _choice("off-a", "Metro", 40),
        _choice("off-b", "Skyreach", 30),
        _choice("off-c", "Cable Co", 35, regular=75),
        _choice("off-d", "Fiber Co", 55),
        _choice("off-e", "Other Co", 50),
    ]
    pick = next_offer(runners, tried={"off-a"}, closing=closing, category="internet")
    assert pick.choice is not None and pick.choice.offer_id == "off-d"
    assert [r.offer_id for r in pick.runners_up] == ["off-e"]
    assert pick.passed_over == [
        "Skyreach plan: Skyreach is excluded by the buyer",
        "Cable Co plan: $75.00/month is over the $60.00 budget",
    ]
    none_left = next_offer(runners[:1], tried={"off-a"}, closing=closing, category="internet")
    assert none_left.choice is None


@pytest.mark.parametrize(("failures", "allowed"), [(0, True), (2, True), (3, False), (4, False)])
def test_a_category_is_tried_at_most_the_configured_number_of_times(
    failures: int, allowed: bool
) -> None:
    """With the default of three, a fourth order is never placed for the same service."""
    assert may_try_again(failures, 3) is allowed


def test_exhausted_reason_says_why_a_person_must_choose() -> None:
    """The flag reason names the service and whether the tries or the offers ran out."""
    assert exhausted_reason("internet", failures=3, max_attempts=3).startswith(
        "Internet: 3 orders ended without service (the most we try is 3)"
    )
    assert "no other offer" in exhausted_reason("energy", failures=1, max_attempts=3)


# Contact, picks and flags -----------------------------------------------------------------------


def test_stale_contact_ignores_formatting_and_case() -> None:
    """An order sent with the same email in other case and the same phone formatted is current."""
    same = stale_contact_fields(
        "Priya.N@Example.com",
        "+1 (312) 555-0182",
        email="priya.n@example.com",
        phone="+13125550182",
    )
    assert same == []
    assert stale_contact_fields(
        "old@example.com", "+13125550100", email="new@example.com", phone="+13125550182"
    ) == ["email", "phone"]


def _row(category: str, state: PlanLineState, **values: object) -> PlanLineRow:
    defaults: dict[str, object] = {
        "closing_id": uuid.uuid4(),
        "category": category,
        "importance": "essential",
        "offer_id": f"off-{category}",
        "offer_name": f"{category} plan",
        "reason": "best",
        "service_date": D("2026-12-15"),
        "placement_date": D("2026-12-01"),
        "state": state,
    }
    defaults.update(values)
    return PlanLineRow(**defaults)  # type: ignore[arg-type]


def test_a_replan_renews_only_the_ended_lines_it_was_told_to() -> None:
    """Ordered and planned lines are timed again; a rejected one only when renewed."""
    rejected = _row("internet", PlanLineState.rejected)
    cancelled = _row("security", PlanLineState.cancelled)
    placed = _row("energy", PlanLineState.placed)
    picks = picks_from_lines([rejected, cancelled, placed], renew=[cancelled.id])
    assert [pick.category for pick in picks] == [Category.SECURITY, Category.ENERGY]


def test_a_flag_for_a_person_survives_a_replan() -> None:
    """A category flagged for a person stays at risk with its reason when the dates move."""
    flagged = _row(
        "internet",
        PlanLineState.skipped,
        offer_id=None,
        offer_name=None,
        at_risk=True,
        risk_reason="Internet: a person must choose a provider.",
        importance="recommended",
    )
    closing = make_closing(closing_date="2026-12-15")
    plan = plan_closing(closing, picks_from_lines([flagged]), POLICY, as_of=at(D("2026-11-02")))
    assert not plan.lines[0].at_risk  # a recommended line without an offer is not a risk itself
    [line] = carry_flags(plan, [flagged]).lines
    assert line.at_risk and line.risk_reason == "Internet: a person must choose a provider."


# The change itself and its messages -------------------------------------------------------------


def test_a_fall_through_comes_alone_and_an_empty_change_is_refused() -> None:
    """Dates or details together with a fall-through are refused, naming fell_through."""
    with pytest.raises(ValidationError, match="fell_through: give it alone"):
        ClosingChange(fell_through=True, closing_date=D("2026-12-20"))
    with pytest.raises(ValidationError, match="give at least one"):
        ClosingChange()
    with pytest.raises(ValidationError, match="phone"):
        ClosingChange(contact=ContactChange(phone="5125550100"))


def _context(**facts: object) -> NotificationContext:
    closing = make_closing(closing_date="2026-12-18")
    return NotificationContext.from_closing(closing, MilestoneFacts(**facts))  # type: ignore[arg-type]


def test_closing_changed_lists_each_service_in_plain_words() -> None:
    """One message: what moved, then one line per service, free of IDs and internals."""
    decisions = _decide(
        _service(item_status="scheduled", scheduled_on=D("2026-11-20")),
        _service("security", provider="Guardian", state="planned", order_id=None),
    )
    context = _context(
        previous_closing_date=D("2026-12-04"),
        previous_move_in_date=D("2026-12-04"),
        changes=[d.sentence for d in decisions],
    )
    for audience in Audience:
        message = compose(Milestone.closing_changed, context, audience=audience)
        assert message.subject == "Closing moved to Friday, December 18, 2026: services updated"
        assert "  - Internet with Lone Star Fiber: booked for Fri Nov 20" in message.body
        assert "  - Home security with Guardian: not ordered yet" in message.body
        for pattern in _TECHNICAL:
            assert not pattern.search(message.subject + message.body), pattern.pattern


def test_move_in_only_change_names_the_move_in() -> None:
    """When only the move-in moved, the subject and text say so, not the closing."""
    message = compose(
        Milestone.closing_changed,
        _context(previous_closing_date=D("2026-12-18"), previous_move_in_date=D("2026-12-10")),
    )
    assert message.subject.startswith("Move-in moved to Friday, December 18, 2026")
    assert "Move-in moved from Thursday, December 10, 2026" in message.body
    assert "closing at" not in message.body


def test_fall_through_message_asks_the_buyer_to_call_and_tells_the_agent_who_calls() -> None:
    """The services left running are listed; the buyer is asked to call, the agent told who."""
    context = _context(changes=["Power with Harbor Energy: already in service."])
    to_buyer = compose(Milestone.closing_cancelled, context, audience=Audience.buyer)
    to_agent = compose(Milestone.closing_cancelled, context, audience=Audience.agent)
    assert "  - Power with Harbor Energy: already in service." in to_buyer.body
    assert "please call them" in to_buyer.body
    assert "John needs to call them" in to_agent.body


def test_repick_and_flag_messages_say_why_and_what_next() -> None:
    """The agent reads what the provider said, and the new pick or the decision asked of them."""
    repick = compose(
        Milestone.order_repicked,
        _context(
            category="internet",
            provider="Metro 5G Home",
            reason="No capacity here.",
            next_provider="Lakeshore Cable",
            next_offer="Cable 500",
        ),
        audience=Audience.agent,
    )
    assert repick.subject == "John's internet is now ordered from Lakeshore Cable"
    assert "(No capacity here). We've ordered Cable 500 from Lakeshore Cable instead" in repick.body
    flag = compose(
        Milestone.needs_person,
        _context(category="internet", provider="Metro 5G Home", attempts=3),
        audience=Audience.agent,
    )
    assert (
        "is left after 3 tries" in flag.body and "Please choose a provider with John" in flag.body
    )


def test_a_change_replaces_only_its_fields_and_is_checked_as_a_whole_closing() -> None:
    """A new closing date keeps an explicit move-in; an impossible pair names move_in_date."""
    closing = make_closing(closing_date="2026-12-15", move_in_date="2026-12-18")
    moved = ClosingChange(closing_date=D("2026-12-22")).applied_to(closing)
    assert (moved.closing_date, moved.move_in_date) == (D("2026-12-22"), D("2026-12-18"))
    with pytest.raises(ValueError, match=r"^move_in_date: move-in 2026-12-18 is 45 days before"):
        ClosingChange(closing_date=D("2027-02-01")).applied_to(closing)
    fixed = ClosingChange(contact=ContactChange(phone="+1 512 555 0199")).applied_to(closing)
    assert fixed.buyer.phone == "+15125550199" and fixed.buyer.email == closing.buyer.email
