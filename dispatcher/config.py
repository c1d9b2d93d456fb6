"""Dispatcher configuration: one typed, frozen object; every timeout lives here, not in the code."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ailuro.queues import DEFAULT_QUEUES, QueueConfig, SharesConfig, StorageElementConfig
from dispatcher.auth.config import AuthConfig


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Bounds on what one client may send and hold, so no caller can exhaust the dispatcher.

    Each is enforced with INVALID_ARGUMENT (a malformed request: the message names the field
    and the limit) or RESOURCE_EXHAUSTED (too much at once: the message names the limit). The
    README's "Security model" section lists them in one table; request-content limits that
    every client shares (name lengths, jobs per call, ...) live in ``dispatcher/validation.py``.
    """

    max_message_bytes: int = 64 * 1024 * 1024
    """Largest request message the gRPC server accepts (``grpc.max_receive_message_length``);
    larger ones end with RESOURCE_EXHAUSTED from gRPC itself. 5,000 ordinary jobs are ~2 MB; the
    SDK splits submissions by count only, so 5,000 jobs with long parameters need the room."""
    errors_per_final: int = 32
    """JobError entries in one final report (one per failing component is the norm). Beyond it the
    report is REJECTED: each distinct error becomes up to four permanent monitor counter rows."""
    files_per_final: int = 5000
    """Files in one final report (a job has at most 5,000 files)."""
    diag_chars: int = 1000
    """Characters of one JobError.diag."""
    event_reason_chars: int = 2000
    """Characters of the error summary a final report writes into the job's history; longer
    summaries are cut (with an ellipsis), so a report cannot grow the history without bound."""
    held_jobs_per_hello: int = 5000
    """Jobs a reconnecting pilot may name in ``Hello.held_jobs``."""
    heartbeats_per_message: int = 5000
    """Heartbeats in one HeartbeatBatch (or one UpdateJob call, with its finals)."""
    pending_per_stream: int = 1000
    """Messages of one Connect stream received but not answered yet (job requests and final
    reports in flight, heartbeats waiting for the flush). Beyond it the stream is not read (gRPC
    flow control pushes back on the pilot) for up to ``pending_wait_s``; if its backlog has not
    drained by then, the stream ends with RESOURCE_EXHAUSTED. Memory never grows with it."""
    pending_wait_s: float = 10.0
    """How long a stream over ``pending_per_stream`` waits for its backlog to drain (a burst of
    spooled final reports after a reconnect does) before it ends with RESOURCE_EXHAUSTED."""
    debug_report_bytes: int = 64 * 1024
    """Bytes of one DebugReport snapshot (the answer to a DEBUG command); a larger one is dropped
    (the pilot is told the limit in its Welcome and cuts its snapshot to fit)."""
    send_queue_per_stream: int = 1000
    """Messages queued for one stream that its pilot has not read; beyond it the pilot is deemed
    stuck and the stream is cut (assignments come back by the sent timeout, acks are resent)."""


@dataclass(frozen=True, kw_only=True)
class LoopLagConfig:
    """What the monitor does (``--loop-stall-ms``, ``--loop-lag-dir``; :mod:`dispatcher.services.looplag`)."""

    stall_ms: float = 5.0
    """A wake-up later than this is a stall: counted, its stack sampled, a warning logged."""
    report_dir: Path | None = None
    """Directory for ``looplag-<pid>.json`` reports (None: only the warnings in the log)."""


@dataclass(frozen=True, kw_only=True)
class DispatcherConfig:
    """Everything a dispatcher process needs to run.

    Times are in seconds. Tests shrink the timeouts; production keeps the defaults.
    """

    db_url: str = "sqlite:///ailuro.db"
    """SQLAlchemy URL: ``sqlite:///path.db`` (embedded) or ``postgresql+psycopg://user@host/db``."""
    host: str = "127.0.0.1"
    """Address to bind; 127.0.0.1 unless the operator opens it up on purpose."""
    port: int = 50051
    """Port to bind; 0 picks a free ephemeral port (tests)."""
    queues: tuple[QueueConfig, ...] = DEFAULT_QUEUES
    """The queues (sites) this instance knows."""
    storage: tuple[StorageElementConfig, ...] = ()
    """Storage elements (``[[storage]]`` of the queue file); with none, jobs bypass the DDM catalog."""
    storage_root: Path | None = None
    """Directory whose subdirectories are ``file://`` storage elements named implicitly
    (``<root>/<SE>``, what pilots with the same ``AILURO_STORAGE_ROOT`` write). Locations under it
    count as configured storage, like the ``storage`` endpoints; GetJobLog reads nothing else."""
    log_deadline_s: float = 60.0
    """A GetJobLog call (fetching, checking and sending the log) ends with DEADLINE_EXCEEDED after this."""
    log_max_bytes: int = 64 * 1024 * 1024
    """GetJobLog reads a log tarball of at most this many bytes (RESOURCE_EXHAUSTED beyond)."""
    log_max_unpacked_bytes: int = 128 * 1024 * 1024
    """GetJobLog decompresses at most this many bytes of a tarball (a gzip bomb stops here)."""
    log_reads_in_flight: int = 4
    """GetJobLog calls served at once, each on its own thread (not the database pool); more get
    RESOURCE_EXHAUSTED."""
    lease_s: float = 120.0
    """A job's lease lapses this long after its pilot's last heartbeat (then: lost heartbeat)."""
    pilot_heartbeat_s: float = 30.0
    """Heartbeat period told to pilots in ``Welcome.heartbeat_s``; never more than a third of
    ``lease_s`` (so a lease survives two lost heartbeats)."""
    sent_timeout_s: float = 60.0
    """A job ``sent`` to a pilot that does not report ``starting`` within this goes back to ``activated``."""
    heartbeat_flush_s: float = 0.1
    """Coalesced heartbeats are written to the database (and acknowledged) this often. Each flush is
    one transaction holding the rows it renews, and runs beside claims on the same cores and GIL:
    measured (lifecycle benchmark, PostgreSQL, 2 cores, 300-390 jobs/s), every 1 s a flush took p50
    257-271 ms and GetJob p99 was 226-239 ms; every 0.25 s 79 ms and 110 ms; every 0.1 s 38-41 ms
    and 87-99 ms (kill p99 265-290 -> 92-100 ms), the closed-loop throughput unchanged. The next
    flush starts this long after the last one ended (``PilotHub._flush_loop`` says why not longer
    after a long one), so near saturation the batches grow with the backlog. An empty buffer
    costs nothing; the pilots' ``last_seen`` is refreshed at its own pace
    (``presence.PRESENCE_REFRESH_S``)."""
    heartbeat_flush_rows: int = 5000
    """Heartbeats written per transaction of a flush (and at most ``max_batch``). Each transaction
    holds its jobs' rows until it commits, and a kill of one of them waits for that. Measured
    (lifecycle benchmark, PostgreSQL, 2 cores): 200 or 500 at 300 jobs/s cut kill p50 from 137 to
    49-68 ms and GetJob p99 from 226 to 155-210 ms, but the closed-loop throughput fell from
    587-643 to 486-488 jobs/s (the flush's chunks run one after another and its acks, which pace
    every running job, come later), so the default keeps one transaction per flush."""
    watchdog_interval_s: float = 2.0
    """How often the watchdog looks for timed-out ``sent`` jobs and expired leases."""
    counter_fold_s: float = 1.0
    """How often the job counter deltas appended by writers are folded into the monitor's counters."""
    no_job_retry_s: float = 5.0
    """``NoJob.retry_after_s`` sent to pilots when there is no work; also how long a streamed job
    request that found none is parked waiting for one (at most ``parking.MAX_PARK_S``)."""
    max_parked_requests: int = 1000
    """Job requests parked at once per dispatcher process (0: none; the next are answered NoJob at once)."""
    command_poll_s: float = 0.2
    """How often pending commands (kills) written by another dispatcher process are picked up,
    and how often WatchJobs tails the event table."""
    max_batch: int = 5000
    """Upper bound of rows one group-commit transaction touches."""
    claim_window_ms: float = 2.0
    """Job requests arriving within this window are claimed in one batch (one statement on PostgreSQL)."""
    claim_batches_in_flight: int = 1
    """Claim batches one process runs at once on PostgreSQL (held rows and ``SKIP LOCKED`` keep them
    disjoint), so a request need not wait for the batch in flight; always 1 on SQLite (one writer).
    With the shelves each batch plans from its own part of the queue's shelf (``services/claimpool.py``).
    Opt-in above 1: a claim holds a window of candidates (locked, or held off its queue's shelf), and
    a batch beside it skips those rows, so a request it could have served may be answered short (a
    streamed one is re-claimed when the other commits, a unary ``GetJob`` is not)."""
    claim_pool_s: float = 0.5
    """PostgreSQL: how long candidate jobs read for a queue serve later claims of this process
    (``services/claimpool.py``): a claim is then one statement, one round trip instead of five,
    awaited on the event loop (``store/aio.py``) rather than on a database thread (GetJob p99 at
    half of saturation: see the README's load tests). A job activated meanwhile
    waits at most this long behind the rows already read. 0: every claim is the locked transaction
    of ``store/pilots.py`` (also what SQLite always does)."""
    claim_read_ahead: bool = True
    """PostgreSQL, with ``claim_pool_s`` > 0: read a queue's next candidates in the background when
    a claim leaves its shelf low or half its age, so the next claim plans from rows already read
    instead of reading first (at half of saturation, one claim in eight read first and those made
    the tail: ``services/claimpool.py``). False: a claim reads when it finds the shelf empty or old."""
    finals_window_ms: float = 5.0
    """Final reports arriving within this window are applied in one transaction (their acks wait
    that much longer; a pilot's next job request does not wait for them)."""
    pilot_stale_s: float = 30.0  # = dispatcher.store.pilots.PILOT_STALE_S, the monitor's window
    """A pilot row not refreshed for this long no longer counts as connected (its dispatcher died)."""
    share_refresh_s: float = 5.0
    """How often the per-VO running counts used for fair-share ordering are recomputed."""
    vo_shares: tuple[tuple[str, float], ...] = ()
    """Target share per VO, e.g. ``(("compass", 3.0), ("amber", 1.0))``; unlisted VOs weigh 1.0
    (a VO weight in ``shares`` wins over this)."""
    shares: SharesConfig = field(default_factory=SharesConfig)
    """The fair-share tree (``[shares]``/``[[share]]`` of the queue file)."""
    watch_gap_timeout_s: float = 10.0
    """WatchJobs waits this long for an event id skipped by a still-open transaction (PostgreSQL)."""
    command_retention_s: float = 3600.0
    """Pilot commands (delivered or not) are deleted this long after they were issued."""
    db_threads: int = 8
    """Worker threads doing database work, so the event loop never blocks on the database."""
    urgent_db_threads: int = 4
    """Further database threads only for latency-critical calls (claims, kills, pilot commands), so
    they never queue behind bulk work; 0: those share the ``db_threads`` pool."""
    gil_switch_interval_ms: float = 1.0
    """How long the thread holding Python's GIL (the event loop, a database thread) runs before a
    waiting thread gets it (``sys.setswitchinterval``; Python's default is 5 ms). A claim's
    database thread waits up to this long for the GIL after each of its round trips, behind the
    heartbeat flush and finals threads. Measured (lifecycle benchmark at 50 % of saturation,
    PostgreSQL, 2 cores): 1 ms instead of 5, at the same offered load, cut the claim batch p99
    from 83 to 63 ms, GetJob p99 from 309 to 246 ms and kill p99 from 400 to 322 ms; closed-loop
    throughput 594 against 587-643 jobs/s (within run-to-run spread), CPU per job at saturation up
    to ~10 % higher."""
    bundle_port: int | None = None
    """Serve the pilot bundle over HTTP on ``host`` at this port (``GET /pilot/bundle.pyz`` and
    ``/pilot/bundle.json`` with its version and sha256), for pilot wrappers that download the
    pilot; ``None``: off, 0: an ephemeral port."""
    metrics_port: int | None = None
    """Serve this process's Prometheus metrics (``GET /metrics``, see
    :mod:`dispatcher.services.metrics`) over HTTP on ``metrics_host`` at this port; ``None``: off,
    0: an ephemeral port. With ``--workers N`` worker ``i`` serves on ``metrics_port + i``."""
    metrics_host: str = "127.0.0.1"
    """Address the metrics endpoint binds (loopback by default: it has no authentication)."""
    reuse_port: bool = False
    """Bind the port with ``SO_REUSEPORT`` so several worker processes share it (set by
    ``--workers``; off otherwise, so a second dispatcher started by mistake on a busy port fails)."""
    grace_s: float = 2.0
    """On stop, open calls get this long to finish."""
    max_pending_calls: int = 50_000
    """Incoming calls gRPC may hold before the event loop picks them up (twice this is the hard
    limit). gRPC's own default (1,000, rising to 3,000) makes it refuse new calls with CANCELLED
    while the loop is busy: a storm of 10,000 pilots reconnecting to one dispatcher lost about
    one stream in eight to it. Pilots retry refused streams, but nothing is gained by refusing."""
    max_pending_call_wait_s: int = 600
    """How long (whole seconds) gRPC may hold an incoming call for the event loop before it cancels
    it. gRPC's own default, 30 s, is reached by a reconnect storm on a busy host: 4,000 pilot
    streams opened at once beside ``stress-ng --cpu 2`` were registered too slowly and 3,444 of them
    were cancelled (CANCELLED) after waiting 30 s. Like ``max_pending_calls``: a late answer costs
    the pilot nothing, a refusal costs a reconnect that only adds to the storm."""
    ddm_workers: int = 8
    """Requests the DDM agent inside this dispatcher runs at once; the agent runs only when
    ``storage`` is configured, and 0 turns it off here (another dispatcher on the same database runs it)."""
    ddm_poll_s: float = 1.0
    """Pause between the DDM agent's cycles (advance jobs and tasks, claim due requests)."""
    ddm_backoff_base_s: float = 5.0
    """Delay before a failed DDM request's first retry; doubled for every further attempt."""
    ddm_scratch_dir: str = "/tmp/ailuro-ddm"
    """Where the DDM agent passes files through between source and destination SE."""
    loop_lag: LoopLagConfig | None = None
    """Measure the event loop's lag and sample the stacks that stall it
    (:mod:`dispatcher.services.looplag`, ``--loop-stall-ms``); None: off (the default)."""
    limits: Limits = Limits()
    """Bounds on requests and streams (see :class:`Limits`)."""
    auth: AuthConfig = field(default_factory=AuthConfig)
    """How callers are authenticated (see :class:`dispatcher.auth.config.AuthConfig`); the
    default is token mode with the embedded issuer in ``$AILURO_AUTH_DIR`` or ``~/.ailuro/auth``
    (trusted metadata only when asked for, on a loopback ``host``)."""
