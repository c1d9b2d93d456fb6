"""Monitor configuration (``ailuro monitor`` options)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ailuro.queues import StorageElementConfig


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
