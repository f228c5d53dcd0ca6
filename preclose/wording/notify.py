"""Telling the buyer and the agent how the move-in services are going, in plain words.

`compose` turns a milestone and its facts into a friendly message for one audience (plain code, no
I/O). `send` delivers a message through apprise to the configured notification URLs and appends it
to the local outbox (a JSON-lines file a demo can show). `notify` is what a flow calls: it tells the
agent always, and the buyer only when they agreed to be contacted, on their preferred channel.

Routing uses apprise's own tag syntax in each configured URL, so one list serves every audience:
``agent=mailtos://...`` reaches only the agent, ``buyer,sms=twilio://...`` only a buyer who prefers
SMS, and an untagged URL (a team inbox, a demo receiver) gets every message that may be sent.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import apprise
from pydantic import BaseModel, ConfigDict, Field

from models.closing import Buyer, ClosingRequest, ContactChannel
from models.tables import Audience
from preclose.settings import get_settings

__all__ = [
    "Audience",
    "Message",
    "Milestone",
    "NotificationContext",
    "NotificationError",
    "compose",
    "load_targets",
    "notify",
    "send",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


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


# What each Offergrid category is called in a sentence to a home buyer.
_SERVICE_WORDS = {
    "internet": "internet",
    "television": "TV",
    "security": "home security",
    "energy": "power",
    "insurance": "home insurance",
    "other": "home service",
}
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
        cls,
        closing: ClosingRequest,
        *,
        category: str | None = None,
        provider: str | None = None,
        services: list[str] | None = None,
        scheduled_for: datetime | date | None = None,
        account_number: str | None = None,
        previous_closing_date: date | None = None,
        previous_move_in_date: date | None = None,
        previous_address: str | None = None,
        changes: list[str] | None = None,
        reason: str | None = None,
        next_provider: str | None = None,
        next_offer: str | None = None,
        install_failed: bool = False,
        attempts: int | None = None,
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
            category=category,
            provider=provider,
            services=services or [],
            scheduled_for=scheduled_for,
            account_number=account_number,
            previous_closing_date=previous_closing_date,
            previous_move_in_date=previous_move_in_date,
            previous_address=previous_address,
            changes=changes or [],
            reason=reason,
            next_provider=next_provider,
            next_offer=next_offer,
            install_failed=install_failed,
            attempts=attempts,
        )


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
    milestone = Milestone(milestone)
    audience = Audience(audience)
    c = context
    service = _service(c.category)
    by = f" with {c.provider}" if c.provider else ""
    first = (c.buyer_name if audience is Audience.buyer else c.agent_name).split()[0]
    buyer_first = c.buyer_name.split()[0]
    closing = _day(c.closing_date)
    # The agent hears the same news about their client, in the third person.
    whose = "your" if audience is Audience.buyer else f"{buyer_first}'s"
    topic = _cap(service) if audience is Audience.buyer else f"{buyer_first}'s {service}"

    match milestone:
        case Milestone.plan_ready:
            if not c.services:
                raise ValueError("context.services must list at least one service for plan_ready")
            lines = "\n".join(f"  - {line}" for line in c.services)
            subject = f"{_cap(whose)} home services plan for {c.address}"
            lead = (
                "We've put together the services your new home needs"
                if audience is Audience.buyer
                else f"We've put together the home services plan for {buyer_first}"
            )
            body = (
                f"{lead}, timed around closing on {closing}:\n{lines}\n\n"
                "We'll place each order at the right time and keep you posted."
            )
        case Milestone.order_accepted:
            subject = f"{topic}{by} is confirmed"
            body = (
                f"Good news: {c.provider or 'the provider'} accepted the order for "
                f"{whose} {service} at {c.address}. "
                "We'll let you know as soon as a date is set."
            )
        case Milestone.order_scheduled if c.scheduled_for is None:
            # A scheduled event without its date (events come in any order, some never).
            subject = f"{topic} is scheduled"
            body = (
                f"{_cap(whose)} {service}{by} at {c.address} is scheduled; "
                f"{c.provider or 'the provider'} will confirm the day. "
                "Nothing to do for now; we'll confirm once it's up and running."
            )
        case Milestone.order_scheduled:
            when = _local(_required(c.scheduled_for, "scheduled_for", milestone), c.time_zone)
            subject = f"{topic} is scheduled for {_day(when)}"
            body = (
                f"{_cap(whose)} {service}{by} at {c.address} is scheduled for {_moment(when)}. "
                "Nothing to do for now; we'll confirm once it's up and running."
            )
        case Milestone.order_fulfilled:
            subject = f"{topic} is ready"
            if audience is Audience.buyer and c.account_number:
                body = (
                    f"{_cap(whose)} {service}{by} at {c.address} is up and running. "
                    f"Your account number is {c.account_number}; keep it handy for anything you "
                    "need from them."
                )
            elif audience is Audience.buyer:
                # The event that carries it may be lost: the provider's welcome note has it too.
                body = (
                    f"{_cap(whose)} {service}{by} at {c.address} is up and running. "
                    f"{c.provider or 'The provider'} will send your account number."
                )
            else:
                # The account belongs to the buyer: the agent only hears that it is done.
                body = f"{_cap(whose)} {service}{by} at {c.address} is up and running."
        case Milestone.order_rejected:
            subject = f"We're finding another option for {whose} {service}"
            body = (
                f"{c.provider or 'The provider'} couldn't take the order for "
                f"{whose} {service} at {c.address}. We're lining up another option before "
                f"closing on {closing} and will be in touch shortly."
            )
        case Milestone.order_at_risk:
            move_in = _day(c.move_in_date or c.closing_date)
            subject = f"{topic} may not be ready by move-in"
            body = (
                f"{_cap(whose)} {service}{by} at {c.address} is running behind and may not be "
                f"ready by move-in on {move_in}. We're following up and will let you know what "
                "we find."
            )
        case Milestone.closing_changed:
            subject, body = _closing_changed(c, whose)
        case Milestone.closing_cancelled:
            subject = f"Home services for {c.address} are cancelled"
            body = (
                f"Since the closing at {c.address} is off, we've stopped arranging home services "
                "and cancelled any orders that could still be cancelled."
            )
            if c.changes:
                body += (
                    " Some could not be cancelled by us:\n"
                    + _bullets(c.changes)
                    + "\n\nOnly the account holder can stop those with the provider, so "
                    + (
                        "please call them."
                        if audience is Audience.buyer
                        else f"{buyer_first} needs to call them."
                    )
                )
            else:
                body += " Sorry it didn't work out."
        case Milestone.order_repicked:
            what = (
                "couldn't complete the installation of"
                if c.install_failed
                else "couldn't take the order for"
            )
            why = f" ({c.reason.rstrip('.')})" if c.reason else ""
            instead = (
                f"{c.next_offer} from {c.next_provider}"
                if c.next_offer and c.next_provider
                else c.next_offer or c.next_provider or "the next best offer"
            )
            subject = f"{topic} is now ordered from {c.next_provider or 'another provider'}"
            body = (
                f"{c.provider or 'The provider'} {what} {whose} {service} at {c.address}{why}. "
                f"We've ordered {instead} instead and will confirm once it's accepted."
            )
        case Milestone.needs_person:
            move_in = _day(c.move_in_date or c.closing_date)
            tries = f" after {c.attempts} tries" if c.attempts else ""
            why = f" ({c.reason.rstrip('.')})" if c.reason else ""
            subject = f"{topic} needs a decision"
            lead = (
                f"{c.provider or 'The provider'} couldn't provide {whose} {service} at "
                f"{c.address}{why}, and no other {service} offer within the plan's budget and "
                f"rules is left{tries}."
            )
            ask = (
                f"{c.agent_name} will help you choose how to get it set up by move-in on {move_in}."
                if audience is Audience.buyer
                else f"Please choose a provider with {buyer_first}, or have them arrange it "
                f"directly, so it's ready by move-in on {move_in}."
            )
            body = f"{lead} {ask}"
        case Milestone.needs_attention:
            subject = f"Home services for {c.address} need your attention"
            why = (c.reason or "a step failed").rstrip(".")
            body = (
                f"We couldn't go on arranging home services for {buyer_first} at {c.address}: "
                f"{why}. Once that is sorted, retry the closing from the CRM (or send it again) "
                "and we'll carry on where we stopped."
            )
        case Milestone.contact_changed:
            subject = (
                "Your contact details are updated"
                if audience is Audience.buyer
                else f"{buyer_first}'s contact details changed"
            )
            body = f"{_cap(whose)} contact details are updated; new orders use them."
            if c.changes:
                body += (
                    " These orders were placed with the old details, so the providers may still "
                    "use them:\n" + _bullets(c.changes) + "\n\nAsk each provider to update the "
                    "account details."
                )
            else:
                body += " No order had been placed yet, so every order will carry the new ones."
    body += _links(milestone, c, audience)
    if milestone in (Milestone.closing_changed, Milestone.closing_cancelled):
        # Last, where the agent's copy has always ended: the reason the CRM gave.
        body += _reason_for_agent(c, audience)
    return Message(milestone=milestone, subject=subject, body=f"Hi {first},\n\n{body}")


def _links(milestone: Milestone, c: NotificationContext, audience: Audience) -> str:
    """The self-serve link (buyer's plan message) and the closing page's link, when given."""
    out = ""
    if c.choose_url and milestone is Milestone.plan_ready and audience is Audience.buyer:
        out += (
            "\n\nWant TV, home security or other services too? Choose them yourself here, "
            f"no account needed: {c.choose_url}"
        )
    if c.page_url:
        out += f"\n\nSee the plan and every order as it happens: {c.page_url}"
    return out


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


def notify(
    milestone: Milestone,
    context: NotificationContext,
    *,
    buyer: Buyer,
    urls: list[str],
    outbox: Path | None = None,
) -> list[Audience]:
    """Tell the agent, and the buyer if they consented (on their channel); returns who was told."""
    audiences = [Audience.buyer, Audience.agent] if buyer.contact_consent else [Audience.agent]
    if not buyer.contact_consent:
        logger.info("The buyer has not agreed to be contacted: only the agent hears this")
    for audience in audiences:
        send(
            compose(milestone, context, audience=audience),
            to=audience,
            urls=urls,
            channel=buyer.preferred_channel if audience is Audience.buyer else None,
            outbox=outbox,
        )
    return audiences


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


def _closing_changed(c: NotificationContext, whose: str) -> tuple[str, str]:
    """The closing_changed subject and body: what moved, then what it means per service."""
    moved_closing = c.previous_closing_date is not None and c.previous_closing_date != (
        c.closing_date
    )
    move_in = c.move_in_date or c.closing_date
    moved_in = c.previous_move_in_date is not None and c.previous_move_in_date != move_in
    if not (moved_closing or moved_in or c.previous_address):
        _required(None, "previous_closing_date", Milestone.closing_changed)
    facts: list[str] = []
    if moved_closing:
        assert c.previous_closing_date is not None
        facts.append(
            f"{_cap(whose)} closing at {c.address} moved from {_day(c.previous_closing_date)} "
            f"to {_day(c.closing_date)}."
        )
    if moved_in:
        assert c.previous_move_in_date is not None
        facts.append(f"Move-in moved from {_day(c.previous_move_in_date)} to {_day(move_in)}.")
    if c.previous_address:
        facts.append(f"The address was corrected from {c.previous_address} to {c.address}.")
    if moved_closing:
        subject = f"Closing moved to {_day(c.closing_date)}: services updated"
    elif moved_in:
        subject = f"Move-in moved to {_day(move_in)}: services updated"
    else:
        subject = f"Home services re-planned for {c.address}"
    if c.changes:
        rest = "Here is what it means for each service:\n" + _bullets(c.changes)
    else:
        rest = (
            "We're re-timing the home services to match, and will let you know of any "
            "changes to the dates."
        )
    return subject, " ".join(facts) + " " + rest


def _reason_for_agent(c: NotificationContext, audience: Audience) -> str:
    """The reason a closing changed, as the CRM gave it: for the agent's copy only."""
    if audience is not Audience.agent or not c.reason:
        return ""
    return f"\n\nReason given: {c.reason.strip().rstrip('.')}."


def _bullets(lines: list[str]) -> str:
    return "\n".join(f"  - {line}" for line in lines)


def _service(category: str | None) -> str:
    if category is None:
        return "home service"
    return _SERVICE_WORDS.get(category.lower(), "home service")


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _required(value: _T | None, field: str, milestone: Milestone) -> _T:
    if value is None:
        raise ValueError(f"context.{field} is required for the {milestone.value} message")
    return value


def _day(value: date | datetime) -> str:
    day = value.date() if isinstance(value, datetime) else value
    return f"{day:%A}, {day:%B} {day.day}, {day.year}"


def _local(value: date | datetime, time_zone: str) -> date | datetime:
    """A moment on the home's clock; a bare date or a naive time (zone unknown) stays as given."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(ZoneInfo(time_zone))
    return value


def _moment(value: date | datetime) -> str:
    """A date, or a date and time when the time is known on the home's clock."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        return _day(value)
    hour = value.hour % 12 or 12
    return f"{_day(value)} at {hour}:{value:%M} {'AM' if value.hour < 12 else 'PM'}"
