"""The `place due orders` flow: every plan line whose order date has come, one order per closing."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.states import Completed

from flows.runs import FLOW_OPTIONS, place_run_name, tag_this_run
from models.summary import PlacementSummary
from preclose.names import as_of_or_now, closing_tag
from preclose.runtime import db_session
from preclose.storage import repository
from tasks.orders import place_order, prepare_placements

# The state a placement run ends in when another placer holds some of its orders.
WAITING = "Waiting on another placer"


@flow(name="place due orders", flow_run_name=place_run_name, **FLOW_OPTIONS)
def place_due_orders(
    crm_closing_id: str | None = None, as_of: datetime | None = None
) -> PlacementSummary:
    """Place every due plan line (of one closing or all), a closing's due lines in one order.

    A placement another placer holds (its lease) is not this run's to send: the run then ends in
    the state `Waiting on another placer`, never a plain "done".
    """
    now = as_of_or_now(as_of)
    closing_id = None
    if crm_closing_id is not None:
        with db_session() as session:
            row = repository.get_closing_by_crm_id(session=session, crm_closing_id=crm_closing_id)
        if row is None:
            raise ValueError(f"crm_closing_id: no closing {crm_closing_id!r} is known")
        closing_id = row.id
        tag_this_run(closing_tag(crm_closing_id))
    placement_ids = prepare_placements(closing_id, now)
    # One closing's refused order must not hold back the others: each is its own task run, and
    # a failure stays visible there (and on the plan line) while the rest go out.
    futures = [place_order.submit(pid) for pid in placement_ids]
    outcomes = [future.result(raise_on_failure=False) for future in futures]
    orders = [outcome for outcome in outcomes if isinstance(outcome, str)]
    failed = sum(isinstance(outcome, BaseException) for outcome in outcomes)
    if placement_ids:
        get_run_logger().info(
            "Placed %d of %d due orders (%d failed)", len(orders), len(placement_ids), failed
        )
    unsent = [pid for pid, outcome in zip(placement_ids, outcomes, strict=True) if outcome is None]
    with db_session() as session:
        lines, closings = repository.placements_summary(
            session=session, placement_ids=placement_ids
        )
        held = repository.count_held_placements(
            session=session, placement_ids=unsent, now=datetime.now(UTC)
        )
        # Each closing moves on (ordering, once its first order is out), as the lifecycle allows.
        for closing in sorted(closings):
            repository.advance_closing(session=session, closing_id=closing)
    summary = PlacementSummary(
        placements=len(placement_ids),
        orders=orders,
        failed=failed,
        lines=lines,
        held_elsewhere=held,
    )
    if held:
        message = (
            f"{held} of {len(placement_ids)} due orders are being sent by another placer "
            "(it holds their lease); they are not done by this run"
        )
        get_run_logger().warning(message)
        # The run's state says it; a caller (a parent flow) still gets the summary, its data.
        return Completed(data=summary, name=WAITING, message=message)  # type: ignore[return-value]
    return summary
