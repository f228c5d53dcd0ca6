"""Lifecycle tasks: read where a closing stands, mark it for a person, finish a CRM request.

Thin: every status change asks preclose.rules.lifecycle through the repository, under the row lock.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NONE

from models.tables import ClosingStatus
from preclose.rules.lifecycle import TransitionRefused, attention_topic
from preclose.runtime import db_session
from preclose.storage import repository
from preclose.wording.notify import Milestone, MilestoneFacts, NotificationContext
from tasks.notifications import deliver_once

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClosingFacts:
    """Where a closing stands: its IDs, status and version (never its people)."""

    closing_id: uuid.UUID
    crm_closing_id: str
    status: ClosingStatus
    version: int
    zip5: str


def closing_facts(closing_id: uuid.UUID) -> ClosingFacts:
    """The closing's IDs, status and version as stored now."""
    with db_session() as session:
        row = repository.get_closing(session=session, closing_id=closing_id)
        if row is None:
            raise LookupError(f"closing_id: no closing {closing_id}")
        return ClosingFacts(
            row.id,
            row.crm_closing_id,
            ClosingStatus(row.status),
            row.version,
            row.closing_request().property.address.zip5,
        )


@dataclass(frozen=True)
class RequestFacts:
    """A stored CRM request's closing and what it asks."""

    request_id: uuid.UUID
    closing_id: uuid.UUID
    crm_closing_id: str
    kind: str
    body: dict[str, object] | None


def request_facts(request_id: uuid.UUID) -> RequestFacts:
    """The stored CRM request with this ID; a missing one is a LookupError naming the ID."""
    with db_session() as session:
        request = repository.get_crm_request(session=session, request_id=request_id)
        if request is None:
            raise LookupError(f"request_id: no CRM request {request_id}")
        row = repository.get_closing(session=session, closing_id=request.closing_id)
        assert row is not None  # the request's foreign key guarantees it
        return RequestFacts(request.id, row.id, row.crm_closing_id, str(request.kind), request.body)


def finish_request(request_id: uuid.UUID | None, outcome: str) -> None:
    """Record that a run finished the CRM request (the reconciler leaves it alone from now)."""
    if request_id is None:
        return
    with db_session() as session:
        repository.finish_crm_request(session=session, request_id=request_id, outcome=outcome)


@task(name="needs attention", cache_policy=NONE)
def mark_needs_attention(
    closing_id: uuid.UUID, reason: str, request_id: uuid.UUID | None = None
) -> bool:
    """Set the closing to needs attention with `reason`, tell the agent once, and finish the
    request; False when the closing is past failing (fell through or fulfilled)."""
    try:
        with db_session() as session:
            marked = repository.mark_needs_attention(
                session=session, closing_id=closing_id, reason=reason
            )
    except TransitionRefused as refused:
        logger.info("Not marked for attention: %s", refused)
        finish_request(request_id, f"not marked for attention: {refused.current.value}")
        return False
    context = NotificationContext.from_closing(marked.closing, MilestoneFacts(reason=reason))
    topic = attention_topic(marked.since, reason)
    deliver_once(
        closing_id, marked.closing, Milestone.needs_attention, context, topic=topic, agent_only=True
    )
    finish_request(request_id, "needs attention")
    logger.warning("The closing needs attention: %s", reason)
    return True
