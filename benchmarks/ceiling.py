"""The share of Offergrid's rate ceiling used while a backlog of calls waits at our limiter.

A sampler thread reads the limiter's attempt counter (`rate_limit_key.attempts`: one per admitted
call, one per refused try) once a window. A window in which more tries were made than calls went
out had callers waiting: a backlog window. The share is the calls Offergrid received in backlog
windows against what the ceiling allowed in them; the first and last window of each backlog run
are left out, as a backlog may start or end part-way through them. Arrival times come from the
local Offergrid (or our own call records), so the figure is what Offergrid counted.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa


@dataclass(frozen=True)
class CeilingShare:
    """Calls against the ceiling over the windows in which a backlog was held."""

    windows: int
    calls: int
    allowed: float

    @property
    def share(self) -> float:
        """Calls over allowed calls (NaN when no backlog was held)."""
        return self.calls / self.allowed if self.allowed else float("nan")

    def describe(self) -> str:
        """One line for the report."""
        if not self.windows:
            return "no backlog held for three windows in a row: nothing to measure"
        return (
            f"{self.share:.1%} ({self.calls} calls of {self.allowed:.0f} allowed over "
            f"{self.windows} windows with callers waiting throughout)"
        )


class BacklogSampler:
    """Reads the limiter's attempt counter every `window` seconds in a daemon thread."""

    def __init__(self, database_url: str, window: float) -> None:
        """Sample the limiter tables behind `database_url`."""
        self.engine = sa.create_engine(database_url)
        self.window = window
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backlog-sampler", daemon=True)

    def _read(self) -> int:
        try:
            with self.engine.connect() as conn:
                value = conn.execute(sa.text("SELECT sum(attempts) FROM rate_limit_key")).scalar()
        except sa.exc.DBAPIError:
            return self.samples[-1][1] if self.samples else 0  # tables not made yet
        return int(value or 0)

    def _run(self) -> None:
        deadline = time.time()
        while not self._stop.is_set():
            self.samples.append((time.time(), self._read()))
            deadline += self.window
            self._stop.wait(max(0.0, deadline - time.time()))

    def __enter__(self) -> BacklogSampler:
        """Start sampling."""
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop sampling."""
        self.close()

    def close(self) -> None:
        """Stop sampling (one last sample) and let go of the database; again is a no-op."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=10)
        self.samples.append((time.time(), self._read()))
        self.engine.dispose()

    def share(self, arrivals: list[float], limit: int) -> CeilingShare:
        """The ceiling share over the interior windows of each backlog run (arrivals: epoch s)."""
        times = sorted(arrivals)
        backlog: list[tuple[int, float]] = []
        runs: list[list[tuple[int, float]]] = [[]]
        for (start, tries0), (end, tries1) in zip(self.samples, self.samples[1:], strict=False):
            calls = bisect.bisect_left(times, end) - bisect.bisect_left(times, start)
            # One try more than calls can be a call admitted here that arrived in the next window.
            if tries1 - tries0 > calls + 1:
                runs[-1].append((calls, limit * (end - start) / self.window))
            elif runs[-1]:
                runs.append([])
        for run in runs:
            backlog.extend(run[1:-1])
        return CeilingShare(
            windows=len(backlog),
            calls=sum(calls for calls, _ in backlog),
            allowed=sum(allowed for _, allowed in backlog),
        )


@dataclass(frozen=True)
class SlotReuse:
    """How soon a backlog used each of the ceiling's slots again, against the window."""

    reuses: int
    seconds: float  # their gaps, summed
    window: float
    limit: int  # slots: calls the ceiling lets in one window

    @property
    def share(self) -> float:
        """The window over the mean gap: 100% when each slot goes again the moment it frees."""
        return self.window * self.reuses / self.seconds if self.seconds else float("nan")

    def describe(self) -> str:
        """One line for the report."""
        if not self.reuses:
            return "no step was handed more calls than one window allows: nothing to measure"
        return (
            f"{self.share:.1%} ({self.reuses} slot reuses, {self.windows:.1f} windows of "
            f"backlog; mean gap {self.seconds / self.reuses:.2f} s against {self.window:g} s)"
        )

    @property
    def windows(self) -> float:
        """How long the backlog lasted, in windows: every slot cycles side by side."""
        return self.seconds / self.limit / self.window


def slot_reuse(
    arrivals: list[float], steps: list[tuple[float, float]], limit: int, window: float
) -> SlotReuse:
    """The ceiling share a backlog sustained: the gap from each call to the `limit`-th after it.

    Offergrid lets `limit` calls in any rolling `window`, so under a backlog call i+limit may
    arrive `window` after call i and no sooner. Only steps (epoch seconds, start to end) handed
    more calls than one window allows are read, and every call of theirs was asked for at once, so
    a gap longer than `window` is our pace: the limiter's margin and answer-dating, or demand
    running out at a step's end (which can only lower the figure).
    """
    times = sorted(arrivals)
    reuses, seconds = 0, 0.0
    for start, end in steps:
        inside = times[bisect.bisect_left(times, start) : bisect.bisect_right(times, end)]
        gaps = [inside[i + limit] - inside[i] for i in range(len(inside) - limit)]
        reuses += len(gaps)
        seconds += sum(gaps)
    return SlotReuse(reuses=reuses, seconds=seconds, window=window, limit=limit)
