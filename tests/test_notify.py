"""Notifications: friendly text per milestone and audience, apprise delivery, outbox, consent."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jinja2
import pytest
from sqlmodel import select

from models.closing import ClosingRequest, ContactChannel
from models.tables import Notification
from preclose.runtime import db_session
from preclose.settings import get_settings
from preclose.storage import repository
from preclose.storage.db import dispose_engines
from preclose.wording.notify import (
    Audience,
    Milestone,
    MilestoneFacts,
    NotificationContext,
    NotificationError,
    compose,
    message_templates,
    send,
)
from tasks.notifications import Notice, notify_milestone, notify_milestones

# What must never reach a buyer or an agent: Offergrid or database IDs, status codes, internals.
_TECHNICAL = [
    re.compile(r"\b(?:ord|item|off)-\w+", re.IGNORECASE),
    re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I),
    re.compile(r"\b(?:HTTP|status|error|exception|traceback|none|null)\b", re.IGNORECASE),
    re.compile(r"\b[45]\d\d\b"),
    re.compile(r"\b[a-z]+_[a-z_]+\b"),  # snake_case: enum values, field names
    re.compile(r"[{}\[\]<>]"),
]


def _closing(*, consent: bool = True, channel: str = "email") -> ClosingRequest:
    return ClosingRequest.model_validate(
        {
            "crm_closing_id": "crm-7781",
            "property": {
                "address": {
                    "street": "12 Oak St",
                    "city": "Austin",
                    "state": "TX",
                    "zip_code": "78701",
                },
                "property_type": "single_family",
                "size_sqft": 1850,
            },
            "buyer": {
                "full_name": "Jordan Rivera",
                "email": "jordan@example.com",
                "phone": "+1 512 555 0147",
                "contact_consent": consent,
                "preferred_channel": channel,
            },
            "agent": {"name": "Sam Okafor", "email": "sam@brokerage.example"},
            "closing_date": "2026-07-15",
            "move_in_date": "2026-07-18",
            "time_zone": "America/Chicago",
        }
    )


_FACTS: dict[str, object] = {
    "category": "internet",
    "provider": "Lone Star Fiber",
    "services": ["Internet from Lone Star Fiber", "Home insurance from Bluebonnet Mutual"],
    "scheduled_for": datetime(2026, 7, 16, 14, 0, tzinfo=UTC),
    "account_number": "LSF 0042 7781",
    "previous_closing_date": date(2026, 7, 1),
}


def _facts(**facts: object) -> MilestoneFacts:
    return MilestoneFacts(**{**_FACTS, **facts})  # type: ignore[arg-type]


def _context(**facts: object) -> NotificationContext:
    return NotificationContext.from_closing(_closing(), _facts(**facts))


class _Receiver:
    """A loopback HTTP endpoint that keeps every JSON body posted to it, by path."""

    def __init__(self) -> None:
        received: list[tuple[str, dict[str, object]]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                received.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str, tags: str = "") -> str:
        return f"{tags + '=' if tags else ''}json://127.0.0.1:{self.port}/{path}"

    def by_path(self) -> dict[str, list[str]]:
        paths: dict[str, list[str]] = {}
        for path, body in self.received:
            paths.setdefault(path.strip("/"), []).append(str(body["title"]))
        return paths


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    """A running loopback receiver for apprise's json:// target."""
    rx = _Receiver()
    rx.thread.start()
    yield rx
    rx.server.shutdown()
    rx.server.server_close()


@pytest.mark.parametrize("audience", list(Audience))
@pytest.mark.parametrize("milestone", list(Milestone))
def test_every_milestone_reads_as_plain_friendly_text(
    milestone: Milestone, audience: Audience
) -> None:
    """Every milestone renders for both audiences with a greeting and no IDs, codes or internals."""
    message = compose(milestone, _context(), audience=audience)
    greeting = "Jordan" if audience is Audience.buyer else "Sam"
    assert message.body.startswith(f"Hi {greeting},")
    assert message.subject and "\n" not in message.subject
    for pattern in _TECHNICAL:
        assert not pattern.search(message.subject + "\n" + message.body), pattern.pattern


@pytest.mark.parametrize("audience", list(Audience))
@pytest.mark.parametrize("milestone", list(Milestone))
def test_every_milestone_and_audience_has_its_own_template(
    milestone: Milestone, audience: Audience
) -> None:
    """Each milestone has one template per audience, shipped with the package."""
    name = f"{milestone.value}.{audience.value}.txt.j2"
    assert name in message_templates().list_templates()


def test_a_fact_a_template_names_but_nobody_gave_fails_loudly() -> None:
    """Templates are strict: a missing variable raises instead of rendering as empty text."""
    template = message_templates().get_template("order_accepted.buyer.txt.j2")
    variables = {"first": "Jordan", "service": "internet", "by": "", "provider": None}
    with pytest.raises(jinja2.UndefinedError, match="address"):
        template.render(variables)


def test_context_refuses_identifiers() -> None:
    """The context has no room for Offergrid or database IDs, so none can reach a message."""
    with pytest.raises(ValueError, match="order_id"):
        NotificationContext.model_validate({**_context().model_dump(), "order_id": "ord-123"})


def test_scheduled_time_is_shown_on_the_homes_clock() -> None:
    """A UTC installation time is told in the property's time zone, with the weekday."""
    body = compose(Milestone.order_scheduled, _context()).body
    assert "Thursday, July 16, 2026 at 9:00 AM" in body  # 14:00 UTC is 9:00 in Austin (CDT)


def test_at_risk_names_the_move_in_day() -> None:
    """An at-risk service is measured against move-in (here three days after closing)."""
    body = compose(Milestone.order_at_risk, _context()).body
    assert "move-in on Saturday, July 18, 2026" in body


def test_account_number_goes_to_the_buyer_only() -> None:
    """The buyer gets the new account number; the agent only hears the service is running."""
    to_buyer = compose(Milestone.order_fulfilled, _context(), audience=Audience.buyer)
    to_agent = compose(Milestone.order_fulfilled, _context(), audience=Audience.agent)
    assert "LSF 0042 7781" in to_buyer.body
    assert "LSF 0042 7781" not in to_agent.body
    assert "up and running" in to_agent.body


@pytest.mark.parametrize(
    ("milestone", "missing"),
    [
        (Milestone.closing_changed, "previous_closing_date"),
        (Milestone.plan_ready, "services"),
    ],
)
def test_missing_fact_names_the_field(milestone: Milestone, missing: str) -> None:
    """A milestone without the fact it must tell raises an error naming that context field."""
    empty: list[str] | None = [] if missing == "services" else None
    with pytest.raises(ValueError, match=f"context.{missing}"):
        compose(milestone, _context(**{missing: empty}))


@pytest.mark.parametrize(
    ("milestone", "missing", "words"),
    [
        (Milestone.order_scheduled, "scheduled_for", "will confirm the day"),
        (Milestone.order_fulfilled, "account_number", "will send your account number"),
    ],
)
def test_a_lost_event_s_fact_still_reads_plainly(
    milestone: Milestone, missing: str, words: str
) -> None:
    """Events come in any order, some never: a date or account number not known yet is said so."""
    message = compose(milestone, _context(**{missing: None}), audience=Audience.buyer)
    assert words in message.body


def test_apprise_delivers_to_a_loopback_target(receiver: _Receiver, tmp_path: Path) -> None:
    """send() delivers subject and body through apprise's json:// to a real local endpoint."""
    message = compose(Milestone.order_accepted, _context(), audience=Audience.agent)
    send(message, to=Audience.agent, urls=[receiver.url("hook")], outbox=tmp_path / "o.jsonl")
    assert len(receiver.received) == 1
    path, body = receiver.received[0]
    assert path == "/hook"
    assert body["title"] == message.subject
    assert body["message"] == message.body


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """preclose configured with a fresh SQLite database and data directory in `tmp_path`."""
    monkeypatch.setenv("PRECLOSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PRECLOSE_DATABASE_URL", f"sqlite:///{tmp_path / 'preclose.db'}")
    get_settings.cache_clear()
    yield tmp_path
    dispose_engines()


def _stored(closing: ClosingRequest) -> uuid.UUID:
    """Store `closing` as the intake would and return its ID."""
    with db_session() as session:
        row, _ = repository.create_or_get_closing(session=session, closing_in=closing)
        return row.id


def _tell(
    closing: ClosingRequest, milestone: Milestone, urls: list[str], monkeypatch: pytest.MonkeyPatch
) -> list[Audience]:
    """Tell `milestone` about a stored `closing` through the notification step, as a flow does."""
    monkeypatch.setenv("PRECLOSE_NOTIFY_URLS", json.dumps(urls))
    get_settings.cache_clear()
    closing_id = _stored(closing)
    return notify_milestone(closing_id, milestone, _facts(), topic="test")


def test_tags_route_by_audience_and_channel(
    receiver: _Receiver, configured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tagged URLs get only their audience (and the buyer's channel); untagged ones get all."""
    urls = [
        receiver.url("agent", "agent"),
        receiver.url("buyer-sms", "buyer,sms"),
        receiver.url("buyer-email", "buyer,email"),
        receiver.url("team"),
    ]
    closing = _closing(consent=True, channel="sms")
    told = _tell(closing, Milestone.order_accepted, urls, monkeypatch)
    assert told == [Audience.buyer, Audience.agent]
    by_path = receiver.by_path()
    assert by_path.keys() == {"agent", "buyer-sms", "team"}
    assert by_path["buyer-sms"] == ["Internet with Lone Star Fiber is confirmed"]
    assert by_path["agent"] == ["Jordan's internet with Lone Star Fiber is confirmed"]
    assert sorted(by_path["team"]) == sorted(by_path["buyer-sms"] + by_path["agent"])


def test_no_consent_means_only_the_agent_is_told(
    receiver: _Receiver, configured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the buyer's consent nothing goes to the buyer, on any URL or in the outbox."""
    closing = _closing(consent=False)
    urls = [receiver.url("buyer", "buyer"), receiver.url("team")]
    told = _tell(closing, Milestone.order_scheduled, urls, monkeypatch)
    assert told == [Audience.agent]
    assert [path for path, _ in receiver.received] == ["/team"]
    assert str(receiver.received[0][1]["message"]).startswith("Hi Sam,")
    lines = [json.loads(line) for line in (configured / "outbox.jsonl").read_text().splitlines()]
    assert [line["audience"] for line in lines] == ["agent"]


def test_outbox_lines_default_to_the_data_dir(
    configured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no URLs configured, messages land as JSON lines in <data_dir>/outbox.jsonl."""
    closing = _closing(consent=True, channel="email")
    _tell(closing, Milestone.plan_ready, [], monkeypatch)
    _tell(closing, Milestone.closing_cancelled, [], monkeypatch)
    lines = [json.loads(line) for line in (configured / "outbox.jsonl").read_text().splitlines()]
    assert [(line["milestone"], line["audience"], line["channel"]) for line in lines] == [
        ("plan_ready", "buyer", ContactChannel.email.value),
        ("plan_ready", "agent", None),
        ("closing_cancelled", "buyer", ContactChannel.email.value),
        ("closing_cancelled", "agent", None),
    ]
    assert lines[0]["body"].startswith("Hi Jordan,")
    assert datetime.fromisoformat(lines[0]["at"]).tzinfo is not None


def test_bad_url_names_its_index_and_hides_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry apprise cannot use is reported as notify_urls[i], never echoed or logged."""
    message = compose(Milestone.order_accepted, _context())
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ValueError, match=r"notify_urls\[1\]") as raised:
        send(
            message,
            to=Audience.buyer,
            urls=["json://127.0.0.1:9/ok", "nosuchscheme://token-s3cret@host"],
            outbox=tmp_path / "o.jsonl",
        )
    assert "s3cret" not in str(raised.value)
    assert "s3cret" not in caplog.text


def test_failed_delivery_raises_without_secrets(tmp_path: Path) -> None:
    """A target that cannot be reached raises NotificationError that names no URL or password."""
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    message = compose(Milestone.order_accepted, _context(), audience=Audience.agent)
    with pytest.raises(NotificationError) as raised:
        send(
            message,
            to=Audience.agent,
            urls=[f"json://user:pa55word@127.0.0.1:{port}/hook"],
            outbox=tmp_path / "o.jsonl",
        )
    assert "pa55word" not in str(raised.value)
    assert str(port) not in str(raised.value)


def test_a_failed_send_gives_back_the_messages_not_yet_tried(
    configured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several milestones are claimed together; when one send fails, it stays told (at most once)
    and the ones after it are given back, so a later run tells them."""
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("PRECLOSE_NOTIFY_URLS", json.dumps([f"agent=json://127.0.0.1:{port}/a"]))
    get_settings.cache_clear()
    closing_id = _stored(_closing(consent=True))
    notices = [
        Notice(Milestone.order_accepted, _facts(), topic="internet:1"),
        Notice(Milestone.order_scheduled, _facts(), topic="internet:1"),
    ]
    with pytest.raises(NotificationError):
        notify_milestones(closing_id, notices)

    monkeypatch.setenv("PRECLOSE_NOTIFY_URLS", "[]")
    get_settings.cache_clear()
    told = notify_milestones(closing_id, notices)
    # The accepted message reached the buyer, and its failed agent send is not repeated.
    assert told == [[], [Audience.buyer, Audience.agent]]
    with db_session() as session:
        rows = session.exec(select(Notification)).all()
    sent = sorted((row.milestone, row.audience.value, row.sent_at is not None) for row in rows)
    assert sent == [
        ("order_accepted", "agent", False),
        ("order_accepted", "buyer", True),
        ("order_scheduled", "agent", True),
        ("order_scheduled", "buyer", True),
    ]
