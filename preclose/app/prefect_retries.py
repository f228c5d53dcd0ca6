"""Counts the sleeps of Prefect's client after a retryable answer (503, 429, ...) from its API.

Prefect's client retries a 503 (its SQLite database was busy) after 2, 4, 8... seconds and says so
only in a debug record of the `prefect.client` logger. The demo and the benchmarks count those
records, so a run that spent its time waiting on Prefect's own server says so.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

CLIENT_LOGGER = "prefect.client"
_WAIT = re.compile(r"Another attempt will be made in ([0-9.]+)s")
_STATUS = re.compile(r"retryable status code (\d+)")


@dataclass
class RetrySleeps(logging.Filter):
    """A logging filter that counts the client's retry sleeps and drops its debug chatter."""

    sleeps: int = 0
    seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Initialise the filter half (dataclasses do not call `Filter.__init__`)."""
        super().__init__()

    def filter(self, record: logging.LogRecord) -> bool:
        """Count a retry record; let through what is above debug, as without this filter."""
        message = record.getMessage()
        wait = _WAIT.search(message)
        if wait is not None:
            self.sleeps += 1
            self.seconds += float(wait.group(1))
            status = _STATUS.search(message)
            code = status.group(1) if status else "error"
            self.statuses[code] = self.statuses.get(code, 0) + 1
        return record.levelno > logging.DEBUG

    def describe(self) -> str:
        """One line: how many sleeps, how long, after which answers."""
        if not self.sleeps:
            return "0 retry sleeps"
        codes = ", ".join(f"{count} after {code}" for code, count in sorted(self.statuses.items()))
        return f"{self.sleeps} retry sleeps, {self.seconds:.1f} s in all ({codes})"


@contextmanager
def counting_retry_sleeps() -> Iterator[RetrySleeps]:
    """Count Prefect client retry sleeps in this process for the block."""
    # Prefect configures its logging when `prefect.main` is first imported (`import prefect` alone
    # is lazy), which resets this logger's level: have that happen now, before it is lowered.
    import prefect.main  # noqa: F401

    logger = logging.getLogger(CLIENT_LOGGER)
    counter = RetrySleeps()
    level = logger.level
    # The retry record is a debug record: the logger must pass it to the filter, which drops it.
    logger.setLevel(logging.DEBUG)
    logger.addFilter(counter)
    try:
        yield counter
    finally:
        logger.removeFilter(counter)
        logger.setLevel(level)
