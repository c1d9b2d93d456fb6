"""WatchJobs (also across two dispatchers on one database) and FactoryService."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from ailuro.v1 import factory_pb2, factory_pb2_grpc, job_pb2, submission_pb2, submission_pb2_grpc
from dispatcher.server import RunningDispatcher

J = job_pb2
S = submission_pb2
F = factory_pb2


class Watch:
    """A WatchJobs call consumed by a thread into a queue."""

    def __init__(self, address: str, req: S.WatchJobsRequest) -> None:
        self.channel = grpc.insecure_channel(address)
        self.call = submission_pb2_grpc.SubmissionServiceStub(self.channel).WatchJobs(req)
        self.events: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        try:
            for e in self.call:
                self.events.put(e)
        except grpc.RpcError as exc:
            self.events.put(exc)

    def take(self, n: int, timeout: float = 10.0) -> list[Any]:
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            item = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(item, BaseException):
                raise item
            out.append(item)
        return out

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(5)
        self.channel.close()


def test_watch_sees_changes_made_through_another_dispatcher(make_dispatcher: Callable[..., RunningDispatcher]) -> None:
    d1, d2 = make_dispatcher(), make_dispatcher()
    w = Watch(d2.address, S.WatchJobsRequest(owner="wally"))
    try:
        time.sleep(0.3)  # let the watch register before the change
        with grpc.insecure_channel(d1.address) as ch:
            sub = submission_pb2_grpc.SubmissionServiceStub(ch)
            sub.SubmitJobs(S.SubmitJobsRequest(jobs=[J.Job(transformation="t")]))  # anonymous: filtered out
            (pid,) = sub.SubmitJobs(
                S.SubmitJobsRequest(jobs=[J.Job(transformation="t")]), metadata=(("ailuro-user", "wally"),)
            ).panda_ids
            sub.KillJobs(S.KillJobsRequest(panda_ids=[pid]))
        evs = w.take(3)
        assert [(e.panda_id, e.to_status) for e in evs] == [
            (pid, J.JOB_STATUS_DEFINED),
            (pid, J.JOB_STATUS_ACTIVATED),
            (pid, J.JOB_STATUS_CANCELLED),
        ]
        assert evs[0].event_id < evs[1].event_id < evs[2].event_id
    finally:
        w.close()


def test_watch_replays_history_after_an_event_id(dispatcher: RunningDispatcher) -> None:
    with grpc.insecure_channel(dispatcher.address) as ch:
        sub = submission_pb2_grpc.SubmissionServiceStub(ch)
        a, b = sub.SubmitJobs(
            S.SubmitJobsRequest(jobs=[J.Job(transformation="t"), J.Job(transformation="t")])
        ).panda_ids
        first = sub.GetJobEvents(S.GetJobEventsRequest(panda_id=a)).events[0]
        w = Watch(dispatcher.address, S.WatchJobsRequest(panda_ids=[b], after_event_id=first.event_id))
        try:
            replay = w.take(2)
            assert [(e.panda_id, e.to_status) for e in replay] == [
                (b, J.JOB_STATUS_DEFINED),
                (b, J.JOB_STATUS_ACTIVATED),
            ]
            sub.KillJobs(S.KillJobsRequest(panda_ids=[a, b]))
            (live,) = w.take(1)
            assert (live.panda_id, live.to_status) == (b, J.JOB_STATUS_CANCELLED)
            assert w.events.empty()
        finally:
            w.close()


def test_watch_never_delivers_events_from_before_its_start(make_dispatcher: Callable[..., RunningDispatcher]) -> None:
    # a slow tail (2 s) lags behind the table: a new watcher must still not see older events
    d = make_dispatcher(command_poll_s=2.0)
    with grpc.insecure_channel(d.address) as ch:
        sub = submission_pb2_grpc.SubmissionServiceStub(ch)
        time.sleep(2.5)  # let the idle tail move its start point once, before the events below
        (a,) = sub.SubmitJobs(S.SubmitJobsRequest(jobs=[J.Job(transformation="t")])).panda_ids
        sub.KillJobs(S.KillJobsRequest(panda_ids=[a]))
        _defined, activated, cancelled = sub.GetJobEvents(S.GetJobEventsRequest(panda_id=a)).events
        replay = Watch(d.address, S.WatchJobsRequest(panda_ids=[a], after_event_id=activated.event_id))
        live = Watch(d.address, S.WatchJobsRequest(panda_ids=[a]))
        try:
            (first,) = replay.take(1)
            assert first.event_id == cancelled.event_id
            (b,) = sub.SubmitJobs(S.SubmitJobsRequest(jobs=[J.Job(transformation="t")])).panda_ids
            sub.KillJobs(S.KillJobsRequest(panda_ids=[a, b]))  # a is final: no new event for it
            time.sleep(4.5)  # two tail periods: anything old would have arrived by now
            assert replay.events.empty()
            assert live.events.empty()
        finally:
            replay.close()
            live.close()


def test_watch_bad_input(dispatcher: RunningDispatcher) -> None:
    with grpc.insecure_channel(dispatcher.address) as ch:
        sub = submission_pb2_grpc.SubmissionServiceStub(ch)
        for req, field in [
            (S.WatchJobsRequest(panda_ids=[0]), "panda_ids[0]"),
            (S.WatchJobsRequest(task_id=-1), "task_id"),
            (S.WatchJobsRequest(after_event_id=-5), "after_event_id"),
        ]:
            with pytest.raises(grpc.RpcError) as info:
                list(sub.WatchJobs(req, timeout=10))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert ("ailuro-field", field) in tuple(info.value.trailing_metadata())


FACTORY_MD = (("ailuro-factory-id", "f1"), ("ailuro-factory-secret", "secret-of-f1"))
"""A factory's id and secret, as ``backends.factory`` sends them."""


def test_factory_workers_and_queue_stats(dispatcher: RunningDispatcher, raw_pilot: Callable[..., Any]) -> None:
    with grpc.insecure_channel(dispatcher.address) as ch:
        fac = factory_pb2_grpc.FactoryServiceStub(ch)
        sub = submission_pb2_grpc.SubmissionServiceStub(ch)
        workers = [
            F.Worker(worker_id=f"w{i}", queue="LOCAL", backend="local", factory_id="f1", batch_id=f"{100 + i}")
            for i in range(3)
        ]
        fac.RegisterWorkers(F.RegisterWorkersRequest(workers=workers), metadata=FACTORY_MD)
        fac.RegisterWorkers(F.RegisterWorkersRequest(workers=workers[:1]), metadata=FACTORY_MD)  # idempotent
        fac.UpdateWorkers(
            F.UpdateWorkersRequest(
                updates=[
                    F.WorkerUpdate(worker_id="w0", state=F.WORKER_STATE_RUNNING),
                    F.WorkerUpdate(worker_id="w1", state=F.WORKER_STATE_RUNNING),
                    F.WorkerUpdate(worker_id="w2", state=F.WORKER_STATE_FAILED, diag="exit 1"),
                ]
            ),
            metadata=FACTORY_MD,
        )
        ids = sub.SubmitJobs(S.SubmitJobsRequest(jobs=[J.Job(transformation="t") for _ in range(3)])).panda_ids
        busy = raw_pilot(dispatcher.address, pilot_id="w0")
        busy.request(1)
        pid = busy.expect("assignment").job.panda_id
        idle = raw_pilot(dispatcher.address, pilot_id="w1")
        idle.request(1)
        idle.expect("assignment")
        idle.final(idle_pid := ids[1], 1, J.JOB_STATUS_FINISHED)
        idle.ack_for(idle_pid, final=True)
        (st,) = fac.GetQueueStats(F.GetQueueStatsRequest(queues=["LOCAL"])).queues
        assert (st.queue, st.activated_jobs, st.assigned_jobs, st.running_jobs) == ("LOCAL", 1, 0, 1)
        assert (st.connected_pilots, st.idle_pilots) == (2, 1)
        assert dict(st.workers) == {"running": 2}
        listed = {w.worker_id: w for w in fac.ListWorkers(F.ListWorkersRequest(queue="LOCAL")).workers}
        assert set(listed) == {"w0", "w1"} and listed["w0"].current_panda_id == pid
        assert listed["w1"].current_panda_id == 0 and listed["w0"].state == F.WORKER_STATE_RUNNING
        everything = fac.ListWorkers(F.ListWorkersRequest(include_final=True, factory_id="f1")).workers
        assert {w.worker_id: w.diag for w in everything}["w2"] == "exit 1"
        assert sub.GetJobs(S.GetJobsRequest(panda_ids=[pid])).jobs[0].pilot_id == "w0"


@pytest.mark.parametrize(
    ("call", "request_", "code", "field"),
    [
        ("RegisterWorkers", F.RegisterWorkersRequest(), grpc.StatusCode.INVALID_ARGUMENT, "workers"),
        (
            "RegisterWorkers",
            F.RegisterWorkersRequest(workers=[F.Worker(worker_id="", queue="LOCAL")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "workers[0].worker_id",
        ),
        (
            "RegisterWorkers",
            F.RegisterWorkersRequest(workers=[F.Worker(worker_id="x", queue="MARS")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "workers[0].queue",
        ),
        (
            "RegisterWorkers",
            F.RegisterWorkersRequest(workers=[F.Worker(worker_id="x", queue="LOCAL")] * 2),
            grpc.StatusCode.INVALID_ARGUMENT,
            "workers[1].worker_id",
        ),
        ("UpdateWorkers", F.UpdateWorkersRequest(), grpc.StatusCode.INVALID_ARGUMENT, "updates"),
        (
            "UpdateWorkers",
            F.UpdateWorkersRequest(updates=[F.WorkerUpdate(worker_id="x")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "updates[0].state",
        ),
        (
            "UpdateWorkers",
            F.UpdateWorkersRequest(updates=[F.WorkerUpdate(worker_id="ghost", state=F.WORKER_STATE_IDLE)]),
            grpc.StatusCode.NOT_FOUND,
            "updates[0].worker_id",
        ),
        ("ListWorkers", F.ListWorkersRequest(limit=-1), grpc.StatusCode.INVALID_ARGUMENT, "limit"),
        ("GetQueueStats", F.GetQueueStatsRequest(queues=["MARS"]), grpc.StatusCode.INVALID_ARGUMENT, "queues[0]"),
    ],
)
def test_factory_bad_input(dispatcher: RunningDispatcher, call: str, request_: Any, code: Any, field: str) -> None:
    with grpc.insecure_channel(dispatcher.address) as ch:
        with pytest.raises(grpc.RpcError) as info:
            getattr(factory_pb2_grpc.FactoryServiceStub(ch), call)(request_, metadata=FACTORY_MD)
        assert info.value.code() == code
        assert ("ailuro-field", field) in tuple(info.value.trailing_metadata())
