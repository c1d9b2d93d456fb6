"""What an outside client finds on the wire without our stubs: server reflection (the standard v1
and the older v1alpha, through real reflection clients) and resumable WatchJobs event ids."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2 as R
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from ailuro.v1 import job_pb2, submission_pb2, submission_pb2_grpc
from dispatcher.server import RunningDispatcher

S = submission_pb2
OURS = {"ailuro.v1.SubmissionService", "ailuro.v1.PilotService", "ailuro.v1.FactoryService", "ailuro.v1.DDMService"}


def _v1_reflection(channel: grpc.Channel, requests: list[Any]) -> list[Any]:
    """Ask ``grpc.reflection.v1.ServerReflection`` (its messages are v1alpha's, byte for byte)."""
    call = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=R.ServerReflectionRequest.SerializeToString,
        response_deserializer=R.ServerReflectionResponse.FromString,
    )
    return list(call(iter(requests), timeout=10))


def _files(response: Any) -> list[descriptor_pb2.FileDescriptorProto]:
    assert response.WhichOneof("message_response") == "file_descriptor_response", response
    raw = response.file_descriptor_response.file_descriptor_proto
    return [descriptor_pb2.FileDescriptorProto.FromString(b) for b in raw]


def test_reflection_v1_describes_every_service(dispatcher: RunningDispatcher) -> None:
    with grpc.insecure_channel(dispatcher.address) as ch:
        listed, pilot_file, v1_file = _v1_reflection(
            ch,
            [
                R.ServerReflectionRequest(list_services=""),
                R.ServerReflectionRequest(file_containing_symbol="ailuro.v1.PilotService"),
                R.ServerReflectionRequest(file_containing_symbol="grpc.reflection.v1.ServerReflection"),
            ],
        )
    names = {s.name for s in listed.list_services_response.service}
    assert (
        names >= OURS and {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= names
    )
    files = {f.name: f for f in _files(pilot_file)}
    pilot = files["ailuro/v1/pilot.proto"]
    assert {"Welcome", "PilotLimits", "NoJob", "DebugReport"} <= {m.name for m in pilot.message_type}
    (v1,) = _files(v1_file)
    assert v1.package == "grpc.reflection.v1" and v1.service[0].method[0].name == "ServerReflectionInfo"
    assert v1.service[0].method[0].input_type == ".grpc.reflection.v1.ServerReflectionRequest"


def test_reflection_v1alpha_client_builds_messages_from_the_server(dispatcher: RunningDispatcher) -> None:
    """grpcio-reflection's own client: enough to build and send a request with no generated code."""
    with grpc.insecure_channel(dispatcher.address) as ch:
        db = ProtoReflectionDescriptorDatabase(ch)
        assert set(db.get_services()) >= OURS
        pool = descriptor_pool.DescriptorPool(db)
        service = pool.FindServiceByName("ailuro.v1.SubmissionService")
        method = service.methods_by_name["ListJobs"]
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        call = ch.unary_unary(
            "/ailuro.v1.SubmissionService/ListJobs",
            request_serializer=request_cls.SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        response = call(request_cls(page_size=5), timeout=10)  # type: ignore[call-arg]
    assert response.total == 0 and "state_counts" in response.DESCRIPTOR.fields_by_name


# --- WatchJobs resumes from an event id --------------------------------------------------------


class _Watch:
    """One WatchJobs stream read by a thread; ``take`` collects events until a condition holds."""

    def __init__(self, stub: Any, request: S.WatchJobsRequest) -> None:
        self.call = stub.WatchJobs(request)
        self.events: list[job_pb2.JobEvent] = []
        self._q: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        try:
            for event in self.call:
                self._q.put(event)
        except grpc.RpcError as exc:
            self._q.put(exc)

    def take_until(self, done: Any, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not done({e.event_id for e in self.events}):
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"watch saw {[e.event_id for e in self.events]}")
            try:
                item = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if isinstance(item, BaseException):
                raise item
            self.events.append(item)

    def close(self) -> None:
        self.call.cancel()


@pytest.fixture
def sub(dispatcher: RunningDispatcher) -> Iterator[Any]:
    with grpc.insecure_channel(dispatcher.address) as ch:
        yield submission_pb2_grpc.SubmissionServiceStub(ch)


def _event_ids(sub: Any, ids: list[int], after: int) -> set[int]:
    out: set[int] = set()
    for pid in ids:
        out |= {e.event_id for e in sub.GetJobEvents(S.GetJobEventsRequest(panda_id=pid)).events}
    return {e for e in out if e > after}


def test_a_watcher_resuming_from_its_last_event_id_sees_no_gap_and_no_duplicate(
    dispatcher: RunningDispatcher, sub: Any
) -> None:
    md = (("ailuro-user", "watcher"),)
    jobs = [job_pb2.Job(transformation="/bin/true", computing_site="LOCAL") for _ in range(4)]
    ids = list(sub.SubmitJobs(S.SubmitJobsRequest(jobs=jobs), metadata=md).panda_ids)
    start = max(_event_ids(sub, ids, 0))
    first = _Watch(sub, S.WatchJobsRequest(owner="watcher", after_event_id=start))
    sub.KillJobs(S.KillJobsRequest(panda_ids=ids[:2], reason="first half"))
    seen_first = _event_ids(sub, ids[:2], start)
    first.take_until(lambda got: seen_first <= got)
    first.close()
    last = max(e.event_id for e in first.events)
    # while nobody watches: more changes, then a marker job created after the reconnect
    sub.KillJobs(S.KillJobsRequest(panda_ids=ids[2:], reason="second half"))
    second = _Watch(sub, S.WatchJobsRequest(owner="watcher", after_event_id=last))
    (marker,) = sub.SubmitJobs(S.SubmitJobsRequest(jobs=jobs[:1]), metadata=md).panda_ids
    marker_events = _event_ids(sub, [marker], 0)
    second.take_until(lambda got: marker_events <= got)
    second.close()
    received = [e.event_id for e in first.events + second.events]
    assert len(received) == len(set(received)), "an event was sent twice"
    assert set(received) == _event_ids(sub, [*ids, marker], start), "an event was missed"
    assert all(e.event_id > last for e in second.events)
