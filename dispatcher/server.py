"""The dispatcher server: wires store, services and servicers into one ``grpc.aio`` server.

``serve(config)`` runs until cancelled or signalled (``ailuro server``); ``run_in_thread(config)``
runs the same server on its own event loop in a background thread (tests, embedded use).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ailuro.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    brokerage_pb2,
    brokerage_pb2_grpc,
    ddm_pb2,
    ddm_pb2_grpc,
    factory_pb2,
    factory_pb2_grpc,
    pilot_pb2,
    pilot_pb2_grpc,
    submission_pb2,
    submission_pb2_grpc,
)
from dispatcher.api.admin import AdminServicer
from dispatcher.api.brokerage import BrokerageServicer
from dispatcher.api.ddm import DDMServicer, TaskServicer
from dispatcher.api.factory import FactoryServicer
from dispatcher.api.metering import MeteringInterceptor
from dispatcher.api.pilot import PilotServicer
from dispatcher.api.submission import SubmissionServicer
from dispatcher.auth.interceptor import build_interceptor
from dispatcher.config import DispatcherConfig
from dispatcher.reflection import enable_reflection
from dispatcher.services.admin import AdminService
from dispatcher.services.counters import CounterFolder
from dispatcher.services.ddm import InProcessAgent
from dispatcher.services.ddm_catalog import CatalogService
from dispatcher.services.debug import DebugService
from dispatcher.services.events import EventTail
from dispatcher.services.factory import FactoryService
from dispatcher.services.hub import PilotHub
from dispatcher.services.logs import JobLogService
from dispatcher.services.looplag import LoopLagMonitor
from dispatcher.services.metrics import serve_metrics, stop_metrics
from dispatcher.services.placement import PlacementService
from dispatcher.services.runtime import Runtime
from dispatcher.services.submission import SubmissionService
from dispatcher.services.tasks import TaskService
from dispatcher.services.watchdog import Watchdog
from dispatcher.store.engine import open_database

log = logging.getLogger(__name__)

_SERVICE_NAMES = (
    submission_pb2.DESCRIPTOR.services_by_name["SubmissionService"].full_name,
    pilot_pb2.DESCRIPTOR.services_by_name["PilotService"].full_name,
    factory_pb2.DESCRIPTOR.services_by_name["FactoryService"].full_name,
    ddm_pb2.DESCRIPTOR.services_by_name["DDMService"].full_name,
    ddm_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name,
    brokerage_pb2.DESCRIPTOR.services_by_name["BrokerageService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
)


@dataclass(kw_only=True)
class _Started:
    server: grpc.aio.Server
    port: int
    shutdown: Callable[[], Awaitable[None]]
    runtime: Runtime
    hub: PilotHub
    bundle_port: int = 0
    metrics_port: int = 0


def _bind(server: grpc.aio.Server, config: DispatcherConfig) -> int:
    """Add the listening port: TLS when a certificate is configured, else plain text."""
    address = f"{config.host}:{config.port}"
    auth = config.auth
    if auth.tls_cert is None or auth.tls_key is None:
        return server.add_insecure_port(address)
    # With a client CA every client must present a certificate it signed: gRPC has no "optional".
    client_ca = auth.tls_client_ca.read_bytes() if auth.tls_client_ca is not None else None
    credentials = grpc.ssl_server_credentials(
        [(auth.tls_key.read_bytes(), auth.tls_cert.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )
    return server.add_secure_port(address, credentials)


async def _start(config: DispatcherConfig) -> _Started:
    interceptor = build_interceptor(config.auth, host=config.host)  # refuses an unsafe set-up first
    agent_threads = config.ddm_workers + 2 if config.storage and config.ddm_workers > 0 else 0
    db = await asyncio.to_thread(
        open_database, config.db_url, pool_size=config.db_threads + config.urgent_db_threads + 4 + agent_threads
    )
    runtime = Runtime(config, db)
    hub = PilotHub(runtime)
    events = EventTail(runtime)
    watchdog = Watchdog(runtime)
    folder = CounterFolder(runtime)
    runtime.metrics.watch_streams(hub.stream_queues, runtime.queue_names)
    await hub.start()
    await events.start()
    watchdog.start()
    folder.start()
    lag = LoopLagMonitor(config.loop_lag, db_times=runtime.db_times) if config.loop_lag is not None else None
    if lag is not None:
        lag.start()
    agent = InProcessAgent.start(config, db) if agent_threads else None

    server = grpc.aio.server(
        interceptors=[MeteringInterceptor(runtime.metrics), interceptor],  # metering first: refusals count too
        options=[
            ("grpc.so_reuseport", 1 if config.reuse_port else 0),
            ("grpc.max_receive_message_length", config.limits.max_message_bytes),
            # Request headers (a bearer token is one) up to 16 KiB reach the auth interceptor, larger
            # ones are refused by gRPC (RESOURCE_EXHAUSTED). Soft and hard limit are equal on purpose:
            # between gRPC's default soft (8 KiB) and hard limit a header is refused at random.
            ("grpc.max_metadata_size", 16 * 1024),
            ("grpc.absolute_max_metadata_size", 16 * 1024),
            ("grpc.server.max_pending_requests", config.max_pending_calls),
            ("grpc.server.max_pending_requests_hard_limit", 2 * config.max_pending_calls),
            ("grpc.server_max_unrequested_time_in_server", config.max_pending_call_wait_s),
            # Clients ping every ailuro.targets.KEEPALIVE_TIME_MS to notice a vanished host: accept
            # that (gRPC's default cuts clients pinging more than every 5 min), and ping back so a
            # stream whose pilot host vanished is closed and its pilot marked disconnected.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 1_000),
            ("grpc.http2.max_ping_strikes", 0),
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
        ],
    )
    job_logs = JobLogService(runtime)
    debug = DebugService(runtime, hub.push_commands)
    submission_pb2_grpc.add_SubmissionServiceServicer_to_server(
        SubmissionServicer(SubmissionService(runtime), hub, events, job_logs, debug), server
    )
    pilot_pb2_grpc.add_PilotServiceServicer_to_server(PilotServicer(hub, debug), server)
    factory_pb2_grpc.add_FactoryServiceServicer_to_server(FactoryServicer(FactoryService(runtime)), server)
    ddm_pb2_grpc.add_DDMServiceServicer_to_server(DDMServicer(CatalogService(runtime)), server)
    ddm_pb2_grpc.add_TaskServiceServicer_to_server(TaskServicer(TaskService(runtime), hub), server)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(AdminService(runtime)), server)
    brokerage_pb2_grpc.add_BrokerageServiceServicer_to_server(
        BrokerageServicer(PlacementService(runtime, hub.policy)), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection((*_SERVICE_NAMES, health.SERVICE_NAME), server)  # standard v1 and v1alpha
    port = _bind(server, config)
    if port == 0:
        raise OSError(f"could not bind {config.host}:{config.port}")
    await server.start()
    for name in ("", *_SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "dispatcher %s listening on %s:%d (db %s)",
        runtime.dispatcher_id,
        config.host,
        port,
        db.engine.url.render_as_string(hide_password=True),
    )

    bundle_server, bundle_port = None, 0
    if config.bundle_port is not None:
        from dispatcher.bundle import start_bundle_server

        bundle_server, bundle_port = await start_bundle_server(config.host, config.bundle_port)
    metrics_http, metrics_port = None, 0
    if config.metrics_port is not None:
        metrics_http = serve_metrics(runtime.metrics, config.metrics_host, config.metrics_port)
        metrics_port = metrics_http[0].server_port
        log.info("dispatcher metrics on http://%s:%d/metrics", config.metrics_host, metrics_port)

    async def shutdown() -> None:
        if metrics_http is not None:
            await asyncio.to_thread(stop_metrics, *metrics_http)
        if bundle_server is not None:
            bundle_server.close()
            await bundle_server.wait_closed()
        await health_servicer.enter_graceful_shutdown()
        await hub.stop()
        await events.stop()
        await server.stop(config.grace_s)
        await watchdog.stop()
        await folder.stop()
        if lag is not None:
            await lag.stop()
        if agent is not None:
            await asyncio.to_thread(agent.stop)
        job_logs.close()
        await asyncio.to_thread(runtime.close)
        log.info("dispatcher %s stopped", runtime.dispatcher_id)

    return _Started(
        server=server,
        port=port,
        shutdown=shutdown,
        runtime=runtime,
        hub=hub,
        bundle_port=bundle_port,
        metrics_port=metrics_port,
    )


GC_GEN1_EVERY = 100
"""Young (generation 0) collections between two generation-1 collections; Python's default is 10.

Why: an object still alive at a generation-1 collection moves to generation 2, and a full
collection runs once those newcomers reach a quarter of the long-lived heap. With the default a
generation-1 collection ran three times a second under load, so every job's objects (alive for
the second a job takes: its lease, the heartbeat state, parked requests) reached generation 2,
and full collections of the ~40,000 objects made since the freeze ran every 2-3 s, each holding
every thread, the event loop included, for 12-36 ms (measured with a gc callback, lifecycle
benchmark at 464 jobs/s). Every 100 young collections (about every 3 s there), an object that
lives a second is freed by its reference count before a generation-1 collection sees it two times
in three, and a full collection is considered only after ten of these (~30 s). Measured side by side
(20,000 jobs at 464/s, two runs each): generation-1 collections 125-150 -> 13-14 (about 2.4 ms
each, at most 13 ms), full collections 11-13 -> 1, time in generations 1 and 2 together
318-515 ms -> 46-49 ms; event-loop lag p99 17-40 -> 12-15 ms. In the closed loop (8,000 jobs
in flight) a generation-1 collection now takes ~10 ms (at most 18), and generations 1 and 2 took
0.36 s in all against 1.3 s. What a generation-1 collection frees (cycles) now waits that long: a
few MB at most at these rates."""


def tune_garbage_collector() -> None:
    """Move everything allocated while starting (modules, protobuf descriptors, SQLAlchemy's
    metadata: about 100,000 tracked objects) out of the garbage collector's reach, and collect
    generation 1 less often.

    Why: a full (generation 2) collection walks every tracked object and stops every thread, the
    event loop included; under the lifecycle load these took up to half a second each, the largest
    single holds of the loop measured (README, "Load tests and performance"). What is frozen lives
    as long as the process anyway; objects made later are collected as before. (Raising the
    youngest generation's threshold instead was measured too: fewer but far longer pauses.) Then
    generation 1 is collected ten times less often (:data:`GC_GEN1_EVERY`), so what lives as
    long as a job is freed before it reaches the full collections.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(gc.get_threshold()[0], GC_GEN1_EVERY, gc.get_threshold()[2])


async def serve(
    config: DispatcherConfig,
    *,
    on_ready: Callable[[int], None] | None = None,
    on_metrics: Callable[[int], None] | None = None,
) -> None:
    """Run a dispatcher until cancelled, SIGINT or SIGTERM; ``on_ready(port)`` once it listens,
    ``on_metrics(port)`` before that when it serves metrics."""
    started = await _start(config)
    tune_garbage_collector()
    sys.setswitchinterval(config.gil_switch_interval_ms / 1000)  # process-wide: only a served process sets it
    if on_metrics is not None and config.metrics_port is not None:
        on_metrics(started.metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    if on_ready is not None:
        on_ready(started.port)
    try:
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await asyncio.shield(started.shutdown())


class RunningDispatcher:
    """A dispatcher running in a background thread; a context manager that stops it on exit."""

    def __init__(self, config: DispatcherConfig) -> None:
        self.config = config
        self.port = 0
        self.bundle_port = 0
        """Where the pilot bundle is served (0 when ``config.bundle_port`` is None)."""
        self.metrics_port = 0
        """Where ``/metrics`` is served (0 when ``config.metrics_port`` is None)."""
        self.hub: PilotHub | None = None
        """The pilot hub, once started (tests read its state, e.g. ``hub.parking.parked``)."""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"dispatcher-{config.port}", daemon=True)

    @property
    def address(self) -> str:
        """``host:port`` to give a gRPC channel."""
        return f"{self.config.host}:{self.port}"

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._amain())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _amain(self) -> None:
        self._stop = asyncio.Event()
        started = await _start(self.config)
        self.port = started.port
        self.bundle_port = started.bundle_port
        self.metrics_port = started.metrics_port
        self.hub = started.hub
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await started.shutdown()

    def start(self, timeout: float = 60.0) -> RunningDispatcher:
        """Start the thread and wait until the server listens (re-raising a start-up failure)."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"dispatcher did not start within {timeout} s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop gracefully and join the thread."""
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"dispatcher did not stop within {timeout} s")

    def __enter__(self) -> RunningDispatcher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def run_in_thread(config: DispatcherConfig) -> RunningDispatcher:
    """Start a dispatcher on its own event loop in a background thread; returns once it listens."""
    return RunningDispatcher(config).start()
