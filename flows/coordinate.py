"""The `coordinate closing` flow: from a closing request to a plan with its first orders placed."""

from __future__ import annotations

import uuid
from datetime import datetime

from prefect import flow, get_run_logger

from flows.place import place_due_orders
from flows.runs import as_of_or_now, closing_tag, coordinate_run_name, tag_this_run
from models.closing import ClosingRequest
from models.plan import Plan
from models.summary import ClosingSummary, LineSummary
from preclose import repository
from preclose.notify import Milestone
from preclose.runtime import db_session
from tasks.artifacts import publish
from tasks.catalog import cached_fetch_offers
from tasks.closings import store_closing
from tasks.notifications import notify_milestone
from tasks.planning import plan_and_store
from tasks.schedules import sync_closing_schedule
from tasks.self_serve import SELF_SERVE_CATEGORIES, open_buyer_link


@flow(name="coordinate closing", flow_run_name=coordinate_run_name, log_prints=False)
def coordinate_closing(closing: ClosingRequest, as_of: datetime | None = None) -> ClosingSummary:
    """Store the closing, fetch what is offered at the address, plan, and place what is due now."""
    now = as_of_or_now(as_of)
    logger = get_run_logger()
    tag_this_run(closing_tag(closing.crm_closing_id))
    closing_id, created = store_closing(closing, now)
    offers = cached_fetch_offers()(zip_code=closing.property.address.zip5)
    plan = plan_and_store(closing_id, offers, now)
    logger.info(
        "Planned %d services for %s (%d at risk)",
        len(plan.lines),
        closing.crm_closing_id,
        len(plan.at_risk),
    )
    services = [
        f"{line.category.capitalize()} from {line.choice.provider_name or line.choice.offer_name}"
        for line in plan.lines
        if line.choice is not None
    ]
    if services:
        choose_url = buyer_link(closing_id, closing, plan)
        notify_milestone(
            closing_id, Milestone.plan_ready, topic="plan", services=services, choose_url=choose_url
        )
    today = closing.local_date(now)
    due_now = any(line.choice is not None and line.placement_date <= today for line in plan.lines)
    # A subflow run costs the Prefect API several calls: start one only when an order is due.
    orders = (
        place_due_orders(crm_closing_id=closing.crm_closing_id, as_of=now).orders if due_now else []
    )
    # Later orders go out on their own dates: one scheduled run per date, visible in the UI.
    sync_closing_schedule(closing_id, now)
    publish(closing_id, now)
    return summarize(closing_id, created=created, orders=orders, problems=plan.problems)


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
