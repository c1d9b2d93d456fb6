"""Finding 10 of issue #12: inputs that reached the store unchecked and ended as INTERNAL.

Each case here was an INTERNAL on 9effc2a (OverflowError or ValueError deep in the store or the
protobuf runtime); validation now rejects it with INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

import base64

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from ailuro.errors import InvalidArgument
from ailuro.v1 import factory_pb2, submission_pb2
from dispatcher import validation as v


def _token(body: str) -> str:
    return base64.urlsafe_b64encode(body.encode()).decode()


def _field(fn, *args, **kwargs) -> str | None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgument) as info:
        fn(*args, **kwargs)
    return info.value.field


@pytest.mark.parametrize(
    "token",
    [
        _token("v1:" + "9" * 30),  # OverflowError binding the id (SQLite and psycopg)
        _token(f"v1:{2**63}"),  # one past int64
        _token("v1:" + "9" * 5000),  # past Python's int-from-string digit limit
        "A" * 100_000,  # 100 KB of base64 decoded for nothing
    ],
)
def test_huge_page_tokens_are_invalid(token: str) -> None:
    assert _field(v.decode_page_token, token) == "page_token"
    assert _field(v.validate_list, submission_pb2.ListJobsRequest(page_token=token)) == "page_token"


def test_largest_job_id_still_makes_a_token() -> None:
    assert v.decode_page_token(v.encode_page_token(2**63 - 1)) == 2**63 - 1


@pytest.mark.parametrize(
    ("stamp", "where"),
    [
        (Timestamp(seconds=-62135596801), "seconds"),  # before year 1
        (Timestamp(seconds=253402300800), "seconds"),  # after year 9999
        (Timestamp(seconds=-(2**63)), "seconds"),
        (Timestamp(seconds=10, nanos=-1), "nanos"),
        (Timestamp(seconds=10, nanos=1_000_000_000), "nanos"),
    ],
)
@pytest.mark.parametrize("name", ["since", "until"])
def test_invalid_list_timestamps_are_invalid(stamp: Timestamp, where: str, name: str) -> None:
    req = submission_pb2.ListJobsRequest()
    getattr(req, name).CopyFrom(stamp)
    assert _field(v.validate_list, req) == f"{name}.{where}"


def test_extreme_but_valid_timestamps_pass() -> None:
    req = submission_pb2.ListJobsRequest(
        since=Timestamp(seconds=-62135596800), until=Timestamp(seconds=253402300799, nanos=999_999_999)
    )
    assert v.validate_list(req) == (100, None)


def test_invalid_worker_submit_time_is_invalid() -> None:
    w = factory_pb2.Worker(worker_id="w1", queue="LOCAL", submit_time=Timestamp(seconds=10**15))
    req = factory_pb2.RegisterWorkersRequest(workers=[w])
    assert _field(v.validate_register_workers, req, known_queues={"LOCAL"}) == "workers[0].submit_time.seconds"
