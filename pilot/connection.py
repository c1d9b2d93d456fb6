"""The pilot's one ``PilotService.Connect`` stream, kept alive across dispatcher restarts.

:class:`Connection` owns the channel and reconnects with exponential backoff and jitter. Each new
stream starts with a fresh ``Hello`` (built by the caller, so it lists the jobs held *now*),
then ``on_connect`` runs (the pilot resends spooled final reports there). Outgoing messages go
through one writer task per stream, so callers never write concurrently; :meth:`send` while
disconnected returns ``False`` and drops the message: heartbeats are periodic and final reports
live in the spool, so nothing is lost by dropping.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import grpc

from ailuro import credentials, targets
from ailuro.aio import wait_event
from ailuro.backoff import backoff_delay
from ailuro.v1 import pilot_pb2, pilot_pb2_grpc
from ailuro.vocabulary import ROLES_METADATA_KEY

log = logging.getLogger(__name__)

ROLE_METADATA = ((ROLES_METADATA_KEY, "pilot"),)
"""The pilot claims its role: a trusted-metadata (development) dispatcher believes it and holds the
pilot to the pilot service; with a token the token's role decides."""

FATAL_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
"""Stream errors that another attempt cannot fix: the pilot gives up instead of reconnecting."""


class Transport(Protocol):
    """What the pilot needs from its link to the dispatcher: :class:`Connection` (the stream) or
    :class:`pilot.unary.UnaryConnection` (unary polls)."""

    connected: asyncio.Event
    """Set while messages can be sent."""
    ever_connected: bool
    """Whether the dispatcher was reached at least once."""

    def send(self, msg: pilot_pb2.PilotMessage) -> bool:
        """Send or queue ``msg``; ``False`` (dropped) while disconnected."""
        ...

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the link up until ``stop`` is set; ``DispatcherRefused`` on a fatal refusal."""
        ...


class DispatcherRefused(Exception):
    """The dispatcher refused the pilot (bad queue, no permission, ...); retrying will not help."""


class Backoff:
    """Exponential backoff with "full jitter": a random delay up to min(max, min * 2**n)."""

    def __init__(self, *, minimum_s: float, maximum_s: float, rng: random.Random | None = None) -> None:
        self.minimum_s = minimum_s
        self.maximum_s = maximum_s
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """Delay before the next attempt; each call counts one more failure."""
        ceiling = backoff_delay(self.failures + 1, base_s=self.minimum_s, max_s=self.maximum_s)
        self.failures += 1
        return self._rng.uniform(self.minimum_s / 2, max(self.minimum_s / 2, ceiling))

    def reset(self) -> None:
        """A connection worked: start again from the minimum."""
        self.failures = 0


class Connection:
    """One logical connection to the dispatcher, made of successive streams."""

    def __init__(
        self,
        *,
        target: str,
        make_hello: Callable[[], pilot_pb2.Hello],
        on_message: Callable[[pilot_pb2.DispatcherMessage], None],
        on_connect: Callable[[], Awaitable[None]],
        backoff: Backoff,
        token_file: Path | None = None,
    ) -> None:
        self.target = target
        self._token_file = token_file
        self._make_hello = make_hello
        self._on_message = on_message
        self._on_connect = on_connect
        self._backoff = backoff
        self._outbox: asyncio.Queue[pilot_pb2.PilotMessage] | None = None
        self.connected = asyncio.Event()
        self.ever_connected = False
        self.streams_opened = 0
        self._metadata: tuple[tuple[str, str], ...] = ROLE_METADATA

    def send(self, msg: pilot_pb2.PilotMessage) -> bool:
        """Queue ``msg`` on the current stream; ``False`` (message dropped) when disconnected."""
        if self._outbox is None or not self.connected.is_set():
            return False
        self._outbox.put_nowait(msg)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Keep a stream open until ``stop`` is set; raises ``DispatcherRefused`` on a fatal status."""
        # The token is read once and sent with each Connect call's metadata (one call per stream).
        # Not through the channel's token interceptor: an intercepted stream passes every message
        # through an extra queue and task each way, a per-job cost for a call that lasts for hours.
        token = credentials.resolve_token(token_file=self._token_file)
        self._metadata = (*ROLE_METADATA, *credentials.bearer_metadata(token))
        async with targets.aio_channel(self.target, token=None, tls=credentials.tls_credentials()) as channel:
            stub = pilot_pb2_grpc.PilotServiceStub(channel)
            while not stop.is_set():
                try:
                    await self._one_stream(stub, stop)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in FATAL_CODES:
                        raise DispatcherRefused(f"{exc.code().name}: {exc.details()}") from exc
                    log.warning("stream to %s lost: %s %s", self.target, exc.code().name, exc.details())
                except (ConnectionError, grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
                    log.warning("stream to %s lost: %s", self.target, exc or type(exc).__name__)
                if stop.is_set():
                    break
                delay = self._backoff.next_delay()
                log.info("reconnecting to %s in %.1fs", self.target, delay)
                await wait_event(stop, delay)  # never asyncio.wait_for: see ailuro/aio.py

    async def _one_stream(self, stub: pilot_pb2_grpc.PilotServiceStub, stop: asyncio.Event) -> None:
        call = stub.Connect(wait_for_ready=False, metadata=self._metadata)
        outbox: asyncio.Queue[pilot_pb2.PilotMessage] = asyncio.Queue()
        writer: asyncio.Task[None] | None = None
        stopper = asyncio.create_task(stop.wait())
        try:
            hello = self._make_hello()
            hello.reads_batches = True  # this transport unpacks a DispatcherBatch (below)
            await call.write(pilot_pb2.PilotMessage(hello=hello))
            self._outbox = outbox
            self.connected.set()
            self.ever_connected = True
            self.streams_opened += 1
            writer = asyncio.create_task(self._write_loop(call, outbox))
            log.info("connected to %s", self.target)
            await self._on_connect()
            got_message = False
            while True:
                reader = asyncio.ensure_future(call.read())
                done, _ = await asyncio.wait({reader, stopper, writer}, return_when=asyncio.FIRST_COMPLETED)
                if reader not in done:
                    reader.cancel()
                    if writer in done:
                        writer.result()  # re-raise the write error
                    return  # stop requested
                msg = reader.result()
                if msg is grpc.aio.EOF:
                    raise ConnectionError("dispatcher closed the stream")
                if not got_message:
                    self._backoff.reset()  # a stream that delivers messages is a working connection
                    got_message = True
                # several messages queued together come in one write; each is handled alone, in order
                for one in msg.batch.messages if msg.HasField("batch") else (msg,):
                    self._on_message(one)
        finally:
            self.connected.clear()
            self._outbox = None
            stopper.cancel()
            if writer is not None:
                writer.cancel()
            call.cancel()

    @staticmethod
    async def _write_loop(call: grpc.aio.StreamStreamCall, outbox: asyncio.Queue[pilot_pb2.PilotMessage]) -> None:
        while True:
            await call.write(await outbox.get())
