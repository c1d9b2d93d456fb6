"""``/metrics`` for Prometheus: gauges computed from the database at each scrape.

What the database can tell is exported here: jobs by state and site (non-final states now, final
states over the last hour, both from the maintained counters), state transitions and the
dispatch rate over the last five minutes (from ``job_events``), connected pilots and batch
workers; and, as Prometheus counters (``_total``, monotonic because final states are terminal and
the day counters are never pruned), the jobs that ended by site and state and the failed jobs by
site and error. The monitor's own requests are counted and timed in-process (a counter and a
histogram in seconds per page). Per-RPC latencies and the dispatch latency histogram live only in
the dispatcher process, which has no HTTP port for them yet.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Connection, func, select, union_all

from dispatcher.convert import FINAL_WORKER_STATES
from dispatcher.store.counters import DAY_HOURS
from dispatcher.store.pilots import connected_clause
from dispatcher.store.schema import (
    job_count_deltas,
    job_counts,
    job_error_count_deltas,
    job_error_counts,
    job_events,
    pilots,
    workers,
)
from monitor.db import MonitorDatabase
from monitor.filters import JobFilter
from monitor.queries import counts
from monitor.queries.errors import component_name
from monitor.queries.summary import ACTIVE_STATES, ALL_STATES, FINAL_STATE_VALUES

RATE_WINDOW_S = 300.0
FINAL_WINDOW_S = 3600.0


class DatabaseCollector(Collector):
    """Reads the gauges in one read-only transaction per scrape."""

    def __init__(self, db: MonitorDatabase) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Yield every metric family (called by the registry on each scrape)."""
        started = time.perf_counter()
        now = time.time()
        active = GaugeMetricFamily(
            "ailuro_jobs", "Jobs in a non-final state, by state and site.", labels=["state", "site"]
        )
        final = GaugeMetricFamily(
            "ailuro_jobs_final_last_hour", "Jobs that reached a final state in the last hour.", labels=["state", "site"]
        )
        transitions = GaugeMetricFamily(
            "ailuro_job_transitions_per_second",
            "State transitions per second over the last 5 minutes.",
            labels=["to_state"],
        )
        dispatch = GaugeMetricFamily(
            "ailuro_dispatch_rate_per_second", "Jobs handed to pilots per second (last 5 minutes)."
        )
        connected = GaugeMetricFamily(
            "ailuro_pilots_connected", "Pilots with a live stream, by queue.", labels=["queue"]
        )
        wk = GaugeMetricFamily(
            "ailuro_workers",
            "Non-final batch workers, by queue, backend and state.",
            labels=["queue", "backend", "state"],
        )
        with self.db.read() as conn:
            last_hour = JobFilter(hours=FINAL_WINDOW_S / 3600.0, now=now)
            by_site = counts.facet_states(conn, last_hour, ["computingsite"], statuses=ALL_STATES)["computingsite"]
            for site, states in sorted(by_site.items()):
                # every non-final state of a known site has a sample (0 too): a series that vanishes
                # when its queue drains would break rate() and alerts on it
                for state in ACTIVE_STATES:
                    active.add_metric([state, site], states.get(state, 0))
                for state, n in sorted(states.items()):
                    if state not in ACTIVE_STATES:
                        final.add_metric([state, site], n)
            sent = 0
            for state, n in conn.execute(
                select(job_events.c.to_status, func.count())
                .where(job_events.c.time >= now - RATE_WINDOW_S)
                .group_by(job_events.c.to_status)
            ):
                transitions.add_metric([state], int(n) / RATE_WINDOW_S)
                if state == "sent":
                    sent = int(n)
            dispatch.add_metric([], sent / RATE_WINDOW_S)
            live = dict(
                conn.execute(
                    select(pilots.c.queue, func.count()).where(connected_clause(now=now)).group_by(pilots.c.queue)
                ).all()
            )
            for queue in sorted(set(live) | set(by_site)):
                connected.add_metric([queue], int(live.get(queue, 0)))
            for queue, backend, state, n in conn.execute(
                select(workers.c.queue, workers.c.backend, workers.c.state, func.count())
                .where(workers.c.state.notin_(FINAL_WORKER_STATES))
                .group_by(workers.c.queue, workers.c.backend, workers.c.state)
            ):
                wk.add_metric([queue, backend, state], int(n))
            ended, errors = _ended_totals(conn)
        yield from (active, final, transitions, dispatch, connected, wk, ended, errors)
        took = GaugeMetricFamily("ailuro_monitor_scrape_seconds", "Time the monitor took to read these metrics.")
        took.add_metric([], time.perf_counter() - started)
        yield took


def _ended_totals(conn: Connection) -> tuple[CounterMetricFamily, CounterMetricFamily]:
    """Jobs ended by site and state, and by site, state and error, over all time (day counters + pending deltas)."""
    ended = CounterMetricFamily(
        "ailuro_jobs_ended", "Jobs that reached a final state, by site and state.", labels=["site", "state"]
    )
    errors = CounterMetricFamily(
        "ailuro_job_errors",
        "Jobs that ended with an error (first match per job and error), by site, state, component and code.",
        labels=["site", "state", "component", "code"],
    )

    def rows(tables: tuple, columns: tuple[str, ...]) -> Any:
        parts = [
            select(*(t.c[c] for c in columns), t.c.n).where(
                t.c.facet == "computingsite", t.c.width == DAY_HOURS, t.c.status.in_(FINAL_STATE_VALUES)
            )
            for t in tables
        ]
        both = union_all(*parts).subquery()
        keys = [both.c[c] for c in columns]
        return conn.execute(select(*keys, func.sum(both.c.n)).group_by(*keys).order_by(*keys))

    for site, state, n in rows((job_counts, job_count_deltas), ("value", "status")):
        ended.add_metric([site, state], int(n))
    for site, state, comp, code, n in rows(
        (job_error_counts, job_error_count_deltas), ("value", "status", "component", "code")
    ):
        errors.add_metric([site, state, component_name(int(comp)) if comp else "unknown", str(code)], int(n))
    return ended, errors


class RequestMetrics:
    """The monitor's own requests: a counter by page and status, a latency histogram by page (seconds)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "ailuro_monitor_requests",
            "HTTP requests served, by page and status code.",
            ["page", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "ailuro_monitor_request_duration_seconds",
            "Time to answer a request, by page.",
            ["page"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )

    def observe(self, page: str, code: int, seconds: float) -> None:
        """Count one request and its duration."""
        self.requests.labels(page, str(code)).inc()
        self.latency.labels(page).observe(seconds)


def make_registry(db: MonitorDatabase) -> CollectorRegistry:
    """A registry holding the database collector (the app adds its :class:`RequestMetrics`)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(db))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format."""
    return generate_latest(registry)
