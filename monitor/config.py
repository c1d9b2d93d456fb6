"""Monitor configuration (``ailuro monitor`` options)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class MonitorConfig:
    """Where the dispatcher's database is, where to listen, and how pages behave.

    ``log_roots``: directories log tarballs may be served from (empty: any local path that passes
    the checks in :mod:`monitor.logs`). ``refresh_s``: how often open pages poll for updates.
    """

    db_url: str
    host: str = "127.0.0.1"
    port: int = 8880
    refresh_s: float = 10.0
    log_roots: tuple[Path, ...] = ()
    pool_size: int = 5
