"""A pilot cannot register a job's outputs in another VO's catalog scope (token mode, both databases).

A VO owns the catalog scope named after it. The scopes in a final report are the pilot's word
only: a DDM task job of VO A whose finished report names an output (or its dataset) in scope B
is refused whole (Ack REJECTED naming the field), nothing is registered in B, and the job stays
as it was, leased to its pilot, which may still report honestly. The normal report registers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import create_engine, text

from ailuro.queues import QueueConfig, StorageElementConfig
from ailuro.v1 import ddm_pb2, ddm_pb2_grpc, job_pb2, pilot_pb2, pilot_pb2_grpc, submission_pb2, submission_pb2_grpc
from dispatcher.auth import issuer as embedded
from dispatcher.auth.config import AuthConfig
from dispatcher.server import RunningDispatcher
from loadtests import consistency

J, P = job_pb2, pilot_pb2
VO_A, VO_B = "compass", "atlas"
SE, QUEUE = "DISK", "SITE"


class World:
    """A secured dispatcher with a DDM queue, a production user of VO A and a pilot token of VO A."""

    def __init__(self, d: RunningDispatcher, channel: grpc.Channel) -> None:
        state = d.config.auth.state_dir
        assert state is not None
        key = embedded.load_key(embedded.IssuerFiles(state_dir=state))

        def issue(user: str, *roles: str) -> tuple[tuple[str, str], ...]:
            tok = embedded.issue(
                key, issuer="ailuro-embedded", audience="ailuro", user=user, vo=VO_A, roles=roles, queues=[QUEUE]
            )
            return (("authorization", f"Bearer {tok}"),)

        self.d = d
        self.prod = issue("aprod", "production")
        self.pilot = issue("factory-a", "pilot")
        self.ddm = ddm_pb2_grpc.DDMServiceStub(channel)
        self.tasks = ddm_pb2_grpc.TaskServiceStub(channel)
        self.sub = submission_pb2_grpc.SubmissionServiceStub(channel)
        self.pilots = pilot_pb2_grpc.PilotServiceStub(channel)
        self.ids: list[int] = []

    def task_job(self) -> P.JobAssignment:
        """Submit a one-file task of VO A and take its processing job as the pilot."""
        entry = ddm_pb2.FileEntry(lfn="f1.raw", size=3, adler32="024d0127")
        reg = ddm_pb2.RegisterFilesRequest(dataset=f"{VO_A}:raw", storage_element=SE, files=[entry])
        self.ddm.RegisterFiles(reg, metadata=self.prod, timeout=30)

        def step(out: str, name: str) -> ddm_pb2.TaskStep:
            return ddm_pb2.TaskStep(transformation="/bin/true", output=out, output_dataset=f"{VO_A}:{name}")

        spec = ddm_pb2.TaskSpec(
            name="T",
            vo=VO_A,
            input_dataset=f"{VO_A}:raw",
            archive_se=SE,
            process=step("{stem}.out", "out"),
            merge=step("m", "m"),
        )
        got = self.tasks.SubmitTask(ddm_pb2.SubmitTaskRequest(task=spec), metadata=self.prod, timeout=30)
        self.ids += list(got.panda_ids)
        req = P.GetJobRequest(pilot=P.Hello(pilot_id="pilot-a", queue=QUEUE), n=1)
        (a,) = self.pilots.GetJob(req, metadata=self.pilot, timeout=30).assignments
        assert a.job.panda_id in got.panda_ids
        return a

    def final(self, a: P.JobAssignment, *, scope: str = "", dataset: str = "") -> P.Ack:
        """The pilot's finished report of ``a``, its output's scope or dataset replaced when given."""
        outs = [f for f in a.job.files if f.type == J.FILE_TYPE_OUTPUT]
        assert len(outs) == 1 and outs[0].scope == VO_A and outs[0].pfn
        out = J.File()
        out.CopyFrom(outs[0])
        out.size, out.adler32 = 3, "024d0127"
        out.scope = scope or out.scope
        out.dataset = dataset or out.dataset
        rep = P.JobFinal(panda_id=a.job.panda_id, lease_epoch=a.lease_epoch, status=J.JOB_STATUS_FINISHED, files=[out])
        req = P.UpdateJobRequest(pilot_id="pilot-a", finals=[rep])
        (ack,) = self.pilots.UpdateJob(req, metadata=self.pilot, timeout=30).acks
        return ack

    def status(self, pid: int) -> int:
        got = self.sub.GetJobs(submission_pb2.GetJobsRequest(panda_ids=[pid]), metadata=self.prod, timeout=30)
        return got.jobs[0].status


@pytest.fixture
def world(make_dispatcher: Callable[..., RunningDispatcher], tmp_path: Path) -> Iterator[World]:
    storage = (StorageElementConfig(name=SE, site="S", endpoints=((tmp_path / SE).as_uri(),)),)
    d = make_dispatcher(
        auth=AuthConfig(mode="token", state_dir=tmp_path / "auth"),
        storage=storage,
        queues=(QueueConfig(name=QUEUE, output_se=(SE,)),),  # inputs read in place: no staging
        ddm_workers=0,  # no verification: what the final report registered stays as it was
    )
    with grpc.insecure_channel(d.address) as channel:
        yield World(d, channel)


def catalog_rows(db_url: str, scope: str) -> tuple[int, int]:
    """``(files, datasets)`` the catalog holds in ``scope``."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            n_files = conn.execute(text("SELECT COUNT(*) FROM ddm_files WHERE scope = :s"), {"s": scope}).scalar_one()
            n_ds = conn.execute(text("SELECT COUNT(*) FROM ddm_datasets WHERE scope = :s"), {"s": scope}).scalar_one()
            return int(n_files), int(n_ds)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("change", "field"),
    [({"scope": VO_B}, "files[0].scope"), ({"dataset": f"{VO_B}:stolen"}, "files[0].dataset")],
)
def test_an_output_outside_the_jobs_vo_is_refused(world: World, db_url: str, change: Any, field: str) -> None:
    a = world.task_job()
    pid = a.job.panda_id
    before = world.status(pid)
    files_a = catalog_rows(db_url, VO_A)[0]
    ack = world.final(a, **change)
    assert ack.result == P.ACK_RESULT_REJECTED and ack.is_final, ack
    assert field in ack.message and repr(VO_B) in ack.message, ack.message
    assert catalog_rows(db_url, VO_B) == (0, 0)  # nothing registered in B
    assert catalog_rows(db_url, VO_A)[0] == files_a  # nor anything else
    assert world.status(pid) == before  # the job did not move: still the pilot's, under its lease
    res = consistency.check(db_url, submitted=world.ids)
    assert res.ok, res.summary()
    # the same pilot's honest report still counts: outputs registered in A, the job verifies them
    assert world.final(a).result == P.ACK_RESULT_OK
    assert world.status(pid) == J.JOB_STATUS_TRANSFERRING
    assert catalog_rows(db_url, VO_A)[0] == files_a + 1 and catalog_rows(db_url, VO_B) == (0, 0)
    res = consistency.check(db_url, submitted=world.ids)
    assert res.ok, res.summary()


@pytest.mark.parametrize(
    ("file_kw", "field"),
    [({"scope": VO_B}, "jobs[1].files[0].scope"), ({"dataset": f"{VO_B}:stolen"}, "jobs[1].files[0].dataset")],
)
def test_a_plain_job_aimed_at_another_vos_scope_is_refused_at_submission(
    world: World, db_url: str, file_kw: Any, field: str
) -> None:
    """A plain job on a queue with an output SE whose output would register in another VO's scope
    is refused when submitted (its pilot's report would be refused, and the job would wait for its
    lease attempt after attempt); the batch stores nothing, an honest batch goes in."""

    def job(name: str, **kw: str) -> J.Job:
        out = J.File(lfn=f"{name}.out", type=J.FILE_TYPE_OUTPUT, **kw)
        return J.Job(job_name=name, vo=VO_A, transformation="/bin/true", computing_site=QUEUE, files=[out])

    bad = submission_pb2.SubmitJobsRequest(jobs=[job("ok"), job("stray", **file_kw)])
    with pytest.raises(grpc.RpcError) as err:
        world.sub.SubmitJobs(bad, metadata=world.prod, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (err.value.details() or ""), err.value.details()
    good = submission_pb2.SubmitJobsRequest(jobs=[job("ok"), job("own", scope=VO_A, dataset=f"{VO_A}:mine")])
    got = world.sub.SubmitJobs(good, metadata=world.prod, timeout=30)
    assert len(got.panda_ids) == 2
    world.ids += list(got.panda_ids)
    res = consistency.check(db_url, submitted=world.ids)
    assert res.ok, res.summary()
