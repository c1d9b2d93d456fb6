"""Name character sets (``ailuro.names``): one rule, applied identically by the SDK and the dispatcher.

Legitimate names are taken from what COMPASS and PanDA really use (the 2015 COMPASS PanDA job
scripts: ``megaDST-80616-0-7.root.022``, ``lxplus_test_job_<uuid>.job.log.tgz``,
``ANALY_CERN_COMPASS_PROD``; Rucio-style ``scope:name`` datasets; JEDI-style job names with a
``/``); hostile ones are path traversal, control characters and NUL.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ailuro import names
from ailuro.client import Client
from ailuro.errors import InvalidArgument
from ailuro.queues import parse_queues
from ailuro.v1 import job_pb2, submission_pb2
from dispatcher import validation

LEGIT_LFNS = [
    "mDST-12345-2-7.root.003",
    "megaDST-80616-0-7.root.022",
    "out_file_megaDST-80625-0-7.root.005",
    "lxplus_test_job_0af413a0-3e1b-4927-8060-68359b101c68.job.log.tgz",
    "log.41234567._000123.job.log.tgz.1",
    "EVNT.12345._000001.pool.root.1",
    "histos.root",
    "in.dat",
    "a+b=c.root",
]
HOSTILE_LFNS = [
    ".",
    "..",
    "../etc/passwd",
    "a/b",
    "-rf",
    ".hidden",
    "a b",
    "x\x1b[2J",
    "nul\x00",
    "tab\tname",
    "é.root",
]
LEGIT_JOB_NAMES = [
    "lxplus_test_job",
    "phast_17",
    "python3 -u_1",
    "user.jdoe.test.v1/.4179871234",
    "[bold red]x[/]",
    "reco run 2026 (test)",
    "Übung-1",
]
HOSTILE_JOB_NAMES = [
    "../../escape",
    "a/../b",
    "/abs",
    "trailing/",
    "..",
    "x\x1b]0;owned\x07",
    "bell\x07",
    "cr\rover",
    "nl\nname",
    "nul\x00",
    "c1\x9b31m",
    "bidi\u202eevil",
    "back\\slash",
    " padded ",
]


@pytest.mark.parametrize("lfn", LEGIT_LFNS)
def test_real_lfns_pass(lfn: str) -> None:
    names.check_lfn(lfn, "lfn")


@pytest.mark.parametrize("lfn", HOSTILE_LFNS)
def test_hostile_lfns_are_rejected_naming_the_field(lfn: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        names.check_lfn(lfn, "jobs[0].files[1].lfn")
    assert info.value.field == "jobs[0].files[1].lfn"


@pytest.mark.parametrize("name", LEGIT_JOB_NAMES)
def test_real_job_names_pass(name: str) -> None:
    names.check_job_name(name, "job_name")


@pytest.mark.parametrize("name", HOSTILE_JOB_NAMES)
def test_hostile_job_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidArgument):
        names.check_job_name(name, "job_name")


@pytest.mark.parametrize(
    "value", ["compass:raw.2026", "user.alice:empty", "panda.destDB.0af413a0-3e1b", "user.demo.log"]
)
def test_real_datasets_pass(value: str) -> None:
    names.check_dataset(value, "dataset")


@pytest.mark.parametrize("value", ["a:b:c", ":x", "sc ope:x", "scope:../x", "scope:a/b", "x\x1b"])
def test_hostile_datasets_are_rejected(value: str) -> None:
    with pytest.raises(InvalidArgument):
        names.check_dataset(value, "dataset")


@pytest.mark.parametrize("value", ["CERN_EOS", "ANALY_CERN_COMPASS_PROD", "user.jdoe", "JINR-DISK"])
def test_real_identifiers_pass(value: str) -> None:
    names.check_identifier(value, "destination_se")


@pytest.mark.parametrize("value", ["../DISK", "a/b", "..", "-x", "x y", "x\x00"])
def test_hostile_identifiers_are_rejected(value: str) -> None:
    with pytest.raises(InvalidArgument):
        names.check_identifier(value, "destination_se")


def _submit(**fields: object) -> submission_pb2.SubmitJobsRequest:
    return submission_pb2.SubmitJobsRequest(jobs=[job_pb2.Job(transformation="/bin/true", **fields)])  # type: ignore[arg-type]


HOSTILE_JOBS = [
    ({"job_name": "../../escape"}, "jobs[0].job_name"),
    ({"job_name": "x\x1b[2J"}, "jobs[0].job_name"),
    ({"destination_se": "../../tmp"}, "jobs[0].destination_se"),
    ({"destination_dblock": "user.x:../y"}, "jobs[0].destination_dblock"),
    ({"files": [job_pb2.File(lfn="..", type=job_pb2.FILE_TYPE_OUTPUT)]}, "jobs[0].files[0].lfn"),
    ({"files": [job_pb2.File(lfn="x\x1b", type=job_pb2.FILE_TYPE_OUTPUT)]}, "jobs[0].files[0].lfn"),
    ({"files": [job_pb2.File(lfn="o", type=job_pb2.FILE_TYPE_OUTPUT, scope="../s")]}, "jobs[0].files[0].scope"),
    (
        {"files": [job_pb2.File(lfn="o", type=job_pb2.FILE_TYPE_OUTPUT, destination_se="a/b")]},
        "jobs[0].files[0].destination_se",
    ),
    ({"files": [job_pb2.File(lfn="i", type=job_pb2.FILE_TYPE_INPUT, source_se="..")]}, "jobs[0].files[0].source_se"),
]


@pytest.mark.parametrize(("fields", "field"), HOSTILE_JOBS)
def test_server_and_client_reject_the_same_names_with_the_same_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as server:
        validation.validate_submit(_submit(**fields), known_sites={"LOCAL"})
    assert server.value.field == field
    # the SDK checks before sending (nothing listens on port 1: the call would fail otherwise)
    with Client("127.0.0.1:1") as client, pytest.raises(InvalidArgument) as local:
        client.submit([_submit(**fields).jobs[0]])
    assert (local.value.field, str(local.value)) == (field, str(server.value))


def test_a_real_compass_job_passes_both() -> None:
    job = job_pb2.Job(
        transformation="phast",
        job_name="lxplus_test_job_0af413a0-3e1b-4927-8060-68359b101c68",
        destination_se="CERN_EOS",
        destination_dblock="panda.destDB.0af413a0-3e1b-4927-8060-68359b101c68",
        files=[
            job_pb2.File(lfn="megaDST-80625-0-7.root.005", type=job_pb2.FILE_TYPE_INPUT, scope="compass"),
            job_pb2.File(lfn="out_file_megaDST-80625-0-7.root.005", type=job_pb2.FILE_TYPE_OUTPUT, dataset="compass:x"),
        ],
    )
    validation.validate_submit(submission_pb2.SubmitJobsRequest(jobs=[job]), known_sites=set())
    names.check_job_names(job, "jobs[0]")


def test_a_final_report_of_an_older_job_is_still_accepted() -> None:
    """Finals only need plain file names: a job accepted before these rules must not sit in holding."""
    from ailuro.v1 import pilot_pb2

    final = pilot_pb2.JobFinal(
        panda_id=1,
        status=job_pb2.JOB_STATUS_FINISHED,
        files=[job_pb2.File(lfn="old name with spaces.root", type=job_pb2.FILE_TYPE_OUTPUT)],
    )
    assert validation.final_problem(final) is None
    for old in ("esc\x1b.root", "..", "-x"):  # accepted by the older rule (only "/" and NUL were refused)
        final.files[0].lfn = old
        assert validation.final_problem(final) is None, old
    final.files[0].lfn = "../x"
    assert validation.final_problem(final) is not None


def test_queue_and_storage_names_follow_the_identifier_rule() -> None:
    parse_queues({"queue": [{"name": "CERN_LOCAL"}]})
    with pytest.raises(InvalidArgument) as info:
        parse_queues({"queue": [{"name": "../q"}]})
    assert info.value.field == "queues.queue[0].name"
    with pytest.raises(InvalidArgument):
        parse_queues({"queue": [{"name": "Q"}], "storage": [{"name": "a/b", "endpoints": ["file:///x"]}]})


@pytest.mark.parametrize(
    ("job_name", "expected"),
    [
        ("e2e_ok", "e2e_ok.job.log.tgz"),
        ("../../escape", "_.._escape.job.log.tgz"),
        ("", "7.job.log.tgz"),
        ("..", "7.job.log.tgz"),
        ("user.jdoe.test/.4179", "user.jdoe.test_.4179.job.log.tgz"),
        ("x\x1b[2J y", "x__2J_y.job.log.tgz"),
    ],
)
def test_safe_file_name_makes_a_valid_lfn(job_name: str, expected: str) -> None:
    lfn = names.safe_file_name(job_name, fallback="7", suffix=".job.log.tgz")
    assert lfn == expected
    names.check_lfn(lfn, "lfn")
    assert len(names.safe_file_name("a" * 400, fallback="7", suffix=".job.log.tgz")) == 255


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"input_dataset": "compass:../raw"}, "task.input_dataset"),
        ({"archive_se": "../TAPE"}, "task.archive_se"),
        ({"process": "compass:a/b"}, "task.process.output_dataset"),
    ],
)
def test_task_files_follow_the_same_name_rules(change: dict[str, str], field: str) -> None:
    import yaml

    from dispatcher.services.tasks import parse_task

    spec_file = Path(__file__).resolve().parents[2] / "examples" / "compass_chain" / "task.yaml"
    data = yaml.safe_load(spec_file.read_text())
    parse_task(dict(data), base_dir=spec_file.parent)  # the example itself passes
    if "process" in change:
        data["process"] = {**data["process"], "output_dataset": change["process"]}
    else:
        data.update(change)
    with pytest.raises(InvalidArgument) as info:
        parse_task(data, base_dir=spec_file.parent)
    assert info.value.field == field
