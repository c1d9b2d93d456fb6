"""``PilotStream.next_out``: what is queued together goes in one ``DispatcherBatch``, within bounds.

Only for a pilot that reads batches; the Welcome always alone; the order kept; the end of the
stream (``None`` or an error) after the batch in front of it; at most ``BATCH_MESSAGES`` messages
and ``BATCH_BYTES`` bytes per batch, a message over the byte bound alone in the next write.
"""

from __future__ import annotations

import asyncio

from ailuro.v1 import pilot_pb2
from dispatcher.services import streams
from dispatcher.services.streams import PilotStream
from dispatcher.store import pilots as pstore

P = pilot_pb2


def _stream(*, reads: bool) -> PilotStream:
    return PilotStream(pilot=pstore.PilotInfo(pilot_id="p1", queue="LOCAL"), reads_batches=reads)


def _assignment(rid: int, pad: int = 0) -> P.DispatcherMessage:
    job = P.JobAssignment(request_id=rid)
    job.job.transformation = "x" * pad
    return P.DispatcherMessage(assignment=job)


def _written(stream: PilotStream) -> list[object]:
    """Every write ``next_out`` makes until the queue is drained (or the end is reached)."""

    async def run() -> list[object]:
        out: list[object] = []
        while True:
            item = await stream.next_out()
            out.append(item)
            if not isinstance(item, P.DispatcherMessage) or (stream.out.empty() and not stream._carry):
                return out

    return asyncio.run(run())


def _shape(item: object) -> object:
    if not isinstance(item, P.DispatcherMessage):
        return item
    if item.HasField("batch"):
        return [m.assignment.request_id or m.WhichOneof("msg") for m in item.batch.messages]
    return item.assignment.request_id or item.WhichOneof("msg")


def test_a_pilot_that_reads_batches_gets_what_is_queued_in_one_write_in_order() -> None:
    s = _stream(reads=True)
    s.send(P.DispatcherMessage(welcome=P.Welcome(session_id="x")))
    for rid in (1, 2, 3):
        s.send(_assignment(rid))
    s.send_acks([P.Ack(panda_id=9)])
    assert [_shape(w) for w in _written(s)] == ["welcome", [1, 2, 3, "acks"]]


def test_a_pilot_that_does_not_read_batches_gets_one_message_per_write() -> None:
    s = _stream(reads=False)
    for rid in (1, 2, 3):
        s.send(_assignment(rid))
    assert [_shape(w) for w in _written(s)] == [1, 2, 3]


def test_a_lone_message_is_not_wrapped() -> None:
    s = _stream(reads=True)
    s.send(_assignment(7))
    (only,) = _written(s)
    assert isinstance(only, P.DispatcherMessage) and only.WhichOneof("msg") == "assignment"


def test_the_end_of_the_stream_comes_after_the_batch_in_front_of_it() -> None:
    s = _stream(reads=True)
    s.send(_assignment(1))
    s.send(_assignment(2))
    s.out.put_nowait(None)
    assert [_shape(w) for w in _written(s)] == [[1, 2], None]
    boom = RuntimeError("replaced by a newer stream")
    s = _stream(reads=True)
    s.send(_assignment(1))
    s.send(_assignment(2))
    s.fail(boom)
    assert [_shape(w) for w in _written(s)] == [[1, 2], boom]


def test_a_batch_holds_at_most_batch_messages() -> None:
    s = _stream(reads=True)
    n = streams.BATCH_MESSAGES + 5
    for rid in range(1, n + 1):
        s.send(_assignment(rid))
    writes = [_shape(w) for w in _written(s)]
    assert writes == [list(range(1, streams.BATCH_MESSAGES + 1)), list(range(streams.BATCH_MESSAGES + 1, n + 1))]


def test_a_batch_stays_under_batch_bytes_and_a_larger_message_goes_alone() -> None:
    third = streams.BATCH_BYTES // 3
    s = _stream(reads=True)
    s.send(_assignment(1, pad=third))
    s.send(_assignment(2, pad=third))
    s.send(_assignment(3, pad=third))  # the three together are just over the bound
    s.send(_assignment(4, pad=streams.BATCH_BYTES + 10))  # over it alone
    s.send(_assignment(5))
    writes = _written(s)
    assert [_shape(w) for w in writes] == [[1, 2], 3, 4, 5]
    for w in writes:
        assert isinstance(w, P.DispatcherMessage)
        if w.HasField("batch"):
            assert sum(m.ByteSize() for m in w.batch.messages) <= streams.BATCH_BYTES
