"""Prefect's server on SQLite without 503s under our runs: its settings, and a launcher.

Prefect's server answers 503 when its SQLite database is busy, and its client then sleeps 2, 4,
8... seconds (the demo lost 16 s to it). The cause is in Prefect's own writers: a write
transaction begins DEFERRED, reads, then writes; when another writer (the task run recorder, the
event persister, an API call) committed in between, SQLite refuses the upgrade at once
(SQLITE_BUSY_SNAPSHOT, "database is locked") instead of waiting its busy timeout. Two remedies:

- `SQLITE_SERVER_SETTINGS`: the task run recorder and event persister write in large, rare batches
  (their defaults are a transaction per task run event and per 20 events), so far fewer
  transactions collide;
- `python -m preclose.app.prefect_sqlite server start ...` runs Prefect's own CLI with every
  write transaction begun IMMEDIATE: a writer then waits for the lock (up to Prefect's 60 s busy
  timeout) and never fails on a stale snapshot. Reads are untouched. PostgreSQL is unaffected.

`preclose serve`, the demo, the benchmarks and the scripts start Prefect's server this way.
PostgreSQL has no such limit: scale out on it (scripts/scale_out.py).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

SQLITE_SERVER_SETTINGS: dict[str, str] = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "50",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "2",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "500",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_READ_BATCH_SIZE": "50",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "2",
}


def prefect_sqlite_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The settings above, less any the environment already sets (a person's choice wins)."""
    current = os.environ if environ is None else environ
    return {name: value for name, value in SQLITE_SERVER_SETTINGS.items() if name not in current}


def begin_writes_immediate() -> None:
    """Make Prefect's server begin every SQLite write transaction IMMEDIATE (this process)."""
    from prefect.server.database.configurations import AioSqliteConfiguration

    deferred = AioSqliteConfiguration.begin_transaction
    if getattr(deferred, "_preclose_immediate", False):
        return

    @asynccontextmanager
    async def begin_transaction(
        self: AioSqliteConfiguration, session: Any, with_for_update: bool = False
    ) -> AsyncIterator[Any]:
        # `with_for_update=True` is Prefect's own switch to BEGIN IMMEDIATE.
        async with deferred(self, session, with_for_update=True) as transaction:
            yield transaction

    begin_transaction._preclose_immediate = True  # type: ignore[attr-defined]
    AioSqliteConfiguration.begin_transaction = begin_transaction  # type: ignore[method-assign]


def main() -> None:
    """Prefect's CLI (`server start ...`), its SQLite writes begun IMMEDIATE."""
    begin_writes_immediate()
    from prefect.cli import app

    app()


if __name__ == "__main__":
    main()
