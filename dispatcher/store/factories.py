"""Factory ownership and queue health: who may change which workers, and which queues are sick.

Until real identities exist (issue #14), a factory proves it is itself with a secret: the first
registration under a factory id stores the secret's sha256, and every later call that registers
or changes that factory's workers must present the same secret. Workers of one factory can never
be re-registered or updated by another.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from sqlalchemy import Connection, select

from ailuro.errors import PermissionDenied
from ailuro.v1 import factory_pb2
from dispatcher.store.jobs import chunks
from dispatcher.store.pilots import insert_for
from dispatcher.store.schema import factories, factory_queues, workers

MAX_HEALTH_ERROR = 500
"""Characters of a queue's last start-failure error kept (the first line, bounded)."""


def secret_digest(secret: str) -> str:
    """The stored form of a factory secret (a random 256-bit token, so one sha256 suffices)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def authenticate(conn: Connection, factory_id: str, secret: str, *, now: float) -> None:
    """Accept ``secret`` for ``factory_id``, fixing it at the first call; ``PermissionDenied`` on a mismatch."""
    if not factory_id or not secret:
        raise PermissionDenied(
            "changing workers needs the factory's id and secret in the call metadata", field="metadata"
        )
    digest = secret_digest(secret)
    ins = insert_for(conn)(factories).values(factory_id=factory_id, secret_sha256=digest, first_seen=now)
    conn.execute(ins.on_conflict_do_nothing(index_elements=[factories.c.factory_id]))
    stored = conn.execute(select(factories.c.secret_sha256).where(factories.c.factory_id == factory_id)).scalar_one()
    if not hmac.compare_digest(stored, digest):
        raise PermissionDenied(f"wrong secret for factory {factory_id!r}", field="metadata")


def check_owned(conn: Connection, factory_id: str, worker_ids: Sequence[str], *, field: str) -> None:
    """``PermissionDenied`` naming the first of ``worker_ids`` that exists and belongs to another factory."""
    owners: dict[str, str] = {}
    for part in chunks(sorted(set(worker_ids))):
        stmt = select(workers.c.worker_id, workers.c.factory_id).where(workers.c.worker_id.in_(part))
        owners.update({wid: fid for wid, fid in conn.execute(stmt)})
    for i, wid in enumerate(worker_ids):
        owner = owners.get(wid)
        if owner is not None and owner != factory_id:
            raise PermissionDenied(f"worker {wid!r} belongs to another factory", field=f"{field}[{i}].worker_id")


def report_health(conn: Connection, factory_id: str, items: Sequence[factory_pb2.QueueHealth], *, now: float) -> None:
    """Store the calling factory's start-failure streak and backoff per queue."""
    for h in items:
        values = {
            "start_failures": int(h.start_failures),
            "flagged": bool(h.flagged),
            "last_error": first_line(h.last_error),
            "backoff_until": float(h.backoff_until),
            "updated": now,
        }
        ins = insert_for(conn)(factory_queues).values(factory_id=factory_id, queue=h.queue, **values)
        conn.execute(
            ins.on_conflict_do_update(index_elements=[factory_queues.c.factory_id, factory_queues.c.queue], set_=values)
        )


def queue_health(conn: Connection) -> dict[str, tuple[int, bool, str]]:
    """``{queue: (start_failures, flagged, reason)}``: the worst streak over the queue's factories."""
    out: dict[str, tuple[int, bool, str]] = {}
    stmt = select(factory_queues).where(factory_queues.c.start_failures > 0)
    for r in conn.execute(stmt).mappings():
        current = out.get(r["queue"])
        if current is None or r["start_failures"] > current[0]:
            flagged = bool(r["flagged"]) or bool(current and current[1])
            out[r["queue"]] = (int(r["start_failures"]), flagged, r["last_error"])
        elif r["flagged"]:
            out[r["queue"]] = (current[0], True, current[2])
    return out


def first_line(text: str) -> str:
    """The first non-empty line of ``text``, bounded to :data:`MAX_HEALTH_ERROR` characters."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:MAX_HEALTH_ERROR]
    return ""
