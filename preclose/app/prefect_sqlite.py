"""Prefect server settings that keep its SQLite database from answering 503 under our runs.

Prefect's server answers 503 when its SQLite database is busy, and its client then sleeps 2, 4,
8... seconds. The writers that collide are its own: the task run recorder writes each task run
event in a transaction of its own (batch size 1) and the event persister flushes every 20 events,
while the API writes flow runs, states and artifacts. Larger, rarer batches mean far fewer write
transactions to collide (the UI shows a task run up to a flush interval later). PostgreSQL has no
such limit: scale out on it (scripts/scale_out.py).
"""

from __future__ import annotations

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
    import os

    current = os.environ if environ is None else environ
    return {name: value for name, value in SQLITE_SERVER_SETTINGS.items() if name not in current}
