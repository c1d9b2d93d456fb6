"""The one map of a job's fields: column, protobuf field, monitor key, where it lives, how it converts.

A job is kept in three shapes: the ``jobs`` row (what changes over its life, and what queries
filter on), the ``Job`` message (what the API and the pilots see) and the monitor's JSON (keys in
BigPanDA's spelling, ``computingsite``, so a PanDA user's URLs and scripts read the same). Each
:class:`JobField` below ties the three together, and everything that moves a job between the
shapes derives from :data:`FIELDS`:

- the insert (:func:`insert_row`): submitted fields copied from the definition, server fields
  from their initial values;
- row -> message (:func:`overlay`): the serialized definition (``spec``) supplies what only it
  holds (the environment), every stored field is then set from the row;
- the message a pilot is sent (:data:`PILOT_FIELDS`): the same overlay restricted to the fields
  a claim has at hand;
- the monitor's JSON (:func:`monitor_json`).

A ``Job`` field not in a column is named in :data:`NOT_IN_COLUMNS` with where it lives instead;
``tests/unit/test_jobfields.py`` checks that every proto field and every ``jobs`` column is
accounted for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ailuro.v1 import job_pb2, submission_pb2
from dispatcher.matching import format_tags, parse_tags
from dispatcher.states import JobState


class Kind(StrEnum):
    """How a value converts between column, message and JSON."""

    INT = "int"
    FLOAT = "float"
    STR = "str"
    BOOL = "bool"
    TIME = "time"
    """Epoch seconds (NULL: unset) in the column, a ``Timestamp`` in the message, seconds in JSON."""
    STATUS = "status"
    """The lowercase state name in the column and JSON, the ``JobStatus`` enum in the message."""
    TAGS = "tags"
    """A set of words: comma-separated and sorted in the column, a sorted list in the message and JSON."""


class Origin(StrEnum):
    """Who sets a field."""

    SUBMITTED = "submitted"
    """Copied from the submitted definition at insert (after defaults and brokerage)."""
    SERVER = "server"
    """Set by the dispatcher: an initial value at insert, changed over the job's life."""
    INTERNAL = "internal"
    """Dispatcher bookkeeping: a column with no ``Job`` field."""


@dataclass(frozen=True, kw_only=True)
class JobField:
    """One field of a job in all its shapes."""

    column: str
    """The ``jobs`` column."""
    proto: str = ""
    """The path of the ``Job`` field (``metrics.cpu_time_s`` for a nested one); empty: not in the message."""
    key: str = ""
    """The monitor's JSON key; empty: the monitor does not show it."""
    kind: Kind = Kind.STR
    """How the value converts (see :class:`Kind`)."""
    origin: Origin = Origin.SERVER
    """Who sets it (see :class:`Origin`)."""
    initial: Any = None
    """The value a server or internal field has at insert (``None``: given by the inserter or NULL)."""
    to_pilot: bool = False
    """Sent to pilots over the definition: the server fields a claim knows (the definition has the rest)."""


_S, _I, _F, _B, _T = Kind.STR, Kind.INT, Kind.FLOAT, Kind.BOOL, Kind.TIME
_SUB, _SRV, _INT = Origin.SUBMITTED, Origin.SERVER, Origin.INTERNAL

FIELDS: tuple[JobField, ...] = (
    JobField(column="panda_id", proto="panda_id", key="pandaid", kind=_I, to_pilot=True),
    JobField(column="job_name", proto="job_name", key="jobname", origin=_SUB),
    JobField(column="job_definition_id", proto="job_definition_id", key="jobdefinitionid", kind=_I, origin=_SUB),
    JobField(column="task_id", proto="task_id", key="taskid", kind=_I, origin=_SUB),
    JobField(column="vo", proto="vo", key="vo", origin=_SUB),
    JobField(column="prod_source_label", proto="prod_source_label", key="prodsourcelabel", origin=_SUB),
    JobField(column="transformation", proto="transformation", key="transformation", origin=_SUB),
    JobField(column="job_parameters", proto="job_parameters", key="jobparameters", origin=_SUB),
    JobField(column="computing_site", proto="computing_site", key="computingsite", origin=_SUB),
    JobField(column="current_priority", proto="current_priority", key="currentpriority", kind=_I, origin=_SUB),
    JobField(column="max_attempt", proto="max_attempt", key="maxattempt", kind=_I, origin=_SUB),
    JobField(column="attempt_nr", proto="attempt_nr", key="attemptnr", kind=_I, initial=1, to_pilot=True),
    JobField(column="cores", proto="cores", key="cores", kind=_I, origin=_SUB),
    JobField(column="memory_mb", proto="memory_mb", key="memory_mb", kind=_I, origin=_SUB),
    JobField(column="max_walltime_s", proto="max_walltime_s", key="maxwalltime_s", kind=_I, origin=_SUB),
    JobField(column="disk_mb", proto="disk_mb", key="disk_mb", kind=_I, origin=_SUB),
    JobField(column="tags", proto="tags", key="tags", kind=Kind.TAGS, origin=_SUB),
    JobField(column="destination_dblock", proto="destination_dblock", key="destinationdblock", origin=_SUB),
    JobField(column="destination_se", proto="destination_se", key="destinationse", origin=_SUB),
    JobField(column="processing_type", proto="processing_type", key="processingtype", origin=_SUB),
    JobField(column="status", proto="status", key="jobstatus", kind=Kind.STATUS, to_pilot=True),
    JobField(column="creation_time", proto="creation_time", key="creationtime", kind=_T, to_pilot=True),
    JobField(column="modification_time", proto="modification_time", key="modificationtime", kind=_T),
    JobField(column="start_time", proto="start_time", key="starttime", kind=_T),
    JobField(column="end_time", proto="end_time", key="endtime", kind=_T),
    JobField(column="sent_time", key="senttime", kind=_T, origin=_INT),
    JobField(column="owner", proto="owner", key="produsername", to_pilot=True),
    JobField(column="pilot_id", proto="pilot_id", key="pilotid", initial="", to_pilot=True),
    JobField(column="batch_id", proto="batch_id", key="batchid", initial="", to_pilot=True),
    JobField(column="node", proto="node", key="node", initial="", to_pilot=True),
    JobField(column="cpu_time_s", proto="metrics.cpu_time_s", key="cputime_s", kind=_F, initial=0.0),
    JobField(column="max_rss_kb", proto="metrics.max_rss_kb", key="maxrss_kb", kind=_I, initial=0),
    JobField(column="walltime_s", proto="metrics.walltime_s", key="walltime_s", kind=_F, initial=0.0),
    JobField(column="exit_code", proto="metrics.exit_code", key="exitcode", kind=_I, initial=0),
    JobField(column="lease_epoch", proto="lease_epoch", key="leaseepoch", kind=_I, initial=0, to_pilot=True),
    JobField(column="lease_expires", kind=_T, origin=_INT),
    JobField(column="kill_requested", key="killrequested", kind=_B, origin=_INT, initial=False),
    JobField(column="kill_reason", key="killreason", origin=_INT, initial=""),
    JobField(column="kill_delivered", key="killdelivered", kind=_B, origin=_INT, initial=False),
    JobField(column="brokerage_reason", proto="brokerage_reason", key="brokeragereason", to_pilot=True),
    JobField(column="parent_panda_id", proto="parent_panda_id", key="parentpandaid", kind=_I, initial=0),
    JobField(column="last_final_epoch", kind=_I, origin=_INT, initial=0),
    JobField(column="last_final_status", origin=_INT, initial=""),
)
"""Every ``jobs`` column but the serialized definition (``spec``), in table order."""

NOT_IN_COLUMNS: dict[str, str] = {
    "environment": "spec",
    "files": "files table",
    "errors": "job_errors table",
}
"""``Job`` fields kept elsewhere than in a ``jobs`` column, and where: ``spec`` is the serialized
definition (the submitted value, never changed), the tables hold one row per file or error."""

BY_COLUMN: dict[str, JobField] = {f.column: f for f in FIELDS}
BY_KEY: dict[str, JobField] = {f.key: f for f in FIELDS if f.key}
SUBMITTED: tuple[JobField, ...] = tuple(f for f in FIELDS if f.origin == Origin.SUBMITTED)
SERVER_PROTO_FIELDS: tuple[str, ...] = (
    *dict.fromkeys(f.proto.split(".")[0] for f in FIELDS if f.proto and f.origin == Origin.SERVER),
    *(name for name, where in NOT_IN_COLUMNS.items() if where != "spec" and name != "files"),
)
"""Top-level ``Job`` fields the server owns: cleared from a submitted definition before it is stored."""
NAME_FIELDS: tuple[str, ...] = tuple(
    f.proto for f in SUBMITTED if f.kind == Kind.STR and f.column not in ("transformation", "job_parameters")
)
"""Submitted text fields that are names (bounded like one; ``transformation`` and ``job_parameters`` are longer)."""
PILOT_FIELDS: tuple[JobField, ...] = tuple(f for f in FIELDS if f.to_pilot)
"""What a claim sets over the definition in the job a pilot gets (the definition holds every submitted field)."""
LIST_FILTERS: tuple[str, ...] = tuple(
    f.name for f in submission_pb2.ListJobsRequest.DESCRIPTOR.fields if f.name in BY_COLUMN and f.type == f.TYPE_STRING
)
"""The exact-match string filters of ListJobs: its request fields spelled as a job column."""


def _to_proto(kind: Kind, value: Any) -> Any:
    if kind == Kind.STATUS:
        return JobState(value).to_proto()
    return value


def _words(text: str) -> list[str]:
    """The stored (comma-separated) form of a :attr:`Kind.TAGS` value as a sorted list."""
    return sorted(parse_tags(text))


def _set(job: job_pb2.Job, f: JobField, value: Any) -> None:
    """Set ``f``'s message field of ``job`` from a column value."""
    holder: Any = job
    *parents, name = f.proto.split(".")
    for part in parents:
        holder = getattr(holder, part)
    if f.kind == Kind.TIME:
        if value is None:
            holder.ClearField(name)
        else:
            getattr(holder, name).FromNanoseconds(int(value * 1e9))
        return
    if f.kind == Kind.TAGS:
        del getattr(holder, name)[:]
        getattr(holder, name).extend(_words(value))
        return
    setattr(holder, name, _to_proto(f.kind, value))


def overlay(job: job_pb2.Job, row: Mapping[str, Any], fields: Iterable[JobField] = FIELDS) -> job_pb2.Job:
    """Set the message fields of ``fields`` (those with one) in ``job`` from ``row``; return ``job``."""
    for f in fields:
        if f.proto:
            _set(job, f, row[f.column])
    return job


def row_to_job(row: Mapping[str, Any]) -> job_pb2.Job:
    """A job row as a ``Job`` (without files and errors): the definition, overlaid with every stored field."""
    job = job_pb2.Job.FromString(row["spec"])
    del job.files[:]
    del job.errors[:]
    return overlay(job, row)


def pilot_job(row: Mapping[str, Any]) -> job_pb2.Job:
    """The ``Job`` a pilot is sent: the definition (files included) overlaid with :data:`PILOT_FIELDS`."""
    return overlay(job_pb2.Job.FromString(row["spec"]), row, PILOT_FIELDS)


def insert_row(
    spec: job_pb2.Job, *, status: JobState, owner: str, now: float, brokerage_reason: str, parent_panda_id: int
) -> dict[str, Any]:
    """The ``jobs`` row of a new job (every column but ``panda_id``), in table order."""
    given = {
        "status": status.value,
        "creation_time": now,
        "modification_time": now,
        "owner": owner,
        "brokerage_reason": brokerage_reason,
        "parent_panda_id": parent_panda_id,
    }
    row: dict[str, Any] = {}
    for f in FIELDS:
        if f.column == "panda_id":
            continue
        if f.origin == Origin.SUBMITTED:
            value = getattr(spec, f.proto)
            row[f.column] = format_tags(value) if f.kind == Kind.TAGS else value
        else:
            row[f.column] = given.get(f.column, f.initial)
    row["spec"] = spec.SerializeToString()
    return row


def json_value(f: JobField, value: Any) -> Any:
    """A column value as the monitor's JSON shows it."""
    if value is None:
        return None
    if f.kind == Kind.INT:
        return int(value)
    if f.kind == Kind.FLOAT:
        return float(value)
    if f.kind == Kind.BOOL:
        return bool(value)
    if f.kind == Kind.TAGS:
        return _words(value)
    return value


def monitor_json(row: Any, fields: Iterable[JobField]) -> dict[str, Any]:
    """``{monitor key: value}`` of ``fields`` from a row (a mapping or a named row)."""
    get = row.__getitem__ if isinstance(row, Mapping) else lambda name: getattr(row, name)
    return {f.key: json_value(f, get(f.column)) for f in fields}


def fields_by_key(*keys: str) -> tuple[JobField, ...]:
    """The fields of the given monitor keys, in that order (``KeyError`` for an unknown key)."""
    return tuple(BY_KEY[k] for k in keys)
