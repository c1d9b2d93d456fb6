"""Monitor configuration (``ailuro monitor`` options)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ailuro.queues import QueueConfig, SharesConfig, StorageElementConfig
from monitor.auth import MonitorAuth
from monitor.oidc import OidcConfig


@dataclass(frozen=True, kw_only=True)
class MonitorConfig:
    """Where the dispatcher's database is, where to listen, and how pages behave.

    ``storage`` (the queue file's ``[[storage]]`` tables) and ``log_roots`` (directories) are the
    configured storage log tarballs may be served from; with neither, no log is served (see
    :mod:`monitor.logs`). ``refresh_s``: how often open pages poll for updates.
    """

    db_url: str
    host: str = "127.0.0.1"
    port: int = 8880
    refresh_s: float = 10.0
    log_roots: tuple[Path, ...] = ()
    storage: tuple[StorageElementConfig, ...] = ()
    pool_size: int = 5
    auth: MonitorAuth = field(default_factory=MonitorAuth)
    """Who may look (tokens, sessions, ``--public``); see :mod:`monitor.auth`."""
    oidc: OidcConfig | None = None
    """OIDC authorization-code login (``--oidc FILE``); None: tokens are pasted into the login form."""
    queues: tuple[QueueConfig, ...] = ()
    """The queue file's queues: their configuration on site pages, and which VOs each serves
    (a viewer sees the pilots and workers of the queues serving their VO)."""
    shares: SharesConfig = field(default_factory=SharesConfig)
    """The queue file's share tree: the job page explains a waiting job (``job why``) with it."""
    why_max_ranked: int = 5_000
    """The job page ranks a waiting job's queue only when at most this many jobs wait there: it
    reads at most one more row (along the claim index) on every refresh; deeper, it says "more
    than N waiting" without a position (``ailuro job why`` ranks up to 200,000)."""
    tls_cert: Path | None = None
    """PEM certificate chain to serve https with (with ``tls_key``); cookies are then Secure."""
    tls_key: Path | None = None
    """PEM private key of ``tls_cert``."""
