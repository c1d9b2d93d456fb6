"""The PanDA JSON wire format as panda-client 2.x speaks it: decode submissions, encode job dicts.

Pure functions on plain JSON values, no I/O. Submissions arrive as ``{"jobs": "<JSON string>"}``:
a list of jobs, each a positional array of panda-client's JobSpec values in declaration order
(:data:`WIRE_JOB_ATTRIBUTES`), optionally a dict of changed attributes, then a list of files, each
a positional array of FileSpec values plus a trailing ``null`` (19 elements from panda-client, 23
from the PanDA server's FileSpec). Unset values are the string ``"NULL"``; datetimes are
``{"_datetime_object": "%Y-%m-%d %H:%M:%S.%f"}``. Arrays are decoded by zipping with fixed name
lists; nothing is ever unpickled or evaluated. Every shape and length is checked, and the first
problem raises :class:`~ailuro.errors.InvalidArgument` naming the element (``jobs[3][126][0]``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from ailuro.compat.panda_spec import (
    MAPPED_JOB_ATTRIBUTES,
    SERVER_FILE_ATTRIBUTES,
    WIRE_FILE_ATTRIBUTES,
    WIRE_JOB_ATTRIBUTES,
    FileSpec,
    JobSpec,
)
from ailuro.errors import InvalidArgument, ResourceExhausted

MAX_JOBS = 5_000
"""Jobs per submission: the same bound as the dispatcher's SubmitJobs, so one submission is one call."""
MAX_FILES_PER_JOB = 10_000
"""Files per job on the wire (the dispatcher applies its own, smaller limits after decoding)."""
MAX_STRING = 1 << 20
"""Characters in one attribute value."""
MAX_IDS = 5_000
"""PandaIDs per get_description / kill request."""

_SCALARS = (str, int, float, bool, type(None))

# attributes panda-client fills in itself or that only describe the submitting host: not reported
_SILENT_JOB = frozenset({"creationHost", "PandaID", "assignedPriority", "jediTaskID", "jobsetID"})
_USED_FILE = frozenset(
    {"lfn", "type", "dataset", "GUID", "scope", "destinationSE", "fsize", "checksum", "prodDBlock",
     "destinationDBlock", "PandaID", "rowID", "row_ID"}
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Submission:
    """A decoded submission: the specs in input order and the attribute names that are ignored."""

    jobs: tuple[JobSpec, ...]
    ignored: tuple[str, ...]


def _unset(value: Any) -> bool:
    return value is None or value == "NULL"


def _scalar(value: Any, *, field: str) -> Any:
    """A JSON scalar or a datetime marker (returned as a ``datetime``); anything else is refused."""
    if isinstance(value, dict):
        if set(value) == {"_datetime_object"} and isinstance(value["_datetime_object"], str):
            try:
                return dt.datetime.strptime(value["_datetime_object"], "%Y-%m-%d %H:%M:%S.%f")
            except ValueError:
                raise InvalidArgument("is not a '%Y-%m-%d %H:%M:%S.%f' datetime", field=field) from None
        raise InvalidArgument("must be a scalar or a {'_datetime_object': ...} marker, got an object", field=field)
    if not isinstance(value, _SCALARS):
        raise InvalidArgument(f"must be a scalar, got {type(value).__name__}", field=field)
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise InvalidArgument(f"is longer than {MAX_STRING} characters", field=field)
    return value


def _file(raw: Any, *, field: str) -> FileSpec:
    if not isinstance(raw, list):
        raise InvalidArgument(f"must be an array, got {type(raw).__name__}", field=field)
    if len(raw) == len(WIRE_FILE_ATTRIBUTES) + 1:
        names: tuple[str, ...] = WIRE_FILE_ATTRIBUTES
    elif len(raw) == len(SERVER_FILE_ATTRIBUTES) + 1:
        names = SERVER_FILE_ATTRIBUTES
    else:
        raise InvalidArgument(
            f"must have {len(WIRE_FILE_ATTRIBUTES) + 1} or {len(SERVER_FILE_ATTRIBUTES) + 1} elements, got {len(raw)}",
            field=field,
        )
    if raw[-1] is not None:
        raise InvalidArgument("last element (the owner) must be null", field=f"{field}[{len(raw) - 1}]")
    spec = FileSpec()
    for i, (name, value) in enumerate(zip(names, raw, strict=False)):
        value = _scalar(value, field=f"{field}[{i}]")
        if not _unset(value):
            setattr(spec, name, value)
    return spec


def _job(raw: Any, *, field: str, ignored: set[str]) -> JobSpec:
    n = len(WIRE_JOB_ATTRIBUTES)
    if not isinstance(raw, list):
        raise InvalidArgument(f"must be an array, got {type(raw).__name__}", field=field)
    # n values, optionally panda-client's dict of changed attributes, then the files
    if len(raw) not in (n + 1, n + 2):
        raise InvalidArgument(
            f"must have {n + 1} elements ({n} JobSpec values and the files), got {len(raw)}", field=field
        )
    if len(raw) == n + 2 and not isinstance(raw[n], dict):
        raise InvalidArgument("must be the object of changed attributes", field=f"{field}[{n}]")
    files = raw[-1]
    files_field = f"{field}[{len(raw) - 1}]"
    if not isinstance(files, list):
        raise InvalidArgument(f"must be the array of files, got {type(files).__name__}", field=files_field)
    if len(files) > MAX_FILES_PER_JOB:
        raise ResourceExhausted(f"has {len(files)} files; at most {MAX_FILES_PER_JOB}", field=files_field)
    spec = JobSpec()
    for i, name in enumerate(WIRE_JOB_ATTRIBUTES):
        value = _scalar(raw[i], field=f"{field}[{i}]")
        if _unset(value):
            continue
        setattr(spec, name, value)
        if name not in MAPPED_JOB_ATTRIBUTES and name not in _SILENT_JOB:
            ignored.add(name)
    for k, f in enumerate(files):
        file_spec = _file(f, field=f"{files_field}[{k}]")
        ignored.update(f"Files.{name}" for name in file_spec.values() if name not in _USED_FILE)
        spec.addFile(file_spec)
    return spec


def decode_submission(body: Any) -> Submission:
    """Decode a ``job/submit`` request body (already JSON-parsed) into ``JobSpec`` objects.

    All or nothing: the first bad element raises, naming it; nothing is returned partially.
    """
    if not isinstance(body, dict) or "jobs" not in body:
        raise InvalidArgument("the body must be a JSON object with a 'jobs' member", field="body")
    jobs = body["jobs"]
    if isinstance(jobs, str):  # panda-client double-encodes the list
        try:
            jobs = json.loads(jobs)
        except RecursionError:
            raise InvalidArgument("is nested too deeply", field="jobs") from None
        except ValueError as exc:
            raise InvalidArgument(f"is not valid JSON: {exc.msg} at position {exc.pos}", field="jobs") from None
    if not isinstance(jobs, list):
        raise InvalidArgument(f"must be an array of jobs, got {type(jobs).__name__}", field="jobs")
    if not jobs:
        raise InvalidArgument("at least one job is required", field="jobs")
    if len(jobs) > MAX_JOBS:
        raise ResourceExhausted(f"has {len(jobs)} jobs; at most {MAX_JOBS} per submission", field="jobs")
    ignored: set[str] = set()
    specs = tuple(_job(raw, field=f"jobs[{i}]", ignored=ignored) for i, raw in enumerate(jobs))
    return Submission(jobs=specs, ignored=tuple(sorted(ignored)))


def decode_ids(body: Any) -> list[int]:
    """The ``job_ids`` of a get_description / kill body: a list (or comma-separated string) of integers."""
    if not isinstance(body, dict) or "job_ids" not in body:
        raise InvalidArgument("the body must be a JSON object with a 'job_ids' member", field="body")
    raw = body["job_ids"]
    if isinstance(raw, str):
        raw = [p for p in raw.split(",") if p.strip()]
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = [raw]
    if not isinstance(raw, list):
        raise InvalidArgument(f"must be an array of PandaIDs, got {type(raw).__name__}", field="job_ids")
    if len(raw) > MAX_IDS:
        raise ResourceExhausted(f"has {len(raw)} ids; at most {MAX_IDS}", field="job_ids")
    ids: list[int] = []
    for i, value in enumerate(raw):
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise InvalidArgument(f"must be an integer, got {type(value).__name__}", field=f"job_ids[{i}]")
        try:
            number = int(value)
        except ValueError:
            raise InvalidArgument(f"must be an integer, got {value!r:.40}", field=f"job_ids[{i}]") from None
        if not 0 < number < 1 << 63:
            raise InvalidArgument("must be a positive 64-bit integer", field=f"job_ids[{i}]")
        ids.append(number)
    return ids


def _out(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"__datetime__": value.isoformat()}
    return value


def job_dict(spec: JobSpec) -> dict[str, Any]:
    """A job as get_description returns it: every JobSpec attribute by camelCase name, and ``Files``."""
    get = spec.__getattribute__
    out: dict[str, Any] = {name: _out(get(name)) for name in WIRE_JOB_ATTRIBUTES}
    out["Files"] = [{name: _out(f.__getattribute__(name)) for name in WIRE_FILE_ATTRIBUTES} for f in spec.Files]
    return out
