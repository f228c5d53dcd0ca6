"""Simulated providers: they move every new order item through its statuses on the sandbox clock.

Each item follows the documented paths (contract.md, "Status transitions"):

    pending -> submitted_to_provider -> accepted -> scheduled -> in_progress -> completed -> active
    pending | submitted_to_provider -> rejected          (rate `rejection_rate`)
    in_progress -> failed                                (rate `failure_rate`)
    pending -> accepted -> active                        (instant-activation offers)

Dates follow the item's window when the order gives one (`metadata.serviceWindows`: an entry per
item with its offerId, `startDate`, `neededBy`, `notBefore`), as a real provider follows the dates
on an order: an install or a service start is booked on the requested start, or on the provider's
first free day (5-10 days after acceptance) when that is later, which the notes then say, and
never before the start or `notBefore`; an instant-activation item is accepted on review (bound)
and goes live just after midnight on its start day. Without a window a provider works as soon as
it can.

Every move goes through the sandbox's own provider path (`update_item_status`), the same one the
PATCH /provider/orders/{itemId}/status route uses, so a simulated provider can do nothing a real
one could not. Every draw comes from a generator seeded by (seed, item, step), so the same orders on
the same clock get the same history whatever else happens in the sandbox.

A person playing a provider always wins: once anyone else moves an item (a human PATCH, a reseller
cancel), the simulator lets go of that item for good.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import zipcodes

from offergrid_sandbox.clock import Clock
from offergrid_sandbox.config import SimulationConfig
from offergrid_sandbox.events import ItemChange

log = logging.getLogger(__name__)

# Plain reasons a provider gives when it turns an order down or an installation fails.
REJECTION_REASONS: tuple[str, ...] = (
    "Address outside current service area",
    "Service not yet available at this address",
    "Unable to verify the service address",
    "No installation capacity in this area for the requested period",
)
FAILURE_REASONS: tuple[str, ...] = (
    "Installation could not be completed: technician could not access the property",
    "Installation could not be completed: no usable line at the address",
    "Installation could not be completed: equipment fault on site",
)

# Appointment windows in the property's local time, as a provider's scheduler offers them.
INSTALL_WINDOWS: tuple[tuple[int, int], ...] = ((8, 12), (12, 16), (13, 17))

# The system hands a new item to its provider after a small share of the whole review time.
_ROUTING_SHARE = (0.05, 0.2)
# Instant activation is quick but not simultaneous: minutes from acceptance to live service.
_INSTANT_MINUTES = (1.0, 15.0)

_INSTALLED_CATEGORIES = frozenset({"internet", "television", "security"})
# Statuses from which a simulated provider still has a step to take.
_RESUMABLE = frozenset(
    {"pending", "submitted_to_provider", "accepted", "scheduled", "in_progress", "completed"}
)


class SimulatedSandbox(Protocol):
    """What the simulator needs from the sandbox core: clock, listeners, the provider path."""

    clock: Clock
    listeners: list[Callable[[ItemChange], None]]

    def update_item_status(
        self,
        item_id: str,
        *,
        status: str,
        provider_notes: str | None = None,
        scheduled_for: Any = None,
        metadata: dict[str, Any] | None = None,
        team_id: str | None = None,
    ) -> dict[str, Any]:
        """Move one item to `status` exactly as a provider's PATCH would."""
        ...

    def get_item(self, item_id: str) -> dict[str, Any]:
        """The item's current wire dict."""
        ...


@dataclass(frozen=True)
class Window:
    """When the reseller asked the service to start, read from the order's metadata."""

    start: date  # never earlier
    needed_by: date  # the last day that serves the customer
    not_before: date  # possession: never earlier either


@dataclass
class _Track:
    """What the simulator knows of one item it drives."""

    change: ItemChange  # the creation event: ids, category, test flag
    instant: bool
    zone: ZoneInfo
    window: Window | None = None
    in_flight: str | None = None  # the status our own update is setting right now


def window_of(item: dict[str, Any], offer_id: str) -> Window | None:
    """The item's window from its order's `metadata.serviceWindows`, or None if it gives none.

    Offergrid's order item has no date field, so a reseller that needs a date puts one entry per
    item in the order's metadata, naming the offerId; entries that do not parse are ignored.
    """
    metadata = item.get("metadata")
    entries = metadata.get("serviceWindows") if isinstance(metadata, dict) else None
    if not isinstance(entries, list):
        return None
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("offerId") != offer_id:
            continue
        try:
            start = date.fromisoformat(str(entry["startDate"]))
            needed_by = date.fromisoformat(str(entry.get("neededBy") or start.isoformat()))
            not_before = date.fromisoformat(str(entry.get("notBefore") or start.isoformat()))
        except (KeyError, ValueError):
            return None
        return Window(start=max(start, not_before), needed_by=needed_by, not_before=not_before)
    return None


def zone_for_zip(zip_code: str | None) -> ZoneInfo:
    """The local time zone of a US ZIP code (offline ZIP data, else its leading digits; Eastern)."""
    digits = "".join(ch for ch in (zip_code or "") if ch.isdigit())
    if len(digits) >= 5:
        try:
            found = zipcodes.matching(digits[:5])
        except (TypeError, ValueError):
            found = []
        zone = found[0].get("timezone") if found else None
        if zone:
            return ZoneInfo(zone)
    if len(digits) >= 3:
        prefix = int(digits[:3])
        if 967 <= prefix <= 968:
            return ZoneInfo("Pacific/Honolulu")
        if 995 <= prefix <= 999:
            return ZoneInfo("America/Anchorage")
        if 850 <= prefix <= 865:
            return ZoneInfo("America/Phoenix")
    if digits:
        first = digits[0]
        if first in "5674":
            return ZoneInfo("America/Chicago" if first != "4" else "America/New_York")
        if first == "8":
            return ZoneInfo("America/Denver")
        if first == "9":
            return ZoneInfo("America/Los_Angeles")
    return ZoneInfo("America/New_York")


def format_window(start_local: datetime, end_hour: int) -> str:
    """A window as people write it: "Tue Mar 3, 8am-12pm"."""

    def hour(h: int) -> str:
        suffix = "am" if h < 12 else "pm"
        return f"{(h - 1) % 12 + 1}{suffix}"

    return f"{start_local:%a %b} {start_local.day}, {hour(start_local.hour)}-{hour(end_hour)}"


def pick_install_slot(
    not_before: datetime,
    target_day: date,
    zone: ZoneInfo,
    rng: random.Random,
    *,
    any_day: bool = False,
) -> tuple[datetime, int]:
    """The first business-day window on or after `target_day` that starts after `not_before`.

    `any_day` lets a remote start (power switched on at the meter) fall on a weekend too.
    Returns the window's start (aware, in `zone`) and its end hour.
    """
    day = target_day
    first_window = rng.randrange(len(INSTALL_WINDOWS))
    for _ in range(30):
        if any_day or day.weekday() < 5:  # Monday to Friday
            for index in range(first_window, len(INSTALL_WINDOWS)):
                start_hour, end_hour = INSTALL_WINDOWS[index]
                start = datetime.combine(day, time(start_hour), tzinfo=zone)
                if start > not_before:
                    return start, end_hour
        day += timedelta(days=1)
        first_window = 0
    raise RuntimeError("no installation window found within 30 days")  # unreachable in practice


class ProviderSimulator:
    """Plays every provider: advances new items step by step through the sandbox's provider path."""

    def __init__(self, config: SimulationConfig, *, seed: int = 7) -> None:
        self._config = config
        self._seed = seed
        self._sandbox: SimulatedSandbox | None = None
        self._lock = threading.Lock()
        self._tracks: dict[str, _Track] = {}
        # Timers cannot be taken back off the clock; a new generation turns old ones into no-ops.
        self._generation = 0

    @property
    def config(self) -> SimulationConfig:
        """The behaviour in force for future steps."""
        return self._config

    @property
    def seed(self) -> int:
        """The seed every draw derives from."""
        return self._seed

    def attach(self, sandbox: SimulatedSandbox) -> None:
        """Listen to the sandbox's item changes and drive items through its update path."""
        self._sandbox = sandbox
        sandbox.listeners.append(self.on_change)

    def configure(self, config: SimulationConfig) -> None:
        """Change how future steps behave; `enabled=False` stops all simulation.

        Items whose steps come due while disabled stay where they are; re-enabling only affects
        items created afterwards, so a person can finish the stalled ones by hand.
        """
        self._config = config

    def reset(self) -> None:
        """Forget every item and make already scheduled steps no-ops."""
        with self._lock:
            self._generation += 1
            self._tracks.clear()

    def resume(self, item: dict[str, Any], order_id: str) -> None:
        """Take up an item restored from a state file where it stands (its next step soon).

        A restarted sandbox has lost its timers: each live item gets its next step again, a
        minute from now (a scheduled one at its appointment), as a provider picking its queue up
        after a night would.
        """
        sandbox = self._sandbox
        status = item.get("status")
        if sandbox is None or not self._config.enabled or status not in _RESUMABLE:
            return
        change = ItemChange(
            order_id=order_id,
            item_id=item["itemId"],
            offer_id=item["offerId"],
            category=item["category"],
            previous_status=None,
            new_status=status,
            at=self._now(),
        )
        track = _Track(
            change=change,
            instant=self._is_instant(change, item),
            zone=zone_for_zip(_zip_of(item)),
        )
        item_id = item["itemId"]
        with self._lock:
            self._tracks[item_id] = track
        soon = self._now() + timedelta(minutes=1)
        steps: dict[str, Callable[[], None]] = {
            "pending": lambda: self._route(item_id, soon + timedelta(hours=1)),
            "submitted_to_provider": lambda: self._review(item_id),
            "accepted": (
                (lambda: self._activate(item_id, notes=_active_notes(change.category)))
                if track.instant
                else (lambda: self._schedule_install(item_id, self._now()))
            ),
            "scheduled": lambda: self._begin_install(item_id),
            "in_progress": lambda: self._finish(item_id),
            "completed": lambda: self._activate(item_id),
        }
        when = soon
        if status == "scheduled" and item.get("scheduledFor"):
            appointment = datetime.fromisoformat(str(item["scheduledFor"]).replace("Z", "+00:00"))
            when = max(soon, appointment)
        self._at(item_id, when, status, steps[status])

    def tracked_items(self) -> list[str]:
        """The ids of the items the simulator is still driving."""
        with self._lock:
            return list(self._tracks)

    # -- listener -------------------------------------------------------------------------

    def on_change(self, change: ItemChange) -> None:
        """Start simulating an item when it is created; let go of it when anyone else moves it."""
        if change.previous_status is None:
            if change.new_status == "pending":
                self._start(change)
            return
        with self._lock:
            track = self._tracks.get(change.item_id)
            if track is not None and track.in_flight != change.new_status:
                # Someone else (a person, a reseller cancel) moved the item: theirs from now on.
                del self._tracks[change.item_id]

    def _start(self, change: ItemChange) -> None:
        sandbox = self._sandbox
        if sandbox is None or not self._config.enabled:
            return
        item = self._read(change.item_id) or {}
        track = _Track(
            change=change,
            instant=self._is_instant(change, item),
            zone=zone_for_zip(_zip_of(item)),
            window=window_of(item, change.offer_id),
        )
        with self._lock:
            self._tracks[change.item_id] = track
            generation = self._generation
        cfg = self._config
        review = timedelta(hours=self._uniform(change.item_id, "review", cfg.review_hours))
        share = self._uniform(change.item_id, "routing", _ROUTING_SHARE)
        self._schedule(
            generation,
            change.item_id,
            change.at + _whole_seconds(review * share),
            "pending",
            lambda: self._route(change.item_id, change.at + _whole_seconds(review)),
        )

    # -- steps ----------------------------------------------------------------------------

    def _route(self, item_id: str, decision_at: datetime) -> None:
        """pending: reject on sight, accept an instant offer, or hand the item to its provider."""
        track = self._track(item_id)
        if track is None:
            return
        if self._rejects(item_id) and (
            track.instant or self._rng(item_id, "reject-at").random() < 0.5
        ):
            self._reject(item_id)
            return
        if track.instant:
            minutes = self._uniform(item_id, "instant", _INSTANT_MINUTES)
            soon = self._now() + timedelta(minutes=minutes)
            live_at = soon
            if track.window is not None:
                # Activation happens on the requested day, just after midnight there: a policy
                # is effective from 12:01 am, power is switched on at the meter that morning.
                day_starts = datetime.combine(track.window.start, time(0), tzinfo=track.zone)
                live_at = max(soon, day_starts + timedelta(minutes=minutes))
            later = live_at > soon
            notes = self._accepted_notes(track, live_at if later else None)
            scheduled_for = live_at.astimezone(UTC) if later else None
            moved = self._move(item_id, "accepted", notes=notes, scheduled_for=scheduled_for)
            if moved is None:
                return
            self._at(
                item_id,
                _whole(live_at),
                "accepted",
                lambda: self._activate(item_id, notes=_active_notes(track.change.category)),
            )
            return
        notes = "Order received by the provider and queued for review"
        if self._move(item_id, "submitted_to_provider", notes=notes) is None:
            return
        self._at(item_id, decision_at, "submitted_to_provider", lambda: self._review(item_id))

    def _review(self, item_id: str) -> None:
        """submitted_to_provider: the provider accepts or rejects."""
        track = self._track(item_id)
        if track is None:
            return
        if self._rejects(item_id):
            self._reject(item_id)
            return
        if self._move(item_id, "accepted", notes=self._accepted_notes(track)) is None:
            return
        accepted_at = self._now()
        hours = self._uniform(item_id, "schedule", self._config.schedule_hours)
        self._after(
            item_id,
            timedelta(hours=hours),
            "accepted",
            lambda: self._schedule_install(item_id, accepted_at),
        )

    def _schedule_install(self, item_id: str, accepted_at: datetime) -> None:
        """accepted: book an appointment install_lead_days after acceptance, in business hours."""
        track = self._track(item_id)
        if track is None:
            return
        rng = self._rng(item_id, "slot")
        lead = timedelta(days=rng.uniform(*_ordered(self._config.install_lead_days)))
        # The earliest day the provider has a crew (or a start-up slot) free.
        capacity_day = (accepted_at + lead).astimezone(track.zone).date()
        window = track.window
        target_day = max(capacity_day, window.start) if window is not None else capacity_day
        now_local = self._now().astimezone(track.zone)
        any_day = track.change.category not in _INSTALLED_CATEGORIES
        start, end_hour = pick_install_slot(now_local, target_day, track.zone, rng, any_day=any_day)
        what = _appointment_word(track.change.category)
        notes = f"{what} scheduled for {format_window(start, end_hour)}"
        if window is not None and start.date() > window.needed_by:
            notes += (
                f": the earliest we can, after the requested "
                f"{window.needed_by:%a %b} {window.needed_by.day}"
            )
        elif window is not None:
            notes += ", as requested"
        scheduled_for = start.astimezone(UTC)
        if self._move(item_id, "scheduled", notes=notes, scheduled_for=scheduled_for) is None:
            return
        self._at(item_id, scheduled_for, "scheduled", lambda: self._begin_install(item_id))

    def _begin_install(self, item_id: str) -> None:
        """scheduled: the appointment starts."""
        track = self._track(item_id)
        if track is None:
            return
        notes = (
            "Technician on site; installation under way"
            if track.change.category in _INSTALLED_CATEGORIES
            else "Service set-up under way"
        )
        if self._move(item_id, "in_progress", notes=notes) is None:
            return
        hours = self._uniform(item_id, "install", self._config.install_hours)
        self._after(item_id, timedelta(hours=hours), "in_progress", lambda: self._finish(item_id))

    def _finish(self, item_id: str) -> None:
        """in_progress: the installation completes or fails."""
        rng = self._rng(item_id, "outcome")
        if rng.random() < self._config.failure_rate:
            self._move(item_id, "failed", notes=rng.choice(FAILURE_REASONS), final=True)
            return
        track = self._track(item_id)
        category = track.change.category if track is not None else "other"
        # The sandbox issues the account number on completion; the webhook carries it.
        done = "Installation completed" if category in _INSTALLED_CATEGORIES else "Set-up completed"
        moved = self._move(item_id, "completed", notes=f"{done}; account set up")
        if moved is None:
            return
        hours = self._uniform(item_id, "activation", self._config.activation_hours)
        self._after(item_id, timedelta(hours=hours), "completed", lambda: self._activate(item_id))

    def _activate(self, item_id: str, *, notes: str = "Service is active") -> None:
        """completed (or accepted, for instant offers): the service goes live."""
        self._move(item_id, "active", notes=notes, final=True)

    def _reject(self, item_id: str) -> None:
        reason = self._rng(item_id, "reason").choice(REJECTION_REASONS)
        self._move(item_id, "rejected", notes=reason, final=True)

    # -- plumbing -------------------------------------------------------------------------

    def _accepted_notes(self, track: _Track, live_at: datetime | None = None) -> str:
        if track.instant and live_at is not None:
            local = live_at.astimezone(track.zone)
            when = f"{local:%a %b} {local.day}"
            if track.change.category == "insurance":
                return f"Application approved; policy bound, effective {when}"
            return f"Application approved; service starts {when}"
        if track.instant:
            return "Application approved; activating now"
        return "Order accepted; the provider will contact the customer to book installation"

    def _is_instant(self, change: ItemChange, item: dict[str, Any]) -> bool:
        if change.category in self._config.instant_activation_categories:
            return True
        if change.category != "energy":
            return False
        # Some energy plans switch on with no visit; the offer says so in its free-form data.
        offer = self._offer_of(change.offer_id, item)
        for key in ("serviceSpecificData", "metadata"):
            data = offer.get(key)
            if isinstance(data, dict) and _truthy(data.get("instantActivation")):
                return True
        return False

    def _offer_of(self, offer_id: str, item: dict[str, Any]) -> dict[str, Any]:
        nested = item.get("offer")
        if isinstance(nested, dict):
            return nested
        getter = getattr(self._sandbox, "get_offer", None)
        if callable(getter):
            try:
                found = getter(offer_id)
            except Exception:
                # A deleted or unknown offer just means "not instant".
                return {}
            if isinstance(found, dict):
                return found
        return {}

    def _read(self, item_id: str) -> dict[str, Any] | None:
        sandbox = self._sandbox
        if sandbox is None:
            return None
        try:
            return sandbox.get_item(item_id)
        except Exception:
            # A vanished item (the sandbox was reset) simply ends its simulation.
            return None

    def _move(
        self,
        item_id: str,
        status: str,
        *,
        notes: str,
        scheduled_for: datetime | None = None,
        final: bool = False,
    ) -> dict[str, Any] | None:
        """Set `status` through the provider path; None when the item is no longer ours."""
        sandbox = self._sandbox
        if sandbox is None:
            return None
        with self._lock:
            track = self._tracks.get(item_id)
            if track is None:
                return None
            track.in_flight = status
        try:
            updated = sandbox.update_item_status(
                item_id,
                status=status,
                provider_notes=notes,
                scheduled_for=scheduled_for,
            )
        except Exception as err:
            # The core refused (cancelled meanwhile, reset): let go of the item rather than let
            # one item's step break the clock's advance for everybody.
            log.info("simulated provider let go of %s: %s", item_id, err)
            with self._lock:
                self._tracks.pop(item_id, None)
            return None
        with self._lock:
            track.in_flight = None
            still_ours = self._tracks.get(item_id) is track
            if final and still_ours:
                del self._tracks[item_id]
        return updated if still_ours else None

    def _after(
        self, item_id: str, delay: timedelta, expected: str, step: Callable[[], None]
    ) -> None:
        # Whole seconds keep histories readable; the draw itself stays seeded and exact.
        self._at(
            item_id, self._now() + timedelta(seconds=round(delay.total_seconds())), expected, step
        )

    def _at(self, item_id: str, when: datetime, expected: str, step: Callable[[], None]) -> None:
        with self._lock:
            generation = self._generation
        self._schedule(generation, item_id, when, expected, step)

    def _schedule(
        self,
        generation: int,
        item_id: str,
        when: datetime,
        expected: str,
        step: Callable[[], None],
    ) -> None:
        sandbox = self._sandbox
        if sandbox is None:
            return

        def run() -> None:
            if not self._still_ours(generation, item_id, expected):
                return
            step()

        sandbox.clock.call_at(when, run, label=f"simulate {item_id} from {expected}")

    def _still_ours(self, generation: int, item_id: str, expected: str) -> bool:
        """A step runs only if nothing changed: same generation, still tracked, same status."""
        if not self._config.enabled:
            with self._lock:
                self._tracks.pop(item_id, None)
            return False
        with self._lock:
            if generation != self._generation or item_id not in self._tracks:
                return False
        item = self._read(item_id)
        if item is None or item.get("status") != expected:
            with self._lock:
                self._tracks.pop(item_id, None)
            return False
        return True

    def _track(self, item_id: str) -> _Track | None:
        with self._lock:
            return self._tracks.get(item_id)

    def _now(self) -> datetime:
        assert self._sandbox is not None
        return self._sandbox.clock.now()

    def _rng(self, item_id: str, step: str) -> random.Random:
        return random.Random(f"{self._seed}:{item_id}:{step}")

    def _uniform(self, item_id: str, step: str, bounds: tuple[float, float]) -> float:
        return self._rng(item_id, step).uniform(*_ordered(bounds))

    def _rejects(self, item_id: str) -> bool:
        # One draw per item, read by both the pending and the review step, so the whole-path
        # rejection rate is exactly `rejection_rate` whichever step turns the item down.
        return self._rng(item_id, "reject").random() < self._config.rejection_rate


def _whole(moment: datetime) -> datetime:
    # Whole seconds keep histories readable.
    return moment.replace(microsecond=0)


def _whole_seconds(delay: timedelta) -> timedelta:
    # Whole seconds keep histories readable; the draw itself stays seeded.
    return timedelta(seconds=round(delay.total_seconds()))


def _ordered(bounds: tuple[float, float]) -> tuple[float, float]:
    low, high = bounds
    return (low, high) if low <= high else (high, low)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "yes", "1"}
    return bool(value)


def _zip_of(item: dict[str, Any]) -> str | None:
    for key in ("serviceAddress", "address"):
        address = item.get(key)
        if isinstance(address, dict):
            value = address.get("zipCode") or address.get("postalCode")
            if value is not None:
                return str(value)
    return None


def _active_notes(category: str) -> str:
    if category == "insurance":
        return "Policy is active"
    if category == "energy":
        return "Service is active; supply starts with the next meter read"
    return "Service is active"


def _appointment_word(category: str) -> str:
    if category in _INSTALLED_CATEGORIES:
        return "Installation"
    if category == "energy":
        return "Service start"
    return "Appointment"
