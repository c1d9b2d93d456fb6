"""The PanDA gateway's wire codec and identity helpers (pure functions, no server)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest

from ailuro.compat.panda_spec import SERVER_FILE_ATTRIBUTES, WIRE_FILE_ATTRIBUTES, WIRE_JOB_ATTRIBUTES, JobSpec
from ailuro.errors import InvalidArgument, ResourceExhausted
from dispatcher.gateway.identity import Caller, token_sub
from dispatcher.gateway.server import Gateway, GatewayConfig
from dispatcher.gateway.wire import decode_ids, decode_submission, job_dict


def _job(files: list[Any] | None = None, **values: Any) -> list[Any]:
    row: list[Any] = ["NULL"] * len(WIRE_JOB_ATTRIBUTES)
    for name, value in values.items():
        row[WIRE_JOB_ATTRIBUTES.index(name)] = value
    return [*row, files or []]


def _file(names: tuple[str, ...], **values: Any) -> list[Any]:
    row: list[Any] = ["NULL"] * len(names)
    for name, value in values.items():
        row[names.index(name)] = value
    return [*row, None]


def _body(*jobs: list[Any]) -> dict[str, str]:
    return {"jobs": json.dumps(list(jobs))}


def test_panda_client_shapes_decode_to_specs() -> None:
    when = {"_datetime_object": "2026-12-05 10:11:12.000013"}
    client_file = _file(WIRE_FILE_ATTRIBUTES, lfn="out.root", type="output", scope="user.x", md5sum="abc", rowID=3)
    server_file = _file(SERVER_FILE_ATTRIBUTES, lfn="in.root", type="input", fileID=9, checksum="ad:0a1b2c3d")
    job = _job(
        [client_file, server_file],
        jobName="j1",
        transformation="/bin/true",
        computingSite="LOCAL",
        creationTime=when,
        creationHost="lxplus",
        cloud="CERN",
        coreCount=4,
    )
    decoded = decode_submission(_body(job))
    (spec,) = decoded.jobs
    assert (spec.jobName, spec.coreCount, spec.creationTime) == ("j1", 4, dt.datetime(2026, 12, 5, 10, 11, 12, 13))
    assert [(f.lfn, f.type) for f in spec.Files] == [("out.root", "output"), ("in.root", "input")]
    assert spec.Files[1].fileID == 9 and spec.Files[1].checksum == "ad:0a1b2c3d"
    # set-but-unused attributes are reported; what the client always sets is not
    assert decoded.ignored == ("Files.fileID", "Files.md5sum", "cloud", "creationTime")
    # panda-client's optional dict of changed attributes before the files is accepted
    with_changed = [*job[:-1], {"jobName": "j1"}, job[-1]]
    assert decode_submission(_body(with_changed)).jobs[0].jobName == "j1"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"jobs": "[[1"}, "jobs"),
        ({"jobs": 5}, "jobs"),
        ({"jobs": "[]"}, "jobs"),
        (_body([1, 2, 3]), "jobs[0]"),
        (_body(_job(), "x"), "jobs[1]"),
        (_body(_job([[1] * 10])), "jobs[0][126][0]"),
        (_body(_job([[*_file(WIRE_FILE_ATTRIBUTES)[:-1], "owner"]])), "jobs[0][126][0][18]"),
        (_body(_job(jobName={"a": 1})), "jobs[0][19]"),
        (_body(_job(jobName=[1])), "jobs[0][19]"),
        (_body(_job(creationTime={"_datetime_object": "yesterday"})), "jobs[0][4]"),
        (_body([*_job()[:-1], "not files"]), "jobs[0][126]"),
        (_body([*_job()[:-1], [], []]), "jobs[0][126]"),
        ({"jobs": "[" * 50_000 + "]" * 50_000}, "jobs"),
    ],
)
def test_malformed_submissions_name_the_element(body: Any, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        decode_submission(body)
    assert info.value.field == field


def test_too_many_jobs_is_resource_exhausted() -> None:
    with pytest.raises(ResourceExhausted) as info:
        decode_submission(_body(*[_job(jobName=f"j{i}") for i in range(5_001)]))
    assert info.value.field == "jobs"


def test_ids() -> None:
    assert decode_ids({"job_ids": [1, "2"]}) == [1, 2]
    assert decode_ids({"job_ids": "3,4"}) == [3, 4]
    assert decode_ids({"job_ids": 5}) == [5]
    for bad, field in (({"job_ids": [True]}, "job_ids[0]"), ({"job_ids": [-1]}, "job_ids[0]"), ([1], "body")):
        with pytest.raises(InvalidArgument) as info:
            decode_ids(bad)
        assert info.value.field == field
    with pytest.raises(ResourceExhausted):
        decode_ids({"job_ids": list(range(1, 5_002))})


def test_job_dict_marks_datetimes_for_panda_client() -> None:
    spec = JobSpec()
    spec.PandaID = 7
    spec.creationTime = dt.datetime(2026, 1, 2, 3, 4, 5)
    out = job_dict(spec)
    assert out["PandaID"] == 7 and out["jobStatus"] is None and out["Files"] == []
    assert out["creationTime"] == {"__datetime__": "2026-01-02T03:04:05"}
    assert len(out) == len(WIRE_JOB_ATTRIBUTES) + 1


def _jwt(claims: dict[str, Any]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"Bearer eyJhbGciOiJub25lIn0.{payload}.sig"


def test_token_sub() -> None:
    assert token_sub(_jwt({"sub": "jdoe"})) == "jdoe"
    assert token_sub(_jwt({"sub": ""})) is None
    assert token_sub("Bearer not-a-jwt") is None
    assert token_sub("Bearer a.!!!.c") is None


def test_the_gateway_forwards_only_the_callers_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AILURO_TOKEN", "the-gateways-own-token")
    gateway = Gateway(GatewayConfig(server="127.0.0.1:1"))
    with gateway._client(Caller(user=None, vo="compass", authorization="Bearer t")) as client:
        metadata = dict(client._metadata)
    assert metadata == {"ailuro-vo": "compass", "authorization": "Bearer t"}
    with gateway._client(Caller(user=None, vo=None)) as client:  # an anonymous caller borrows nothing
        assert "authorization" not in dict(client._metadata)
