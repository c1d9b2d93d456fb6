"""``/metrics`` for Prometheus: gauges computed from the database at each scrape.

What the database can tell is exported here: jobs by state and site (non-final states now, final
states over the last hour, both from the maintained counters), state transitions and the
dispatch rate over the last five minutes (from ``job_events``), connected pilots and batch
workers. Per-RPC latencies and heartbeat rates live only in the dispatcher process, so they
belong on the dispatcher's own metrics endpoint.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from dispatcher.convert import FINAL_WORKER_STATES
from dispatcher.store.pilots import connected_clause
from dispatcher.store.schema import job_events, pilots, workers
from monitor.db import MonitorDatabase
from monitor.filters import JobFilter
from monitor.queries import counts
from monitor.queries.summary import ACTIVE_STATES, ALL_STATES

RATE_WINDOW_S = 300.0
FINAL_WINDOW_S = 3600.0


class DatabaseCollector(Collector):
    """Reads the gauges in one read-only transaction per scrape."""

    def __init__(self, db: MonitorDatabase) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
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
                for state, n in sorted(states.items()):
                    (active if state in ACTIVE_STATES else final).add_metric([state, site], n)
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
            for queue, n in conn.execute(
                select(pilots.c.queue, func.count()).where(connected_clause(now=now)).group_by(pilots.c.queue)
            ):
                connected.add_metric([queue], int(n))
            for queue, backend, state, n in conn.execute(
                select(workers.c.queue, workers.c.backend, workers.c.state, func.count())
                .where(workers.c.state.notin_(FINAL_WORKER_STATES))
                .group_by(workers.c.queue, workers.c.backend, workers.c.state)
            ):
                wk.add_metric([queue, backend, state], int(n))
        yield from (active, final, transitions, dispatch, connected, wk)
        took = GaugeMetricFamily("ailuro_monitor_scrape_seconds", "Time the monitor took to read these metrics.")
        took.add_metric([], time.perf_counter() - started)
        yield took


def make_registry(db: MonitorDatabase) -> CollectorRegistry:
    """A registry holding only the database collector (no process metrics of the monitor itself)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(db))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format."""
    return generate_latest(registry)
