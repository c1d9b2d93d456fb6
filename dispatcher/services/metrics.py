"""The dispatcher's own Prometheus metrics, counted in-process (``--metrics-port``).

What only the dispatcher process sees is counted here, where it happens: final reports accepted
by queue and status (and their errors by component and code), jobs handed to pilots and the
dispatch latency (a pilot's request arriving → its jobs claimed and committed, ready to send),
every RPC by method and gRPC status code, the sizes of the group commits (claims, finals),
commands delivered to pilots, and the pilot streams open on this process. The hot path only
increments counters (a lock and an add); a scrape reads them and the stream table, never the
database. What the database knows (jobs by state and site, errors over all time) is the
monitor's ``/metrics``.

Counters are per process and start at zero when it starts: with ``ailuro server --workers N``
worker ``i`` serves its own endpoint on ``PORT + i`` (Prometheus scrapes each as its own
``instance`` and ``rate()`` copes with a restarted worker's reset). The endpoint has no
authentication: it carries queue names, method names, error codes and counts, no user data, and
it binds loopback unless ``--metrics-bind`` says otherwise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.server import ThreadingHTTPServer
from threading import Thread
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ailuro.v1 import job_pb2

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds: dispatch latency and unary RPC durations (a claim batch window is a few ms)."""
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
"""Items per group commit (``max_batch`` is 5,000 by default)."""
_STATUS = {
    job_pb2.JOB_STATUS_FINISHED: "finished",
    job_pb2.JOB_STATUS_FAILED: "failed",
    job_pb2.JOB_STATUS_CANCELLED: "cancelled",
}


def component_label(component: int) -> str:
    """``payload`` for ``ERROR_COMPONENT_PAYLOAD``; ``unknown`` for a value the enum lacks."""
    try:
        name = job_pb2.ErrorComponent.Name(component)  # type: ignore[arg-type]
    except ValueError:
        return "unknown"
    return name.removeprefix("ERROR_COMPONENT_").lower()


class _StreamCollector(Collector):
    """``ailuro_dispatcher_pilot_streams{queue}``: read from the hub's stream table at each scrape."""

    def __init__(self, queues: Callable[[], Sequence[str]], known: frozenset[str]) -> None:
        self._queues = queues
        self._known = known

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample per configured queue (0 too: a series must not vanish when a queue drains)."""
        family = GaugeMetricFamily(
            "ailuro_dispatcher_pilot_streams", "Pilot streams open on this process, by queue.", labels=["queue"]
        )
        by_queue = dict.fromkeys(self._known, 0)
        for queue in self._queues():
            by_queue[queue] = by_queue.get(queue, 0) + 1
        for queue, n in sorted(by_queue.items()):
            family.add_metric([queue], n)
        yield family


class DispatcherMetrics:
    """The counters and histograms of one dispatcher process, in their own registry."""

    def __init__(self, *, dispatcher_id: str = "") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.finals = Counter(
            "ailuro_dispatcher_job_finals",
            "Final reports applied (one per attempt), by queue (the job's site) and final status.",
            ["queue", "status"],
            registry=r,
        )
        self.final_errors = Counter(
            "ailuro_dispatcher_job_final_errors",
            "Errors in the final reports applied, by queue, component and code.",
            ["queue", "component", "code"],
            registry=r,
        )
        self.dispatched = Counter(
            "ailuro_dispatcher_jobs_dispatched", "Jobs handed to pilots, by queue.", ["queue"], registry=r
        )
        self.dispatch_latency = Histogram(
            "ailuro_dispatcher_dispatch_latency_seconds",
            "From a pilot's job request arriving to its jobs claimed and committed (one observation per job).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rpcs = Counter(
            "ailuro_dispatcher_rpcs",
            "RPCs finished, by method (Service/Method) and gRPC status code.",
            ["method", "code"],
            registry=r,
        )
        self.rpc_duration = Histogram(
            "ailuro_dispatcher_rpc_duration_seconds",
            "Time to answer a unary RPC, by method (streams are not timed: they last as long as a pilot).",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "ailuro_dispatcher_group_commit_size",
            "Items per group-commit transaction, by batch (claims, finals, heartbeats).",
            ["batch"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.commands = Counter(
            "ailuro_dispatcher_commands_delivered",
            "Commands delivered to pilots (pushed down a stream or returned by UpdateJob), by type (kill, debug).",
            ["type"],
            registry=r,
        )
        started = GaugeMetricFamily(
            "ailuro_dispatcher_start_time_seconds", "When this process started (Unix time).", labels=["dispatcher_id"]
        )
        started.add_metric([dispatcher_id], time.time())
        r.register(_Static(started))
        ProcessCollector(registry=r)  # process_cpu_seconds_total, resident memory, open fds

    def watch_streams(self, queues: Callable[[], Sequence[str]], known: frozenset[str]) -> None:
        """Export the open streams: ``queues()`` lists the queue of each (called at scrape time)."""
        self.registry.register(_StreamCollector(queues, known))

    def finals_applied(self, applied: Mapping[int, str], reports: Mapping[int, Any]) -> None:
        """Count final reports that changed their job (``applied``: panda_id → site; ``reports``: → JobFinal)."""
        for panda_id, site in applied.items():
            report = reports.get(panda_id)
            if report is None:
                continue
            self.finals.labels(site, _STATUS.get(report.status, "other")).inc()
            for err in report.errors:
                self.final_errors.labels(site, component_label(err.component), str(err.code)).inc()

    def jobs_dispatched(self, queue: str, n: int, waited_s: float) -> None:
        """``n`` jobs claimed for a pilot of ``queue`` whose request arrived ``waited_s`` ago."""
        if n <= 0:
            return
        self.dispatched.labels(queue).inc(n)
        for _ in range(n):
            self.dispatch_latency.observe(waited_s)


class _Static(Collector):
    """A collector yielding a fixed family (the start time)."""

    def __init__(self, family: GaugeMetricFamily) -> None:
        self._family = family

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The family as built."""
        yield self._family


def serve_metrics(metrics: DispatcherMetrics, host: str, port: int) -> tuple[ThreadingHTTPServer, Thread]:
    """Serve ``GET /metrics`` on ``host:port`` from a daemon thread (0: an ephemeral port)."""
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    return server, thread


def stop_metrics(server: ThreadingHTTPServer, thread: Thread) -> None:
    """Stop serving and close the socket."""
    server.shutdown()
    server.server_close()
    thread.join(5)
