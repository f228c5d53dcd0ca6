"""The closing page and the portfolio: signed links (valid, expired, altered, revoked), what each
audience sees, and the API key on the portfolio."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from models.tables import Audience
from preclose.rules.pagelinks import (
    PageLinkError,
    page_link_secret,
    sign_page_token,
    verify_page_token,
)
from preclose.settings import Settings
from preclose.wording.closing_page import what_to_do
from tests.fixtures_pages import ACCOUNT, NOTE, RISK, StoredClosing
from tests.fixtures_pages import stored as stored

SECRET = b"k" * 32
WHEN = datetime(2027, 1, 1, tzinfo=UTC)


def _path(url: str) -> str:
    return urlsplit(url).path


def test_token_round_trip_names_closing_audience_and_expiry() -> None:
    """A valid token opens its closing for its audience until its expiry, not a second after."""
    closing_id = uuid.uuid4()
    token = sign_page_token(SECRET, closing_id, Audience.buyer, WHEN + timedelta(days=1))
    access = verify_page_token(SECRET, token, now=WHEN)
    assert (access.closing_id, access.audience) == (closing_id, Audience.buyer)
    with pytest.raises(PageLinkError, match="expired"):
        verify_page_token(SECRET, token, now=WHEN + timedelta(days=1))


@pytest.mark.parametrize(
    "alter",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # the signature
        lambda t: t.replace(".", "x.", 1),  # the payload
        lambda t: t.split(".")[0],  # no signature at all
        lambda t: "",
    ],
)
def test_altered_token_is_refused(alter: object) -> None:
    """Any change to a token (payload, signature, shape) is refused."""
    token = sign_page_token(SECRET, uuid.uuid4(), Audience.agent, WHEN + timedelta(days=1))
    with pytest.raises(PageLinkError):
        verify_page_token(SECRET, alter(token), now=WHEN)  # type: ignore[operator]


def test_agent_token_cannot_be_turned_into_buyer_one() -> None:
    """Swapping the audience in the payload breaks the signature."""
    import base64

    closing_id = uuid.uuid4()
    token = sign_page_token(SECRET, closing_id, Audience.buyer, WHEN + timedelta(days=1))
    payload, signature = token.split(".")
    raw = base64.urlsafe_b64decode(payload + "==").replace(b"buyer", b"agent")
    forged = base64.urlsafe_b64encode(raw).rstrip(b"=").decode() + "." + signature
    with pytest.raises(PageLinkError):
        verify_page_token(SECRET, forged, now=WHEN)


def test_generated_secret_is_kept_and_rotating_it_revokes(tmp_path: object) -> None:
    """Without a configured secret one is generated once and reused; a new one refuses old links."""
    settings = Settings(data_dir=tmp_path)
    first = page_link_secret(settings)
    assert first == page_link_secret(settings) and len(first) >= 32
    token = sign_page_token(first, uuid.uuid4(), Audience.buyer, WHEN + timedelta(days=1))
    rotated = Settings(data_dir=tmp_path, page_link_secret="a-new-secret")
    with pytest.raises(PageLinkError):
        verify_page_token(page_link_secret(rotated), token, now=WHEN)


def test_agent_page_shows_the_closing_records(stored: StoredClosing) -> None:
    """The agent's page shows the plan, the order with its history and account, the risk with
    what to do, the state with its reason, and the agent's notes."""
    with TestClient(stored.app) as http:
        answer = http.get(_path(stored.url(Audience.agent)))
    assert answer.status_code == 200
    html = answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    for line in stored.lines:
        if line.provider_name:
            assert line.provider_name in html
    assert ACCOUNT in html and "ord-CL-PAGE-1" in html and "Installer booked" in html
    assert RISK in html and what_to_do(RISK, Audience.agent) in html
    assert "In progress" in html and "2 of 5 services ordered, 1 set up" in html
    assert NOTE in html and "Agent notes" in html
    assert "<svg" in html and 'role="img"' in html
    assert "<script" not in html and "http" not in html.split("<main", 1)[0].replace(
        "http://www.w3.org", ""
    )


def test_buyer_page_hides_the_agent_notes(stored: StoredClosing) -> None:
    """The buyer's page shows the same plan and proof of setup without the agent's notes."""
    with TestClient(stored.app) as http:
        html = http.get(_path(stored.url(Audience.buyer))).text
    assert ACCOUNT in html and RISK in html
    assert what_to_do(RISK, Audience.buyer) in html
    assert NOTE not in html and "Agent notes" not in html


@pytest.mark.parametrize("case", ["expired", "altered", "revoked", "unknown closing"])
def test_bad_links_get_a_plain_refusal_without_data(stored: StoredClosing, case: str) -> None:
    """Expired, altered and revoked links, and links to no closing, show a refusal, never data."""
    url = stored.url(Audience.agent)
    app = stored.app
    if case == "expired":
        url = stored.url(Audience.agent, now=datetime.now(UTC) - timedelta(days=400))
    elif case == "altered":
        url = url[:-3] + ("aaa" if not url.endswith("aaa") else "bbb")
    elif case == "revoked":
        app.state.settings = stored.settings.model_copy(
            update={"page_link_secret": SecretStr("rotated-secret")}
        )
    elif case == "unknown closing":
        secret = page_link_secret(stored.settings)
        token = sign_page_token(
            secret, uuid.uuid4(), Audience.agent, datetime.now(UTC) + timedelta(days=1)
        )
        url = f"/pages/closing/{token}"
    with TestClient(app) as http:
        answer = http.get(_path(url))
    assert answer.status_code in (403, 404)
    assert 'data-testid="refusal"' in answer.text
    assert stored.closing.buyer.full_name not in answer.text
    assert "Elm Street" not in answer.text and ACCOUNT not in answer.text


def test_portfolio_needs_a_key_and_lists_those_needing_a_person_first(
    stored: StoredClosing,
) -> None:
    """Without a key the portfolio is a sign-in form; with one, live closings, at-risk first."""
    from tests.fixtures_pages import store_closing

    store_closing(stored.settings, crm_id="CL-PAGE-2")  # risky too
    with TestClient(stored.app) as http:
        refused = http.get("/pages/portfolio")
        assert refused.status_code == 401 and "CL-PAGE-1" not in refused.text
        wrong = http.get("/pages/portfolio", headers={"x-api-key": "pck_wrong"})
        assert wrong.status_code == 401 and "not valid" in wrong.text
        page = http.get("/pages/portfolio", headers={"x-api-key": stored.read_key})
        assert page.status_code == 200
        assert page.text.index("CL-PAGE-1") < page.text.index("CL-PAGE-2")
        assert page.text.count('data-needs-person="yes"') == 2
        signed_in = http.post(
            "/pages/sign-in",
            content=f"key={stored.read_key}".encode(),
            headers={"content-type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )
        assert signed_in.status_code == 303
        assert stored.read_key not in signed_in.headers["set-cookie"]
        assert "CL-PAGE-1" in http.get("/pages/portfolio").text
        # The agent's link from the portfolio opens the agent's page.
        href = page.text.split('href="http', 1)[1].split('"', 1)[0]
        assert NOTE in http.get(_path("http" + href)).text


def test_cli_prints_a_page_link_that_opens(
    stored: StoredClosing, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`preclose page-link CRM-ID --for buyer` prints a link that opens the buyer's page."""
    from preclose.app.cli import page_link
    from preclose.settings import get_settings

    monkeypatch.setenv("PRECLOSE_DATA_DIR", str(stored.settings.data_dir))
    monkeypatch.setenv("PRECLOSE_DATABASE_URL", stored.settings.database_url)
    monkeypatch.setenv("PRECLOSE_PAGE_LINK_SECRET", "first-secret-for-tests")
    get_settings.cache_clear()
    page_link(stored.closing.crm_closing_id, audience="buyer")
    get_settings.cache_clear()
    url = capsys.readouterr().out.strip()
    with TestClient(stored.app) as http:
        html = http.get(_path(url)).text
    assert ACCOUNT in html and NOTE not in html
