"""The local Offergrid keeps its orders across restarts in a state file; --fresh starts empty;
the sync notices items Offergrid no longer knows."""

from __future__ import annotations

from pathlib import Path

from offergrid.models import Order
from offergrid_sandbox.config import SimulationConfig
from preclose.app.serve import SANDBOX_STATE_FILE, local_offergrid_config
from preclose.rules.tracking import items_offergrid_lacks
from preclose.settings import Settings
from tests.fixtures_sandbox_core import (
    RESELLER,
    offer_ids_at,
    place_order,
    quiet_config,
    sandbox_client,
)


def test_orders_survive_a_restart(tmp_path: Path) -> None:
    """An order placed before a restart is there after it, with its items and idempotency key."""
    state = tmp_path / "state.json"
    with sandbox_client(quiet_config(state_file=state)) as (client, _):
        offer = offer_ids_at(client, category="internet")[0]
        placed = place_order(client, offer)
        keyed = client.post(
            "/reseller/orders",
            json={**_body(offer)},
            headers={**RESELLER, "Idempotency-Key": "key-1"},
        )
        assert keyed.status_code == 201
    assert state.exists()
    with sandbox_client(quiet_config(state_file=state)) as (client, _):
        again = client.get(f"/reseller/orders/{placed['orderId']}", headers=RESELLER)
        assert again.status_code == 200
        assert [i["itemId"] for i in again.json()["items"]] == [
            i["itemId"] for i in placed["items"]
        ]
        replay = client.post(
            "/reseller/orders",
            json={**_body(offer)},
            headers={**RESELLER, "Idempotency-Key": "key-1"},
        )
        assert replay.json()["orderId"] == keyed.json()["orderId"]
        assert len(client.get("/reseller/orders", headers=RESELLER).json()) == 2


def test_links_and_customers_survive_a_restart(tmp_path: Path) -> None:
    """A buyer's link (still usable by its token) and a customer record outlive a restart."""
    state = tmp_path / "state.json"
    address = {
        "street": "500 Congress Ave",
        "city": "Austin",
        "state": "TX",
        "zipCode": "78701",
        "country": "US",
    }
    with sandbox_client(quiet_config(state_file=state)) as (client, _):
        link = client.post(
            "/reseller/links",
            json={"address": address, "moveInDate": "2027-03-01"},
            headers=RESELLER,
        ).json()
        customer = client.post(
            "/reseller/customers",
            json={"fullName": "Dana Buyer", "email": "dana@example.com", "kind": "customer"},
            headers=RESELLER,
        ).json()
    with sandbox_client(quiet_config(state_file=state)) as (client, _):
        again = client.get(f"/reseller/links/{link['id']}", headers=RESELLER)
        assert again.status_code == 200
        assert again.json()["moveInDate"] == "2027-03-01"
        assert client.get(f"/links/{link['token']}").status_code == 200
        found = client.get(f"/reseller/customers/{customer['id']}", headers=RESELLER)
        assert found.json()["email"] == "dana@example.com"


def test_simulated_providers_take_restored_items_up_again(tmp_path: Path) -> None:
    """An item left pending by the last run is moved on by the providers after the restart."""
    state = tmp_path / "state.json"
    quiet = quiet_config(state_file=state)
    with sandbox_client(quiet) as (client, _):
        placed = place_order(client, offer_ids_at(client, category="internet")[0])
    live = quiet_config(state_file=state, simulation=SimulationConfig(rejection_rate=0))
    with sandbox_client(live) as (client, sandbox):
        sandbox.advance(3 * 86_400)
        order = client.get(f"/reseller/orders/{placed['orderId']}", headers=RESELLER).json()
        assert order["items"][0]["status"] not in ("pending", "submitted_to_provider")


def test_an_unreadable_state_file_is_set_aside(tmp_path: Path) -> None:
    """A broken state file does not stop the sandbox: it starts empty, the file kept aside."""
    state = tmp_path / "state.json"
    state.write_text("{not json")
    with sandbox_client(quiet_config(state_file=state)) as (client, _):
        assert client.get("/reseller/orders", headers=RESELLER).json() == []
    assert (tmp_path / "state.unreadable.json").read_text() == "{not json"


def test_serve_keeps_the_state_in_the_data_dir_and_fresh_empties_it(tmp_path: Path) -> None:
    """`serve --sandbox` keeps the local Offergrid's state in the data dir; --fresh drops it."""
    settings = Settings(data_dir=tmp_path)
    config = local_offergrid_config(settings)
    assert config.state_file == tmp_path / SANDBOX_STATE_FILE and config.clock == "real"
    (tmp_path / SANDBOX_STATE_FILE).write_text("{}")
    local_offergrid_config(settings, fresh=True)
    assert not (tmp_path / SANDBOX_STATE_FILE).exists()


def _body(offer: str) -> dict[str, object]:
    from tests.fixtures_sandbox_core import order_body

    return order_body(offer)


def test_the_sync_finds_items_a_fresh_offergrid_no_longer_knows() -> None:
    """After the local Offergrid is reset, the items we tracked are named as unknown to it."""
    with sandbox_client(quiet_config()) as (client, sandbox):
        placed = place_order(client, offer_ids_at(client, category="internet")[0])
        ours = [item["itemId"] for item in placed["items"]]

        def listed() -> list[Order]:
            body = client.get("/reseller/orders", headers=RESELLER).json()
            return [Order.model_validate(order) for order in body]

        assert items_offergrid_lacks(listed(), ours) == []
        sandbox.reset()
        assert items_offergrid_lacks(listed(), ours) == sorted(ours)
