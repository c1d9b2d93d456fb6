"""DebugJob: ask the pilot running a job for a snapshot of its payload and wait for the answer.

The command goes through ``pilot_commands`` like a kill (pushed at once to a pilot streaming to
this process, picked up by another process's command poll otherwise); the pilot's DebugReport is
stored in ``pilot_debug_reports`` by whichever dispatcher its stream reaches, and this call polls
that table until the answer is there or ``timeout_s`` passed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from ailuro.errors import DeadlineExceeded, InvalidArgument, NotFound, PermissionDenied
from ailuro.v1 import pilot_pb2, submission_pb2
from dispatcher.auth.policy import ADMIN, Action, Resource, may, same_vo
from dispatcher.identity import Identity
from dispatcher.services.runtime import Runtime
from dispatcher.store import audit
from dispatcher.store import debug as dstore
from dispatcher.store.jobs import KillCommand

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
"""How long DebugJob waits for the pilot when the request says 0."""
MAX_TIMEOUT_S = 120.0
"""The longest wait a DebugJob request may ask for."""
POLL_S = 0.1
"""How often a waiting DebugJob looks for the answer."""


def may_debug(identity: Identity, target: dstore.DebugTarget) -> bool:
    """A snapshot of a running payload shows what its secret environment shows, so the rule is the
    policy's SECRETS rule (the job's owner) plus admins of every VO; nobody else (not the
    development mode's role-less caller either, although it may act on every VO's jobs)."""
    if ADMIN in identity.roles and identity.all_vos:
        return True
    return may(identity, Action.SECRETS, Resource(vo=target.vo, owner=target.owner))


def report_problem(report: pilot_pb2.DebugReport, limit_bytes: int) -> str | None:
    """Why a DebugReport is dropped, or ``None``."""
    if report.panda_id <= 0 or report.command_id <= 0:
        return "panda_id and command_id must be positive"
    size = len(report.snapshot.encode())
    if size > limit_bytes:
        return f"snapshot has {size} bytes; the limit (debug_report_bytes) is {limit_bytes}"
    if "\x00" in report.snapshot:
        return "snapshot must not contain NUL characters"
    return None


class DebugService:
    """The DebugJob call and the storing of pilots' answers."""

    def __init__(self, runtime: Runtime, push: Callable[[Sequence[KillCommand]], Awaitable[None]]) -> None:
        self.rt = runtime
        self._push = push

    async def debug_job(
        self, req: submission_pb2.DebugJobRequest, identity: Identity
    ) -> submission_pb2.DebugJobResponse:
        """Send a DEBUG command to the job's pilot and return its snapshot."""
        if req.panda_id <= 0:
            raise InvalidArgument(f"must be a positive job id, got {req.panda_id}", field="panda_id")
        if not 0 <= req.timeout_s <= MAX_TIMEOUT_S:  # NaN fails this too
            raise InvalidArgument(f"must be 0 to {MAX_TIMEOUT_S:.0f} seconds, got {req.timeout_s}", field="timeout_s")
        timeout = req.timeout_s or DEFAULT_TIMEOUT_S

        def ask() -> tuple[dstore.DebugTarget, KillCommand]:
            with self.rt.db.write() as conn:
                target = dstore.debug_target(conn, req.panda_id)
                if not same_vo(identity, target.vo):  # another VO's job reads as an unknown one
                    raise NotFound(f"no job with panda_id {req.panda_id}", field="panda_id")
                if not may_debug(identity, target):
                    raise PermissionDenied(f"job {req.panda_id} belongs to another user", field="panda_id")
                now = self.rt.now()
                command = dstore.insert_debug_command(conn, target, reason=f"debug by {identity.name}", now=now)
                audit.record(  # someone looked inside a running payload: the owner may want to know who
                    conn,
                    actor=identity.name,
                    vo=identity.vo,
                    action=audit.JOBS_DEBUG,
                    target=str(target.panda_id),
                    detail={"owner": target.owner, "pilot_id": target.pilot_id, "status": target.status.value},
                    now=now,
                )
                return target, command

        target, command = await self.rt.db_call(ask)
        await self._push([command])
        log.info("%s asked pilot %s for a snapshot of job %d", identity.name, target.pilot_id, target.panda_id)

        def answer() -> dstore.DebugReportRow | None:
            with self.rt.db.read() as conn:
                return dstore.read_debug_report(conn, command.command_id)

        deadline = asyncio.get_running_loop().time() + timeout
        while (row := await self.rt.db_call(answer)) is None:
            if asyncio.get_running_loop().time() >= deadline:
                raise DeadlineExceeded(
                    f"pilot {target.pilot_id} did not answer within {timeout:.0f}s (it may be unreachable or busy)"
                )
            await asyncio.sleep(POLL_S)
        when = Timestamp()
        when.FromNanoseconds(int(row.created * 1e9))
        return submission_pb2.DebugJobResponse(
            panda_id=target.panda_id,
            pilot_id=row.pilot_id,
            node=target.node,
            status=target.status.to_proto(),  # type: ignore[arg-type]
            snapshot=row.snapshot,
            time=when,
        )

    async def store_report(self, pilot_id: str, report: pilot_pb2.DebugReport) -> None:
        """Keep a pilot's answer for the DebugJob call waiting on it (a bad or unasked one is dropped)."""
        problem = report_problem(report, self.rt.config.limits.debug_report_bytes)
        if problem:
            log.warning("debug report of pilot %s for job %d dropped: %s", pilot_id, report.panda_id, problem)
            return

        def run() -> bool:
            with self.rt.db.write() as conn:
                return dstore.save_debug_report(
                    conn,
                    command_id=report.command_id,
                    panda_id=report.panda_id,
                    pilot_id=pilot_id,
                    snapshot=report.snapshot,
                    now=self.rt.now(),
                )

        if not await self.rt.db_call(run):
            log.warning(
                "debug report of pilot %s for job %d answers no open command: dropped", pilot_id, report.panda_id
            )
