"""Placing one intended order, as plain code: the steps against the local Offergrid, no Prefect."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace

import pytest

from offergrid import OffergridClient
from offergrid.errors import OffergridError
from offergrid.models import Order
from preclose.app.samples import sample_closings
from preclose.rules.order_placement import Claim, OrderDesk, send_placement
from preclose.rules.placing import INTENT_KEY, LineWindow
from preclose.rules.policy import load_policy
from tests.fixtures_sandbox import *  # noqa: F403
from tests.fixtures_sandbox import SANDBOX_START


@dataclass
class Ledger:
    """A placement's state kept in memory: what the steps recorded, in order."""

    claim_to_give: Claim | None
    order_id: str | None = None
    cancel_ids: list[str] | None = None
    steps: list[str] = field(default_factory=list)
    cancelled: list[Order] = field(default_factory=list)

    def claim(self) -> Claim | None:
        self.steps.append("claim")
        return self.claim_to_give

    def recorded_order_id(self) -> str | None:
        return self.order_id

    def record_placed(self, order: Order) -> str:
        self.steps.append("placed")
        self.order_id = order.order_id
        return order.order_id

    def release(self) -> None:
        self.steps.append("released")

    def mark_unknown(self, error: str) -> None:
        self.steps.append(f"unknown: {error}")

    def mark_failed(self, error: str) -> None:
        self.steps.append("failed")

    def items_to_cancel(self) -> list[str] | None:
        return self.cancel_ids

    def record_cancelled(self, order: Order, item_ids: Sequence[str]) -> None:
        self.steps.append("cancelled")
        self.cancelled.append(order)

    def first_order_placed(self) -> None:
        self.steps.append("customer")


@pytest.fixture
def claim(offergrid_client: OffergridClient) -> Claim:
    """A fresh claim for one internet order at a sample closing the sandbox serves."""
    closing = sample_closings(SANDBOX_START.date())[0]
    offer = offergrid_client.list_offers(
        category="internet", zip_code=closing.property.address.zip_code
    )[0]
    service_date = closing.effective_move_in
    return Claim(
        closing_id=uuid.uuid4(),
        intent_key=f"preclose-test-{uuid.uuid4().hex}",
        look_up_first=False,
        live=True,
        closing=closing,
        offer_ids=[offer.id],
        lines=[
            LineWindow(
                offer_id=offer.id,
                category="internet",
                offer_name=offer.name,
                service_date=service_date,
                service_window_end=None,
                instant=False,
            )
        ],
    )


def _desk(client: OffergridClient) -> Callable[[], AbstractContextManager[OrderDesk]]:
    """The sandbox client as the order desk, opened once per step as the task opens its own."""

    @contextmanager
    def desk() -> Iterator[OrderDesk]:
        yield client

    return desk


def test_a_fresh_claim_places_one_order_and_records_it(
    offergrid_client: OffergridClient, claim: Claim
) -> None:
    """The order goes out under the intent's key, is recorded, and makes the buyer a customer."""
    ledger = Ledger(claim)
    order_id = send_placement(ledger, _desk(offergrid_client), load_policy())
    orders = offergrid_client.list_orders()
    assert [order.order_id for order in orders] == [order_id]
    assert (orders[0].metadata or {})[INTENT_KEY] == claim.intent_key
    assert ledger.steps == ["claim", "placed", "customer"]


def test_a_retry_adopts_the_order_an_earlier_attempt_created(
    offergrid_client: OffergridClient, claim: Claim
) -> None:
    """After an unclear outcome the order is looked up by its key: no second order is placed."""
    first = send_placement(Ledger(claim), _desk(offergrid_client), load_policy())
    retry = Ledger(replace(claim, look_up_first=True))
    again = send_placement(retry, _desk(offergrid_client), load_policy())
    assert again == first
    assert len(offergrid_client.list_orders()) == 1
    assert retry.steps == ["claim", "placed"]


def test_a_closing_no_longer_live_orders_nothing(
    offergrid_client: OffergridClient, claim: Claim
) -> None:
    """A deal that fell through after the intent fails the placement and sends no order."""
    ledger = Ledger(replace(claim, live=False))
    assert send_placement(ledger, _desk(offergrid_client), load_policy()) is None
    assert offergrid_client.list_orders() == []
    assert ledger.steps == ["claim", "failed"]


def test_an_unclaimable_placement_without_an_order_does_nothing(
    offergrid_client: OffergridClient,
) -> None:
    """Placed, failed or held by another placer, with no order recorded: nothing is sent."""
    ledger = Ledger(None)
    assert send_placement(ledger, _desk(offergrid_client), load_policy()) is None
    assert offergrid_client.list_orders() == []


def test_an_order_recorded_after_a_fall_through_is_cancelled(
    offergrid_client: OffergridClient, claim: Claim
) -> None:
    """A fall-through that landed while the order call was out cancels the order just placed."""
    ledger = Ledger(claim, cancel_ids=[])
    order_id = send_placement(ledger, _desk(offergrid_client), load_policy())
    assert ledger.steps == ["claim", "placed", "customer", "cancelled"]
    assert order_id is not None
    order = offergrid_client.get_order(order_id)
    assert {str(item.status) for item in order.items} == {"cancelled"}


def test_a_refused_order_fails_the_placement_and_raises(
    offergrid_client: OffergridClient, claim: Claim
) -> None:
    """Offergrid refusing the order (an unknown offer) fails the placement for good."""
    ledger = Ledger(replace(claim, offer_ids=["no-such-offer"]))
    with pytest.raises(OffergridError):
        send_placement(ledger, _desk(offergrid_client), load_policy())
    assert ledger.steps == ["claim", "failed"]
