"""PanDA JobSpec/FileSpec <-> Job mapping, without a server."""

from __future__ import annotations

import datetime as dt

import pytest
from google.protobuf import timestamp_pb2

from ailuro.compat import panda
from ailuro.compat.panda import FileSpec, JobSpec, job_from_spec, spec_from_job
from ailuro.errors import InvalidArgument
from ailuro.v1 import job_pb2


def _compass_job() -> JobSpec:
    job = JobSpec()
    job.jobDefinitionID = 1234
    job.jobName = "compass_test_1"
    job.transformation = "test_transformation"
    job.destinationDBlock = "panda.destDB.abc"
    job.destinationSE = "local"
    job.currentPriority = 2000
    job.prodSourceLabel = "test"
    job.computingSite = "LOCAL"
    job.attemptNr = 1
    job.maxAttempt = 5
    job.sourceSite = "BW_COMPASS_MCORE"  # accepted, not mapped
    job.cloud = "CERN"
    job.VO = "local"
    job.taskID = "77"
    job.coreCount = 4
    job.minRamCount = 1900
    job.maxWalltime = 7200
    job.jobParameters = "--run 1 --events 10"
    log = FileSpec()
    log.lfn = f"{job.jobName}.job.log.tgz"
    log.destinationDBlock = job.destinationDBlock
    log.destinationSE = job.destinationSE
    log.type = "log"
    job.addFile(log)
    out = FileSpec()
    out.lfn = "out.root"
    out.type = "output"
    out.dataset = "user.out"
    out.checksum = "ad:0A1B2C3D"
    out.fsize = "1024"
    job.addFile(out)
    inp = FileSpec()
    inp.lfn = "in.root"
    inp.type = "input"
    inp.prodDBlock = "raw.2024"
    inp.scope = "compass"
    inp.GUID = "6a5e7c3e-0000-4000-8000-000000000001"
    inp.checksum = "md5:abc"  # dropped: no md5 in the contract
    job.addFile(inp)
    return job


def test_compass_style_jobspec_maps_to_job() -> None:
    job = job_from_spec(_compass_job())
    assert job.job_definition_id == 1234
    assert (job.job_name, job.transformation, job.job_parameters) == (
        "compass_test_1",
        "test_transformation",
        "--run 1 --events 10",
    )
    assert (job.computing_site, job.prod_source_label, job.vo) == ("LOCAL", "test", "local")
    assert (job.current_priority, job.max_attempt, job.task_id) == (2000, 5, 77)
    assert (job.cores, job.memory_mb, job.max_walltime_s) == (4, 1900, 7200)
    assert (job.destination_dblock, job.destination_se) == ("panda.destDB.abc", "local")
    log, out, inp = job.files
    assert (log.type, log.dataset, log.destination_se) == (job_pb2.FILE_TYPE_LOG, "panda.destDB.abc", "local")
    assert (out.adler32, out.size, out.dataset) == ("0a1b2c3d", 1024, "user.out")
    assert (inp.dataset, inp.scope, inp.guid, inp.adler32) == ("raw.2024", "compass", inp.guid, "")


def test_unset_and_null_are_not_sent() -> None:
    spec = JobSpec()
    spec.transformation = "x"
    spec.computingSite = "NULL"
    spec.assignedPriority = 7  # used when currentPriority is unset
    spec.jediTaskID = 9  # used when taskID is unset
    job = job_from_spec(spec)
    assert (job.computing_site, job.current_priority, job.task_id) == ("", 7, 9)


def test_misspelt_attribute_raises() -> None:
    spec = JobSpec()
    with pytest.raises(AttributeError, match="computingsite"):
        spec.computingsite = "X"
    with pytest.raises(AttributeError, match="lfnn"):
        FileSpec().lfnn = "x"
    with pytest.raises(AttributeError, match="nope"):
        _ = spec.nope


def test_bad_values_name_the_attribute() -> None:
    spec = JobSpec()
    spec.currentPriority = "high"
    with pytest.raises(InvalidArgument) as info:
        job_from_spec(spec, field="jobs[3]")
    assert info.value.field == "jobs[3].currentPriority"
    spec = JobSpec()
    f = FileSpec()
    f.lfn = "a"
    f.type = "pseudo_input"
    spec.addFile(f)
    with pytest.raises(InvalidArgument) as info:
        job_from_spec(spec)
    assert info.value.field == "jobs[0].Files[0].type"
    spec.Files[0].type = None
    with pytest.raises(InvalidArgument, match="required"):
        job_from_spec(spec)


def test_spec_from_server_job() -> None:
    job = job_from_spec(_compass_job())
    job.panda_id = 4711
    job.status = job_pb2.JOB_STATUS_FAILED
    job.attempt_nr = 2
    job.owner = "jdoe"
    job.creation_time.CopyFrom(timestamp_pb2.Timestamp(seconds=1_700_000_000))
    job.metrics.exit_code = 3
    job.metrics.max_rss_kb = 1000
    job.errors.add(component=job_pb2.ERROR_COMPONENT_DDM, code=1099, diag="stage-in failed")
    job.errors.add(component=job_pb2.ERROR_COMPONENT_PAYLOAD, code=3, diag="exit 3")
    job.files[1].status = "failed"
    spec = spec_from_job(job)
    assert (spec.PandaID, spec.jobStatus, spec.attemptNr, spec.prodUserName) == (4711, "failed", 2, "jdoe")
    assert spec.creationTime == dt.datetime(2023, 11, 14, 22, 13, 20)
    assert spec.endTime is None
    assert (spec.ddmErrorCode, spec.ddmErrorDiag) == (1099, "stage-in failed")
    assert (spec.exeErrorCode, spec.pilotErrorCode, spec.transExitCode) == (3, 0, 3)
    assert spec.maxRSS == 1000
    assert [(f.lfn, f.type) for f in spec.Files] == [
        ("compass_test_1.job.log.tgz", "log"),
        ("out.root", "output"),
        ("in.root", "input"),
    ]
    assert spec.Files[1].checksum == "ad:0a1b2c3d"
    assert spec.Files[1].status == "failed"
    assert all(f.PandaID == 4711 for f in spec.Files)
    # the spec read back can be submitted again unchanged (round trip of the mapped attributes)
    again = job_from_spec(spec)
    assert again.transformation == job.transformation and len(again.files) == 3


def test_server_address_order(monkeypatch: pytest.MonkeyPatch) -> None:
    client = panda.Client
    for name in ("AILURO_SERVER", "PANDA_URL_SSL", "PANDA_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(client, "baseURL", None)
    monkeypatch.setattr(client, "baseURLSSL", None)
    assert client.server_address() == "127.0.0.1:50051"
    monkeypatch.setenv("PANDA_URL", "http://panda.example.org:25080/server/panda")
    assert client.server_address() == "panda.example.org:25080"
    monkeypatch.setenv("AILURO_SERVER", "10.0.0.1:5000")
    assert client.server_address() == "10.0.0.1:5000"
    client.baseURL = "http://127.0.0.1:6000/server/panda"
    assert client.server_address() == "127.0.0.1:6000"


def test_https_url_is_refused_not_downgraded(monkeypatch: pytest.MonkeyPatch) -> None:
    client = panda.Client
    monkeypatch.delenv("AILURO_SERVER", raising=False)
    monkeypatch.setattr(client, "baseURL", None)
    monkeypatch.setattr(client, "baseURLSSL", "https://127.0.0.1:6000/server/panda")
    with pytest.raises(InvalidArgument, match="https://") as info:
        client.server_address()
    assert info.value.field == "baseURL"
    # the PanDA functions report it as a failed status, as PanDA's client reports errors
    status, message = client.submitJobs([JobSpec()], verbose=True)
    assert status == panda.EC_Failed and "https://" in message
    assert client.getJobStatus([1], verbose=True)[0] == panda.EC_Failed
    assert client.killJobs([1], verbose=True)[0] == panda.EC_Failed


def test_newer_panda_client_attributes_are_accepted() -> None:
    job = JobSpec()
    job.outputFileType = "root"
    job.cpu_architecture_level = "x86_64-v2"
    job.gco2_regional = 1.5
    job.gco2_global = 2.5
    job.meanCoreCount = 1
    out = FileSpec()
    out.rowID = 7
    out.row_ID = 7
    assert len(panda.JOB_ATTRIBUTES) == 127 and "outputFileType" in panda.JOB_ATTRIBUTES
