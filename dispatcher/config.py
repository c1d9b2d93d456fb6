"""Dispatcher configuration: one typed, frozen object; every timeout lives here, not in the code."""

from __future__ import annotations

from dataclasses import dataclass

from ailuro.queues import DEFAULT_QUEUES, QueueConfig, StorageElementConfig


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
    lease_s: float = 120.0
    """A job's lease lapses this long after its pilot's last heartbeat (then: lost heartbeat)."""
    sent_timeout_s: float = 60.0
    """A job ``sent`` to a pilot that does not report ``starting`` within this goes back to ``activated``."""
    heartbeat_flush_s: float = 1.0
    """Coalesced heartbeats are written to the database (and acknowledged) this often."""
    watchdog_interval_s: float = 2.0
    """How often the watchdog looks for timed-out ``sent`` jobs and expired leases."""
    counter_fold_s: float = 1.0
    """How often the job counter deltas appended by writers are folded into the monitor's counters."""
    no_job_retry_s: float = 5.0
    """``NoJob.retry_after_s`` sent to pilots when there is no work."""
    command_poll_s: float = 0.2
    """How often pending commands (kills) written by another dispatcher process are picked up,
    and how often WatchJobs tails the event table."""
    max_batch: int = 5000
    """Upper bound of rows one group-commit transaction touches."""
    claim_window_ms: float = 2.0
    """Job requests arriving within this window are claimed in one transaction."""
    pilot_stale_s: float = 30.0
    """A pilot row not refreshed for this long no longer counts as connected (its dispatcher died)."""
    share_refresh_s: float = 5.0
    """How often the per-VO running counts used for fair-share ordering are recomputed."""
    vo_shares: tuple[tuple[str, float], ...] = ()
    """Target share per VO, e.g. ``(("compass", 3.0), ("amber", 1.0))``; unlisted VOs weigh 1.0."""
    watch_gap_timeout_s: float = 10.0
    """WatchJobs waits this long for an event id skipped by a still-open transaction (PostgreSQL)."""
    command_retention_s: float = 3600.0
    """Pilot commands (delivered or not) are deleted this long after they were issued."""
    db_threads: int = 8
    """Worker threads doing database work, so the event loop never blocks on the database."""
    bundle_port: int | None = None
    """Serve the pilot bundle over HTTP on ``host`` at this port (``GET /pilot/bundle.pyz`` and
    ``/pilot/bundle.json`` with its version and sha256), for pilot wrappers that download the
    pilot; ``None``: off, 0: an ephemeral port."""
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
