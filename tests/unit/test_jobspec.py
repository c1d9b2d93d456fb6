"""The dict/YAML job builder: keys, aliases, types, defaults, file lists, and the JSON view of jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import timestamp_pb2

from ailuro.errors import InvalidArgument
from ailuro.jobspec import (
    FINAL_STATUSES,
    SERVER_JOB_KEYS,
    job_from_dict,
    job_to_dict,
    jobs_for_each_line,
    jobs_from_document,
    load_jobs_file,
    message_to_dict,
    parse_time,
    status_name,
    status_value,
)
from ailuro.v1 import job_pb2, submission_pb2


def test_full_job_from_dict() -> None:
    job = job_from_dict(
        {
            "job_name": "phast_1",
            "transformation": "phast",
            "job_parameters": "-u 1 in.root",
            "computing_site": "CERN_LSF",
            "current_priority": 1000,
            "prod_source_label": "managed",
            "vo": "compass",
            "task_id": 42,
            "job_definition_id": 7,
            "cores": 2,
            "memory_mb": 2000,
            "max_walltime_s": 3600,
            "max_attempt": 5,
            "environment": {"OMP_NUM_THREADS": 4, "MODE": "fast"},
            "destination_se": "EOS",
            "destination_dblock": "user.jdoe.out",
            "processing_type": "reco",
            "files": [
                {"lfn": "in.root", "type": "input", "dataset": "raw", "scope": "compass", "size": 10},
                {"lfn": "out.root", "type": "OUTPUT", "adler32": "0a1b2c3d", "destination_se": "CASTOR"},
                {"lfn": "phast_1.job.log.tgz", "type": "log"},
            ],
        }
    )
    assert job.job_name == "phast_1"
    assert job.current_priority == 1000
    assert job.task_id == 42
    assert dict(job.environment) == {"OMP_NUM_THREADS": "4", "MODE": "fast"}
    assert [f.type for f in job.files] == [job_pb2.FILE_TYPE_INPUT, job_pb2.FILE_TYPE_OUTPUT, job_pb2.FILE_TYPE_LOG]
    assert job.files[0].size == 10
    assert job.files[1].destination_se == "CASTOR"
    assert job.processing_type == "reco"


def test_aliases_match_cli_flags() -> None:
    job = job_from_dict(
        {"name": "n", "site": "S", "priority": 3, "label": "test", "params": "-x", "env": {"A": "1"}, "walltime_s": 9}
    )
    assert (job.job_name, job.computing_site, job.current_priority) == ("n", "S", 3)
    assert (job.prod_source_label, job.job_parameters, job.max_walltime_s) == ("test", "-x", 9)
    assert dict(job.environment) == {"A": "1"}


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"transformation": "x", "transformaton": "y"}, "jobs[2].transformaton", "unknown key"),
        ({"transformation": "x", "status": "running"}, "jobs[2].status", "set by the server"),
        ({"transformation": "x", "panda_id": 5}, "jobs[2].panda_id", "set by the server"),
        ({"transformation": "x", "priority": "high"}, "jobs[2].current_priority", "integer"),
        ({"transformation": "x", "priority": True}, "jobs[2].current_priority", "integer"),
        ({"transformation": "x", "cores": -1}, "jobs[2].cores", "between"),
        ({"transformation": "x", "memory_mb": 2**31}, "jobs[2].memory_mb", "between"),
        ({"transformation": "x", "name": "a", "job_name": "b"}, "jobs[2].job_name", "twice"),
        ({"transformation": ["a"]}, "jobs[2].transformation", "string"),
        ({"transformation": "x", "environment": ["A=1"]}, "jobs[2].environment", "mapping"),
        ({"transformation": "x", "environment": {"A": {"b": 1}}}, "jobs[2].environment.A", "string"),
        ({"transformation": "x", "files": {"lfn": "a"}}, "jobs[2].files", "list"),
        ({"transformation": "x", "files": [{"lfn": "a", "type": "inptu"}]}, "jobs[2].files[0].type", "one of"),
        ({"transformation": "x", "files": [{"lfn": "a"}]}, "jobs[2].files[0].type", "required"),
        ({"transformation": "x", "files": [{"type": "input"}]}, "jobs[2].files[0].lfn", "required"),
        (
            {"transformation": "x", "files": [{"lfn": "a", "type": "log", "md5": "z"}]},
            "jobs[2].files[0].md5",
            "unknown",
        ),
        (
            {"transformation": "x", "files": [{"lfn": "a", "type": "log", "size": "big"}]},
            "jobs[2].files[0].size",
            "int",
        ),
    ],
)
def test_bad_keys_and_values_name_the_field(data: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        job_from_dict(data, field="jobs[2]")
    assert info.value.field == field
    assert words in info.value.message


def test_every_server_field_is_refused() -> None:
    # the split between user and server fields is derived from the proto: check it stays sensible
    assert {"panda_id", "status", "owner", "attempt_nr", "creation_time", "errors", "metrics"} <= SERVER_JOB_KEYS
    assert "transformation" not in SERVER_JOB_KEYS


def test_numeric_strings_are_accepted_for_integers() -> None:
    assert job_from_dict({"priority": " 12 ", "task_id": str(2**40)}).task_id == 2**40


def test_document_with_defaults_merges_environment_and_job_keys_win() -> None:
    doc = {
        "defaults": {"transformation": "phast", "site": "CERN", "env": {"A": "1", "B": "2"}, "priority": 5},
        "jobs": [{"name": "a"}, {"name": "b", "site": "JINR", "env": {"B": "3"}}],
    }
    a, b = jobs_from_document(doc)
    assert (a.transformation, a.computing_site, a.current_priority) == ("phast", "CERN", 5)
    assert (b.computing_site, dict(b.environment)) == ("JINR", {"A": "1", "B": "3"})


def test_document_overrides_beat_defaults_not_job_keys() -> None:
    doc = {"defaults": {"site": "CERN", "priority": 1}, "jobs": [{"transformation": "x", "priority": 9}]}
    (job,) = jobs_from_document(doc, overrides={"computing_site": "JINR", "current_priority": 4})
    assert (job.computing_site, job.current_priority) == ("JINR", 9)


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ([], "jobs"),
        ({"jobs": []}, "jobs"),
        ({"job": [{}]}, ""),
        ({"defaults": [1], "jobs": [{}]}, "defaults"),
        ({"defaults": {"sitee": "x"}, "jobs": [{}]}, "defaults.sitee"),
        ([{"transformation": "x"}, "not a mapping"], "jobs[1]"),
    ],
)
def test_bad_documents(doc: object, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        jobs_from_document(doc)
    assert info.value.field == field


def test_load_yaml_and_json_files(tmp_path: Path) -> None:
    yml = tmp_path / "jobs.yaml"
    yml.write_text("defaults:\n  transformation: echo\njobs:\n  - name: one\n  - name: two\n    params: hi\n")
    assert [j.job_name for j in load_jobs_file(yml)] == ["one", "two"]
    js = tmp_path / "jobs.json"
    js.write_text(json.dumps([{"transformation": "echo", "name": "j"}]))
    assert load_jobs_file(js)[0].job_name == "j"
    broken = tmp_path / "broken.yaml"
    broken.write_text("jobs: [unclosed\n")
    with pytest.raises(InvalidArgument, match="not valid YAML"):
        load_jobs_file(broken)


def test_each_line_makes_one_job_per_file() -> None:
    lines = ["# megaDST list", "", "mDST.1.root", "  mDST.2.root  "]
    jobs = jobs_for_each_line(lines, template={"transformation": "phast", "params": "-u 1 {}", "name": "ph"})
    assert [j.job_name for j in jobs] == ["ph_1", "ph_2"]
    assert jobs[1].job_parameters == "-u 1 mDST.2.root"
    assert [(f.lfn, f.type, f.pfn) for f in jobs[0].files] == [("mDST.1.root", job_pb2.FILE_TYPE_INPUT, "")]


def test_each_line_paths_and_urls_become_pfns() -> None:
    lines = ["/eos/compass/mDST.1.root", "root://eos.cern.ch//compass/p1/mDST.2.root?svcClass=x"]
    jobs = jobs_for_each_line(lines, template={"transformation": "phast", "params": "{lfn} {pfn}"})
    assert [(f.lfn, f.pfn) for j in jobs for f in j.files] == [("mDST.1.root", lines[0]), ("mDST.2.root", lines[1])]
    assert jobs[0].job_parameters == "mDST.1.root /eos/compass/mDST.1.root"
    with pytest.raises(InvalidArgument) as info:
        jobs_for_each_line(["ok.root", "root://eos.cern.ch/"], template={"transformation": "x"})
    assert info.value.field == "each_line[1]"


def test_each_line_lfn_placeholder_and_default_name() -> None:
    (job,) = jobs_for_each_line(["a.root"], template={"transformation": "/opt/bin/phast", "params": "{lfn} -o out"})
    assert (job.job_name, job.job_parameters) == ("phast_1", "a.root -o out")


def test_each_line_empty_list_is_an_error() -> None:
    with pytest.raises(InvalidArgument) as info:
        jobs_for_each_line(["", "# nothing"], template={"transformation": "x"})
    assert info.value.field == "each_line"


def test_status_names_round_trip() -> None:
    for value in job_pb2.JobStatus.values():
        if value:
            assert status_value(status_name(value)) == value
    assert status_name(job_pb2.JOB_STATUS_RUNNING) == "running"
    assert status_name(0) == ""
    with pytest.raises(InvalidArgument, match="one of: defined"):
        status_value("runing")
    assert {status_name(s) for s in FINAL_STATUSES} == {"finished", "failed", "cancelled", "closed"}


def test_job_to_dict_is_json_ready_with_names_and_numbers() -> None:
    job = job_from_dict({"transformation": "x", "files": [{"lfn": "a", "type": "log"}]})
    job.panda_id = 2**40
    job.status = job_pb2.JOB_STATUS_FAILED
    job.creation_time.CopyFrom(timestamp_pb2.Timestamp(seconds=1_700_000_000))
    job.errors.add(component=job_pb2.ERROR_COMPONENT_DDM, code=1099, diag="stage-in failed")
    data = json.loads(json.dumps(job_to_dict(job)))
    assert data["panda_id"] == 2**40
    assert data["status"] == "failed"
    assert data["files"][0]["type"] == "log"
    assert data["creation_time"] == "2023-11-14T22:13:20+00:00"
    assert data["end_time"] is None
    assert data["errors"] == [{"component": "ddm", "code": 1099, "diag": "stage-in failed"}]
    # a dict from job_to_dict, stripped of server fields, builds the same job again
    user_part = {k: v for k, v in data.items() if k not in SERVER_JOB_KEYS}
    user_part["files"] = [{k: v for k, v in f.items() if k not in ("status", "pfn")} for f in user_part["files"]]
    rebuilt = job_from_dict(user_part)
    assert rebuilt.transformation == "x" and rebuilt.files[0].lfn == "a"


def test_message_to_dict_handles_maps_of_numbers() -> None:
    info = submission_pb2.QueueInfo(name="Q", status_counts={"running": 3}, vos=["compass"])
    assert message_to_dict(info)["status_counts"] == {"running": 3}
    assert message_to_dict(info)["vos"] == ["compass"]


def test_parse_time() -> None:
    assert parse_time("2026-05-01").isoformat() == "2026-05-01T00:00:00+00:00"
    assert parse_time("2026-05-01T12:00+02:00").utcoffset() is not None
    with pytest.raises(InvalidArgument) as info:
        parse_time("yesterday", field="--since")
    assert info.value.field == "--since"
