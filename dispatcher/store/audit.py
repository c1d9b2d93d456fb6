"""The audit log: who did what, recorded in the transaction of the action itself.

:func:`record` takes the caller's open connection, so an action and its audit row commit (or roll
back) together: there is no audited action without its row and no row for an action that failed.
The submit path is hot, so a submission batch is one row (its id range and counts), never one
row per job. Values are bounded: a row never grows with the size of a request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from dispatcher.store.schema import audit

JOBS_SUBMIT = "jobs.submit"
JOBS_KILL = "jobs.kill"
JOBS_RETRY = "jobs.retry"
JOBS_PRIORITY = "jobs.priority"
JOBS_DEBUG = "jobs.debug"
TASK_SUBMIT = "task.submit"
TASK_RETRY = "task.retry"
TASK_ABORT = "task.abort"
TOKEN_ISSUE = "token.issue"
TOKEN_PILOT = "token.pilot"
"""A factory got pilot tokens for its workers (``IssuePilotTokens``): one row per call."""
WORKERS_REGISTER = "workers.register"
WORKERS_UPDATE = "workers.update"
QUEUE_STATUS = "queue.status"
SHARE_WEIGHT = "share.weight"
ACTIONS = (
    JOBS_SUBMIT,
    JOBS_KILL,
    JOBS_RETRY,
    JOBS_PRIORITY,
    JOBS_DEBUG,
    TASK_SUBMIT,
    TASK_RETRY,
    TASK_ABORT,
    TOKEN_ISSUE,
    TOKEN_PILOT,
    WORKERS_REGISTER,
    WORKERS_UPDATE,
    QUEUE_STATUS,
    SHARE_WEIGHT,
)
"""Every action name the dispatcher records (``ailuro audit --action`` takes one of them)."""

MAX_TARGET = 1_000
MAX_DETAIL = 4_000
MAX_LIST = 1_000
"""Rows one query returns at most (``ListAudit``'s hard bound on ``limit``)."""
_IDS_SHOWN = 20


@dataclass(frozen=True, kw_only=True)
class AuditRow:
    """One recorded action."""

    id: int
    """Increasing id: the paging key (newest first means descending ids)."""
    time: float
    """When it happened (seconds since the epoch, the dispatcher's clock)."""
    actor: str
    """Who did it: the authenticated name (token ``sub``, the user a certificate DN maps to)."""
    vo: str
    """The VO the actor acted for."""
    action: str
    """One of :data:`ACTIONS`."""
    target: str
    """What it acted on (job ids, a user, a queue), bounded."""
    detail: str
    """A JSON object with the rest (counts, reason, roles), bounded."""


_CUT = "...(truncated)"


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(_CUT)] + _CUT


def _detail_json(detail: Mapping[str, Any]) -> str:
    """``detail`` as compact JSON; when too long, still a JSON object: the start of it, marked cut."""
    blob = json.dumps(dict(detail), sort_keys=True, separators=(",", ":"), default=str)
    if len(blob) <= MAX_DETAIL:
        return blob
    return json.dumps({"truncated": True, "start": blob[: MAX_DETAIL // 2]}, separators=(",", ":"))


def ids_text(ids: Sequence[int]) -> str:
    """A short, bounded description of job ids: ``12..14`` for a contiguous run, else the first 20."""
    if not ids:
        return ""
    ordered = sorted(set(ids))
    if len(ordered) > 1 and ordered[-1] - ordered[0] == len(ordered) - 1:
        return f"{ordered[0]}..{ordered[-1]}"
    shown = ",".join(map(str, ordered[:_IDS_SHOWN]))
    return shown if len(ordered) <= _IDS_SHOWN else f"{shown},... ({len(ordered)} ids)"


def record(
    conn: Connection, *, actor: str, vo: str, action: str, target: str, detail: Mapping[str, Any], now: float
) -> None:
    """Add one audit row in ``conn``'s (the action's) transaction."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    conn.execute(
        audit.insert().values(
            time=now,
            actor=actor[:255],
            vo=vo[:255],
            action=action,
            target=_bounded(target, MAX_TARGET),
            detail=_detail_json(detail),
        )
    )


def list_audit(
    conn: Connection,
    *,
    actor: str = "",
    action: str = "",
    vo: str = "",
    since: float | None = None,
    until: float | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditRow]:
    """Matching rows, newest first; ``before_id`` continues after the last row of a previous page."""
    stmt = select(audit).order_by(audit.c.id.desc()).limit(max(1, min(limit, MAX_LIST)))
    if actor:
        stmt = stmt.where(audit.c.actor == actor)
    if action:
        stmt = stmt.where(audit.c.action == action)
    if vo:
        stmt = stmt.where(audit.c.vo == vo)
    if since is not None:
        stmt = stmt.where(audit.c.time >= since)
    if until is not None:
        stmt = stmt.where(audit.c.time < until)
    if before_id is not None:
        stmt = stmt.where(audit.c.id < before_id)
    return [AuditRow(**row) for row in conn.execute(stmt).mappings()]
