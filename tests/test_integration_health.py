"""Integration health figures against a run with injected errors on the local Offergrid: what we
recorded matches what the sandbox counted, and orders' acceptance and provider response time."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient

from offergrid import OffergridClient
from offergrid.errors import OffergridError
from offergrid_sandbox.app import create_app
from offergrid_sandbox.config import RESELLER_KEY, SandboxConfig
from preclose.app.cli import health as health_command
from preclose.runtime import _recorder, db_session
from preclose.settings import get_settings
from preclose.storage.integration_health import integration_health
from tests.fixtures_pages import NOW, StoredClosing
from tests.fixtures_pages import stored as stored

CALLS = 40


def _run_with_faults(stored: StoredClosing) -> dict[str, dict[str, int]]:
    """40 catalog and 40 order-list calls with a 30% 5xx switch on; returns the sandbox's counts."""
    app = create_app(SandboxConfig(seed=3, clock="virtual"))
    with TestClient(app) as http:
        http.put("/sandbox/faults", json={"error_rate": 0.3})
        with OffergridClient(
            RESELLER_KEY, http_client=http, on_call=_recorder(stored.settings)
        ) as client:
            for _ in range(CALLS):
                for call in (
                    lambda: client.list_offers(zip_code="78701"),
                    lambda: client.list_orders(),
                ):
                    with contextlib.suppress(OffergridError):
                        call()
        counts: dict[str, dict[str, int]] = http.get("/sandbox/requests").json()["byEndpoint"]
    return counts


def _window() -> tuple[datetime, datetime]:
    # Calls are stamped on the real clock, the fixture's order on its own: cover both.
    return NOW - timedelta(days=1), datetime.now(UTC) + timedelta(minutes=1)


def test_figures_match_the_sandbox_counts_under_injected_errors(stored: StoredClosing) -> None:
    """Calls, successes and errors by endpoint equal the sandbox's own counts; p50 <= p95."""
    counts = _run_with_faults(stored)
    since, until = _window()
    with db_session(stored.settings) as session:
        figures = integration_health(session=session, since=since, until=until)
    by_name = {e.endpoint: e for e in figures.endpoints}
    for name in ("GET /reseller/catalog", "GET /reseller/orders"):
        sandbox = counts[name]
        ours = by_name[name]
        assert ours.calls == sum(sandbox.values()) == CALLS
        assert ours.succeeded == sandbox.get("200", 0)
        assert 0 < ours.calls - ours.succeeded == sandbox.get("502", 0) + sandbox.get("503", 0)
        assert ours.error_rate == pytest.approx(1 - ours.success_rate)  # type: ignore[operator]
        assert ours.p50_ms is not None and ours.p95_ms is not None
        assert ours.p50_ms <= ours.p95_ms
    assert figures.calls == 2 * CALLS
    assert figures.success_rate == pytest.approx(
        sum(e.succeeded for e in figures.endpoints) / figures.calls, abs=1e-4
    )


def test_order_acceptance_and_provider_response(stored: StoredClosing) -> None:
    """Two orders placed, one accepted two hours after it was placed, one unanswered: 100%, 2 h."""
    since, until = _window()
    with db_session(stored.settings) as session:
        figures = integration_health(session=session, since=since, until=until)
    assert (figures.orders_placed, figures.orders_answered, figures.orders_accepted) == (2, 1, 1)
    assert figures.acceptance_rate == 1.0
    assert figures.provider_response_p50_hours == 2.0
    with db_session(stored.settings) as session:
        later = integration_health(session=session, since=NOW + timedelta(days=2), until=until)
    assert later.orders_placed == 0 and later.acceptance_rate is None


def test_health_route_and_cli_show_the_figures(
    stored: StoredClosing, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """GET /health/offergrid needs a key and answers the figures; `preclose health` prints them."""
    _run_with_faults(stored)
    with TestClient(stored.app) as http:
        assert http.get("/health/offergrid").status_code == 401
        answer = http.get("/health/offergrid?hours=1", headers={"x-api-key": stored.read_key})
        assert (
            http.get(
                "/health/offergrid?hours=0", headers={"x-api-key": stored.read_key}
            ).status_code
            == 422
        )
    assert answer.status_code == 200
    body = answer.json()
    assert body["calls"] == 2 * CALLS
    assert {e["endpoint"] for e in body["endpoints"]} == {
        "GET /reseller/catalog",
        "GET /reseller/orders",
    }
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("PRECLOSE_DATA_DIR", str(stored.settings.data_dir))
    monkeypatch.setenv("PRECLOSE_DATABASE_URL", stored.settings.database_url)
    get_settings.cache_clear()
    health_command(hours=1)
    get_settings.cache_clear()
    out = capsys.readouterr().out
    assert "GET /reseller/catalog" in out and f"{2 * CALLS} calls" in out
