"""DDMService and TaskService through the SDK against a real in-process dispatcher (SQLite and
PostgreSQL), with ``file://`` storage elements and the DDM agent running inside the dispatcher:
every RPC, its good path and its bad input (status code and field)."""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from ailuro import Client
from ailuro.ddm import word
from ailuro.errors import AiluroError, FailedPrecondition, InvalidArgument, NotFound
from ailuro.queues import QueueConfig, StorageElementConfig
from ailuro.v1 import ddm_pb2, ddm_pb2_grpc

pytestmark = pytest.mark.timeout(180)
RS = ddm_pb2.ReplicaState


def _put(root: Path, se: str, scope: str, lfn: str, data: bytes) -> str:
    path = root / se / scope / lfn
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def _wait(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def storage_root(tmp_path: Path) -> Path:
    root = tmp_path / "se"
    root.mkdir()
    return root


def _storage(root: Path) -> tuple[StorageElementConfig, ...]:
    return (
        StorageElementConfig(name="DISK", site="S", endpoints=((root / "DISK").as_uri(),)),
        StorageElementConfig(
            name="TAPE", site="S", kind="tape", endpoints=((root / "TAPE").as_uri(),), staging_latency_s=0.2
        ),
    )


@pytest.fixture
def ddm_dispatcher(make_dispatcher: Callable[..., Any], storage_root: Path) -> Any:
    """A dispatcher with two SEs, one queue reading from DISK, and its own DDM agent."""
    return make_dispatcher(
        storage=_storage(storage_root),
        queues=(QueueConfig(name="SITE", vos=("compass",), input_se=("DISK",), output_se=("DISK",)),),
        ddm_workers=4,
        ddm_poll_s=0.1,
        ddm_backoff_base_s=0.2,
        ddm_scratch_dir=str(storage_root.parent / "scratch"),
    )


@pytest.fixture
def quiet_dispatcher(make_dispatcher: Callable[..., Any], storage_root: Path) -> Any:
    """The same storage, but no DDM agent (requests stay queued)."""
    return make_dispatcher(storage=_storage(storage_root), queues=(QueueConfig(name="SITE"),), ddm_workers=0)


def _raises(exc_type: type[AiluroError], field: str | None, fn: Callable[[], Any]) -> AiluroError:
    with pytest.raises(exc_type) as info:
        fn()
    if field is not None:
        assert info.value.field == field, (info.value.field, str(info.value))
    return info.value


def test_storage_elements(ddm_dispatcher: Any) -> None:
    with Client(ddm_dispatcher.address) as c:
        ses = c.ddm.storage_elements()
        assert [s.name for s in ses] == ["DISK", "TAPE"]
        tape = c.ddm.storage_element("TAPE")
        assert tape.kind == ddm_pb2.STORAGE_KIND_TAPE and tape.staging_latency_s == pytest.approx(0.2)
        _raises(NotFound, "name", lambda: c.ddm.storage_element("NOPE"))
        _raises(InvalidArgument, "name", lambda: c.ddm.storage_element(""))


def test_datasets_create_list_show_and_bad_input(quiet_dispatcher: Any) -> None:
    with Client(quiet_dispatcher.address) as c:
        ds, created = c.ddm.create_dataset("user:empty.ds")
        assert created and (ds.scope, ds.name, ds.file_count) == ("user", "empty.ds", 0)
        assert c.ddm.create_dataset("user:empty.ds")[1] is False
        for i in range(3):
            c.ddm.create_dataset(f"other:ds{i}")
        datasets, truncated = c.ddm.datasets()
        assert [f"{d.scope}:{d.name}" for d in datasets] == ["other:ds0", "other:ds1", "other:ds2", "user:empty.ds"]
        assert not truncated
        some, truncated = c.ddm.datasets(scope="other", limit=2)
        assert len(some) == 2 and truncated
        assert c.ddm.dataset("user:empty.ds")[1] == []
        _raises(NotFound, "dataset", lambda: c.ddm.dataset("user:nope"))
        for bad in ("nocolon", "a:b:c", ":x", "x:", "a/b:c", "s:..", "s:a\x00b", "s:" + "x" * 300):
            _raises(InvalidArgument, "dataset", lambda bad=bad: c.ddm.create_dataset(bad))
        _raises(InvalidArgument, "limit", lambda: c.ddm.datasets(limit=5001))
        _raises(InvalidArgument, "limit", lambda: c.ddm.datasets(limit=-1))


def test_register_measured_at_the_se_and_claimed_then_verified(ddm_dispatcher: Any, storage_root: Path) -> None:
    raw = {f"r{i}.raw": os.urandom(1000 + i) for i in range(3)}
    sums = {lfn: _put(storage_root, "TAPE", "compass", lfn, data) for lfn, data in raw.items()}
    with Client(ddm_dispatcher.address) as c:
        resp = c.ddm.register_files("compass:raw.A", "TAPE", sorted(raw))
        assert [(f.lfn, f.size, f.adler32) for f in resp.files] == [
            (lfn, len(raw[lfn]), sums[lfn]) for lfn in sorted(raw)
        ]
        assert list(resp.replica_states) == [RS.REPLICA_STATE_AVAILABLE] * 3 and resp.verify_requests == 0
        # registering again is a no-op
        again = c.ddm.register_files("compass:raw.A", "TAPE", sorted(raw))
        assert [f.guid for f in again.files] == [f.guid for f in resp.files]
        # claimed size/adler32 on DISK: unverified until the agent compared them at the SE, one lie
        good = _put(storage_root, "DISK", "compass", "d1.dat", b"disk one")
        _put(storage_root, "DISK", "compass", "d2.dat", b"disk two")
        claims = [
            {"lfn": "d1.dat", "size": 8, "adler32": good},
            {"lfn": "d2.dat", "size": 8, "adler32": "0badc0de"},
        ]
        resp = c.ddm.register_files("compass:disk.A", "DISK", claims)
        assert list(resp.replica_states) == [RS.REPLICA_STATE_UNVERIFIED] * 2 and resp.verify_requests == 2

        def states() -> dict[str, str]:
            return {r.lfn: word(RS, r.state) for r in c.ddm.replicas("compass:disk.A")}

        _wait(lambda: states() == {"d1.dat": "available", "d2.dat": "bad"}, "the agent to verify the claims")
        failed = c.ddm.transfers(states=["failed"], kind="verify")
        assert [r.lfn for r in failed] == ["d2.dat"] and failed[0].last_error
        reps = c.ddm.replicas("compass:r1.raw")  # one file by scope:lfn
        assert [(r.lfn, r.storage_element, r.pfn.endswith("/compass/r1.raw")) for r in reps] == [
            ("r1.raw", "TAPE", True)
        ]
        assert c.ddm.replicas("compass:raw.A", storage_element="DISK") == []


def test_register_bad_input(quiet_dispatcher: Any, storage_root: Path) -> None:
    _put(storage_root, "DISK", "s", "there.dat", b"x")
    with Client(quiet_dispatcher.address) as c:
        reg = c.ddm.register_files
        e = _raises(InvalidArgument, "storage_element", lambda: reg("s:d", "NOPE_SE", ["there.dat"]))
        assert e.status_code == grpc.StatusCode.INVALID_ARGUMENT
        _raises(InvalidArgument, "files[0].lfn", lambda: reg("s:d", "DISK", ["../etc/passwd"]))
        _raises(InvalidArgument, "files[0].lfn", lambda: reg("s:d", "DISK", [".."]))
        _raises(InvalidArgument, "files[1].lfn", lambda: reg("s:d", "DISK", ["there.dat", "there.dat"]))
        _raises(InvalidArgument, "files[0].adler32", lambda: reg("s:d", "DISK", [{"lfn": "a", "adler32": "xyz"}]))
        _raises(InvalidArgument, "files[0].size", lambda: reg("s:d", "DISK", [{"lfn": "a", "size": 5}]))
        negative = [{"lfn": "a", "size": -1, "adler32": "00000001"}]
        _raises(InvalidArgument, "files[0].size", lambda: reg("s:d", "DISK", negative))
        _raises(InvalidArgument, "dataset", lambda: reg("bad", "DISK", ["there.dat"]))
        _raises(NotFound, "files[0].lfn", lambda: reg("s:d", "DISK", ["missing.dat"]))
        # the limits are the server's: go around the SDK's chunking with the raw stub
        stub = ddm_pb2_grpc.DDMServiceStub(grpc.insecure_channel(quiet_dispatcher.address))
        many = [ddm_pb2.FileEntry(lfn=f"f{i}", size=1, adler32="00000001") for i in range(10_001)]
        with pytest.raises(grpc.RpcError) as info:
            stub.RegisterFiles(ddm_pb2.RegisterFilesRequest(dataset="s:d", storage_element="DISK", files=many))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit is 10000" in info.value.details()
        probes = [ddm_pb2.FileEntry(lfn=f"f{i}") for i in range(101)]
        with pytest.raises(grpc.RpcError) as info:
            stub.RegisterFiles(ddm_pb2.RegisterFilesRequest(dataset="s:d", storage_element="DISK", files=probes))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # the same name never means two contents; and nothing of a refused call was stored
        reg("s:d", "DISK", ["there.dat"])
        other = [{"lfn": "there.dat", "size": 1, "adler32": "00000002"}]
        _raises(InvalidArgument, "files", lambda: reg("s:d", "DISK", other))
        assert [f.lfn for f in c.ddm.dataset("s:d")[1]] == ["there.dat"]


def test_bulk_register_thousands_in_one_call(quiet_dispatcher: Any) -> None:
    n = 3000
    files = [{"lfn": f"evt{i:05d}.root", "size": i, "adler32": f"{i:08x}"} for i in range(n)]
    with Client(quiet_dispatcher.address, timeout=120) as c:
        resp = c.ddm.register_files("mc:bulk.v1", "DISK", files)
        assert len(resp.files) == n and resp.verify_requests == n
        ds, listed = c.ddm.dataset("mc:bulk.v1")  # fetched in pages of 5,000 at most
        assert ds.file_count == n and [f.lfn for f in listed] == [f["lfn"] for f in files]
        assert len(c.ddm.transfers(states=["queued"], limit=5000)) == n


def test_transfer_requests_staging_and_cancel(ddm_dispatcher: Any, storage_root: Path) -> None:
    data = {f"t{i}.raw": os.urandom(2000) for i in range(2)}
    for lfn, blob in data.items():
        _put(storage_root, "TAPE", "compass", lfn, blob)
    with Client(ddm_dispatcher.address) as c:
        c.ddm.register_files("compass:raw.T", "TAPE", sorted(data))
        # refused at once: unknown SE, staging on disk, nothing to verify, unknown names, bad kind
        _raises(InvalidArgument, "dest_se", lambda: c.ddm.replicate("compass:raw.T", to="NOPE_SE"))
        _raises(InvalidArgument, "source_se", lambda: c.ddm.replicate("compass:raw.T", to="DISK", source_se="X"))
        _raises(InvalidArgument, "dest_se", lambda: c.ddm.stage("compass:raw.T", se="DISK"))
        _raises(FailedPrecondition, "did", lambda: c.ddm.verify("compass:raw.T", se="DISK"))
        _raises(NotFound, "did", lambda: c.ddm.replicate("compass:nope", to="DISK"))
        _raises(InvalidArgument, "kind", lambda: c.ddm.request("teleport", "compass:raw.T", "DISK"))
        stub = ddm_pb2_grpc.DDMServiceStub(grpc.insecure_channel(ddm_dispatcher.address))
        with pytest.raises(grpc.RpcError) as info:
            stub.RequestTransfers(ddm_pb2.RequestTransfersRequest(kind=99, did="compass:raw.T", dest_se="DISK"))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # a copy from tape to disk: staged first, then copied and verified there
        ids = c.ddm.replicate("compass:raw.T", to="DISK")
        assert len(ids) == 2 and c.ddm.replicate("compass:raw.T", to="DISK") == ids  # open requests reused

        def on_disk() -> bool:
            return {(r.lfn, word(RS, r.state)) for r in c.ddm.replicas("compass:raw.T", storage_element="DISK")} == {
                (lfn, "available") for lfn in data
            }

        _wait(on_disk, "both files copied to DISK")
        done = {r.request_id: word(ddm_pb2.RequestState, r.state) for r in c.ddm.transfers(kind="transfer")}
        assert all(done[i] == "done" for i in ids)
        assert {word(ddm_pb2.RequestKind, r.kind) for r in c.ddm.transfers(states=["done", "failed"])} >= {"stage"}
        assert (storage_root / "DISK" / "compass" / "t0.raw").read_bytes() == data["t0.raw"]
        # list filters and cancel
        _raises(InvalidArgument, "states[0]", lambda: c.ddm.transfers(states=["bogus"]))
        _raises(InvalidArgument, "limit", lambda: c.ddm.transfers(limit=9999))
        _raises(InvalidArgument, "request_ids[0]", lambda: c.ddm.cancel([0]))
        with pytest.raises(grpc.RpcError) as info:
            stub.ListTransfers(ddm_pb2.ListTransfersRequest(states=[42]))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert c.ddm.cancel(ids) == 0  # final requests are left alone


def test_cancel_queued_requests(quiet_dispatcher: Any, storage_root: Path) -> None:
    _put(storage_root, "DISK", "s", "q.dat", b"queued")
    with Client(quiet_dispatcher.address) as c:
        c.ddm.register_files("s:q", "DISK", ["q.dat"])
        ids = c.ddm.replicate("s:q.dat", to="TAPE")
        assert c.ddm.cancel(ids, reason="changed my mind") == 1
        (req,) = [r for r in c.ddm.transfers(states=["cancelled"]) if r.request_id == ids[0]]
        assert req.last_error == "changed my mind"


def _task(**over: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "name": "T.api",
        "vo": "compass",
        "input_dataset": "compass:raw.K",
        "process": {"transformation": "/bin/true", "output": "{stem}.mdst", "output_dataset": "compass:mdst.K"},
        "merge": {"transformation": "/bin/true", "output": "K.merged", "output_dataset": "compass:merged.K"},
        "archive_se": "TAPE",
    }
    for key, value in over.items():
        if "." in key:
            step, field = key.split(".")
            task[step] = {**task[step], field: value}
        else:
            task[key] = value
    return task


def test_tasks_submit_list_show_and_bad_input(quiet_dispatcher: Any, storage_root: Path) -> None:
    for i in range(2):
        _put(storage_root, "DISK", "compass", f"k{i}.raw", b"k%d" % i)
    with Client(quiet_dispatcher.address, identity="prod") as c:
        c.ddm.register_files("compass:raw.K", "DISK", ["k0.raw", "k1.raw"])
        sub = c.tasks.submit
        # refused like SubmitJobs refuses the jobs it would make, before anything is stored
        _raises(InvalidArgument, "task.process.transformation", lambda: sub(_task(**{"process.transformation": ""})))
        _raises(InvalidArgument, "task.merge.transformation", lambda: sub(_task(**{"merge.transformation": " "})))
        _raises(InvalidArgument, "task.process.output", lambda: sub(_task(**{"process.output": "{stem.__class__}"})))
        huge = _task(**{"process.parameters": "{0:>99999999}"})
        _raises(InvalidArgument, "task.process.parameters", lambda: sub(huge))
        path = _task(**{"process.output": "a/{stem}"})
        _raises(InvalidArgument, "task.process.jobs[0].files[1].lfn", lambda: sub(path))
        _raises(InvalidArgument, "task.merge.job.files[1].lfn", lambda: sub(_task(**{"process.output": "same"})))
        _raises(InvalidArgument, "task.process.jobs[0].computing_site", lambda: sub(_task(**{"process.site": "NOPE"})))
        _raises(InvalidArgument, "task.archive_se", lambda: sub(_task(archive_se="NOPE_SE")))
        _raises(NotFound, "task.input_dataset", lambda: sub(_task(input_dataset="compass:nope")))
        _raises(InvalidArgument, "task.name", lambda: sub(_task(name="")))
        _raises(InvalidArgument, "task", lambda: sub({**_task(), "colour": "red"}))
        assert c.tasks.list() == []
        task_id, ids = sub(_task())
        assert len(ids) == 2
        got = c.tasks.get(task_id)
        state = word(ddm_pb2.TaskState, got.task.state)
        assert (got.task.name, got.task.owner, state) == ("T.api", "prod", "processing")
        assert got.task.spec.process.output == "{stem}.mdst"
        assert [j.job_name for j in got.jobs] == ["T.api.process.k0", "T.api.process.k1"]
        assert [t.task_id for t in c.tasks.list(states=["processing"], owner="prod")] == [task_id]
        assert c.tasks.list(states=["done"]) == []
        _raises(NotFound, "task_id", lambda: c.tasks.get(task_id + 100))
        _raises(InvalidArgument, "task_id", lambda: c.tasks.get(0))
        _raises(InvalidArgument, "states[0]", lambda: c.tasks.list(states=["sleeping"]))
        jobs = c.get(ids)
        assert {j.task_id for j in jobs} == {task_id} and {j.computing_site for j in jobs} == {"SITE"}


def test_dataset_and_replica_pages(quiet_dispatcher: Any) -> None:
    files = [{"lfn": f"p{i}.dat", "size": i, "adler32": f"{i:08x}"} for i in range(5)]
    with Client(quiet_dispatcher.address) as c:
        c.ddm.register_files("pg:five", "DISK", files)
        stub = ddm_pb2_grpc.DDMServiceStub(grpc.insecure_channel(quiet_dispatcher.address))
        seen, after, pages = [], "", 0
        while True:
            resp = stub.GetDataset(ddm_pb2.GetDatasetRequest(dataset="pg:five", limit=2, after_lfn=after))
            seen += [f.lfn for f in resp.files]
            pages += 1
            after = resp.next_after_lfn
            if not after:
                break
        assert seen == [f["lfn"] for f in files] and pages == 3
        resp = stub.ListReplicas(ddm_pb2.ListReplicasRequest(did="pg:five", limit=3))
        assert [r.lfn for r in resp.replicas] == ["p0.dat", "p1.dat", "p2.dat"] and resp.next_after_lfn == "p2.dat"
        rest = stub.ListReplicas(ddm_pb2.ListReplicasRequest(did="pg:five", limit=3, after_lfn="p2.dat"))
        assert [r.lfn for r in rest.replicas] == ["p3.dat", "p4.dat"] and not rest.next_after_lfn
        assert {word(RS, r.state) for r in c.ddm.replicas("pg:five")} == {"unverified"}
        with pytest.raises(grpc.RpcError) as info:
            stub.GetDataset(ddm_pb2.GetDatasetRequest(dataset="pg:five", limit=5001))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        _raises(InvalidArgument, "storage_element", lambda: c.ddm.replicas("pg:five", storage_element="NOPE"))
        _raises(NotFound, "did", lambda: c.ddm.replicas("pg:none"))


def test_concurrent_registrations_of_the_same_files_both_succeed(quiet_dispatcher: Any) -> None:
    import threading

    files = [{"lfn": f"c{i:04d}.dat", "size": i, "adler32": f"{i:08x}"} for i in range(500)]
    results: list[Any] = []
    errors: list[BaseException] = []

    def register() -> None:
        try:
            with Client(quiet_dispatcher.address) as c:
                results.append(c.ddm.register_files("race:same", "DISK", files))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=register) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    guids = {tuple(f.guid for f in r.files) for r in results}
    assert len(results) == 3 and len(guids) == 1  # one registration, seen three times
    with Client(quiet_dispatcher.address) as c:
        assert c.ddm.dataset("race:same")[0].file_count == 500
        assert len(c.ddm.transfers(kind="verify", limit=5000)) == 500  # open verify requests were reused
