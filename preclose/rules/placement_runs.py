"""Which scheduled `place due orders` runs a closing needs, and how they differ from those it has.

One run per future placement date of the closing's planned lines, at 08:00 at the property. The
comparison with the runs already scheduled is plain code, so that the Prefect task around it
(tasks/schedules.py) only reads, creates and cancels.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

# Offices open, providers answer: early enough that a same-day order still counts as that day's.
PLACEMENT_TIME = time(8, 0)


@dataclass(frozen=True)
class PlannedLine:
    """What the schedule needs of one plan line: its ID and the date its order goes out."""

    plan_line_id: uuid.UUID
    placement_date: date


@dataclass(frozen=True)
class PlacementRun:
    """One scheduled run that places a closing's orders due on one date."""

    crm_closing_id: str
    placement_date: date
    scheduled_time: datetime
    name: str
    idempotency_key: str


@dataclass(frozen=True)
class ScheduledRun:
    """A run already scheduled for the closing: its Prefect ID and start time."""

    flow_run_id: uuid.UUID
    scheduled_time: datetime


@dataclass(frozen=True)
class ScheduleChanges:
    """What to do to make the scheduled runs match the plan."""

    create: list[PlacementRun]
    cancel: list[uuid.UUID]
    keep: list[ScheduledRun]


def run_name(crm_closing_id: str, placement_date: date) -> str:
    """`place due orders (CL-1) on 2027-03-09`: which closing and which day, nothing personal."""
    return f"place due orders ({crm_closing_id}) on {placement_date.isoformat()}"


def placement_moment(placement_date: date, time_zone: str) -> datetime:
    """08:00 at the property on `placement_date`, in UTC."""
    local = datetime.combine(placement_date, PLACEMENT_TIME, tzinfo=ZoneInfo(time_zone))
    return local.astimezone(UTC)


def idempotency_key(
    crm_closing_id: str, placement_date: date, *, version: int, plan_line_ids: Iterable[uuid.UUID]
) -> str:
    """The key that makes a second coordination find the first one's run instead of a new one.

    The closing's version and the lines due that day are part of it: a date moved away and back
    (a new version) or a re-pick after a rejection (a new line) needs a new run, while the old
    run with the same date was cancelled and must not be handed back.
    """
    lines = "|".join(sorted(str(line_id) for line_id in plan_line_ids))
    digest = hashlib.sha256(lines.encode()).hexdigest()[:16]
    return f"preclose-place-{crm_closing_id}-{placement_date:%Y%m%d}-v{version}-{digest}"


def wanted_runs(
    *,
    crm_closing_id: str,
    time_zone: str,
    version: int,
    lines: Iterable[PlannedLine],
    now: datetime,
) -> list[PlacementRun]:
    """One run per placement date of `lines` whose 08:00 at the property is still ahead."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now: must be timezone-aware (e.g. datetime.now(UTC))")
    by_date: dict[date, list[uuid.UUID]] = {}
    for line in lines:
        by_date.setdefault(line.placement_date, []).append(line.plan_line_id)
    runs = []
    for placement_date in sorted(by_date):
        moment = placement_moment(placement_date, time_zone)
        if moment <= now:
            continue  # due already: the coordination itself or the daily run places it
        runs.append(
            PlacementRun(
                crm_closing_id=crm_closing_id,
                placement_date=placement_date,
                scheduled_time=moment,
                name=run_name(crm_closing_id, placement_date),
                idempotency_key=idempotency_key(
                    crm_closing_id,
                    placement_date,
                    version=version,
                    plan_line_ids=by_date[placement_date],
                ),
            )
        )
    return runs


def schedule_changes(
    wanted: Iterable[PlacementRun], scheduled: Iterable[ScheduledRun]
) -> ScheduleChanges:
    """Runs to create (a new date), to cancel (a date dropped, or a duplicate), and to keep."""
    wanted_by_time = {run.scheduled_time: run for run in wanted}
    keep: dict[datetime, ScheduledRun] = {}
    cancel: list[uuid.UUID] = []
    for run in sorted(scheduled, key=lambda r: (r.scheduled_time, str(r.flow_run_id))):
        moment = run.scheduled_time.astimezone(UTC)
        if moment in wanted_by_time and moment not in keep:
            keep[moment] = run
        else:
            cancel.append(run.flow_run_id)
    create = [run for moment, run in sorted(wanted_by_time.items()) if moment not in keep]
    return ScheduleChanges(create=create, cancel=cancel, keep=list(keep.values()))
