"""The sandbox's clock: real time, or virtual time that tests and simulations move by hand."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass(order=True)
class _Timer:
    when: datetime
    seq: int
    fn: Callable[[], None] = field(compare=False)
    label: str = field(compare=False, default="")


class Clock:
    """A clock with a timer queue; subclasses decide how time moves."""

    def __init__(self) -> None:
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self._lock = threading.RLock()

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        raise NotImplementedError

    @property
    def is_virtual(self) -> bool:
        """Whether time only moves when told to."""
        return False

    def call_at(self, when: datetime, fn: Callable[[], None], *, label: str = "") -> None:
        """Run `fn` once the clock reaches `when`."""
        with self._lock:
            heapq.heappush(self._timers, _Timer(when, next(self._seq), fn, label))

    def call_later(self, delay: timedelta, fn: Callable[[], None], *, label: str = "") -> None:
        """Run `fn` once `delay` has passed on this clock."""
        self.call_at(self.now() + delay, fn, label=label)

    def pending(self) -> int:
        """How many timers wait to run."""
        with self._lock:
            return len(self._timers)

    def next_due(self) -> datetime | None:
        """When the earliest timer is due, if any."""
        with self._lock:
            return self._timers[0].when if self._timers else None

    def _pop_due(self, until: datetime) -> _Timer | None:
        with self._lock:
            if self._timers and self._timers[0].when <= until:
                return heapq.heappop(self._timers)
            return None

    def clear(self) -> None:
        """Forget every pending timer."""
        with self._lock:
            self._timers.clear()


class VirtualClock(Clock):
    """Time that stands still until `advance` moves it, running due timers in order."""

    def __init__(self, start: datetime | None = None) -> None:
        super().__init__()
        self._now = (start or datetime.now(UTC)).astimezone(UTC)
        # One advance at a time, so timers run in a single, deterministic order.
        self._advance_lock = threading.Lock()

    @property
    def is_virtual(self) -> bool:
        """Whether time only moves when told to."""
        return True

    def now(self) -> datetime:
        """The current virtual time."""
        return self._now

    def advance(self, delta: timedelta) -> int:
        """Move time forward by `delta`, running every timer that falls due; returns the count."""
        if delta < timedelta(0):
            raise ValueError("a clock cannot go backwards")
        return self.advance_to(self._now + delta)

    def advance_to(self, until: datetime) -> int:
        """Move time forward to `until`, running due timers in time order; returns the count."""
        until = until.astimezone(UTC)
        ran = 0
        with self._advance_lock:
            while (timer := self._pop_due(until)) is not None:
                # Timers see the clock at their own due time, so follow-ups they schedule
                # land at the right moment and run within this same advance when due.
                self._now = max(self._now, timer.when)
                timer.fn()
                ran += 1
            self._now = max(self._now, until)
        return ran


class RealClock(Clock):
    """Wall-clock time; a background thread runs timers as they fall due."""

    def __init__(self, tick: float = 0.05) -> None:
        super().__init__()
        self._tick = tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def now(self) -> datetime:
        """The current wall-clock time."""
        return datetime.now(UTC)

    def run_due(self) -> int:
        """Run every timer due by now; returns how many ran."""
        ran = 0
        while (timer := self._pop_due(self.now())) is not None:
            timer.fn()
            ran += 1
        return ran

    def start(self) -> None:
        """Start the background thread that runs due timers."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sandbox-clock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self._tick):
            self.run_due()
