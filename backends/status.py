"""What ``ailuro factory status`` shows: per queue, work waiting and pilots present.

Counts come from the dispatcher's records (so they cover every factory serving a queue); the
last submission error, which only the factory that hit it knows, comes from that factory's
``factory-status.json`` when its work directory is given.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc

from ailuro.v1 import factory_pb2, factory_pb2_grpc
from backends.base import WorkerState


@dataclass(kw_only=True)
class QueueStatus:
    """One row of ``ailuro factory status``."""

    queue: str
    backend: str = ""
    """Backend(s) of the queue's workers, as recorded by the factories (comma-separated)."""
    activated_jobs: int = 0
    running_jobs: int = 0
    connected_pilots: int = 0
    idle_pilots: int = 0
    queued_workers: int = 0
    running_workers: int = 0
    held_workers: int = 0
    last_submission: float = 0.0
    """Unix time of the newest worker registered for the queue (0: none)."""
    last_worker_error: str = ""
    """Diag of the newest failed or missing worker (from the dispatcher's records)."""
    last_error: str = ""
    """Last submission/poll error of the factory whose work dir was given."""
    last_error_time: float = 0.0
    last_worker_log: str = ""
    """Log path of the newest failed or missing worker (read it for the whole story)."""
    start_failures: int = 0
    """Pilots that failed at start in a row (the worst factory's streak, from the dispatcher)."""
    flagged: bool = False
    """A factory flagged the queue: its pilots keep dying at start."""
    flag_reason: str = ""
    """The error line of the last pilot that failed at start."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def collect_status(
    channel: grpc.Channel,
    *,
    queues: Sequence[str] = (),
    workdir: Path | None = None,
    timeout: float = 10.0,
    metadata: Sequence[tuple[str, str]] = (),
) -> list[QueueStatus]:
    """Per-queue status for ``queues`` (empty: every queue the dispatcher knows)."""
    stub = factory_pb2_grpc.FactoryServiceStub(channel)
    stats = stub.GetQueueStats(
        factory_pb2.GetQueueStatsRequest(queues=list(queues)), timeout=timeout, metadata=tuple(metadata)
    )
    local = _local_status(workdir)
    rows: list[QueueStatus] = []
    for s in stats.queues:
        workers = dict(s.workers)
        row = QueueStatus(
            queue=s.queue,
            activated_jobs=int(s.activated_jobs),
            running_jobs=int(s.running_jobs),
            connected_pilots=int(s.connected_pilots),
            idle_pilots=int(s.idle_pilots),
            queued_workers=workers.get(WorkerState.SUBMITTED.value, 0) + workers.get(WorkerState.IDLE.value, 0),
            running_workers=workers.get(WorkerState.RUNNING.value, 0),
            held_workers=workers.get(WorkerState.HELD.value, 0),
            start_failures=int(s.start_failures),
            flagged=bool(s.flagged),
            flag_reason=s.flag_reason,
        )
        listed = stub.ListWorkers(
            factory_pb2.ListWorkersRequest(queue=s.queue, include_final=True, limit=1000),
            timeout=timeout,
            metadata=tuple(metadata),
        ).workers
        if listed:
            row.backend = ",".join(sorted({w.backend for w in listed if w.backend}))
            row.last_submission = max(w.submit_time.ToNanoseconds() / 1e9 for w in listed)
            bad = [
                w
                for w in listed
                if WorkerState.from_proto(w.state) in (WorkerState.FAILED, WorkerState.MISSING) and w.diag
            ]
            if bad:
                newest = max(bad, key=lambda w: w.update_time.ToNanoseconds())
                row.last_worker_error = f"{newest.worker_id}: {newest.diag}"
                row.last_worker_log = newest.log_path
        saved = local.get(s.queue, {})
        row.last_error = str(saved.get("last_error", ""))
        row.last_error_time = float(saved.get("last_error_time", 0.0))
        if saved.get("last_submission_time", 0.0) > row.last_submission:
            row.last_submission = float(saved["last_submission_time"])
        rows.append(row)
    return rows


def _local_status(workdir: Path | None) -> dict[str, dict[str, Any]]:
    if workdir is None:
        return {}
    try:
        data = json.loads((Path(workdir) / "factory-status.json").read_text())
    except (OSError, ValueError):
        return {}
    queues = data.get("queues", {})
    return queues if isinstance(queues, dict) else {}
