"""Time series behind the plots: state transitions, completions per site and failure rate per hour."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, Integer, cast, func, select

from dispatcher.store.schema import job_events, jobs
from monitor.filters import JobFilter, Viewer, job_conditions
from monitor.queries import counts

HOUR = 3600.0


def hour_bucket(conn: Connection, column: Any) -> Any:
    """``floor(column / 3600)`` in the connection's SQL dialect (SQLite may lack ``floor``)."""
    if conn.dialect.name == "postgresql":
        return cast(func.floor(column / HOUR), Integer)
    return cast(column / HOUR, Integer)  # truncation is floor for the positive epoch times stored


def _hours(flt: JobFilter) -> list[int]:
    first, last = int(flt.since // HOUR), int(flt.now // HOUR)
    return list(range(first, last + 1))


def plots_data(conn: Connection, flt: JobFilter, viewer: Viewer) -> dict[str, Any]:
    """Hourly series over the window; hours are epoch hours (``hour * 3600`` is the start time).

    Unfiltered, the series come from the maintained counters and count whole hours (the first bar
    holds its whole hour); filtered, they are counted from the matching jobs and their events.
    """
    hours = _hours(flt)
    # the flow counters have no VO: a VO member's plots are counted from their jobs and events
    if viewer.is_admin and not any(flt.values.values()) and counts.uses_counters(flt, viewer):
        return _from_counters(conn, flt, hours)
    ev_hour = hour_bucket(conn, job_events.c.time)
    ev = select(ev_hour, job_events.c.to_status, func.count()).where(job_events.c.time >= flt.since)
    if flt.values or flt.taskid is not None or "admin" not in viewer.roles:
        # only join when the events must be narrowed to some jobs: the plain case reads the event index alone
        ev = ev.select_from(job_events.join(jobs, jobs.c.panda_id == job_events.c.panda_id)).where(
            *job_conditions(flt, viewer)
        )
    transitions: dict[str, dict[int, int]] = defaultdict(dict)
    for h, status, n in conn.execute(ev.group_by(ev_hour, job_events.c.to_status)):
        transitions[status][int(h)] = int(n)

    job_hour = hour_bucket(conn, jobs.c.modification_time)
    done_values = dict(flt.values)
    done_values["jobstatus"] = tuple(
        s for s in ("finished", "failed") if s in flt.values.get("jobstatus", ("finished", "failed"))
    )
    done_flt = JobFilter(hours=flt.hours, values=done_values, taskid=flt.taskid, now=flt.now)
    completions: dict[str, dict[int, int]] = defaultdict(dict)
    failures: dict[int, int] = defaultdict(int)
    finishes: dict[int, int] = defaultdict(int)
    stmt = (
        select(job_hour, jobs.c.computing_site, jobs.c.status, func.count())
        .where(*job_conditions(done_flt, viewer))
        .group_by(job_hour, jobs.c.computing_site, jobs.c.status)
    )
    for h, site, status, n in conn.execute(stmt):
        if status == "finished":
            completions[site][int(h)] = completions[site].get(int(h), 0) + int(n)
            finishes[int(h)] += int(n)
        else:
            failures[int(h)] += int(n)
    return _series(flt, hours, transitions, completions, failures, finishes)


def _from_counters(conn: Connection, flt: JobFilter, hours: list[int]) -> dict[str, Any]:
    transitions = counts.transitions_per_hour(conn, hours[0])
    completions: dict[str, dict[int, int]] = defaultdict(dict)
    failures: dict[int, int] = defaultdict(int)
    finishes: dict[int, int] = defaultdict(int)
    for site, h, status, n in counts.finals_per_hour(conn, hours[0], ("finished", "failed")):
        if status == "finished":
            completions[site][h] = completions[site].get(h, 0) + n
            finishes[h] += n
        else:
            failures[h] += n
    return _series(flt, hours, transitions, completions, failures, finishes)


def _series(
    flt: JobFilter,
    hours: list[int],
    transitions: dict[str, dict[int, int]],
    completions: dict[str, dict[int, int]],
    failures: dict[int, int],
    finishes: dict[int, int],
) -> dict[str, Any]:
    failure_rate = []
    for h in hours:
        total = failures.get(h, 0) + finishes.get(h, 0)
        failure_rate.append(failures.get(h, 0) / total if total else None)
    return {
        "filter": flt.as_dict(),
        "hours": hours,
        "transitions_per_hour": {s: [c.get(h, 0) for h in hours] for s, c in sorted(transitions.items())},
        "completions_per_hour": {s: [c.get(h, 0) for h in hours] for s, c in sorted(completions.items())},
        "failures_per_hour": [failures.get(h, 0) for h in hours],
        "finished_per_hour": [finishes.get(h, 0) for h in hours],
        "failure_rate_per_hour": failure_rate,
    }


DAILY_AFTER_HOURS = 72.0
"""Windows longer than this are plotted in daily bins (a 30-day window: 30 bars, not 720)."""


def bin_hours_for(flt: JobFilter) -> int:
    """Width of a plot bin in hours for this window."""
    return 24 if flt.hours > DAILY_AFTER_HOURS else 1


def binned(data: dict[str, Any], width: int) -> dict[str, Any]:
    """The hourly series summed into ``width``-hour bins aligned to UTC midnight (rates recomputed)."""
    hours: list[int] = data["hours"]
    if width == 1:
        return {
            "starts": hours,
            "transitions": data["transitions_per_hour"],
            "completions": data["completions_per_hour"],
            "failure_rate": data["failure_rate_per_hour"],
        }
    starts = sorted({h - h % width for h in hours})
    index = {s: i for i, s in enumerate(starts)}

    def fold(values: list[int]) -> list[int]:
        out = [0] * len(starts)
        for h, v in zip(hours, values, strict=True):
            out[index[h - h % width]] += v
        return out

    failed, finished = fold(data["failures_per_hour"]), fold(data["finished_per_hour"])
    return {
        "starts": starts,
        "transitions": {s: fold(v) for s, v in data["transitions_per_hour"].items()},
        "completions": {s: fold(v) for s, v in data["completions_per_hour"].items()},
        "failure_rate": [f / (f + d) if f + d else None for f, d in zip(failed, finished, strict=True)],
    }
