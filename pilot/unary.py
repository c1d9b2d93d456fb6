"""The unary transport: ``GetJob``/``UpdateJob`` polls for pilots that cannot keep a stream open.

Behind some HTTP proxies a long-lived bidirectional stream does not survive. :class:`UnaryConnection`
offers the same interface as :class:`pilot.connection.Connection` (``send``, ``connected``,
``run``) and the same semantics, so the pilot's job loop does not know which one it has:

- each polling cycle makes one ``UpdateJob`` (the heartbeats and final reports queued since the
  last one; an empty call when there is nothing, which still fetches commands) and, when a job
  request is queued, one ``GetJob`` carrying a fresh ``Hello``;
- a cycle runs at once when something is queued, else every ``poll_s`` (the heartbeat period), so a
  kill reaches the pilot within one heartbeat period;
- the answers are handed to ``on_message`` as the stream's messages would be: the ``welcome`` of
  each ``GetJob``, one ``assignment`` per assigned job, ``no_job`` when fewer than asked came, and
  ``acks`` and ``command`` from ``UpdateJob`` (which also carries the DEBUG answers);
- "connected" means the last call worked. After a failure the queued reports are dropped (as on a
  broken stream: heartbeats are periodic, finals are spooled), the pilot backs off, and on the
  next success ``on_connect`` runs again (it resends the spooled finals).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from ailuro import credentials, targets
from ailuro.v1 import pilot_pb2, pilot_pb2_grpc
from pilot.connection import FATAL_CODES, ROLE_METADATA, Backoff, DispatcherRefused

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 30.0
"""Deadline of each unary call."""


class UnaryConnection:
    """One logical connection to the dispatcher, made of unary polls."""

    def __init__(
        self,
        *,
        target: str,
        pilot_id: str,
        make_hello: Callable[[], pilot_pb2.Hello],
        on_message: Callable[[pilot_pb2.DispatcherMessage], None],
        on_connect: Callable[[], Awaitable[None]],
        backoff: Backoff,
        poll_s: float,
        token_file: Path | None = None,
    ) -> None:
        self.target = target
        self._token_file = token_file
        self.pilot_id = pilot_id
        self._make_hello = make_hello
        self._on_message = on_message
        self._on_connect = on_connect
        self._backoff = backoff
        self.poll_s = poll_s
        self._request: pilot_pb2.JobRequest | None = None
        self._heartbeats: dict[int, pilot_pb2.Heartbeat] = {}
        self._finals: dict[tuple[int, int], pilot_pb2.JobFinal] = {}
        self._debug_reports: list[pilot_pb2.DebugReport] = []
        self._kick = asyncio.Event()
        self.connected = asyncio.Event()
        self.ever_connected = False
        self.streams_opened = 0
        """Successful (re)connections, as for the stream transport."""

    def send(self, msg: pilot_pb2.PilotMessage) -> bool:
        """Queue ``msg`` for the next cycle; ``False`` (message dropped) while disconnected."""
        if not self.connected.is_set():
            return False
        kind = msg.WhichOneof("msg")
        if kind == "job_request":
            self._request = msg.job_request
        elif kind == "heartbeats":
            for hb in msg.heartbeats.heartbeats:
                self._heartbeats[hb.panda_id] = hb  # only the latest matters
        elif kind == "final":
            self._finals[(msg.final.panda_id, msg.final.lease_epoch)] = msg.final
        elif kind == "debug_report":
            self._debug_reports.append(msg.debug_report)
        else:
            return False
        self._kick.set()
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; raises ``DispatcherRefused`` on a fatal status."""
        token = credentials.resolve_token(token_file=self._token_file)  # once, as for the stream
        async with targets.aio_channel(self.target, token=token, tls=credentials.tls_credentials()) as channel:
            stub = pilot_pb2_grpc.PilotServiceStub(channel)
            while not stop.is_set():
                try:
                    await self._cycle(stub)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in FATAL_CODES:
                        raise DispatcherRefused(f"{exc.code().name}: {exc.details()}") from exc
                    if self.connected.is_set():
                        log.warning("unary call to %s failed: %s %s", self.target, exc.code().name, exc.details())
                    self._disconnected()
                    delay = self._backoff.next_delay()
                    log.info("retrying %s in %.1fs", self.target, delay)
                    await self._sleep(stop, delay, kickable=False)
                    continue
                if not self.connected.is_set():
                    self.connected.set()
                    self.ever_connected = True
                    self.streams_opened += 1
                    self._backoff.reset()
                    log.info("connected to %s (unary)", self.target)
                    await self._on_connect()
                await self._sleep(stop, self.poll_s, kickable=True)
            self._disconnected()

    def _disconnected(self) -> None:
        self.connected.clear()
        self._request = None
        self._heartbeats.clear()
        self._finals.clear()
        self._debug_reports.clear()

    async def _sleep(self, stop: asyncio.Event, seconds: float, *, kickable: bool) -> None:
        waits = [asyncio.ensure_future(stop.wait())]
        if kickable:
            waits.append(asyncio.ensure_future(self._kick.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _cycle(self, stub: pilot_pb2_grpc.PilotServiceStub) -> None:
        self._kick.clear()
        beats, self._heartbeats = list(self._heartbeats.values()), {}
        finals, self._finals = list(self._finals.values()), {}
        reports, self._debug_reports = self._debug_reports, []
        update = await stub.UpdateJob(
            pilot_pb2.UpdateJobRequest(pilot_id=self.pilot_id, heartbeats=beats, finals=finals, debug_reports=reports),
            timeout=CALL_TIMEOUT_S,
            metadata=ROLE_METADATA,
        )
        if update.acks:
            self._on_message(pilot_pb2.DispatcherMessage(acks=pilot_pb2.AckBatch(acks=update.acks)))
        for command in update.commands:
            self._on_message(pilot_pb2.DispatcherMessage(command=command))
        request, self._request = self._request, None
        if request is None or not self.connected.is_set():
            return  # a request queued before a reconnect is renewed by on_connect
        hello = self._make_hello()
        if request.walltime_left_s:
            hello.walltime_left_s = request.walltime_left_s
        got = await stub.GetJob(
            pilot_pb2.GetJobRequest(pilot=hello, n=request.n), timeout=CALL_TIMEOUT_S, metadata=ROLE_METADATA
        )
        if got.HasField("welcome"):
            self._on_message(pilot_pb2.DispatcherMessage(welcome=got.welcome))
        for assignment in got.assignments:
            assignment.request_id = request.request_id
            self._on_message(pilot_pb2.DispatcherMessage(assignment=assignment))
        if len(got.assignments) < request.n:  # as the stream says it: no more for this request now
            no_job = pilot_pb2.NoJob(
                retry_after_s=got.retry_after_s,
                request_id=request.request_id,
                n_requested=request.n,
                n_given=len(got.assignments),
            )
            self._on_message(pilot_pb2.DispatcherMessage(no_job=no_job))
