"""The raw gRPC ceiling of this machine: an echo server and load clients, no Ailuro code.

Benchmarks print their Ailuro figures beside these, as a ratio, so a reader can tell how much of
the transport's capacity the dispatcher uses. Unary echo = one call per message; bidi echo = one
long-lived stream per client with a window of messages in flight (what pilots do).
Payloads are raw bytes through generic handlers, so no protobuf work is measured.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

_SERVICE = "ailuro.bench.Echo"
_UNARY = f"/{_SERVICE}/Unary"
_STREAM = f"/{_SERVICE}/Stream"


def _identity(b: bytes) -> bytes:
    return b


async def _unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def _stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request


def _serve(port_queue: mp.Queue, stop: mp.Event) -> None:  # type: ignore[type-arg]
    async def main() -> None:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            _SERVICE,
            {
                "Unary": grpc.unary_unary_rpc_method_handler(_unary, _identity, _identity),
                "Stream": grpc.stream_stream_rpc_method_handler(_stream, _identity, _identity),
            },
        )
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        port_queue.put(port)
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await server.stop(0)

    asyncio.run(main())


async def _unary_load(address: str, seconds: float, concurrency: int) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(_UNARY, request_serializer=_identity, response_deserializer=_identity)
        deadline = time.perf_counter() + seconds
        done = 0

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await call(b"x" * 64)
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done


async def _stream_load(address: str, seconds: float, streams: int, window: int) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        method = channel.stream_stream(_STREAM, request_serializer=_identity, response_deserializer=_identity)
        deadline = time.perf_counter() + seconds
        done = 0

        async def one_stream() -> None:
            nonlocal done
            call = method()
            for _ in range(window):
                await call.write(b"x" * 64)
            while True:
                await call.read()
                done += 1
                if time.perf_counter() >= deadline:
                    break
                await call.write(b"x" * 64)
            await call.done_writing()
            # drain what is still in flight, then the end of stream
            while await call.read() is not grpc.aio.EOF:
                pass

        await asyncio.gather(*(one_stream() for _ in range(streams)))
        return done


def _client(kind: str, address: str, seconds: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    if kind == "unary":
        n = asyncio.run(_unary_load(address, seconds, concurrency=32))
    else:
        n = asyncio.run(_stream_load(address, seconds, streams=16, window=8))
    out.put(n)


@dataclass(frozen=True, kw_only=True)
class EchoCeiling:
    """Messages per second the bare transport sustained on this machine."""

    unary_calls_per_s: float
    bidi_msgs_per_s: float


def measure_ceiling(*, seconds: float = 3.0, client_processes: int = 1) -> EchoCeiling:
    """Run the echo server in one process and clients in others; return calls/s and stream msgs/s."""
    ctx = mp.get_context("spawn")
    port_q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    stop = ctx.Event()
    server = ctx.Process(target=_serve, args=(port_q, stop), daemon=True)
    server.start()
    try:
        address = f"127.0.0.1:{port_q.get(timeout=30)}"
        rates: dict[str, float] = {}
        for kind in ("unary", "stream"):
            out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
            procs = [ctx.Process(target=_client, args=(kind, address, seconds, out)) for _ in range(client_processes)]
            t0 = time.perf_counter()
            for p in procs:
                p.start()
            total = sum(out.get(timeout=seconds + 60) for _ in procs)
            elapsed = time.perf_counter() - t0
            for p in procs:
                p.join(timeout=30)
            # process start-up is part of elapsed, so this slightly under-reports the ceiling
            rates[kind] = total / max(elapsed, seconds)
        return EchoCeiling(unary_calls_per_s=rates["unary"], bidi_msgs_per_s=rates["stream"])
    finally:
        stop.set()
        server.join(timeout=10)
        if server.is_alive():
            server.kill()


if __name__ == "__main__":
    c = measure_ceiling()
    print(f"raw gRPC echo: unary {c.unary_calls_per_s:,.0f} calls/s, bidi {c.bidi_msgs_per_s:,.0f} msgs/s")
