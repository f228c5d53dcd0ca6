"""The planning task: recommend per category, date each line, and store the plan."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import cast

from prefect import task
from prefect.cache_policies import NONE
from prefect.utilities.annotations import quote

from models.plan import Plan
from offergrid.models import Offer
from preclose.rules.recommend import recommend_detailed
from preclose.rules.timing import plan_closing
from preclose.runtime import db_session, policy
from preclose.storage import repository
from tasks.closings import load_closing


def passed_through(offers: list[Offer]) -> list[Offer]:
    """The offers marked for Prefect to hand to the task as they are.

    Unmarked, Prefect walks every field of every offer looking for futures, twice per call: that
    walk cost more CPU than the planning itself.
    """
    return cast(list[Offer], quote(offers))


@task(name="plan closing", cache_policy=NONE)
def plan_and_store(
    closing_id: uuid.UUID,
    offers: list[Offer],
    as_of: datetime,
    first: bool = False,
    expected_version: int | None = None,
) -> Plan:
    """Recommend from the offers at the address, time every pick, and store the plan.

    With `first`, the closing moves from received to planned as the plan is stored (the lifecycle
    refuses a closing that fell through meanwhile); with `expected_version`, a closing changed
    since it was read raises StaleClosingError, for the caller to plan again.
    """
    closing = load_closing(closing_id)
    rules = policy()
    # The offers come from a ZIP-filtered catalog call, so each one is sold at this address.
    found = recommend_detailed(closing, offers, rules, address_scoped=True)
    plan = plan_closing(closing, found.picks, rules, as_of=as_of, notes=found.notes)
    with db_session() as session:
        repository.save_plan(
            session=session,
            closing_id=closing_id,
            plan=plan,
            first=first,
            expected_version=expected_version,
        )
    return plan
