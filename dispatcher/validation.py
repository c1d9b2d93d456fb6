"""Input validation for every RPC: pure functions that raise ``InvalidArgument`` naming the field.

The service layer calls these before touching the database, so a rejected request stores
nothing. Field paths use the request's own names with indexes (``jobs[3].files[0].lfn``), the
same path a client would use to find the mistake in what it sent.

Limits (also in the README):

================================  ============================================
batch sizes (jobs, ids, workers)  1 to 5,000
names (job_name, vo, label, site, lfn, guid, dataset, scope, SEs, pilot/worker ids)  at most 255 characters
name character sets              job_name, lfn, scope, dataset, SEs: see ``ailuro.names`` (one rule, client and server)
transformation                    1 to 4,096 characters
job_parameters                    at most 65,536 characters
environment                       at most 256 entries; names like shell variables; values at most 4,096
files per job                     at most 5,000; lfn unique within the job; type INPUT/OUTPUT/LOG
adler32                           empty or 8 hex digits (stored lowercase)
current_priority                  >= 0
max_attempt                       0 (default 3) or 1 to 100
cores, memory_mb, max_walltime_s  >= 0 (cores 0 means 1)
request_id                        at most 128 characters
reason / diag                     at most 1,000 characters
page_size                         0 (default 100) to 5,000
JobRequest.n / GetJob.n           1 to 100
page_token                        at most 64 characters, as ListJobs returned it
timestamps (since, until, submit_time)  years 1 to 9999, nanos 0 to 999,999,999
================================  ============================================

Limits on pilot reports and streams (errors and files per final report, held jobs, heartbeats
per message, messages in flight per stream) are configuration: ``dispatcher.config.Limits``.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Collection, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from ailuro import names
from ailuro.errors import InvalidArgument
from ailuro.v1 import factory_pb2, job_pb2, pilot_pb2, submission_pb2
from ddm.locations import StorageLocations
from dispatcher import jobfields
from dispatcher.config import Limits
from dispatcher.states import PILOT_FINAL_REPORTABLE, PILOT_REPORTABLE, JobState

MAX_BATCH = 5000
MAX_NAME = 255
MAX_TRANSFORMATION = 4096
MAX_JOB_PARAMETERS = 65536
MAX_ENV_ENTRIES = 256
MAX_ENV_VALUE = 4096
MAX_FILES_PER_JOB = 5000
MAX_TEXT = 1000
MAX_REQUEST_ID = 128
MAX_ATTEMPT = 100
MAX_USAGE_S = 1e9
"""Largest cpu or wall time a pilot may report (~31 years): the start time derived from a huge
walltime was -inf once scaled to nanoseconds, and every ListJobs of that job failed INTERNAL."""
DEFAULT_MAX_ATTEMPT = 3
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 5000
MAX_JOBS_PER_REQUEST = 100
MAX_WORKER_LIST = 100_000
MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1
MAX_PAGE_TOKEN = 64
MIN_TIMESTAMP_S = -62135596800  # 0001-01-01T00:00:00Z, the range google.protobuf.Timestamp allows
MAX_TIMESTAMP_S = 253402300799  # 9999-12-31T23:59:59Z

_ADLER32 = re.compile(r"^[0-9a-fA-F]{8}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PAGE_TOKEN_PREFIX = "v1:"


def _text(value: str, field: str, *, limit: int = MAX_NAME, required: bool = False) -> None:
    if required and not value.strip():
        raise InvalidArgument("must not be empty", field=field)
    if len(value) > limit:
        raise InvalidArgument(f"is {len(value)} characters long; the limit is {limit}", field=field)
    if "\x00" in value:
        raise InvalidArgument("must not contain NUL characters", field=field)


def _non_negative(value: int, field: str) -> None:
    if value < 0:
        raise InvalidArgument(f"must be >= 0, got {value}", field=field)


def _timestamp(stamp: Timestamp, field: str) -> None:
    """A Timestamp the protobuf runtime can convert (its own conversions raise ValueError otherwise)."""
    if not MIN_TIMESTAMP_S <= stamp.seconds <= MAX_TIMESTAMP_S:
        raise InvalidArgument(
            f"seconds must be {MIN_TIMESTAMP_S} to {MAX_TIMESTAMP_S} (years 1 to 9999), got {stamp.seconds}",
            field=f"{field}.seconds",
        )
    if not 0 <= stamp.nanos <= 999_999_999:
        raise InvalidArgument(f"must be 0 to 999,999,999, got {stamp.nanos}", field=f"{field}.nanos")


def _batch(count: int, field: str, *, limit: int = MAX_BATCH) -> None:
    if count == 0:
        raise InvalidArgument("must not be empty", field=field)
    if count > limit:
        raise InvalidArgument(f"has {count} entries; the limit is {limit} per call", field=field)


def validate_ids(ids: Sequence[int], field: str = "panda_ids") -> None:
    """1 to 5,000 positive job ids."""
    _batch(len(ids), field)
    for i, pid in enumerate(ids):
        if pid <= 0:
            raise InvalidArgument(f"must be a positive job id, got {pid}", field=f"{field}[{i}]")


def validate_file(f: job_pb2.File, where: str) -> None:
    """One file of a submitted job or of a final report.

    Only the rule every dispatcher version applied is checked here (no ``/``, no NUL): the full
    character sets (``ailuro.names``) are checked where names are born (:func:`validate_job`), so
    the final report of a job accepted under older rules is still accepted and the job never
    sits in holding because of its own name. The pilot never writes outside its work directory
    whatever the name (``pilot.sandbox``).
    """
    _text(f.lfn, f"{where}.lfn", required=True)
    if "/" in f.lfn:
        raise InvalidArgument("must be a file name, not a path", field=f"{where}.lfn")
    if f.type not in (job_pb2.FILE_TYPE_INPUT, job_pb2.FILE_TYPE_OUTPUT, job_pb2.FILE_TYPE_LOG):
        raise InvalidArgument("must be FILE_TYPE_INPUT, FILE_TYPE_OUTPUT or FILE_TYPE_LOG", field=f"{where}.type")
    for name in ("guid", "dataset", "scope", "status", "source_se", "destination_se"):
        _text(getattr(f, name), f"{where}.{name}")
    _text(f.pfn, f"{where}.pfn", limit=MAX_TRANSFORMATION)
    _non_negative(f.size, f"{where}.size")
    if f.adler32 and not _ADLER32.match(f.adler32):
        raise InvalidArgument(f"must be 8 hex digits, got {f.adler32!r}", field=f"{where}.adler32")


def validate_job(job: job_pb2.Job, where: str, *, known_sites: Collection[str]) -> None:
    """One job definition of a SubmitJobs request (server-set fields are ignored, not checked)."""
    _text(job.transformation, f"{where}.transformation", limit=MAX_TRANSFORMATION, required=True)
    _text(job.job_parameters, f"{where}.job_parameters", limit=MAX_JOB_PARAMETERS)
    for name in jobfields.NAME_FIELDS:
        _text(getattr(job, name), f"{where}.{name}")
    if job.computing_site and job.computing_site not in known_sites:
        raise InvalidArgument(
            f"unknown queue {job.computing_site!r}; known: {', '.join(sorted(known_sites))}",
            field=f"{where}.computing_site",
        )
    _non_negative(job.current_priority, f"{where}.current_priority")
    _non_negative(job.job_definition_id, f"{where}.job_definition_id")
    _non_negative(job.task_id, f"{where}.task_id")
    if job.max_attempt != 0 and not 1 <= job.max_attempt <= MAX_ATTEMPT:
        raise InvalidArgument(
            f"must be 1 to {MAX_ATTEMPT} (0: default), got {job.max_attempt}", field=f"{where}.max_attempt"
        )
    for name in ("cores", "memory_mb", "max_walltime_s", "disk_mb"):
        _non_negative(getattr(job, name), f"{where}.{name}")
    validate_tags(job.tags, f"{where}.tags")
    if len(job.environment) > MAX_ENV_ENTRIES:
        raise InvalidArgument(
            f"has {len(job.environment)} entries; the limit is {MAX_ENV_ENTRIES}", field=f"{where}.environment"
        )
    for key, value in job.environment.items():
        if not _ENV_NAME.match(key) or len(key) > MAX_NAME:
            raise InvalidArgument(f"{key!r} is not a valid variable name", field=f"{where}.environment")
        _text(value, f"{where}.environment[{key}]", limit=MAX_ENV_VALUE)
    if len(job.files) > MAX_FILES_PER_JOB:
        raise InvalidArgument(f"has {len(job.files)} files; the limit is {MAX_FILES_PER_JOB}", field=f"{where}.files")
    names.check_job_names(job, where)  # the SDK's own rule, so both report the same field and message
    for j, f in enumerate(job.files):
        validate_file(f, f"{where}.files[{j}]")
    seen: set[str] = set()
    for j, f in enumerate(job.files):
        if f.lfn in seen:
            raise InvalidArgument(f"duplicate lfn {f.lfn!r} within the job", field=f"{where}.files[{j}].lfn")
        seen.add(f.lfn)


def validate_submit(req: submission_pb2.SubmitJobsRequest, *, known_sites: Collection[str]) -> None:
    """A SubmitJobs request: request_id, batch size, each job."""
    _text(req.request_id, "request_id", limit=MAX_REQUEST_ID)
    _batch(len(req.jobs), "jobs")
    for i, job in enumerate(req.jobs):
        validate_job(job, f"jobs[{i}]", known_sites=known_sites)


def validate_kill(req: submission_pb2.KillJobsRequest) -> None:
    """A KillJobs request."""
    validate_ids(req.panda_ids)
    _text(req.reason, "reason", limit=MAX_TEXT)


def encode_page_token(last_panda_id: int) -> str:
    """The opaque token for the page after the job ``last_panda_id`` (lists run newest first)."""
    return base64.urlsafe_b64encode(f"{_PAGE_TOKEN_PREFIX}{last_panda_id}".encode()).decode()


def decode_page_token(token: str) -> int | None:
    """The panda_id a page token continues after; ``None`` for the first page."""
    if not token:
        return None
    if len(token) > MAX_PAGE_TOKEN:
        raise InvalidArgument(f"is {len(token)} characters long; tokens from ListJobs are shorter", field="page_token")
    try:
        raw = base64.urlsafe_b64decode(token.encode()).decode()
        if not raw.startswith(_PAGE_TOKEN_PREFIX):
            raise ValueError(raw)
        value = int(raw[len(_PAGE_TOKEN_PREFIX) :])
        if not 0 < value <= MAX_INT64:  # a job id: the database cannot even compare a larger number
            raise ValueError(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument("is not a token returned by ListJobs", field="page_token") from None
    return value


def validate_list(req: submission_pb2.ListJobsRequest) -> tuple[int, int | None]:
    """A ListJobs request; returns ``(page_size, after_panda_id)``."""
    if not 0 <= req.page_size <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"must be 0 to {MAX_PAGE_SIZE}, got {req.page_size}", field="page_size")
    for name in jobfields.LIST_FILTERS:
        _text(getattr(req, name), name, limit=MAX_TRANSFORMATION if name == "transformation" else MAX_NAME)
    _non_negative(req.task_id, "task_id")
    for i, st in enumerate(req.statuses):
        _job_state(st, f"statuses[{i}]")
    for name in ("since", "until"):
        if req.HasField(name):
            _timestamp(getattr(req, name), name)
    if req.HasField("since") and req.HasField("until") and req.until.ToNanoseconds() < req.since.ToNanoseconds():
        raise InvalidArgument("must not be before since", field="until")
    return (req.page_size or DEFAULT_PAGE_SIZE), decode_page_token(req.page_token)


def validate_watch(req: submission_pb2.WatchJobsRequest) -> None:
    """A WatchJobs request."""
    if len(req.panda_ids) > MAX_BATCH:
        raise InvalidArgument(f"has {len(req.panda_ids)} entries; the limit is {MAX_BATCH}", field="panda_ids")
    for i, pid in enumerate(req.panda_ids):
        if pid <= 0:
            raise InvalidArgument(f"must be a positive job id, got {pid}", field=f"panda_ids[{i}]")
    _non_negative(req.task_id, "task_id")
    _non_negative(req.after_event_id, "after_event_id")
    _text(req.owner, "owner")
    _text(req.computing_site, "computing_site")


def validate_job_events(req: submission_pb2.GetJobEventsRequest) -> None:
    """A GetJobEvents request."""
    if req.panda_id <= 0:
        raise InvalidArgument(f"must be a positive job id, got {req.panda_id}", field="panda_id")


def _job_state(value: int, field: str) -> JobState:
    try:
        return JobState.from_proto(value)
    except ValueError:
        raise InvalidArgument(f"must be a job status, got {value}", field=field) from None


def validate_hello(
    hello: pilot_pb2.Hello, *, known_queues: Collection[str], where: str = "hello", limits: Limits = Limits()
) -> None:
    """A pilot's Hello (stream or unary GetJob)."""
    _text(hello.pilot_id, f"{where}.pilot_id", required=True)
    _text(hello.queue, f"{where}.queue", required=True)
    if hello.queue not in known_queues:
        raise InvalidArgument(f"unknown queue {hello.queue!r}", field=f"{where}.queue")
    for name in ("node", "batch_id", "version"):
        _text(getattr(hello, name), f"{where}.{name}")
    for name in ("cores", "memory_mb", "walltime_left_s", "disk_mb"):
        _non_negative(getattr(hello, name), f"{where}.{name}")
    validate_tags(hello.tags, f"{where}.tags")
    if len(hello.held_jobs) > limits.held_jobs_per_hello:
        raise InvalidArgument(
            f"has {len(hello.held_jobs)} entries; the limit (held_jobs_per_hello) is {limits.held_jobs_per_hello}",
            field=f"{where}.held_jobs",
        )
    for i, held in enumerate(hello.held_jobs):
        if held.panda_id <= 0:
            raise InvalidArgument("must be a positive job id", field=f"{where}.held_jobs[{i}].panda_id")


MAX_TAGS = 16
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}\Z")


def validate_tags(tags: Sequence[str], field: str) -> None:
    """Resource tags of a job or pilot: at most 16, each a 1-64 character word (no commas)."""
    if len(tags) > MAX_TAGS:
        raise InvalidArgument(f"has {len(tags)} entries; the limit is {MAX_TAGS}", field=field)
    for i, tag in enumerate(tags):
        if not _TAG.match(tag):
            raise InvalidArgument(
                f"{tag[:80]!r} is not a tag (letters, digits and _.:+-, at most 64)", field=f"{field}[{i}]"
            )
    if len(",".join(sorted(set(tags)))) > 255:
        raise InvalidArgument("tags are longer than 255 characters together", field=field)


def validate_free(request: pilot_pb2.JobRequest, where: str = "job_request") -> None:
    """The free resources a JobRequest states."""
    for name in ("walltime_left_s", "cores_free", "memory_mb_free", "disk_mb_free"):
        _non_negative(getattr(request, name), f"{where}.{name}")


def validate_job_request_n(n: int, field: str) -> None:
    """How many jobs a pilot asks for at once."""
    if not 1 <= n <= MAX_JOBS_PER_REQUEST:
        raise InvalidArgument(f"must be 1 to {MAX_JOBS_PER_REQUEST}, got {n}", field=field)


_ERROR_COMPONENTS = frozenset(v for v in job_pb2.ErrorComponent.values() if v != job_pb2.ERROR_COMPONENT_UNSPECIFIED)


def metrics_problem(m: job_pb2.JobMetrics, where: str = "metrics") -> str | None:
    """Why reported usage figures cannot be stored (NaN, infinite or negative), or ``None``.

    SQLite refuses NaN in a NOT NULL column and PostgreSQL would store it and poison every sum:
    either way one such report must be refused alone, before it reaches a shared transaction.
    """
    for name in ("cpu_time_s", "walltime_s"):
        value = getattr(m, name)
        if not math.isfinite(value) or not 0 <= value <= MAX_USAGE_S:
            return f"{where}.{name} must be a finite number from 0 to {MAX_USAGE_S:g}, got {value!r}"
    if m.max_rss_kb < 0:
        return f"{where}.max_rss_kb must be >= 0, got {m.max_rss_kb}"
    return None


def heartbeat_problem(hb: pilot_pb2.Heartbeat) -> str | None:
    """Why a heartbeat is malformed (answered with Ack REJECTED), or ``None``."""
    if hb.panda_id <= 0:
        return "panda_id must be positive"
    try:
        state = JobState.from_proto(hb.status)
    except ValueError:
        return f"status {hb.status} is not a job status"
    if state not in PILOT_REPORTABLE:
        return f"a heartbeat may report starting, running, holding or transferring, not {state.value}"
    return metrics_problem(hb.metrics)


def final_problem(final: pilot_pb2.JobFinal, limits: Limits = Limits()) -> str | None:
    """Why a final report is malformed or too large (answered with Ack REJECTED), or ``None``."""
    if final.panda_id <= 0:
        return "panda_id must be positive"
    try:
        state = JobState.from_proto(final.status)
    except ValueError:
        return f"status {final.status} is not a job status"
    if state not in PILOT_FINAL_REPORTABLE:
        return f"a final report may be finished, failed or cancelled, not {state.value}"
    problem = metrics_problem(final.metrics)
    if problem:
        return problem
    if len(final.files) > limits.files_per_final:
        return f"files has {len(final.files)} entries; the limit (files_per_final) is {limits.files_per_final}"
    if len(final.errors) > limits.errors_per_final:
        return f"errors has {len(final.errors)} entries; the limit (errors_per_final) is {limits.errors_per_final}"
    for j, f in enumerate(final.files):
        try:
            validate_file(f, f"files[{j}]")
        except InvalidArgument as exc:
            return str(exc)
    for j, err in enumerate(final.errors):
        if err.component not in _ERROR_COMPONENTS:
            return f"errors[{j}].component must be an ErrorComponent, got {err.component}"
        if len(err.diag) > limits.diag_chars:
            return f"errors[{j}].diag is longer than {limits.diag_chars} characters (diag_chars)"
        if "\x00" in err.diag:
            return f"errors[{j}].diag must not contain NUL characters"
    return None


def validate_get_job(req: pilot_pb2.GetJobRequest, *, known_queues: Collection[str]) -> None:
    """A unary GetJob request."""
    validate_hello(req.pilot, known_queues=known_queues, where="pilot")
    validate_job_request_n(req.n, "n")


def validate_update_job(req: pilot_pb2.UpdateJobRequest, limits: Limits = Limits()) -> None:
    """A unary UpdateJob request (per-report problems are answered with Ack REJECTED instead)."""
    _text(req.pilot_id, "pilot_id", required=True)
    most = min(MAX_BATCH, limits.heartbeats_per_message)
    if len(req.heartbeats) + len(req.finals) > most:
        raise InvalidArgument(f"at most {most} reports per call (heartbeats_per_message)", field="heartbeats")


def validate_heartbeat_batch(batch: pilot_pb2.HeartbeatBatch, limits: Limits = Limits()) -> None:
    """One HeartbeatBatch message of a stream (per-heartbeat problems are answered with Ack REJECTED)."""
    if len(batch.heartbeats) > limits.heartbeats_per_message:
        raise InvalidArgument(
            f"has {len(batch.heartbeats)} entries; the limit (heartbeats_per_message) is "
            f"{limits.heartbeats_per_message}",
            field="heartbeats.heartbeats",
        )


_WORKER_STATES = {v for v in factory_pb2.WorkerState.values() if v != factory_pb2.WORKER_STATE_UNSPECIFIED}


def _worker_state(value: int, field: str) -> None:
    if value not in _WORKER_STATES:
        raise InvalidArgument(f"must be a worker state, got {value}", field=field)


def validate_register_workers(req: factory_pb2.RegisterWorkersRequest, *, known_queues: Collection[str]) -> None:
    """A RegisterWorkers request."""
    _batch(len(req.workers), "workers")
    seen: set[str] = set()
    for i, w in enumerate(req.workers):
        where = f"workers[{i}]"
        _text(w.worker_id, f"{where}.worker_id", required=True)
        if w.worker_id in seen:
            raise InvalidArgument(f"duplicate worker_id {w.worker_id!r}", field=f"{where}.worker_id")
        seen.add(w.worker_id)
        _text(w.queue, f"{where}.queue", required=True)
        if w.queue not in known_queues:
            raise InvalidArgument(f"unknown queue {w.queue!r}", field=f"{where}.queue")
        for name in ("backend", "factory_id", "batch_id"):
            _text(getattr(w, name), f"{where}.{name}")
        _text(w.diag, f"{where}.diag", limit=MAX_TEXT)
        _text(w.log_path, f"{where}.log_path", limit=MAX_TRANSFORMATION)
        if w.state != factory_pb2.WORKER_STATE_UNSPECIFIED:
            _worker_state(w.state, f"{where}.state")
        if w.HasField("submit_time"):
            _timestamp(w.submit_time, f"{where}.submit_time")


def validate_update_workers(req: factory_pb2.UpdateWorkersRequest) -> None:
    """An UpdateWorkers request."""
    _batch(len(req.updates), "updates")
    for i, u in enumerate(req.updates):
        _text(u.worker_id, f"updates[{i}].worker_id", required=True)
        _worker_state(u.state, f"updates[{i}].state")
        _text(u.diag, f"updates[{i}].diag", limit=MAX_TEXT)


def validate_queue_health(req: factory_pb2.ReportQueueHealthRequest, *, known_queues: Collection[str]) -> None:
    """A ReportQueueHealth request: known queues, each once, bounded text, sane numbers."""
    _batch(len(req.queues), "queues")
    seen: set[str] = set()
    for i, h in enumerate(req.queues):
        where = f"queues[{i}]"
        if h.queue not in known_queues:
            raise InvalidArgument(f"unknown queue {h.queue!r}", field=f"{where}.queue")
        if h.queue in seen:
            raise InvalidArgument(f"duplicate queue {h.queue!r}", field=f"{where}.queue")
        seen.add(h.queue)
        if h.start_failures < 0:
            raise InvalidArgument("must be >= 0", field=f"{where}.start_failures")
        if not math.isfinite(h.backoff_until) or h.backoff_until < 0:
            raise InvalidArgument("must be a finite time >= 0", field=f"{where}.backoff_until")
        _text(h.last_error, f"{where}.last_error", limit=MAX_TEXT)


def validate_list_workers(req: factory_pb2.ListWorkersRequest) -> int:
    """A ListWorkers request; returns the effective limit."""
    _text(req.queue, "queue")
    _text(req.factory_id, "factory_id")
    if not 0 <= req.limit <= MAX_WORKER_LIST:
        raise InvalidArgument(f"must be 0 to {MAX_WORKER_LIST}, got {req.limit}", field="limit")
    return req.limit or 1000


def validate_queue_stats(req: factory_pb2.GetQueueStatsRequest, *, known_queues: Collection[str]) -> None:
    """A GetQueueStats request: named queues must exist."""
    for i, q in enumerate(req.queues):
        if q not in known_queues:
            raise InvalidArgument(f"unknown queue {q!r}", field=f"queues[{i}]")


def validate_output_locations(req: submission_pb2.SubmitJobsRequest, locations: StorageLocations) -> None:
    """Output and log ``pfn`` of submitted jobs: empty (the pilot or the DDM plan chooses), or inside
    configured storage. A pilot writes there with its own rights, so a submitter must not be able to
    point it at another user's files or anywhere on the worker. Input pfns are only read into the
    job's own work directory; pfns in final reports are stored but read back only through
    :mod:`ddm.locations`."""
    for i, job in enumerate(req.jobs):
        for j, f in enumerate(job.files):
            if f.pfn and f.type in (job_pb2.FILE_TYPE_OUTPUT, job_pb2.FILE_TYPE_LOG):
                locations.resolve(f.pfn, field=f"jobs[{i}].files[{j}].pfn")
