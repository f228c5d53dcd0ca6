"""Telling the buyer and the agent how the move-in services are going, in plain words.

`compose` renders a milestone's Jinja2 template for one audience
(`messages/<milestone>.<audience>.txt.j2`) with the closing's facts (plain code, no I/O). `send`
delivers a message through apprise to the configured notification URLs and appends it to the local
outbox (a JSON-lines file a demo can show); `tasks/notifications.py` decides who hears
it (the agent always, the buyer only when they agreed, on their preferred channel).

Routing uses apprise's own tag syntax in each configured URL, so one list serves every audience:
``agent=mailtos://...`` reaches only the agent, ``buyer,sms=twilio://...`` only a buyer who prefers
SMS, and an untagged URL (a team inbox, a demo receiver) gets every message that may be sent.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import apprise
import jinja2
from pydantic import BaseModel, ConfigDict, Field

from models.closing import ClosingRequest, ContactChannel
from models.tables import Audience
from preclose.settings import get_settings
from preclose.wording.services import service_word

__all__ = [
    "Audience",
    "Message",
    "Milestone",
    "MilestoneFacts",
    "NotificationContext",
    "NotificationError",
    "compose",
    "consequence_words",
    "load_targets",
    "message_templates",
    "send",
]

logger = logging.getLogger(__name__)


class Milestone(StrEnum):
    """The moments worth telling people about."""

    plan_ready = "plan_ready"
    order_accepted = "order_accepted"
    order_scheduled = "order_scheduled"
    order_fulfilled = "order_fulfilled"
    order_rejected = "order_rejected"
    order_at_risk = "order_at_risk"
    closing_changed = "closing_changed"
    closing_cancelled = "closing_cancelled"
    order_repicked = "order_repicked"
    needs_person = "needs_person"
    contact_changed = "contact_changed"
    needs_attention = "needs_attention"


class NotificationError(RuntimeError):
    """A message could not be delivered to every configured notification target."""


_AUDIENCE_TAGS = frozenset(audience.value for audience in Audience)
_CHANNEL_TAGS = frozenset(channel.value for channel in ContactChannel)


class NotificationContext(BaseModel):
    """The facts a message may mention, already in human terms (names, dates; never IDs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    buyer_name: str = Field(title="Buyer name", description="The buyer's full name.")
    agent_name: str = Field(title="Agent name", description="The agent's full name.")
    address: str = Field(title="Address", description="The home's street and city.")
    closing_date: date = Field(title="Closing date")
    move_in_date: date | None = Field(
        None, title="Move-in date", description="When the services must work; closing if unset."
    )
    time_zone: str = Field("America/Chicago", title="Time zone", description="The home's zone.")
    category: str | None = Field(
        None, title="Service category", description="Offergrid category the message is about."
    )
    provider: str | None = Field(None, title="Provider", description="The provider's name.")
    services: list[str] = Field(
        default_factory=list,
        title="Services",
        description="Plan ready: one line per service, e.g. 'Internet from Lone Star Fiber'.",
    )
    scheduled_for: datetime | date | None = Field(
        None, title="Scheduled for", description="Installation or start; aware if a datetime."
    )
    account_number: str | None = Field(
        None, title="Account number", description="The buyer's new account with the provider."
    )
    previous_closing_date: date | None = Field(
        None, title="Previous closing date", description="Closing changed: the old date."
    )
    previous_move_in_date: date | None = Field(
        None, title="Previous move-in date", description="Closing changed: the old move-in."
    )
    previous_address: str | None = Field(
        None, title="Previous address", description="Address corrected: the old street and city."
    )
    changes: list[str] = Field(
        default_factory=list,
        title="Per-service consequences",
        description="Closing changed, cancelled or contact changed: one sentence per service.",
    )
    reason: str | None = Field(
        None,
        title="Reason",
        description="Re-pick or flag: what the provider said; a change: why, for the agent.",
    )
    next_provider: str | None = Field(
        None, title="Next provider", description="Re-pick: the provider ordered instead."
    )
    next_offer: str | None = Field(None, title="Next offer", description="Re-pick: its offer.")
    install_failed: bool = Field(
        False, title="Installation failed", description="Re-pick or flag after a failed install."
    )
    attempts: int | None = Field(
        None, title="Tries", description="Flag: how many orders were tried for the service."
    )
    page_url: str | None = Field(
        None,
        title="Closing page",
        description="The signed link to the closing's page for this message's audience.",
    )
    choose_url: str | None = Field(
        None,
        title="Self-serve link",
        description="Plan ready, buyer: Offergrid's link where they choose optional services.",
    )

    @classmethod
    def from_closing(
        cls, closing: ClosingRequest, facts: MilestoneFacts | None = None
    ) -> NotificationContext:
        """The context for one closing, plus the facts of the milestone at hand."""
        address = closing.property.address
        street = f"{address.street}, {address.unit}" if address.unit else address.street
        return cls(
            buyer_name=closing.buyer.full_name,
            agent_name=closing.agent.name,
            address=f"{street}, {address.city}",
            closing_date=closing.closing_date,
            move_in_date=closing.effective_move_in,
            time_zone=closing.time_zone,
            **asdict(facts or MilestoneFacts()),
        )


@dataclass(frozen=True)
class MilestoneFacts:
    """What one milestone adds to the closing's facts: the fields of `NotificationContext` that
    change from message to message (their meaning is documented there)."""

    category: str | None = None
    provider: str | None = None
    services: Sequence[str] = ()
    scheduled_for: datetime | date | None = None
    account_number: str | None = None
    previous_closing_date: date | None = None
    previous_move_in_date: date | None = None
    previous_address: str | None = None
    changes: Sequence[str] = ()
    reason: str | None = None
    next_provider: str | None = None
    next_offer: str | None = None
    install_failed: bool = False
    attempts: int | None = None
    choose_url: str | None = None


@dataclass(frozen=True)
class Message:
    """One notification: what it is about, its subject line and its body."""

    milestone: Milestone
    subject: str
    body: str


def compose(
    milestone: Milestone, context: NotificationContext, *, audience: Audience = Audience.buyer
) -> Message:
    """Write the friendly message for `milestone`, addressed to the buyer or to the agent."""
    milestone, audience = Milestone(milestone), Audience(audience)
    template = message_templates().get_template(_template_name(milestone, audience))
    # The template's first line is the subject, then a blank line, then the body.
    subject, _, body = template.render(_variables(milestone, context, audience)).partition("\n\n")
    return Message(milestone=milestone, subject=subject.strip(), body=body.strip())


@cache
def message_templates() -> jinja2.Environment:
    """The message templates (package data beside this module): strict, plain text, unescaped."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader(__name__.rpartition(".")[0], "messages"),
        undefined=jinja2.StrictUndefined,  # a fact the template names but nobody gave fails loudly
        # Messages go out as plain text (email text part, SMS): HTML escaping would garble them.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        keep_trailing_newline=False,
    )
    environment.filters.update(day=_day, cap=_cap, bullets=_bullets, sentence=_sentence)
    return environment


def consequence_words(kind: str, **facts: object) -> str:
    """One service's consequence of a change (`kind` names a macro in `consequences.txt.j2`)."""
    macro = getattr(message_templates().get_template("consequences.txt.j2").module, kind)
    return str(macro(**facts))


def _template_name(milestone: Milestone, audience: Audience) -> str:
    return f"{milestone.value}.{audience.value}.txt.j2"


def _variables(milestone: Milestone, c: NotificationContext, audience: Audience) -> dict[str, Any]:
    """What a template may name: the context's facts plus the words every message shares."""
    if milestone is Milestone.plan_ready and not c.services:
        raise ValueError("context.services must list at least one service for plan_ready")
    move_in = c.move_in_date or c.closing_date
    moved_closing = c.previous_closing_date not in (None, c.closing_date)
    moved_in = c.previous_move_in_date not in (None, move_in)
    if milestone is Milestone.closing_changed and not (
        moved_closing or moved_in or c.previous_address
    ):
        raise ValueError(
            "context.previous_closing_date is required for the closing_changed message"
        )
    scheduled = c.scheduled_for
    if isinstance(scheduled, datetime) and scheduled.tzinfo is not None:
        scheduled = scheduled.astimezone(ZoneInfo(c.time_zone))  # told on the home's clock
    service = service_word(c.category)
    return {
        **c.model_dump(),
        "first": (c.buyer_name if audience is Audience.buyer else c.agent_name).split()[0],
        "buyer_first": c.buyer_name.split()[0],
        "service": service,
        "by": f" with {c.provider}" if c.provider else "",
        "closing": _day(c.closing_date),
        "move_in": _day(move_in),
        "moved_closing": moved_closing,
        "moved_in": moved_in,
        "scheduled": None if scheduled is None else _moment(scheduled),
        "scheduled_day": None if scheduled is None else _day(scheduled),
    }


def send(
    message: Message,
    *,
    to: Audience,
    urls: list[str],
    channel: ContactChannel | None = None,
    outbox: Path | None = None,
) -> None:
    """Append `message` to the outbox (the settings' by default) and deliver it to `to`'s URLs."""
    to = Audience(to)
    targets = _targets(urls, to=to, channel=channel)
    _append_outbox(outbox or get_settings().outbox_path, message, to=to, channel=channel)
    if len(targets) == 0:
        return
    if not targets.notify(title=message.subject, body=message.body):
        # Never name the URLs: they carry passwords and tokens.
        raise NotificationError(
            f"could not deliver the {message.milestone.value} message for the {to.value} to "
            f"all of its {len(targets)} notification target(s)"
        )
    logger.info("Told the %s: %s", to.value, message.milestone.value)


def load_targets(urls: list[str]) -> apprise.Apprise:
    """Every configured notification target with its tags; a bad entry names `notify_urls[i]`."""
    loaded = apprise.Apprise()
    for index, url in enumerate(urls):
        config = apprise.AppriseConfig()
        with _quiet_apprise():
            # Apprise's text config syntax gives each URL its own tags: "buyer,sms=twilio://...".
            config.add_config(url.strip(), format="text")
            services = list(config.services())
        if len(services) != 1:
            raise ValueError(
                f"notify_urls[{index}] is not a notification URL apprise understands "
                "(expected [tags=]scheme://..., e.g. agent=mailtos://...)"
            )
        loaded.add(services[0])
    return loaded


def _targets(urls: list[str], *, to: Audience, channel: ContactChannel | None) -> apprise.Apprise:
    """The targets a message for `to` on `channel` goes to: matching tags, or no tags at all."""
    chosen = apprise.Apprise()
    for service in load_targets(urls):
        tags = {str(tag) for tag in service.tags}
        audience_tags, channel_tags = tags & _AUDIENCE_TAGS, tags & _CHANNEL_TAGS
        if audience_tags and to.value not in audience_tags:
            continue
        if channel_tags and (channel is None or channel.value not in channel_tags):
            continue
        chosen.add(service)
    return chosen


_APPRISE_LOG_LOCK = threading.Lock()


@contextmanager
def _quiet_apprise() -> Iterator[None]:
    # Apprise logs an unparseable URL verbatim, tokens included; we report it by index instead.
    apprise_logger = logging.getLogger("apprise")
    with _APPRISE_LOG_LOCK:
        was = apprise_logger.disabled
        apprise_logger.disabled = True
        try:
            yield
        finally:
            apprise_logger.disabled = was


def _append_outbox(
    path: Path, message: Message, *, to: Audience, channel: ContactChannel | None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "at": datetime.now(UTC).isoformat(),
        "audience": to.value,
        "channel": channel.value if channel else None,
        "milestone": message.milestone.value,
        "subject": message.subject,
        "body": message.body,
    }
    # One short write in append mode per line, so concurrent writers do not interleave lines.
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _bullets(lines: list[str]) -> str:
    return "\n".join(f"  - {line}" for line in lines)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _sentence(text: str) -> str:
    """A fact told as the end of a sentence: its own full stop and outer spaces dropped."""
    return text.strip().rstrip(".")


def _day(value: date | datetime) -> str:
    day = value.date() if isinstance(value, datetime) else value
    return f"{day:%A}, {day:%B} {day.day}, {day.year}"


def _moment(value: date | datetime) -> str:
    """A date, or a date and time when the time is known on the home's clock."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        return _day(value)
    hour = value.hour % 12 or 12
    return f"{_day(value)} at {hour}:{value:%M} {'AM' if value.hour < 12 else 'PM'}"
