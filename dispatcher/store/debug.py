"""DEBUG commands and their answers: rows of ``pilot_commands`` (type ``debug``) and
``pilot_debug_reports``. Reads and writes only; who may ask is decided by the service.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from ailuro.errors import FailedPrecondition, NotFound
from dispatcher.states import ON_PILOT_STATES, JobState
from dispatcher.store.jobs import COMMANDS_CHANNEL, KillCommand
from dispatcher.store.schema import jobs, pilot_commands, pilot_debug_reports

DEBUG_TYPE = "debug"
"""``pilot_commands.type`` of a DEBUG command."""


@dataclass(frozen=True, kw_only=True)
class DebugTarget:
    """The job a DEBUG command is for, as the database knows it now."""

    panda_id: int
    owner: str
    vo: str
    status: JobState
    pilot_id: str
    node: str


@dataclass(frozen=True, kw_only=True)
class DebugReportRow:
    """A pilot's answer to one DEBUG command."""

    command_id: int
    pilot_id: str
    snapshot: str
    created: float


def debug_target(conn: Connection, panda_id: int) -> DebugTarget:
    """The job to snapshot; ``NotFound`` for an unknown job."""
    row = (
        conn.execute(
            select(jobs.c.panda_id, jobs.c.owner, jobs.c.vo, jobs.c.status, jobs.c.pilot_id, jobs.c.node).where(
                jobs.c.panda_id == panda_id
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"no job with panda_id {panda_id}", field="panda_id")
    return DebugTarget(
        panda_id=panda_id,
        owner=row["owner"] or "",
        vo=row["vo"] or "",
        status=JobState(row["status"]),
        pilot_id=row["pilot_id"] or "",
        node=row["node"] or "",
    )


def insert_debug_command(conn: Connection, target: DebugTarget, *, reason: str, now: float) -> KillCommand:
    """Queue a DEBUG command for the pilot holding ``target``; ``FailedPrecondition`` when none does."""
    if target.status not in ON_PILOT_STATES or not target.pilot_id:
        raise FailedPrecondition(
            f"job {target.panda_id} is {target.status.value}: only a job held by a pilot can be debugged",
            field="panda_id",
        )
    row = {"pilot_id": target.pilot_id, "panda_id": target.panda_id, "type": DEBUG_TYPE, "reason": reason}
    result = conn.execute(
        pilot_commands.insert().returning(pilot_commands.c.command_id), [{**row, "created": now, "delivered": False}]
    )
    command_id = int(result.scalar_one())
    if conn.dialect.name == "postgresql":  # delivered at commit: other processes look at once
        conn.execute(select(func.pg_notify(COMMANDS_CHANNEL, "")))
    return KillCommand(command_id=command_id, pilot_id=target.pilot_id, panda_id=target.panda_id, reason=reason)


def save_debug_report(
    conn: Connection, *, command_id: int, panda_id: int, pilot_id: str, snapshot: str, now: float
) -> bool:
    """Store a pilot's answer; ``False`` (nothing stored) unless it answers a DEBUG command sent to
    that pilot for that job and not answered yet."""
    cmd = (
        conn.execute(
            select(pilot_commands.c.panda_id, pilot_commands.c.pilot_id, pilot_commands.c.type).where(
                pilot_commands.c.command_id == command_id
            )
        )
        .mappings()
        .first()
    )
    if cmd is None or cmd["type"] != DEBUG_TYPE or cmd["panda_id"] != panda_id or cmd["pilot_id"] != pilot_id:
        return False
    seen = select(pilot_debug_reports.c.command_id).where(pilot_debug_reports.c.command_id == command_id)
    if conn.execute(seen).first() is not None:
        return False
    conn.execute(
        pilot_debug_reports.insert().values(
            command_id=command_id, panda_id=panda_id, pilot_id=pilot_id, snapshot=snapshot, created=now
        )
    )
    return True


def read_debug_report(conn: Connection, command_id: int) -> DebugReportRow | None:
    """The answer to a DEBUG command, once it arrived."""
    t = pilot_debug_reports
    row = (
        conn.execute(
            select(t.c.command_id, t.c.pilot_id, t.c.snapshot, t.c.created).where(t.c.command_id == command_id)
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    return DebugReportRow(
        command_id=row["command_id"], pilot_id=row["pilot_id"], snapshot=row["snapshot"], created=row["created"]
    )
