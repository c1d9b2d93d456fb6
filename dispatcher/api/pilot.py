"""gRPC servicer of PilotService: the Connect stream and the unary GetJob/UpdateJob.

A stream's reader handles each incoming message without waiting for the database: claims and
final reports are handed to the hub's group committers in their own tasks, heartbeats go to
the coalescing buffer; everything the dispatcher says comes out of the stream's queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Coroutine
from typing import Any

import grpc

from ailuro.errors import InvalidArgument, PermissionDenied
from ailuro.v1 import pilot_pb2, pilot_pb2_grpc
from dispatcher import validation
from dispatcher.api.errors import identity_of, streaming, unary
from dispatcher.auth.policy import Action, Resource, may
from dispatcher.pilot_protocol import job_request_problem, no_more_jobs, welcome
from dispatcher.services.debug import DebugService
from dispatcher.services.hub import PilotHub, pilot_info, pilot_principal
from dispatcher.services.parking import SOON_S, claim_or_park
from dispatcher.services.streams import PilotStream
from dispatcher.states import JobState
from dispatcher.store import pilots as pstore

log = logging.getLogger(__name__)


def _rejected(panda_id: int, epoch: int, message: str, *, is_final: bool = False) -> pilot_pb2.Ack:
    return pilot_pb2.Ack(
        panda_id=panda_id, lease_epoch=epoch, result=pilot_pb2.ACK_RESULT_REJECTED, message=message, is_final=is_final
    )


def require_queue(context: grpc.aio.ServicerContext, queue: str, field: str) -> None:
    """PERMISSION_DENIED unless the caller may serve ``queue`` (a pilot token names its queues)."""
    identity = identity_of(context)
    if not may(identity, Action.SERVE, Resource(queue=queue)):
        bound = identity.principal.queues if identity.principal is not None else ()
        raise PermissionDenied(f"this pilot token serves {list(bound)}, not queue {queue!r}", field=field)


class PilotServicer(pilot_pb2_grpc.PilotServiceServicer):
    """Thin adapter over :class:`PilotHub`."""

    def __init__(self, hub: PilotHub, debug: DebugService) -> None:
        self.hub = hub
        self.debug = debug

    @streaming
    async def Connect(
        self, request_iterator: AsyncIterator[pilot_pb2.PilotMessage], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pilot_pb2.DispatcherMessage]:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return
        if first.WhichOneof("msg") != "hello":
            raise InvalidArgument("the first message on a stream must be a Hello", field="hello")
        require_queue(context, first.hello.queue, "hello.queue")
        # the pilot id is bound to the caller; a live id of another principal: PERMISSION_DENIED
        stream = await self.hub.open_stream(first.hello, pilot_principal(identity_of(context)))
        stream.handler = asyncio.current_task()
        reader = asyncio.create_task(self._read(stream, request_iterator), name=f"pilot-{stream.pilot.pilot_id}")
        try:
            while True:
                item = await stream.next_out()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            await self.hub.close_stream(stream)

    async def _read(self, stream: PilotStream, requests: AsyncIterator[pilot_pb2.PilotMessage]) -> None:
        tasks: set[asyncio.Task[None]] = set()
        limits = self.hub.rt.config.limits

        def done(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            stream.in_flight -= 1

        def spawn(coro: Coroutine[Any, Any, None]) -> None:
            task: asyncio.Task[None] = asyncio.create_task(coro)
            tasks.add(task)
            stream.in_flight += 1
            task.add_done_callback(done)

        try:
            async for msg in requests:
                kind = msg.WhichOneof("msg")
                await stream.wait_pending(limits.pending_per_stream, limits.pending_wait_s)
                if kind == "job_request":
                    bad = job_request_problem(msg.job_request)
                    if bad:  # answered alone: the stream and the jobs on it go on
                        field, what = bad
                        stream.send(self._no_more(msg.job_request, 0, f"{field} {what}", invalid_field=field))
                    else:
                        spawn(self._serve_request(stream, msg.job_request))
                elif kind == "heartbeats":
                    validation.validate_heartbeat_batch(msg.heartbeats, limits)
                    rejected = []
                    for hb in msg.heartbeats.heartbeats:
                        problem = validation.heartbeat_problem(hb) or self.hub.heartbeat(stream, hb)
                        if problem:
                            rejected.append(_rejected(hb.panda_id, hb.lease_epoch, problem))
                    stream.send_acks(rejected)
                elif kind == "final":
                    problem = validation.final_problem(msg.final, limits)
                    if problem:
                        stream.send_acks([_rejected(msg.final.panda_id, msg.final.lease_epoch, problem, is_final=True)])
                    else:
                        spawn(self._serve_final(stream, msg.final))
                elif kind == "debug_report":
                    spawn(self.debug.store_report(stream.pilot.pilot_id, msg.debug_report))
                elif kind == "hello":
                    raise InvalidArgument("Hello may only be sent once per stream", field="hello")
                else:
                    raise InvalidArgument("empty PilotMessage", field="msg")
            # The pilot half-closed: finish what is in flight, then end the stream.
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            stream.out.put_nowait(None)
        except asyncio.CancelledError:
            for t in tasks:
                t.cancel()
            raise
        except Exception as exc:
            for t in tasks:
                t.cancel()
            stream.fail(exc)

    def _no_more(
        self,
        req: pilot_pb2.JobRequest,
        n_given: int,
        reason: str,
        *,
        invalid_field: str = "",
        retry_s: float | None = None,
    ) -> pilot_pb2.DispatcherMessage:
        retry = self.hub.rt.config.no_job_retry_s if retry_s is None else retry_s
        return no_more_jobs(req, n_given=n_given, retry_after_s=retry, reason=reason, invalid_field=invalid_field)

    def _why_fewer(self, pilot: pstore.PilotInfo) -> str:
        if not self.hub.queue_enabled(pilot.queue):
            return f"queue {pilot.queue!r} is disabled"
        return "no more activated jobs fit this pilot now"

    async def _serve_request(self, stream: PilotStream, req: pilot_pb2.JobRequest) -> None:
        arrived = time.monotonic()
        hub = self.hub

        def claim() -> Awaitable[list[pilot_pb2.JobAssignment]]:
            return hub.request_jobs(stream.pilot, req.n, walltime_left_s=req.walltime_left_s, free=req)

        parking = hub.parking if hub.queue_enabled(stream.pilot.queue) else None
        try:  # parked while there is no work for it (bounded; services/parking.py)
            assignments, soon = await claim_or_park(parking, stream, claim)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stream.fail(exc)
            return
        for a in assignments:
            a.request_id = req.request_id
            stream.send(pilot_pb2.DispatcherMessage(assignment=a))
        if len(assignments) < req.n:  # "no more for this request now", so the pilot need not wait
            why = self._why_fewer(stream.pilot)
            # its next request parks (no busy loop): it may as well be there now
            stream.send(self._no_more(req, len(assignments), why, retry_s=SOON_S if soon else None))
        # arrival to answer queued on the stream, parking included (the bench prints it beside
        # the pilot-side GetJob latency: what is left between the two is the transport and the pilot)
        self.hub.rt.db_times.record(
            "getjob: request to answer" if assignments else "getjob: answered none", time.monotonic() - arrived
        )
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "request %d of pilot %s answered in %.2f ms with %d job(s)",
                req.request_id,
                stream.pilot.pilot_id,
                (time.monotonic() - arrived) * 1000,
                len(assignments),
            )

    async def _serve_final(self, stream: PilotStream, final: pilot_pb2.JobFinal) -> None:
        try:
            ack = await self.hub.final(stream.pilot.pilot_id, final, stream=stream)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stream.fail(exc)
            return
        stream.queue_ack(ack)

    @unary
    async def GetJob(
        self, request: pilot_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> pilot_pb2.GetJobResponse:
        validation.validate_get_job(request, known_queues=self.hub.rt.queue_names)
        require_queue(context, request.pilot.queue, "pilot.queue")
        h = request.pilot
        info = pilot_info(h)
        rt = self.hub.rt
        await self.hub.register_unary(info, pilot_principal(identity_of(context)))
        assignments = await self.hub.request_jobs(info, request.n, walltime_left_s=h.walltime_left_s)
        retry = 0.0 if len(assignments) >= request.n else rt.config.no_job_retry_s
        hi = welcome(rt.config, session_id="", dispatcher_id=rt.dispatcher_id)
        return pilot_pb2.GetJobResponse(assignments=assignments, retry_after_s=retry, welcome=hi)

    @unary
    async def UpdateJob(
        self, request: pilot_pb2.UpdateJobRequest, context: grpc.aio.ServicerContext
    ) -> pilot_pb2.UpdateJobResponse:
        limits = self.hub.rt.config.limits
        validation.validate_update_job(request, limits)
        principal = pilot_principal(identity_of(context))
        await self.hub.check_owner(request.pilot_id, principal)
        acks: list[pilot_pb2.Ack | None] = []
        beats = []
        for hb in request.heartbeats:
            problem = validation.heartbeat_problem(hb)
            acks.append(_rejected(hb.panda_id, hb.lease_epoch, problem) if problem else None)
            if not problem:
                beats.append(
                    pstore.HeartbeatIn(
                        panda_id=hb.panda_id,
                        epoch=hb.lease_epoch,
                        status=JobState.from_proto(hb.status),
                        metrics=hb.metrics,
                        pilot_id=request.pilot_id,
                    )
                )
        results = iter(await self.hub.apply_heartbeats_now(beats) if beats else [])
        for i, hb in enumerate(request.heartbeats):
            if acks[i] is None:
                res, msg = next(results)
                acks[i] = pilot_pb2.Ack(panda_id=hb.panda_id, lease_epoch=hb.lease_epoch, result=res, message=msg)

        async def one_final(final: pilot_pb2.JobFinal) -> pilot_pb2.Ack:
            problem = validation.final_problem(final, limits)
            if problem:
                return _rejected(final.panda_id, final.lease_epoch, problem, is_final=True)
            return await self.hub.final(request.pilot_id, final, principal=principal)

        finals = await asyncio.gather(*(one_final(f) for f in request.finals))
        for report in request.debug_reports:
            await self.debug.store_report(request.pilot_id, report)
        commands = await self.hub.take_commands_for(request.pilot_id)
        return pilot_pb2.UpdateJobResponse(acks=[a for a in acks if a is not None] + finals, commands=commands)
