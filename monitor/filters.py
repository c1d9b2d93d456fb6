"""What a page shows: the URL's filters, the time window, sorting, paging, and who is looking.

The filter names are BigPanDA's (``computingsite``, ``jobstatus``, ``prodsourcelabel``,
``produsername``, ``transformation``), so a PanDA user's URLs read the same here. A value may list
alternatives separated by ``|`` (``jobstatus=failed|cancelled``).

Every query over jobs builds its WHERE clause through :func:`job_conditions`, which starts with
the viewer's visibility rule (:func:`visibility_clause`: the viewer's VOs, or everything for an
admin).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, true

from ailuro.errors import InvalidArgument
from ailuro.v1 import job_pb2
from dispatcher.jobfields import fields_by_key
from dispatcher.states import FINAL_STATES, JobState
from dispatcher.store.schema import jobs

FACETS: dict[str, Any] = {
    f.key: jobs.c[f.column]
    for f in fields_by_key("computingsite", "jobstatus", "prodsourcelabel", "produsername", "transformation")
}
"""URL filter name -> jobs column; each is also a facet counted above the jobs table."""

SORT_KEYS: dict[str, Any] = {
    "pandaid": jobs.c.panda_id,
    "owner": jobs.c.owner,
    "task": jobs.c.task_id,
    "transformation": jobs.c.transformation,
    "status": jobs.c.status,
    "created": jobs.c.creation_time,
    "start": jobs.c.start_time,
    "end": jobs.c.end_time,
    "modified": jobs.c.modification_time,
    "site": jobs.c.computing_site,
    "priority": jobs.c.current_priority,
}
"""``sort=`` values of the jobs table."""

FINAL_STATE_VALUES = tuple(sorted(s.value for s in FINAL_STATES))
ACTIVE_STATE_VALUES = tuple(s.value for s in JobState if s not in FINAL_STATES)
DEFAULT_HOURS = 12.0
MAX_HOURS = 24.0 * 90
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
STATE_VALUES = frozenset(s.value for s in JobState)
NO_ERROR: dict[str, Any] = {"component": "unknown", "code": 0, "name": "no_error_recorded", "diag": ""}
"""How a final job without any recorded error is summarized (and filtered: ``errorcomponent=unknown``)."""
ERROR_COMPONENTS: tuple[str, ...] = (
    *(
        name.removeprefix("ERROR_COMPONENT_").lower()
        for name in (v.name for v in job_pb2.ErrorComponent.DESCRIPTOR.values)
    ),
    NO_ERROR["component"],
)
"""``errorcomponent=`` values: the component names of :mod:`ailuro.v1.job_pb2`, and ``unknown``."""

WINDOW_PARAMS = frozenset({"hours", "days"})
FILTER_PARAMS = frozenset(FACETS) | {"taskid", "errorcode", "errorcomponent"} | WINDOW_PARAMS
"""Every parameter :func:`parse_filter` reads."""
PAGE_PARAMS = frozenset({"sort", "order", "page", "limit"})
"""Every parameter :func:`parse_page` reads."""
ALWAYS_PARAMS = frozenset({"json"})
"""Accepted by every page (``?json`` asks for the JSON twin)."""


def check_params(params: Mapping[str, str], allowed: frozenset[str] | set[str]) -> None:
    """Refuse (HTTP 400, naming it) a URL parameter the page does not apply.

    A filter chip shown over an unfiltered table is worse than an error: the shifter would read
    the numbers as filtered. So every page declares the parameters it applies, and any other one
    is refused rather than silently ignored.
    """
    known = allowed | ALWAYS_PARAMS
    for name in params:
        if name not in known:
            raise InvalidArgument(
                f"unknown filter {name!r} on this page (known: {', '.join(sorted(known - ALWAYS_PARAMS))})",
                field=name,
            )


@dataclass(frozen=True, kw_only=True)
class Viewer:
    """Who is looking (:mod:`monitor.auth` makes one per request from the login or bearer token)."""

    name: str = ""
    """The user (a token's ``sub``); empty for an anonymous viewer of a ``--public`` monitor."""
    vos: frozenset[str] = frozenset()
    """The VOs whose jobs, tasks, files and pilots this viewer sees (ignored for admins)."""
    roles: frozenset[str] = frozenset()
    """Roles from the token; ``admin`` sees every VO."""
    public: bool = False
    """An anonymous viewer of a ``--public VO`` monitor: that VO's pages, no logs, no audit."""
    queues: frozenset[str] = frozenset()
    """Queues whose pilots, workers and factory health this viewer sees: those the queue file
    (``--queues``) says serve one of the viewer's VOs, or any VO (ignored for admins)."""

    @property
    def is_admin(self) -> bool:
        """Whether this viewer sees everything (every VO, the audit log)."""
        return "admin" in self.roles


ADMIN = Viewer(name="admin", roles=frozenset({"admin"}))
"""A viewer that sees everything (tests and the benchmark's direct query calls)."""
NOBODY = Viewer()
"""A viewer of no VO: sees no job (what an unauthenticated request would be, were it let through)."""


def queue_clause(column: Any, viewer: Viewer) -> ColumnElement[bool]:
    """Rows of ``column`` (a pilots or workers queue) the viewer may see (see :attr:`Viewer.queues`)."""
    if viewer.is_admin:
        return true()
    return column.in_(sorted(viewer.queues)) if viewer.queues else false()


def visibility_clause(viewer: Viewer) -> ColumnElement[bool]:
    """The jobs a viewer may see: every job for an admin, else the jobs of the viewer's VOs.

    The single place where job visibility is decided; every jobs query of the monitor starts its
    WHERE clause with it. A VO's members see all of the VO's jobs (as BigPanDA lets a collaboration
    see its jobs); ``jobs.vo`` leads the monitor's VO index (migration 0012), so the filter is an
    index range, not a scan.
    """
    if viewer.is_admin:
        return true()
    if not viewer.vos:
        return false()
    if len(viewer.vos) == 1:
        return jobs.c.vo == next(iter(viewer.vos))
    return jobs.c.vo.in_(sorted(viewer.vos))


@dataclass(frozen=True, kw_only=True)
class JobFilter:
    """Filters from the URL plus the time window (jobs not final yet + jobs that ended in it)."""

    hours: float = DEFAULT_HOURS
    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    taskid: int | None = None
    errorcode: int | None = None
    errorcomponent: str | None = None
    now: float = field(default_factory=time.time)

    @property
    def has_error_filter(self) -> bool:
        """Whether the view keeps only jobs with a given error (decoded per job, see queries.jobs)."""
        return self.errorcode is not None or self.errorcomponent is not None

    @property
    def may_match_no_error(self) -> bool:
        """Whether jobs without any recorded error can match (they count as :data:`NO_ERROR`)."""
        return self.errorcode in (None, 0) and self.errorcomponent in (None, NO_ERROR["component"])

    def error_matches(self, errors: list[dict[str, Any]]) -> bool:
        """Whether one of a job's decoded errors matches ``errorcode``/``errorcomponent``."""
        return any(
            (self.errorcode is None or e["code"] == self.errorcode)
            and (self.errorcomponent is None or e["component"] == self.errorcomponent)
            for e in (errors or [NO_ERROR])
        )

    @property
    def since(self) -> float:
        """Start of the time window (epoch seconds)."""
        return self.now - self.hours * 3600.0

    def with_value(self, name: str, value: str) -> JobFilter:
        """This filter with facet ``name`` set to ``value`` (for facet links)."""
        return replace(self, values={**self.values, name: (value,)})

    def without(self, name: str) -> JobFilter:
        """This filter with facet ``name`` cleared (for "remove filter" links)."""
        return replace(self, values={k: v for k, v in self.values.items() if k != name})

    def query_params(self) -> dict[str, str]:
        """The URL parameters that reproduce this filter."""
        params: dict[str, str] = {}
        for name in FACETS:
            if self.values.get(name):
                params[name] = "|".join(self.values[name])
        if self.taskid is not None:
            params["taskid"] = str(self.taskid)
        if self.errorcode is not None:
            params["errorcode"] = str(self.errorcode)
        if self.errorcomponent is not None:
            params["errorcomponent"] = self.errorcomponent
        if self.hours != DEFAULT_HOURS:
            params["hours"] = _fmt_hours(self.hours)
        return params

    def as_dict(self) -> dict[str, Any]:
        """The filter as shown in JSON twins (stable keys)."""
        return {
            "hours": self.hours,
            "since": self.since,
            "now": self.now,
            "taskid": self.taskid,
            "errorcode": self.errorcode,
            "errorcomponent": self.errorcomponent,
            **{name: list(self.values.get(name, ())) for name in FACETS},
        }


def window_clause(since: float) -> ColumnElement[bool]:
    """The time window: every job not final yet, plus the jobs that became final at or after ``since``.

    A final job's ``modification_time`` is the time it became final (final states are terminal and
    nothing writes such a job again), while heartbeats keep moving it for running jobs; so the
    window is on "ended since", which is also what the maintained counters count.
    """
    return or_(*window_branches(since))


def window_branches(since: float) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """The two disjoint halves of the window: the non-final jobs, and the jobs final since ``since``.

    Both name their states with ``IN`` (not ``NOT IN``), so each half is an index range on
    ``status`` (migrations 0002 and 0006) and an OR of them a bitmap OR, never a scan of ``jobs``.
    """
    return (
        jobs.c.status.in_(ACTIVE_STATE_VALUES),
        and_(jobs.c.status.in_(FINAL_STATE_VALUES), jobs.c.modification_time >= since),
    )


def filter_conditions(flt: JobFilter, viewer: Viewer) -> list[ColumnElement[bool]]:
    """Visibility and URL filters, without the time window (for queries that split the window)."""
    conds: list[ColumnElement[bool]] = [visibility_clause(viewer)]
    for name, column in FACETS.items():
        wanted = flt.values.get(name, ())
        if len(wanted) == 1:
            conds.append(column == wanted[0])
        elif wanted:
            conds.append(column.in_(wanted))
    if flt.taskid is not None:
        conds.append(jobs.c.task_id == flt.taskid)
    return conds


def job_conditions(flt: JobFilter, viewer: Viewer) -> list[ColumnElement[bool]]:
    """The WHERE terms of every jobs query: visibility, time window (:func:`window_clause`), URL filters."""
    visibility, *filters = filter_conditions(flt, viewer)
    return [visibility, window_clause(flt.since), *filters]


@dataclass(frozen=True, kw_only=True)
class Page:
    """Sorting and paging of a table (``sort``, ``order``, ``page`` from 1, ``limit``)."""

    sort: str = "pandaid"
    descending: bool = True
    page: int = 1
    limit: int = DEFAULT_LIMIT

    @property
    def offset(self) -> int:
        """Rows skipped before this page."""
        return (self.page - 1) * self.limit


def _fmt_hours(hours: float) -> str:
    return str(int(hours)) if hours == int(hours) else str(hours)


def _one(params: Mapping[str, str], name: str) -> str:
    return params.get(name, "").strip()


def parse_int(params: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int) -> int:
    """An integer URL parameter within bounds; ``InvalidArgument`` (HTTP 400) names a bad one."""
    raw = _one(params, name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"must be an integer, got {raw!r}", field=name) from None
    if not minimum <= value <= maximum:
        raise InvalidArgument(f"must be between {minimum} and {maximum}, got {value}", field=name)
    return value


def parse_hours(params: Mapping[str, str], default: float = DEFAULT_HOURS) -> float:
    """``hours=`` (or ``days=``): the time window, at most :data:`MAX_HOURS`."""
    raw, unit = _one(params, "hours"), 1.0
    if not raw and _one(params, "days"):
        raw, unit = _one(params, "days"), 24.0
    if not raw:
        return default
    try:
        hours = float(raw) * unit
    except ValueError:
        raise InvalidArgument(f"must be a number, got {raw!r}", field="hours") from None
    if not 0 < hours <= MAX_HOURS:
        raise InvalidArgument(f"must be more than 0 and at most {MAX_HOURS:g} hours", field="hours")
    return hours


def parse_filter(params: Mapping[str, str], *, now: float | None = None) -> JobFilter:
    """A :class:`JobFilter` from URL parameters (a state that does not exist is refused, not "no jobs")."""
    values = {}
    for name in FACETS:
        raw = _one(params, name)
        if raw:
            values[name] = tuple(v for v in (p.strip() for p in raw.split("|")) if v)
    for status in values.get("jobstatus", ()):
        if status not in STATE_VALUES:
            raise InvalidArgument(
                f"unknown job state {status!r} (one of: {', '.join(s.value for s in JobState)})", field="jobstatus"
            )
    taskid = parse_int(params, "taskid", -1, minimum=0, maximum=2**63 - 1) if _one(params, "taskid") else None
    errorcode = parse_int(params, "errorcode", -1, minimum=0, maximum=2**31 - 1) if _one(params, "errorcode") else None
    component = _one(params, "errorcomponent") or None
    if component is not None and component not in ERROR_COMPONENTS:
        raise InvalidArgument(
            f"unknown error component {component!r} (one of: {', '.join(ERROR_COMPONENTS)})", field="errorcomponent"
        )
    return JobFilter(
        hours=parse_hours(params),
        values=values,
        taskid=taskid,
        errorcode=errorcode,
        errorcomponent=component,
        now=time.time() if now is None else now,
    )


def parse_page(params: Mapping[str, str], *, default_sort: str = "pandaid") -> Page:
    """A :class:`Page` from URL parameters."""
    sort = _one(params, "sort") or default_sort
    if sort not in SORT_KEYS:
        raise InvalidArgument(f"unknown sort key {sort!r} (one of: {', '.join(SORT_KEYS)})", field="sort")
    order = _one(params, "order") or "desc"
    if order not in ("asc", "desc"):
        raise InvalidArgument(f"must be asc or desc, got {order!r}", field="order")
    return Page(
        sort=sort,
        descending=order == "desc",
        page=parse_int(params, "page", 1, minimum=1, maximum=1_000_000),
        limit=parse_int(params, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT),
    )
