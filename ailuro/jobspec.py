"""Build ``Job`` messages from plain dicts (YAML/JSON job files) and turn messages back into dicts.

Why a separate module: users write jobs as YAML or JSON, scripts read ``--json`` output, and both
must speak the same vocabulary. Status and file-type names are lowercase strings
(``"running"``, ``"input"``), the keys are the ``Job``/``File`` field names of the wire contract
(plus a few short aliases that match the CLI flags), and a typo is an error with the key named,
found locally before anything reaches the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from ailuro.errors import InvalidArgument
from ailuro.v1 import job_pb2

JOB_KEYS: frozenset[str] = frozenset(
    {
        "job_name",
        "job_definition_id",
        "task_id",
        "vo",
        "prod_source_label",
        "transformation",
        "job_parameters",
        "environment",
        "computing_site",
        "current_priority",
        "max_attempt",
        "cores",
        "memory_mb",
        "max_walltime_s",
        "destination_dblock",
        "destination_se",
        "files",
        "processing_type",
        "disk_mb",
        "tags",
    }
)
"""``Job`` fields a submitter may set; every other field is assigned by the server."""

JOB_ALIASES: dict[str, str] = {
    "name": "job_name",
    "site": "computing_site",
    "priority": "current_priority",
    "label": "prod_source_label",
    "params": "job_parameters",
    "parameters": "job_parameters",
    "env": "environment",
    "walltime_s": "max_walltime_s",
}
"""Short spellings accepted in job dicts; they match the ``ailuro submit`` flag names."""

FILE_KEYS: frozenset[str] = frozenset(
    {"lfn", "guid", "type", "dataset", "scope", "size", "adler32", "source_se", "destination_se", "pfn"}
)
"""``File`` fields a submitter may set (``pfn``: where an input is read from, a path or URL)."""

SERVER_JOB_KEYS: frozenset[str] = frozenset(f.name for f in job_pb2.Job.DESCRIPTOR.fields if f.name not in JOB_KEYS)
"""``Job`` fields that only the server sets (panda_id, status, owner, ...)."""

FINAL_STATUSES: frozenset[int] = frozenset(
    {job_pb2.JOB_STATUS_FINISHED, job_pb2.JOB_STATUS_FAILED, job_pb2.JOB_STATUS_CANCELLED, job_pb2.JOB_STATUS_CLOSED}
)
"""``JobStatus`` values that never change again (mirrors dispatcher.states.FINAL_STATES)."""

_INT_KEYS = frozenset(
    {
        "job_definition_id",
        "task_id",
        "current_priority",
        "max_attempt",
        "cores",
        "memory_mb",
        "max_walltime_s",
        "disk_mb",
    }
)
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_INT64_KEYS = frozenset({"job_definition_id", "task_id"})


def _enum_prefix(enum: EnumDescriptor) -> str:
    """``JOB_STATUS_`` for JobStatus: the common prefix, read from the ``*_UNSPECIFIED`` value."""
    unspecified = enum.values_by_number[0].name
    return unspecified[: -len("UNSPECIFIED")]


def enum_name(enum: EnumDescriptor, number: int) -> str:
    """The lowercase short name of an enum value (``"running"``); ``""`` for UNSPECIFIED."""
    if number == 0:
        return ""
    value = enum.values_by_number.get(number)
    if value is None:
        return str(number)
    return value.name[len(_enum_prefix(enum)) :].lower()


def enum_value(enum: EnumDescriptor, name: str, *, field: str) -> int:
    """The number of a lowercase short name (``"input"`` -> FILE_TYPE_INPUT); ``InvalidArgument`` otherwise."""
    key = _enum_prefix(enum) + name.strip().upper()
    value = enum.values_by_name.get(key)
    if value is None or value.number == 0:
        choices = ", ".join(enum_name(enum, v.number) for v in enum.values if v.number)
        raise InvalidArgument(f"unknown value {name!r} (one of: {choices})", field=field)
    return value.number


def status_name(status: int) -> str:
    """The lowercase name of a ``JobStatus`` value (``"activated"``)."""
    return enum_name(job_pb2.JobStatus.DESCRIPTOR, status)


def status_value(name: str | int, *, field: str = "status") -> job_pb2.JobStatus:
    """A ``JobStatus`` number from a lowercase name (or a number, passed through)."""
    if isinstance(name, int):
        return cast(job_pb2.JobStatus, name)
    return cast(job_pb2.JobStatus, enum_value(job_pb2.JobStatus.DESCRIPTOR, name, field=field))


def file_type_value(name: str, *, field: str = "type") -> job_pb2.FileType:
    """A ``FileType`` number from ``"input"``, ``"output"`` or ``"log"``."""
    return cast(job_pb2.FileType, enum_value(job_pb2.FileType.DESCRIPTOR, name, field=field))


def _as_int(value: Any, *, field: str, minimum: int = 0, maximum: int = _INT32_MAX) -> int:
    # bool is an int subclass; "priority: yes" in YAML is a mistake, not 1
    if isinstance(value, bool):
        raise InvalidArgument(f"must be an integer, got {value!r}", field=field)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise InvalidArgument(f"must be an integer, got {value!r}", field=field) from None
    if not isinstance(value, int):
        raise InvalidArgument(f"must be an integer, got {value!r}", field=field)
    if not minimum <= value <= maximum:
        raise InvalidArgument(f"must be between {minimum} and {maximum}, got {value}", field=field)
    return value


def _as_str(value: Any, *, field: str) -> str:
    if isinstance(value, str):
        return value
    # numbers are fine as strings (a YAML "vo: 2024" or an env value of 4), containers are not
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise InvalidArgument(f"must be a string, got {type(value).__name__}", field=field)


def _path(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def file_from_dict(data: Mapping[str, Any], *, field: str = "file") -> job_pb2.File:
    """Build one ``File`` from a dict such as ``{"lfn": "a.root", "type": "input"}``."""
    if not isinstance(data, Mapping):
        raise InvalidArgument(f"must be a mapping, got {type(data).__name__}", field=field)
    out = job_pb2.File()
    for key, value in data.items():
        path = f"{field}.{key}"
        if key not in FILE_KEYS:
            raise InvalidArgument(f"unknown key {key!r} (allowed: {', '.join(sorted(FILE_KEYS))})", field=path)
        if key == "type":
            out.type = file_type_value(_as_str(value, field=path), field=path)
        elif key == "size":
            out.size = _as_int(value, field=path, maximum=_INT64_MAX)
        else:
            setattr(out, key, _as_str(value, field=path))
    if not out.lfn:
        raise InvalidArgument("is required", field=f"{field}.lfn")
    if out.type == job_pb2.FILE_TYPE_UNSPECIFIED:
        raise InvalidArgument("is required (input, output or log)", field=f"{field}.type")
    return out


def _canonical(data: Mapping[str, Any], *, prefix: str) -> dict[str, Any]:
    """Resolve aliases and reject unknown or server-only keys, naming the key."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise InvalidArgument(f"keys must be strings, got {key!r}", field=_path(prefix, str(key)))
        name = JOB_ALIASES.get(key, key)
        path = _path(prefix, key)
        if name in SERVER_JOB_KEYS:
            raise InvalidArgument("is set by the server and cannot be submitted", field=path)
        if name not in JOB_KEYS:
            raise InvalidArgument(f"unknown key {key!r}", field=path)
        if name in out:
            raise InvalidArgument(f"given twice (as {name!r} and an alias)", field=path)
        out[name] = value
    return out


def job_from_dict(
    data: Mapping[str, Any],
    *,
    defaults: Mapping[str, Any] | None = None,
    field: str = "",
) -> job_pb2.Job:
    """Build a ``Job`` from a dict; ``defaults`` fill keys the dict leaves out.

    ``field`` is the path prefix used in error messages (``"jobs[3]"``), so a mistake in a
    3,000-job file names the job. ``environment`` from defaults and from the job are merged.
    """
    if not isinstance(data, Mapping):
        raise InvalidArgument(f"must be a mapping, got {type(data).__name__}", field=field or "job")
    merged = _canonical(defaults or {}, prefix="defaults")
    own = _canonical(data, prefix=field)
    base_env, own_env = merged.get("environment"), own.get("environment")
    merged.update(own)
    if isinstance(base_env, Mapping) and isinstance(own_env, Mapping):
        merged["environment"] = {**base_env, **own_env}
    job = job_pb2.Job()
    for name, value in merged.items():
        path = _path(field, name)
        if value is None:
            continue
        if name in _INT_KEYS:
            maximum = _INT64_MAX if name in _INT64_KEYS else _INT32_MAX
            setattr(job, name, _as_int(value, field=path, maximum=maximum))
        elif name == "environment":
            if not isinstance(value, Mapping):
                raise InvalidArgument(f"must be a mapping, got {type(value).__name__}", field=path)
            for k, v in value.items():
                job.environment[_as_str(k, field=path)] = _as_str(v, field=f"{path}.{k}")
        elif name == "files":
            if not isinstance(value, list):
                raise InvalidArgument(f"must be a list, got {type(value).__name__}", field=path)
            job.files.extend(file_from_dict(f, field=f"{path}[{i}]") for i, f in enumerate(value))
        elif name == "tags":
            if not isinstance(value, list):
                raise InvalidArgument(f"must be a list, got {type(value).__name__}", field=path)
            job.tags.extend(_as_str(t, field=f"{path}[{i}]") for i, t in enumerate(value))
        else:
            setattr(job, name, _as_str(value, field=path))
    return job


def jobs_from_document(doc: Any, *, overrides: Mapping[str, Any] | None = None) -> list[job_pb2.Job]:
    """Jobs from a parsed YAML/JSON document: a list of job dicts, or ``{defaults: {...}, jobs: [...]}``.

    ``overrides`` (e.g. command-line flags) replace keys of the document's defaults; a job's own
    keys still win over both.
    """
    defaults: Mapping[str, Any] = {}
    if isinstance(doc, Mapping):
        extra = set(doc) - {"defaults", "jobs"}
        if extra:
            raise InvalidArgument(f"unknown key {sorted(extra)[0]!r} (expected 'defaults' and 'jobs')", field="")
        defaults = doc.get("defaults") or {}
        if not isinstance(defaults, Mapping):
            raise InvalidArgument("must be a mapping", field="defaults")
        doc = doc.get("jobs")
    if not isinstance(doc, list) or not doc:
        raise InvalidArgument("must be a non-empty list of job mappings", field="jobs")
    if overrides:
        defaults = {**_canonical(defaults, prefix="defaults"), **_canonical(overrides, prefix="")}
    return [job_from_dict(d, defaults=defaults, field=f"jobs[{i}]") for i, d in enumerate(doc)]


def load_jobs_file(path: str | Path, *, overrides: Mapping[str, Any] | None = None) -> list[job_pb2.Job]:
    """Read jobs from a YAML or JSON file (YAML parsing also accepts JSON); see :func:`jobs_from_document`."""
    import yaml  # a few ms to import; only file submissions need it

    text = Path(path).read_text(encoding="utf-8")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"not valid YAML/JSON: {exc}", field=str(path)) from None
    return jobs_from_document(doc, overrides=overrides)


def lfn_of(entry: str) -> str:
    """The LFN (a plain file name) of a file-list entry: the entry itself, or the last component of
    a path or URL (``root://eos//compass/mDST.1.root`` -> ``mDST.1.root``)."""
    path = urlsplit(entry).path if "://" in entry else entry
    return path.rstrip("/").rsplit("/", 1)[-1]


def jobs_for_each_line(
    lines: Iterable[str],
    *,
    template: Mapping[str, Any],
    input_type: str = "input",
) -> list[job_pb2.Job]:
    """One job per non-empty line of a file list: the "run phast over each of these files" pattern.

    Each line is attached as an input file; job ``n`` (from 1) is named ``<job_name>_<n>``. A line
    that is a path or URL becomes the input's ``pfn`` (where the pilot reads it from) and its last
    component the LFN, i.e. the name of the staged copy in the job's work directory. In
    ``job_parameters``, ``{}`` and ``{lfn}`` stand for that LFN and ``{pfn}`` for the line as
    written. Lines starting with ``#`` are comments.
    """
    base = job_from_dict(template)
    base_name = base.job_name or base.transformation.rsplit("/", 1)[-1] or "job"
    jobs: list[job_pb2.Job] = []
    for raw in lines:
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        lfn = lfn_of(entry)
        if not lfn:
            raise InvalidArgument(f"no file name in {entry!r}", field=f"each_line[{len(jobs)}]")
        job = job_pb2.Job()
        job.CopyFrom(base)
        job.job_name = f"{base_name}_{len(jobs) + 1}"
        job.job_parameters = base.job_parameters.replace("{lfn}", lfn).replace("{pfn}", entry).replace("{}", lfn)
        job.files.append(job_pb2.File(lfn=lfn, type=file_type_value(input_type), pfn=entry if entry != lfn else ""))
        jobs.append(job)
    if not jobs:
        raise InvalidArgument("the file list has no entries", field="each_line")
    return jobs


def _timestamp(ts: timestamp_pb2.Timestamp) -> str | None:
    if not ts.seconds and not ts.nanos:
        return None
    return ts.ToDatetime(tzinfo=UTC).isoformat()


def _value(field: Any, value: Any) -> Any:
    # ``field`` is a FieldDescriptor (pure-Python or upb implementation, hence Any)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_name(field.enum_type, value)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.full_name == "google.protobuf.Timestamp":
            return _timestamp(value)
        return message_to_dict(value)
    return value


def message_to_dict(message: Message) -> dict[str, Any]:
    """A JSON-ready dict of any Ailuro message: every field present, enums as lowercase names,
    timestamps as ISO-8601 strings (``None`` when unset), int64 as numbers (unlike protobuf's
    JSON mapping, which turns them into strings and would make ``jq '.panda_id'`` awkward)."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        message_type = field.message_type
        if message_type is not None and message_type.GetOptions().map_entry:
            value_field = message_type.fields_by_name["value"]
            out[field.name] = {k: _value(value_field, v) for k, v in value.items()}
        elif field.is_repeated:
            out[field.name] = [_value(field, v) for v in value]
        else:
            out[field.name] = _value(field, value)
    return out


def job_to_dict(job: job_pb2.Job) -> dict[str, Any]:
    """A ``Job`` as a JSON-ready dict (see :func:`message_to_dict`)."""
    return message_to_dict(job)


def parse_time(text: str, *, field: str = "since") -> datetime:
    """An ISO-8601 time (``2026-05-01``, ``2026-05-01T12:00``); naive times are UTC."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(f"not an ISO-8601 time: {text!r}", field=field) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
