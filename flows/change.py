"""The `change closing` flow: a closing moved, fell through, or had its details corrected."""

from __future__ import annotations

import uuid
from datetime import datetime

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.place import place_due_orders
from flows.runs import FLOW_OPTIONS, tag_this_run
from models.change import ChangeOutcome, ChangeSummary, ClosingChange, ServiceConsequence
from models.tables import ClosingStatus
from offergrid.models import Order
from preclose.names import as_of_or_now, closing_tag
from preclose.rules import lifecycle
from preclose.rules.lifecycle import ChangeRoute
from preclose.rules.order_placement import FELL_THROUGH_REASON
from preclose.rules.replanning import (
    Decision,
    Step,
    cannot_cancel,
    group_by_order,
    not_cancellable_detail,
    refusal_reason,
    service_name,
    stale_contact_fields,
)
from preclose.runtime import db_session
from preclose.storage import repository
from preclose.storage.repository import StaleClosingError
from preclose.wording.notify import Milestone, MilestoneFacts, consequence_words
from tasks.artifacts import publish
from tasks.catalog import cached_fetch_offers
from tasks.changes import (
    StoredChange,
    cancel_order,
    cancel_unordered_lines,
    describe_items,
    read_closing_orders,
    settle_placements,
    store_change,
)
from tasks.lifecycle import finish_request, mark_needs_attention, request_facts
from tasks.notifications import notify_milestone
from tasks.planning import passed_through, plan_and_store
from tasks.replan import decide_new_dates, save_new_dates
from tasks.schedules import cancel_closing_schedule, sync_closing_schedule
from tasks.self_serve import follow_change

# What Offergrid (and the provider) read on an order we cancel to place it again.
MOVED_REASON = "The closing dates changed; a new order with the new dates follows"
# Item statuses after which an order no longer stands for a service.
_ENDED = frozenset({"rejected", "cancelled", "failed"})
_BLOCKING = frozenset({"in_progress", "completed", "active"})
_STORE_TRIES = 3


def _has_plan(closing_id: uuid.UUID) -> bool:
    with db_session() as session:
        return bool(repository.list_plan_lines(session=session, closing_id=closing_id))


def change_run_name() -> str:
    """`change CRM-123 (moved)`, `change CRM-123 (fell through)`: the closing, never its people."""
    change = flow_run.parameters.get("change")
    if change is None:
        # Started by a machine with a request ID: it named the run already (never with people).
        return str(flow_run.name or "change")
    crm_id = flow_run.parameters.get("crm_closing_id") or "?"
    data = change.model_dump() if isinstance(change, ClosingChange) else change or {}
    kinds = [
        word
        for key, word in (
            ("fell_through", "fell through"),
            ("closing_date", "moved"),
            ("move_in_date", "moved"),
            ("address", "address"),
            ("contact", "contact"),
        )
        if data.get(key)
    ]
    return f"change {crm_id} ({', '.join(dict.fromkeys(kinds)) or 'change'})"


@flow(name="change closing", flow_run_name=change_run_name, **FLOW_OPTIONS)
def change_closing(
    crm_closing_id: str | None = None,
    change: ClosingChange | None = None,
    as_of: datetime | None = None,
    request_id: uuid.UUID | None = None,
) -> ChangeSummary:
    """Apply a change to a coordinated closing: re-time, re-order or cancel its services, and tell
    the buyer and the agent what it means for each service in one message.

    A person fills in the CRM ID and the change; a machine passes the `request_id` of the change
    it stored, so corrected contact details stay in our tables.
    """
    now = as_of_or_now(as_of)
    if request_id is not None:
        request = request_facts(request_id)
        crm_closing_id = request.crm_closing_id
        change = ClosingChange.model_validate(request.body or {})
    if crm_closing_id is None or change is None:
        raise ValueError("change: give the CRM closing ID and the change (or a request_id)")
    tag_this_run(closing_tag(crm_closing_id))
    try:
        summary = _change(crm_closing_id, change, now)
    except Exception as err:
        reason = lifecycle.attention_reason(err)
        closing = _closing_id(crm_closing_id)
        if reason is None or closing is None:
            raise  # a passing failure (or bad input): the reconciler starts the run again
        mark_needs_attention(closing, reason, request_id)
        publish(closing, now)
        raise
    finish_request(request_id, f"done: {summary.status}")
    return summary


def _closing_id(crm_closing_id: str) -> uuid.UUID | None:
    with db_session() as session:
        row = repository.get_closing_by_crm_id(session=session, crm_closing_id=crm_closing_id)
    return row.id if row is not None else None


def _store(crm_closing_id: str, change: ClosingChange, now: datetime) -> StoredChange:
    """Store the change; a coordination that stored its plan meanwhile makes it read again."""
    for _ in range(_STORE_TRIES):
        try:
            return store_change(crm_closing_id, change, now)
        except StaleClosingError:
            continue
    raise RuntimeError("the closing kept changing while the change was stored; run it again")


def _change(crm_closing_id: str, change: ClosingChange, now: datetime) -> ChangeSummary:
    """Store the change, then do what the lifecycle routes it to in the closing's state."""
    stored = _store(crm_closing_id, change, now)
    # The buyer's Offergrid link and customer record follow the change (no call when unchanged).
    follow_change(stored.closing_id, stored.before, fell_through=change.fell_through)
    route = lifecycle.change_route(
        stored.status, fell_through=change.fell_through, has_plan=_has_plan(stored.closing_id)
    )
    if route == ChangeRoute.fall_through or (route == ChangeRoute.nothing and change.fell_through):
        return _fall_through(crm_closing_id, stored, now, change.reason)
    summary = ChangeSummary(
        closing_id=stored.closing_id,
        crm_closing_id=crm_closing_id,
        status=stored.status.value,
        changed=stored.changed,
    )
    if not stored.changed:
        get_run_logger().info("The change matches the closing as stored: nothing to do")
        return summary
    if route == ChangeRoute.store:
        # Nothing planned yet: the coordination plans from the closing as it is now.
        get_run_logger().info("Stored; the closing is not planned yet, so its plan will use it")
        return summary

    replan = stored.dates_moved or stored.address_corrected
    withdrawn = settle_placements(stored.closing_id, withdraw=replan)
    found = read_closing_orders(stored.closing_id, withdraw_unfound=replan)
    orders, withdrawn = found.orders, [*withdrawn, *found.withdrawn]
    if stored.address_corrected:
        summary = _new_address(stored, summary, now)
    elif stored.dates_moved:
        summary = _new_dates(stored, summary, orders, withdrawn, now)
    if stored.contact_corrected:
        summary.consequences.extend(_old_contact(stored, orders))
    if replan:
        placed = place_due_orders(crm_closing_id=crm_closing_id, as_of=now)
        summary.orders_placed = placed.orders
        sync_closing_schedule(stored.closing_id, now)
    _tell(stored, summary, change.reason)
    publish(stored.closing_id, now)
    return summary


def _consequence(decision: Decision) -> ServiceConsequence | None:
    if decision.outcome is None:
        return None
    return ServiceConsequence(
        category=decision.category,
        provider=decision.provider,
        outcome=decision.outcome,
        detail=decision.detail,
        action_by=decision.action_by,
    )


def _new_dates(
    stored: StoredChange,
    summary: ChangeSummary,
    orders: list[Order],
    withdrawn: list[str],
    now: datetime,
) -> ChangeSummary:
    """Decide per service, cancel what must be ordered again, and store the re-timed plan."""
    decisions = decide_new_dates(
        stored.closing_id, orders, withdrawn, stored.before.effective_move_in, now
    )
    by_id = {order.order_id: order for order in orders}
    cancelled: list[str] = []
    for order_id, group in group_by_order(d for d in decisions if d.step == Step.reorder).items():
        result = cancel_order(order_id, MOVED_REASON)
        if result.cancelled:
            cancelled.append(order_id)
            continue
        current = result.order or by_id.get(order_id)
        items = (
            [(str(i.category or ""), str(i.status or "")) for i in current.items] if current else []
        )
        refused = {d.line_id for d in group}
        decisions = [
            cannot_cancel(d, refusal_reason(items, d.category)) if d.line_id in refused else d
            for d in decisions
        ]
    renew = [d.line_id for d in decisions if d.step == Step.reorder]
    flags = {d.line_id: d.sentence for d in decisions if d.step == Step.flag}
    save_new_dates(stored.closing_id, now, renew, withdrawn, flags)
    consequences = [c for c in map(_consequence, decisions) if c is not None]
    return summary.model_copy(
        update={
            "consequences": consequences,
            "orders_cancelled": cancelled,
            "needs_action": [d.sentence for d in decisions if d.step == Step.flag],
        }
    )


def _new_address(stored: StoredChange, summary: ChangeSummary, now: datetime) -> ChangeSummary:
    """Plan the closing again from the catalog at the corrected address (nothing was ordered)."""
    offers = cached_fetch_offers()(zip_code=stored.after.property.address.zip5)
    plan = plan_and_store(stored.closing_id, passed_through(offers), now)
    consequences = [
        ServiceConsequence(
            category=str(line.category),
            provider=line.choice.provider_name if line.choice else None,
            outcome=ChangeOutcome.replanned,
            detail=(
                consequence_words(
                    "replanned",
                    ordered_on=None
                    if line.due_now
                    else f"on {line.placement_date:%a %b} {line.placement_date.day}",
                )
                if line.choice
                else consequence_words("nothing_to_order", why=line.problem or line.reason)
            ),
        )
        for line in plan.lines
    ]
    return summary.model_copy(update={"consequences": consequences})


def _old_contact(stored: StoredChange, orders: list[Order]) -> list[ServiceConsequence]:
    """The ordered services whose order went out with the buyer's old email or phone."""
    buyer = stored.after.buyer
    stale_items: list[tuple[str, str, list[str]]] = []
    for order in orders:
        sent = order.customer_info
        stale = stale_contact_fields(
            sent.email if sent else None,
            sent.phone if sent else None,
            email=buyer.email,
            phone=buyer.phone,
        )
        stale_items.extend(
            (item.item_id, str(item.category or "other"), stale)
            for item in order.items
            if stale and item.item_id and str(item.status) not in _ENDED
        )
    described = describe_items([item_id for item_id, _, _ in stale_items])
    found: list[ServiceConsequence] = []
    for item_id, wire_category, stale in stale_items:
        category, provider = described.get(item_id, (wire_category, None))
        found.append(
            ServiceConsequence(
                category=category,
                provider=provider,
                outcome=ChangeOutcome.old_contact,
                detail=consequence_words("old_contact", fields=stale, provider=provider),
                action_by="agent",
            )
        )
    return found


def _sentence(consequence: ServiceConsequence) -> str:
    service = service_name(consequence.category, consequence.provider)
    return consequence_words("service_line", service=service, detail=consequence.detail)


def _tell(stored: StoredChange, summary: ChangeSummary, reason: str | None) -> None:
    """One message about the change: to buyer and agent for new dates or address, else the agent."""
    # One message per stored change: the closing's version after it names the change.
    topic = f"{summary.crm_closing_id}:v{stored.version}"
    changes = [_sentence(c) for c in summary.consequences]
    if stored.dates_moved or stored.address_corrected:
        address = stored.before.property.address
        notify_milestone(
            stored.closing_id,
            Milestone.closing_changed,
            MilestoneFacts(
                previous_closing_date=stored.before.closing_date,
                previous_move_in_date=stored.before.effective_move_in,
                previous_address=(
                    f"{address.street}, {address.city}" if stored.address_corrected else None
                ),
                changes=changes,
                reason=reason,
            ),
            topic=topic,
        )
    elif stored.contact_corrected:
        notify_milestone(
            stored.closing_id,
            Milestone.contact_changed,
            MilestoneFacts(changes=changes),
            topic=topic,
            agent_only=True,
        )


def _fall_through(
    crm_closing_id: str, stored: StoredChange, now: datetime, reason: str | None
) -> ChangeSummary:
    """Cancel every order that can be cancelled, stop the schedule, and say who must act."""
    closing_id = stored.closing_id
    # No wait for an order call in flight: the closing is no longer live, so that placer cancels
    # its order itself once recorded (tasks.orders), and everything recorded before is below.
    settle_placements(closing_id, withdraw=True, wait=False)
    orders = read_closing_orders(closing_id, withdraw_unfound=True).orders
    cancel_unordered_lines(closing_id)
    cancel_closing_schedule(crm_closing_id)
    described = describe_items([i.item_id for o in orders for i in o.items if i.item_id])
    consequences: list[ServiceConsequence] = []
    cancelled: list[str] = []
    for order in orders:
        cancels = lifecycle.fall_through_cancels(str(item.status or "") for item in order.items)
        if cancels is None:
            continue
        live = [item for item in order.items if str(item.status) not in _ENDED]
        # Offergrid cancels whole orders only, and none holding a service under way or live.
        result = cancel_order(order.order_id, FELL_THROUGH_REASON) if cancels else None
        if result is not None and result.cancelled:
            cancelled.append(order.order_id)
        now_order = result.order if result is not None and result.order is not None else order
        done = result is not None and result.cancelled
        items = [(str(i.category or ""), str(i.status or "")) for i in now_order.items]
        statuses = {i.item_id: str(i.status or "") for i in now_order.items}
        for item in live:
            category, provider = described.get(item.item_id or "", (str(item.category), None))
            status = statuses.get(item.item_id, str(item.status))
            if done:
                consequences.append(
                    ServiceConsequence(
                        category=category,
                        provider=provider,
                        outcome=ChangeOutcome.cancelled,
                        detail="cancelled.",
                    )
                )
                continue
            why = "" if status in _BLOCKING else refusal_reason(items, category)
            consequences.append(
                ServiceConsequence(
                    category=category,
                    provider=provider,
                    outcome=ChangeOutcome.not_cancellable,
                    detail=not_cancellable_detail(status, provider=provider, why=why),
                    action_by="buyer",
                )
            )
    stuck = [c for c in consequences if c.outcome == ChangeOutcome.not_cancellable]
    notify_milestone(
        closing_id,
        Milestone.closing_cancelled,
        MilestoneFacts(changes=[_sentence(c) for c in stuck], reason=reason),
        topic="fell_through",
    )
    publish(closing_id, now)
    return ChangeSummary(
        closing_id=closing_id,
        crm_closing_id=crm_closing_id,
        status=ClosingStatus.fell_through.value,
        changed=stored.changed,
        consequences=consequences,
        orders_cancelled=cancelled,
        needs_action=[_sentence(c) for c in stuck],
    )
