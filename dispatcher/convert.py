"""Conversions between database rows and protobuf messages."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from google.protobuf.timestamp_pb2 import Timestamp

from ailuro import vocabulary
from ailuro.v1 import factory_pb2, job_pb2
from dispatcher import jobfields
from dispatcher.states import JobState

FILE_TYPE_NAMES = {job_pb2.FILE_TYPE_INPUT: "input", job_pb2.FILE_TYPE_OUTPUT: "output", job_pb2.FILE_TYPE_LOG: "log"}
FILE_TYPES_BY_NAME = {v: k for k, v in FILE_TYPE_NAMES.items()}
WORKER_STATE_NAMES: dict[factory_pb2.WorkerState, str] = {
    cast("factory_pb2.WorkerState", v): name.removeprefix("WORKER_STATE_").lower()
    for name, v in factory_pb2.WorkerState.items()
    if v != factory_pb2.WORKER_STATE_UNSPECIFIED
}
WORKER_STATES_BY_NAME = {v: k for k, v in WORKER_STATE_NAMES.items()}
FINAL_WORKER_STATES = tuple(sorted(s.value for s in vocabulary.FINAL_WORKER_STATES))


def job_status(state: str | JobState) -> job_pb2.JobStatus:
    """The ``JobStatus`` enum value of a stored state name."""
    return cast("job_pb2.JobStatus", JobState(state).to_proto())


def ts(seconds: float | None) -> Timestamp | None:
    """A protobuf Timestamp for epoch seconds (``None`` stays unset)."""
    if seconds is None:
        return None
    out = Timestamp()
    out.FromNanoseconds(int(seconds * 1e9))
    return out


def seconds(stamp: Timestamp) -> float:
    """Epoch seconds of a protobuf Timestamp."""
    return stamp.ToNanoseconds() / 1e9


def file_row_to_proto(row: Mapping[Any, Any]) -> job_pb2.File:
    """A ``files`` row as a File message."""
    return job_pb2.File(
        lfn=row["lfn"],
        guid=row["guid"],
        type=FILE_TYPES_BY_NAME.get(row["type"], job_pb2.FILE_TYPE_UNSPECIFIED),
        dataset=row["dataset"],
        scope=row["scope"],
        size=row["size"],
        adler32=row["adler32"],
        status=row["status"],
        source_se=row["source_se"],
        destination_se=row["destination_se"],
        pfn=row["pfn"],
    )


def job_row_to_proto(
    row: Mapping[Any, Any],
    file_rows: Iterable[Mapping[Any, Any]] | None = None,
    errors: Iterable[job_pb2.JobError] = (),
) -> job_pb2.Job:
    """A ``jobs`` row (plus, optionally, its ``files`` rows, and its ``job_errors``) as a Job message.

    The serialized definition supplies what only it holds (the environment); the row supplies
    every stored field (:mod:`dispatcher.jobfields` says which and how they convert).
    """
    job = jobfields.row_to_job(row)
    job.errors.extend(errors)
    if file_rows is not None:
        job.files.extend(file_row_to_proto(f) for f in file_rows)
    return job


def event_row_to_proto(row: Mapping[Any, Any]) -> job_pb2.JobEvent:
    """A ``job_events`` row as a JobEvent message."""
    event = job_pb2.JobEvent(
        event_id=row["event_id"],
        panda_id=row["panda_id"],
        from_status=job_status(row["from_status"]) if row["from_status"] else job_pb2.JOB_STATUS_UNSPECIFIED,
        to_status=job_status(row["to_status"]),
        actor=row["actor"],
        reason=row["reason"],
        attempt_nr=row["attempt_nr"],
        lease_epoch=row["lease_epoch"],
    )
    stamp = ts(row["time"])
    assert stamp is not None
    event.time.CopyFrom(stamp)
    return event
