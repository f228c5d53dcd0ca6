"""Where the CPU of a benchmark run goes: the coordinator by phase and code, the server by request.

- `CpuSampler`: a thread that, every few milliseconds, reads the CPU clock of the thread that runs
  the flows (Linux: `pthread_getcpuclockid`) and charges the CPU used since the last look to what
  that thread is doing now: the phase the driver set, our innermost function on its stack, and
  the library below it. A statistical profile of CPU, not of wall time: waiting on Prefect's
  server or Offergrid charges nothing. Its own cost lands on the sampler thread, not the one
  measured (the GIL aside).
- `PrefectCalls`: counts our process's calls to Prefect's API by method and route.
- `server_unit_costs`: Prefect's server CPU for one flow run, one task run, one artifact, one
  artifact update and one plain API call, measured on the same server after the run (an empty
  flow and task, each many times), to say how much of the server's CPU each kind of thing we
  asked of it explains.
"""

from __future__ import annotations

import re
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_OURS = ("flows", "tasks", "preclose", "models", "offergrid")
_STEPS = ("flows", "tasks")  # flows orchestrate, tasks hold the steps: the level to report
_ID = re.compile(r"/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _where(frame: FrameType | None) -> tuple[str, str]:
    """(the step: our innermost flow or task function, the code at the top of the stack)."""
    library = ""
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        parts = path.parts
        if "site-packages" in parts:
            if not library:
                library = parts[parts.index("site-packages") + 1].split(".")[0]
        elif ROOT in path.parents:
            relative = path.relative_to(ROOT)
            if not library and relative.parts[0] in _OURS:
                library = f"our {relative.parts[0]}"
            if relative.parts[0] in _STEPS:
                return f"{relative.with_suffix('')}.{frame.f_code.co_name}", library
            if relative.parts[0] == "benchmarks":
                return "(Prefect's engine starting and ending flow runs)", library or "ours"
        elif not library and not str(path).startswith("<"):
            library = "stdlib"
        frame = frame.f_back
    return "(elsewhere)", library or "?"


class CpuSampler:
    """Charges the CPU of this process's threads to (phase, our function, library) by sampling
    their stacks; a thread with none of our code on its stack is charged by its name."""

    def __init__(self, every: float = 0.005) -> None:
        """Sample every `every` seconds once started."""
        self.every = every
        self.phase = "-"
        self.spent: dict[tuple[str, str, str], float] = {}
        # The sampler's own CPU by phase: the caller takes it off the process's figures.
        self.own: dict[str, float] = {}
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _run(self) -> None:
        last: dict[int, float] = {}
        mine = time.thread_time()
        while not self._stop.wait(self.every):
            now = time.thread_time()
            self.own[self.phase] = self.own.get(self.phase, 0.0) + now - mine
            mine = now
            frames = sys._current_frames()
            for thread in threading.enumerate():
                ident = thread.ident
                if ident is None or thread is self._worker or ident not in frames:
                    continue
                try:
                    now = time.clock_gettime(time.pthread_getcpuclockid(ident))
                except OSError:
                    continue  # it ended meanwhile
                used = now - last.get(ident, now)
                last[ident] = now
                if used <= 0:
                    continue
                function, library = _where(frames[ident])
                if function == "(elsewhere)":
                    function = f"(thread {re.sub(r'[-_ ]?[0-9]+', '', thread.name)})"
                key = (self.phase, function, library)
                self.spent[key] = self.spent.get(key, 0.0) + used

    def __enter__(self) -> CpuSampler:
        """Start sampling."""
        self._worker.start()
        return self

    def __exit__(self, *_: object) -> None:
        """Stop sampling."""
        self._stop.set()
        self._worker.join()


class PrefectCalls:
    """Our calls to Prefect's API, by method and route (IDs replaced by `{id}`)."""

    def __init__(self) -> None:
        """An empty count."""
        self.counts: Counter[str] = Counter()

    @contextmanager
    def counting(self) -> Iterator[PrefectCalls]:
        """Count every request Prefect's sync and async clients send in this process."""
        from prefect.client.base import PrefectHttpxAsyncClient, PrefectHttpxSyncClient

        sync_send, async_send = PrefectHttpxSyncClient.send, PrefectHttpxAsyncClient.send

        def note(request: Any) -> None:
            path = _ID.sub("/{id}", request.url.path.split("/api", 1)[-1])
            self.counts[f"{request.method} {path}"] += 1

        def counted_sync(client: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            note(request)
            return sync_send(client, request, *args, **kwargs)

        async def counted_async(client: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            note(request)
            return await async_send(client, request, *args, **kwargs)

        PrefectHttpxSyncClient.send = counted_sync  # type: ignore[method-assign,assignment]
        PrefectHttpxAsyncClient.send = counted_async  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            PrefectHttpxSyncClient.send = sync_send  # type: ignore[method-assign]
            PrefectHttpxAsyncClient.send = async_send  # type: ignore[method-assign]


def server_unit_costs(
    server_cpu: Callable[[], float],
    settle: Callable[[], None],
    idle_rate: float,
    count: int = 40,
) -> dict[str, tuple[float, float]]:
    """Per flow run, task run, artifact, artifact update, log line and plain API call: (server
    CPU seconds, API calls).

    Each is measured on the server the run used, after it: `count` empty flow runs, then as many
    flow runs with 5 empty tasks each, then with 5 artifacts each, then with 5 log lines each,
    then reads; `settle` waits
    until the server has written what it was sent, and its services' idling (`idle_rate`, of a
    core) is taken off. A flow run here is as light as one can be: ours cost the server more
    (parameters, results, logs, tags), which the report's remainder shows.
    """
    from prefect import flow, get_run_logger, task
    from prefect.artifacts import create_markdown_artifact
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactUpdate
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from preclose.prefect_api import one_prefect_client

    @task(name="calibration task")
    def empty_task() -> None:
        """Nothing."""

    @flow(name="calibration flow")
    def empty_flow(tasks: int = 0, artifacts: int = 0, logs: int = 0, updates: int = 0) -> None:
        """Nothing but `tasks` empty task runs, `artifacts` artifacts, `logs` log lines and one
        artifact updated in place `updates` times."""
        for _ in range(tasks):
            empty_task()
        for index in range(artifacts):
            create_markdown_artifact(key=f"calibration-{index}", markdown=f"# {index}")
        if updates:
            kept = create_markdown_artifact(key="calibration-kept", markdown="# 0")
            assert isinstance(kept, uuid.UUID)
            with get_client(sync_client=True) as client:
                for index in range(updates):
                    client.update_artifact(kept, ArtifactUpdate(data=f"# {index + 1}"))
        for index in range(logs):
            get_run_logger().info("Calibration line %d of a flow run's log", index)

    def measured(work: Callable[[], object], units: int) -> tuple[float, float]:
        settle()
        calls = PrefectCalls()
        before, started = server_cpu(), time.monotonic()
        with calls.counting():
            work()
        settle()
        spent = server_cpu() - before - idle_rate * (time.monotonic() - started)
        return max(0.0, spent) / units, sum(calls.counts.values()) / units

    def reads() -> None:
        with get_client(sync_client=True) as client:
            for _ in range(count * 5):
                client.hello()

    # As the run drove its flows: no heartbeats, one client.
    with (
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        one_prefect_client(),
    ):
        flows = measured(lambda: [empty_flow() for _ in range(count)], count)
        tasks = measured(lambda: [empty_flow(tasks=5) for _ in range(count)], count)
        artifacts = measured(lambda: [empty_flow(artifacts=5) for _ in range(count)], count)
        logs = measured(lambda: [empty_flow(logs=5) for _ in range(count)], count)
        updates = measured(lambda: [empty_flow(updates=5) for _ in range(count)], count)
    return {
        "flow run": flows,
        "task run": (max(0.0, (tasks[0] - flows[0]) / 5), max(0.0, (tasks[1] - flows[1]) / 5)),
        "artifact": (
            max(0.0, (artifacts[0] - flows[0]) / 5),
            max(0.0, (artifacts[1] - flows[1]) / 5),
        ),
        "log line": (max(0.0, (logs[0] - flows[0]) / 5), max(0.0, (logs[1] - flows[1]) / 5)),
        # Less the one artifact the flow created first.
        "artifact update": (
            max(0.0, (updates[0] - flows[0] - (artifacts[0] - flows[0]) / 5) / 5),
            max(0.0, (updates[1] - flows[1] - (artifacts[1] - flows[1]) / 5) / 5),
        ),
        "API call": measured(reads, count * 5),
    }


def named_rest(items: dict[str, float], n: int, indent: str) -> list[str]:
    """Lines that name every item of `items` (seconds over `n` closings), largest first, with its
    ms per closing: what a report's "each under 10 ms" line sums, so no 10 ms goes unnamed.

    Items under 1 ms a closing are counted and summed on the last line, not named one by one.
    """
    named = [
        f"{name} {seconds / n * 1000:.0f}"
        for name, seconds in sorted(items.items(), key=lambda entry: -entry[1])
        if seconds / n >= 0.0005
    ]
    tiny = [seconds for seconds in items.values() if seconds / n < 0.0005]
    if tiny:
        named.append(f"{len(tiny)} more under 1 ms: {sum(tiny) / n * 1000:.1f} ms in all")
    return textwrap.wrap(
        ", ".join(named), width=100, initial_indent=indent, subsequent_indent=indent
    )


_ENDPOINT = re.compile(
    r"^(\S+) \(prefect/server/api/(?!server|dependencies|middleware|validation|clients|"
    r"background_workers|__init__)(\w+)\.py"
)
_SERVICE = re.compile(r"\(prefect/server/(?:events/)?(?:services/)?(\w+)\.py")
_SERVICE_MODULES = {
    "task_run_recorder",
    "event_persister",
    "triggers",
    "actions",
    "scheduler",
    "late_runs",
    "foreman",
    "repossessor",
    "cancellation_cleanup",
    "pause_expirations",
    "cleanup_reconciler",
    "db_vacuum",
    "proactive_triggers",
    "reactive_triggers",
    "ordering",
    "event_logger",
}


# Leaves of a thread that waits: py-spy (non-blocking) samples some of them as busy.
SPY_RATE = 200  # samples a second
_WAITING = (
    "EpollSelector.select ",
    "Condition.wait ",
    "Event.wait ",
    "_connection_worker_thread ",
    "_worker (concurrent/futures/thread.py",
    "Queue.get ",
    "sleep ",
    "process ",
)


def server_activity(stack: str) -> str | None:
    """What a sampled stack of Prefect's server was doing: an API endpoint, a service, or else;
    None for a thread that was only waiting."""
    frames = stack.split(";")
    if frames[-1].startswith(_WAITING):
        return None
    for frame in frames:
        endpoint = _ENDPOINT.match(frame)
        if endpoint is not None:
            return f"API {endpoint.group(2)}.{endpoint.group(1)}"
    for frame in frames:
        service = _SERVICE.search(frame)
        if service is not None and service.group(1) in _SERVICE_MODULES:
            return f"service {service.group(1)}"
    if "aiosqlite/" in stack:
        return "SQLite statements in aiosqlite's thread (for any endpoint or service above)"
    if "docket/" in stack or "redis/" in stack:
        return "docket, its background task queue (in-memory Redis)"
    if any(name in stack for name in ("uvicorn/", "starlette/", "fastapi/", "h11/")):
        return "HTTP handling outside an endpoint (uvicorn, FastAPI, middleware)"
    return "other (the event loop, in-memory messaging)"


@contextmanager
def server_profile(pid: int, into: Path) -> Iterator[dict[str, int]]:
    """py-spy samples of `pid` and its children while the block runs, by `server_activity`.

    Sampled from outside (`--nonblocking`: the server is never paused); py-spy's own CPU is its
    process's, not the server's. Idle threads are not sampled, so the counts follow CPU use.
    The dict yielded is filled when the block ends (empty without py-spy).
    """
    import shutil
    import signal
    import subprocess

    counts: dict[str, int] = {}
    spy = shutil.which("py-spy")
    if spy is None:
        yield counts
        return
    command = [spy, "record", "--pid", str(pid), "--subprocesses", "--nonblocking"]
    recorder = subprocess.Popen(  # noqa: S603  (py-spy, fixed arguments)
        [*command, "--rate", str(SPY_RATE), "--format", "raw", "--output", str(into)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield counts
    finally:
        recorder.send_signal(signal.SIGINT)
        try:
            recorder.wait(timeout=60)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait()
        if into.exists():
            for line in into.read_text(errors="replace").splitlines():
                stack, _, count = line.rpartition(" ")
                activity = server_activity(stack) if stack and count.isdigit() else None
                if activity is not None:
                    counts[activity] = counts.get(activity, 0) + int(count)
