"""The `coordinate closing` flow: from a closing request to a plan with its first orders placed."""

from __future__ import annotations

import uuid
from datetime import datetime

from prefect import flow, get_run_logger

from flows.place import place_due_orders
from flows.runs import FLOW_OPTIONS, coordinate_run_name, tag_this_run
from models.closing import ClosingRequest
from models.plan import Plan
from models.summary import ClosingSummary, LineSummary
from models.tables import ClosingStatus, PlanLineState
from preclose.names import as_of_or_now, closing_tag
from preclose.rules import lifecycle
from preclose.rules.lifecycle import NothingOrderable, TransitionRefused
from preclose.runtime import db_session
from preclose.storage import repository
from preclose.storage.repository import StaleClosingError
from preclose.wording.notify import Milestone, MilestoneFacts
from tasks.artifacts import publish
from tasks.catalog import cached_fetch_offers
from tasks.closings import load_closing, store_closing
from tasks.lifecycle import closing_facts, finish_request, mark_needs_attention, request_facts
from tasks.notifications import notify_milestone
from tasks.planning import passed_through, plan_and_store
from tasks.schedules import sync_closing_schedule
from tasks.self_serve import SELF_SERVE_CATEGORIES, open_buyer_link
from tasks.tracking import advance_closings

# A change stored while the plan was being made: plan again from the new request, this often.
_PLAN_TRIES = 3


@flow(
    name="coordinate closing", flow_run_name=coordinate_run_name, log_prints=False, **FLOW_OPTIONS
)
def coordinate_closing(
    closing: ClosingRequest | None = None,
    as_of: datetime | None = None,
    request_id: uuid.UUID | None = None,
) -> ClosingSummary:
    """Store the closing, fetch what is offered at the address, plan, and place what is due now.

    A person fills in `closing`; a machine (the CRM API, a retry, the reconciler) passes the
    `request_id` of the request it stored, so the buyer's details stay in our tables.
    """
    now = as_of_or_now(as_of)
    if request_id is not None:
        request = request_facts(request_id)
        closing_id, created = request.closing_id, False
    elif closing is not None:
        closing_id, created = store_closing(closing, now)
    else:
        raise ValueError("closing: fill in the closing (or give the request_id of a stored one)")
    facts = closing_facts(closing_id)
    tag_this_run(closing_tag(facts.crm_closing_id))
    try:
        summary = _coordinate(closing_id, created=created, now=now)
    except Exception as err:
        reason = lifecycle.attention_reason(err)
        if reason is None:
            raise  # a passing failure: the reconciler starts the run again
        mark_needs_attention(closing_id, reason, request_id)
        publish(closing_id, now)
        raise
    finish_request(request_id, f"done: {summary.status}")
    return summary


def _coordinate(closing_id: uuid.UUID, *, created: bool, now: datetime) -> ClosingSummary:
    """Plan a received closing (or resume one planned before), place what is due, schedule."""
    logger = get_run_logger()
    facts = closing_facts(closing_id)
    problems: list[str] = []
    if facts.status == ClosingStatus.received:
        plan = _plan(closing_id, now)
        if plan is None:
            logger.info("The closing fell through before it was planned: nothing to do")
            return summarize(closing_id, created=created, orders=[], problems=[])
        problems = plan.problems
    elif facts.status not in lifecycle.LIVE_STATUSES:
        # Fell through, fulfilled, or waiting for a person: this run has nothing to add.
        logger.info("The closing is %s: nothing to coordinate", lifecycle.describe(facts.status))
        return summarize(closing_id, created=created, orders=[], problems=[])
    due_now = _due_now(closing_id, now)
    # A subflow run costs the Prefect API several calls: start one only when an order is due.
    orders = (
        place_due_orders(crm_closing_id=facts.crm_closing_id, as_of=now).orders if due_now else []
    )
    # Later orders go out on their own dates: one scheduled run per date, visible in the UI.
    sync_closing_schedule(closing_id, now)
    advance_closings([closing_id])
    publish(closing_id, now)
    return summarize(closing_id, created=created, orders=orders, problems=problems)


def _plan(closing_id: uuid.UUID, now: datetime) -> Plan | None:
    """Plan the closing and tell the plan; None when it fell through first."""
    for _ in range(_PLAN_TRIES):
        facts = closing_facts(closing_id)
        offers = cached_fetch_offers()(zip_code=facts.zip5)
        try:
            plan = plan_and_store(
                closing_id, passed_through(offers), now, first=True, expected_version=facts.version
            )
        except TransitionRefused:
            return None
        except StaleClosingError:
            continue  # a change landed meanwhile: plan again from the closing as it is now
        break
    else:
        raise RuntimeError("the closing kept changing while it was planned; run it again")
    get_run_logger().info(
        "Planned %d services for %s (%d at risk)",
        len(plan.lines),
        facts.crm_closing_id,
        len(plan.at_risk),
    )
    services = [
        f"{line.category.capitalize()} from {line.choice.provider_name or line.choice.offer_name}"
        for line in plan.lines
        if line.choice is not None
    ]
    if not services:
        raise NothingOrderable(
            "No service of the plan can be ordered at this address: "
            + "; ".join(plan.problems or ["no offer fits the policy"])
        )
    choose_url = buyer_link(closing_id, load_closing(closing_id), plan)
    notify_milestone(
        closing_id,
        Milestone.plan_ready,
        MilestoneFacts(services=services, choose_url=choose_url),
        topic="plan",
    )
    return plan


def buyer_link(closing_id: uuid.UUID, closing: ClosingRequest, plan: Plan) -> str | None:
    """Offergrid's link for the optional services the plan leaves to the buyer, if they hear it."""
    planned = {str(line.category) for line in plan.lines if line.choice is not None}
    if not closing.buyer.contact_consent or planned.issuperset(SELF_SERVE_CATEGORIES):
        return None  # nobody to give it to, or nothing left to choose: no Offergrid call
    state = open_buyer_link(closing_id, return_state=True)
    if not state.is_completed():
        get_run_logger().warning("No self-serve link in the plan message: Offergrid made none")
        return None
    url: str | None = state.result()
    return url


def _due_now(closing_id: uuid.UUID, now: datetime) -> bool:
    """Whether a planned line of the closing is due to be ordered today at the property."""
    with db_session() as session:
        row = repository.get_closing(session=session, closing_id=closing_id)
        assert row is not None
        today = row.closing_request().local_date(now)
        lines = repository.list_plan_lines(session=session, closing_id=closing_id)
    return any(
        line.offer_id is not None
        and line.state == PlanLineState.planned
        and line.placement_date <= today
        for line in lines
    )


def summarize(
    closing_id: uuid.UUID, *, created: bool, orders: list[str], problems: list[str]
) -> ClosingSummary:
    """The summary of a stored closing: its lines as they stand now."""
    with db_session() as session:
        row = repository.get_closing(session=session, closing_id=closing_id)
        assert row is not None
        lines = repository.list_plan_lines(session=session, closing_id=closing_id)
    pending = [line.placement_date for line in lines if line.state == "planned"]
    return ClosingSummary(
        closing_id=closing_id,
        crm_closing_id=row.crm_closing_id,
        created=created,
        status=str(row.status),
        problems=problems,
        orders_placed=orders,
        next_placement=min(pending) if pending else None,
        lines=[
            LineSummary(
                category=line.category,
                provider=line.provider_name,
                offer=line.offer_name,
                service_date=line.service_date,
                placement_date=line.placement_date,
                state=str(line.state),
                at_risk=line.at_risk,
                risk=line.risk_reason,
            )
            for line in lines
        ],
    )
