"""The DDM catalog per VO on a real dispatcher (token mode): a VO owns the catalog scope named after
it; another VO's datasets, files, replicas and catalog-level requests read as unknown and cannot be
written; an admin of every VO sees and acts on all; ListQueues counts only the caller's VO's jobs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ailuro.queues import QueueConfig, StorageElementConfig
from ailuro.v1 import ddm_pb2, ddm_pb2_grpc, job_pb2, submission_pb2, submission_pb2_grpc
from dispatcher.auth import issuer as embedded
from dispatcher.auth.config import AuthConfig
from dispatcher.server import RunningDispatcher

VO_A, VO_B = "compass", "atlas"
SE = "DISK"


class Caller:
    """DDM and submission stubs that send one token."""

    def __init__(self, channel: grpc.Channel, token: str) -> None:
        self.md = (("authorization", f"Bearer {token}"),)
        self.ddm = ddm_pb2_grpc.DDMServiceStub(channel)
        self.sub = submission_pb2_grpc.SubmissionServiceStub(channel)
        self.tasks = ddm_pb2_grpc.TaskServiceStub(channel)

    def call(self, method: str, request: Any) -> Any:
        return getattr(self.ddm, method)(request, metadata=self.md, timeout=30)

    def register(self, dataset: str, lfn: str) -> ddm_pb2.RegisterFilesResponse:
        entry = ddm_pb2.FileEntry(lfn=lfn, size=3, adler32="024d0127")
        return self.call(
            "RegisterFiles", ddm_pb2.RegisterFilesRequest(dataset=dataset, storage_element=SE, files=[entry])
        )

    def active_jobs(self) -> int:
        queues = self.sub.ListQueues(submission_pb2.ListQueuesRequest(), metadata=self.md, timeout=30).queues
        return sum(sum(q.status_counts.values()) for q in queues)


def refused(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


@pytest.fixture
def secured(make_dispatcher: Callable[..., RunningDispatcher], tmp_path: Path) -> RunningDispatcher:
    storage = (StorageElementConfig(name=SE, site="S", endpoints=((tmp_path / SE).as_uri(),)),)
    return make_dispatcher(
        auth=AuthConfig(mode="token", state_dir=tmp_path / "auth"),
        storage=storage,
        queues=(QueueConfig(name="SITE"),),
        ddm_workers=0,  # requests stay queued: what is listed is what was asked
    )


@pytest.fixture
def who(secured: RunningDispatcher) -> Iterator[Callable[..., Caller]]:
    state = secured.config.auth.state_dir
    assert state is not None
    key = embedded.load_key(embedded.IssuerFiles(state_dir=state))
    with grpc.insecure_channel(secured.address) as channel:

        def make(user: str, vo: str = VO_A, **kw: Any) -> Caller:
            if user == "admin":
                return Caller(channel, (state / "admin.token").read_text().strip())
            return Caller(
                channel, embedded.issue(key, issuer="ailuro-embedded", audience="ailuro", user=user, vo=vo, **kw)
            )

        yield make


def test_a_vo_writes_only_its_own_scope(who: Callable[..., Caller]) -> None:
    alice, bob = who("alice", VO_A), who("bob", VO_B)
    assert alice.call("CreateDataset", ddm_pb2.CreateDatasetRequest(dataset=f"{VO_A}:raw")).created
    for call in (
        lambda: bob.call("CreateDataset", ddm_pb2.CreateDatasetRequest(dataset=f"{VO_A}:mine")),
        lambda: bob.register(f"{VO_A}:raw", "f1"),
    ):
        code, details = refused(call)
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "dataset" in details and VO_A in details
    alice.register(f"{VO_A}:raw", "f1")
    for kind in (ddm_pb2.REQUEST_KIND_VERIFY, ddm_pb2.REQUEST_KIND_DELETE):
        req = ddm_pb2.RequestTransfersRequest(did=f"{VO_A}:f1", kind=kind, dest_se=SE)
        code, details = refused(lambda req=req: bob.call("RequestTransfers", req))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "did" in details
    # the admin of every VO writes any scope
    admin = who("admin")
    assert admin.call("CreateDataset", ddm_pb2.CreateDatasetRequest(dataset=f"{VO_B}:by-admin")).created


def test_another_vos_catalog_reads_as_unknown(who: Callable[..., Caller]) -> None:
    alice, bob, admin = who("alice", VO_A), who("bob", VO_B), who("admin")
    alice.register(f"{VO_A}:raw", "f1")
    bob.register(f"{VO_B}:raw", "g1")
    for did, method, request in (
        ("dataset", "GetDataset", ddm_pb2.GetDatasetRequest(dataset=f"{VO_A}:raw")),
        ("did", "ListReplicas", ddm_pb2.ListReplicasRequest(did=f"{VO_A}:f1")),
        ("did", "ListReplicas", ddm_pb2.ListReplicasRequest(did=f"{VO_A}:raw")),
    ):
        code, details = refused(lambda m=method, r=request: bob.call(m, r))
        assert code == grpc.StatusCode.NOT_FOUND and did in details
        assert alice.call(method, request) is not None
        assert admin.call(method, request) is not None
    unknown = refused(lambda: bob.call("GetDataset", ddm_pb2.GetDatasetRequest(dataset=f"{VO_A}:nope")))
    hidden = refused(lambda: bob.call("GetDataset", ddm_pb2.GetDatasetRequest(dataset=f"{VO_A}:raw")))
    assert unknown[0] == hidden[0] and unknown[1].replace("nope", "raw") == hidden[1]  # no existence leak

    def names(c: Caller, scope: str = "") -> set[str]:
        rows = c.call("ListDatasets", ddm_pb2.ListDatasetsRequest(scope=scope)).datasets
        return {f"{d.scope}:{d.name}" for d in rows}

    assert names(alice) == {f"{VO_A}:raw"} and names(bob) == {f"{VO_B}:raw"}
    assert names(bob, VO_A) == set()
    assert names(admin) == {f"{VO_A}:raw", f"{VO_B}:raw"}


def test_catalog_level_requests_stay_in_the_vo(who: Callable[..., Caller]) -> None:
    alice, bob, admin = who("alice", VO_A), who("bob", VO_B), who("admin")
    bob_prod = who("bprod", VO_B, roles=["production"])
    assert alice.register(f"{VO_A}:raw", "f1").verify_requests == 1  # a verify request of no job

    def files(c: Caller) -> set[str]:
        return {f"{r.scope}:{r.lfn}" for r in c.call("ListTransfers", ddm_pb2.ListTransfersRequest()).requests}

    assert files(alice) == {f"{VO_A}:f1"} and files(admin) == {f"{VO_A}:f1"}
    assert files(bob) == set()
    (rid,) = [r.request_id for r in admin.call("ListTransfers", ddm_pb2.ListTransfersRequest()).requests]
    cancel = ddm_pb2.CancelTransfersRequest(request_ids=[rid])
    assert bob_prod.call("CancelTransfers", cancel).cancelled == 0  # another VO's: like an unknown id
    assert files(alice) == {f"{VO_A}:f1"}
    assert admin.call("CancelTransfers", cancel).cancelled == 1


def test_list_queues_counts_the_callers_vo(who: Callable[..., Caller]) -> None:
    alice, bob, admin = who("alice", VO_A), who("bob", VO_B), who("admin")
    req = submission_pb2.SubmitJobsRequest(jobs=[job_pb2.Job(transformation="/bin/true")] * 2)
    alice.sub.SubmitJobs(req, metadata=alice.md, timeout=30)
    assert alice.active_jobs() == 2
    assert bob.active_jobs() == 0
    assert admin.active_jobs() == 2


def _task(input_dataset: str, output_scope: str) -> ddm_pb2.TaskSpec:
    def step(out: str, name: str) -> ddm_pb2.TaskStep:
        return ddm_pb2.TaskStep(transformation="/bin/true", output=out, output_dataset=f"{output_scope}:{name}")

    return ddm_pb2.TaskSpec(
        name="T",
        input_dataset=input_dataset,
        archive_se=SE,
        process=step("{stem}.out", "out.ds"),
        merge=step("m", "m.ds"),
    )


def test_a_task_reads_and_writes_only_its_vos_scope(who: Callable[..., Caller]) -> None:
    alice = who("alice", VO_A)
    alice.register(f"{VO_A}:raw", "f1")
    bprod = who("bprod", VO_B, roles=["production"])

    def submit(spec: ddm_pb2.TaskSpec) -> Any:
        return bprod.tasks.SubmitTask(ddm_pb2.SubmitTaskRequest(task=spec), metadata=bprod.md, timeout=30)

    code, details = refused(lambda: submit(_task(f"{VO_A}:raw", VO_B)))
    assert code == grpc.StatusCode.NOT_FOUND and "task.input_dataset" in details, details
    bprod.register(f"{VO_B}:raw", "g1")
    code, details = refused(lambda: submit(_task(f"{VO_B}:raw", VO_A)))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "task.process.output_dataset" in details
    assert submit(_task(f"{VO_B}:raw", VO_B)).task_id > 0
