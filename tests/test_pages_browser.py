"""The closing page and the portfolio in headless Chromium at a phone's width: what they show
matches the closing's records, axe-core finds no serious accessibility violation, and the
screenshots for the README are taken (into docs/screenshots/ with UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from models.tables import Audience
from preclose.runtime import db_session
from preclose.storage import repository
from tests.browser import ROOT, axe_source, browser
from tests.fixtures_pages import ACCOUNT, NOTE, RISK, SELF_SERVE_OFFER, StoredClosing, store_closing
from tests.fixtures_pages import stored as stored
from tests.fixtures_sandbox import run_asgi

pytestmark = pytest.mark.slow

SERIOUS = ("serious", "critical")
SERVICES_JS = """
[...document.querySelectorAll('[data-testid=service]')].map(card => ({
  category: card.dataset.category,
  provider: card.querySelector('[data-testid=provider]').textContent.trim(),
  status: card.querySelector('[data-testid=item-status]').textContent.trim(),
  account: card.querySelector('[data-testid=account-number]')?.textContent.trim() ?? null,
  order: card.querySelector('[data-testid=order-id]')?.textContent.trim() ?? null,
}))
"""


def _shot_dir(tmp_path: Path) -> Path:
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        return ROOT / "docs" / "screenshots"
    return tmp_path


def _serious(violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v for v in violations if v["impact"] in SERIOUS]


def test_closing_page_in_chromium(stored: StoredClosing, tmp_path: Path) -> None:
    """Chromium shows each service's provider, status, order and account as stored, the risk and
    the agent's notes; the buyer's view has no notes; axe finds nothing serious."""
    axe = axe_source()
    with db_session(stored.settings) as session:
        expected = {
            entry.line.category: (entry.line.provider_name or "—", entry.item)
            for entry in repository.list_line_orders(session=session, closing_id=stored.closing_id)
        }
    with run_asgi(stored.app) as base, browser() as page:
        page.open(base + urlsplit(stored.url(Audience.agent)).path)
        shown = page.evaluate(SERVICES_JS)
        assert {card["category"] for card in shown} == set(expected)
        for card in shown:
            provider, item = expected[card["category"]]
            assert card["provider"] == provider
            if item is not None:
                assert card["status"] == (item.status or "").replace("_", " ")
                assert card["account"] == item.account_number
                assert card["order"] is not None
        assert ACCOUNT in {card["account"] for card in shown}
        text = page.evaluate("document.body.innerText")
        assert RISK in text and NOTE in text and SELF_SERVE_OFFER in text
        assert page.evaluate("document.querySelector('svg[role=img] title').textContent")
        # Readable on a phone: nothing wider than the screen.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        agent_violations = _serious(page.axe(axe))
        page.screenshot(_shot_dir(tmp_path) / "closing-page.png")

        page.open(base + urlsplit(stored.url(Audience.buyer)).path)
        text = page.evaluate("document.body.innerText")
        assert ACCOUNT in text and NOTE not in text
        buyer_violations = _serious(page.axe(axe))
    assert agent_violations == [] and buyer_violations == []


def test_portfolio_page_in_chromium(stored: StoredClosing, tmp_path: Path) -> None:
    """Chromium lists the live closings, those needing a person first; axe finds nothing serious."""
    axe = axe_source()
    store_closing(stored.settings, crm_id="CL-PAGE-0", at_risk=False)
    store_closing(stored.settings, crm_id="CL-PAGE-2")
    with run_asgi(stored.app) as base, browser() as page:
        page.open(base + "/pages/portfolio")
        assert "API key" in page.evaluate("document.body.innerText")
        sign_in_violations = _serious(page.axe(axe))
        page.open(base + "/pages/portfolio", headers={"x-api-key": stored.read_key})
        rows = page.evaluate(
            "[...document.querySelectorAll('[data-testid=closing-row]')]"
            ".map(r => [r.dataset.crmId, r.dataset.needsPerson])"
        )
        assert rows == [["CL-PAGE-1", "yes"], ["CL-PAGE-2", "yes"], ["CL-PAGE-0", "no"]]
        assert (
            page.evaluate("document.querySelector('[data-testid=needs-count]').textContent") == "2"
        )
        violations = _serious(page.axe(axe))
        page.screenshot(_shot_dir(tmp_path) / "portfolio-page.png")
    assert sign_in_violations == [] and violations == []
