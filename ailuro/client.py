"""The Python client SDK: submit, inspect, kill, retry and watch jobs on an Ailuro dispatcher.

Example::

    from ailuro import Client

    with Client("127.0.0.1:50051", identity="jdoe") as c:
        ids = c.submit([{"transformation": "echo", "job_parameters": "hello"}])
        for event in c.watch(panda_ids=ids):
            print(event.panda_id, event.to_status)

Every failed call raises the matching ``ailuro.errors`` class (``InvalidArgument`` keeps the
``field`` the server named). Calls are retried with exponential backoff, a bounded number of
times, only when retrying is safe: on ``UNAVAILABLE`` (the server or its database is down) and,
for calls that change nothing or carry an idempotency key, on ``DEADLINE_EXCEEDED``.
"""

from __future__ import annotations

import os
import random
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf import timestamp_pb2

from ailuro import names, targets
from ailuro.backoff import backoff_delay
from ailuro.credentials import bearer_metadata, resolve_token, tls_credentials
from ailuro.errors import AiluroError, InvalidArgument, from_rpc_error
from ailuro.jobspec import job_from_dict, status_name, status_value
from ailuro.v1 import job_pb2, submission_pb2, submission_pb2_grpc
from ailuro.vocabulary import FACTORY_ID_METADATA_KEY as FACTORY_ID_METADATA_KEY  # re-exported
from ailuro.vocabulary import FACTORY_SECRET_METADATA_KEY as FACTORY_SECRET_METADATA_KEY  # re-exported
from ailuro.vocabulary import ROLES_METADATA_KEY, USER_METADATA_KEY, VO_METADATA_KEY

if TYPE_CHECKING:
    from ailuro.admin import AdminClient
    from ailuro.brokerage import BrokerageClient
    from ailuro.ddm import DDMClient, TaskClient

DEFAULT_SERVER = "127.0.0.1:50051"
"""Where the client connects when neither the argument nor ``AILURO_SERVER`` says otherwise."""

MAX_BATCH = 5000
"""The server's per-call limit for job lists; larger lists are split into several calls."""

_RETRY_ALWAYS = frozenset({grpc.StatusCode.UNAVAILABLE})
_RETRY_IDEMPOTENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
_T = TypeVar("_T")


@dataclass(frozen=True, kw_only=True)
class JobPage:
    """One page of :meth:`Client.list_page`: the jobs and totals over every page."""

    jobs: list[job_pb2.Job]
    next_page_token: str
    """Pass back as ``page_token`` for the next page; empty on the last page."""
    status_counts: dict[str, int] = field(default_factory=dict)
    """Matching jobs by state name (``{"running": 3}``), over all pages."""
    total: int = 0
    """Number of matching jobs over all pages."""


LATE_COMMIT_S = 15.0
"""How long an event may reach a watcher after events with higher ids (PostgreSQL draws ids
before commit; the dispatcher waits ``watch_gap_timeout_s``, 10 s, for a late one), plus margin."""


class _ResumePoint:
    """Where a reconnecting watch resumes so that no late-committed event is lost.

    An event received ``LATE_COMMIT_S`` ago or earlier was written before any event that is
    still on its way, so resuming after the highest such id misses nothing; the newer ids the
    replay repeats are dropped by the caller's memory of recent ids.
    """

    def __init__(self, floor: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.settled = floor
        self._pending: deque[tuple[float, int]] = deque()
        self._clock = clock

    def seen(self, event_id: int) -> None:
        """An event was received now."""
        self._pending.append((self._clock(), event_id))

    def after_event_id(self) -> int:
        """The ``after_event_id`` for the next stream."""
        horizon = self._clock() - LATE_COMMIT_S
        while self._pending and self._pending[0][0] <= horizon:
            self.settled = max(self.settled, self._pending.popleft()[1])
        if self.settled == 0 and self._pending:
            # 0 would mean "only new events": start just before the first one received instead
            return max(1, min(i for _, i in self._pending) - 1)
        return self.settled


def _chunks(items: Sequence[_T], size: int) -> list[Sequence[_T]]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [items]


def _timestamp(when: datetime | None) -> timestamp_pb2.Timestamp | None:
    if when is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when)
    return ts


_JOBS_INDEX = re.compile(r"^jobs\[(\d+)\]")


def _shift_field(exc: AiluroError, offset: int) -> AiluroError:
    """Re-number ``jobs[i]`` in an error from the n-th chunk of a split submission."""
    if offset and exc.field:
        exc.field = _JOBS_INDEX.sub(lambda m: f"jobs[{int(m.group(1)) + offset}]", exc.field)
        exc.message = _JOBS_INDEX.sub(lambda m: f"jobs[{int(m.group(1)) + offset}]", exc.message)
        exc.args = (f"{exc.field}: {exc.message}",)
    return exc


def describe_error(exc: AiluroError) -> str:
    """One line for users: ``INVALID_ARGUMENT jobs[0].transformation: must not be empty``."""
    code = exc.status_code.name if isinstance(exc.status_code, grpc.StatusCode) else str(exc.status_code)
    message = exc.message
    if exc.field and not message.startswith(exc.field):
        message = f"{exc.field}: {message}"
    return f"{code} {message}"


class Client:
    """A connection to one dispatcher's ``SubmissionService``.

    ``server`` defaults to ``$AILURO_SERVER`` then ``127.0.0.1:50051``; ``identity`` to
    ``$AILURO_USER`` (none: the server treats the caller as anonymous). ``timeout`` bounds each
    unary call; ``extra_metadata`` is sent with every call; ``retries`` bounds the extra attempts
    of a retryable failure. ``token`` (else ``token_file``, ``$AILURO_TOKEN``,
    ``$AILURO_TOKEN_FILE``) is sent as ``authorization: Bearer``; ``tls_ca`` (else
    ``$AILURO_TLS_CA``) names the CA file of a dispatcher that speaks TLS; ``tls_cert`` (else
    ``$AILURO_TLS_CERT``) a PEM file with a client certificate and its key (a grid proxy file) for
    a dispatcher that requires client certificates (mTLS).
    """

    def __init__(
        self,
        server: str | None = None,
        *,
        identity: str | None = None,
        vo: str | None = None,
        roles: Sequence[str] = (),
        extra_metadata: Sequence[tuple[str, str]] = (),
        timeout: float = 30.0,
        retries: int = 4,
        backoff_s: float = 0.25,
        token: str | None = None,
        token_file: str | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
    ) -> None:
        self.server = server or os.environ.get("AILURO_SERVER") or DEFAULT_SERVER
        self.identity = identity if identity is not None else os.environ.get("AILURO_USER") or None
        self.vo = vo
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        metadata: list[tuple[str, str]] = []
        if self.identity:
            metadata.append((USER_METADATA_KEY, self.identity))
        if vo:
            metadata.append((VO_METADATA_KEY, vo))
        if roles:
            metadata.append((ROLES_METADATA_KEY, ",".join(roles)))
        # e.g. the PanDA gateway forwarding its caller's ``authorization`` header for the server to judge
        metadata.extend(extra_metadata)
        self.token = resolve_token(token, token_file)
        self._metadata = (*metadata, *bearer_metadata(self.token))
        self._channel = targets.channel(self.server, tls=tls_credentials(tls_ca, tls_cert))
        self._stub = submission_pb2_grpc.SubmissionServiceStub(self._channel)

    # -- plumbing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the channel; the client is unusable afterwards."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(server={self.server!r}, identity={self.identity!r})"

    @property
    def admin(self) -> AdminClient:
        """Admin calls on the same connection: the audit log, token issuance (:mod:`ailuro.admin`)."""
        from ailuro.admin import AdminClient

        return AdminClient(self)

    @property
    def ddm(self) -> DDMClient:
        """Data management on the same connection: SEs, datasets, replicas, transfers (:mod:`ailuro.ddm`)."""
        from ailuro.ddm import DDMClient

        return DDMClient(self)

    @property
    def brokerage(self) -> BrokerageClient:
        """Queue status, fair share and ``why`` on the same connection (:mod:`ailuro.brokerage`)."""
        from ailuro.brokerage import BrokerageClient

        return BrokerageClient(self)

    @property
    def tasks(self) -> TaskClient:
        """Production task chains on the same connection (:mod:`ailuro.ddm`)."""
        from ailuro.ddm import TaskClient

        return TaskClient(self)

    def _sleep_before_retry(self, attempt: int) -> None:
        # full jitter keeps many clients that lost the same server from returning in lockstep
        delay = backoff_delay(attempt + 1, base_s=self.backoff_s, max_s=5.0)
        time.sleep(random.uniform(delay / 2, delay))

    def _call(self, method: Callable[..., _T], request: Any, *, idempotent: bool) -> _T:
        retry_on = _RETRY_IDEMPOTENT if idempotent else _RETRY_ALWAYS
        attempt = 0
        while True:
            try:
                return method(request, timeout=self.timeout, metadata=self._metadata)
            except grpc.RpcError as err:
                if err.code() in retry_on and attempt < self.retries:
                    self._sleep_before_retry(attempt)
                    attempt += 1
                    continue
                raise from_rpc_error(err) from None

    # -- jobs -----------------------------------------------------------------------------------

    def submit(
        self,
        jobs: Iterable[job_pb2.Job | Mapping[str, Any]],
        *,
        request_id: str | None = None,
    ) -> list[int]:
        """Submit jobs (``Job`` messages or dicts, see :mod:`ailuro.jobspec`); return their panda_ids.

        A ``request_id`` (a fresh uuid4 when not given) makes the call idempotent, so retrying
        after a timeout never creates duplicates; pass your own to make a whole script re-runnable.
        Lists longer than 5,000 go in several calls with ids ``<request_id>.<n>``; each call is
        all-or-nothing, so a failure in a later chunk leaves earlier chunks submitted (the
        exception's ``field`` counts jobs from the start of the whole list).
        """
        messages = [
            j if isinstance(j, job_pb2.Job) else job_from_dict(j, field=f"jobs[{i}]") for i, j in enumerate(jobs)
        ]
        if not messages:
            raise InvalidArgument("at least one job is required", field="jobs")
        for i, message in enumerate(messages):  # the dispatcher's own name rules, checked before sending
            names.check_job_names(message, f"jobs[{i}]")
        base_id = request_id or str(uuid.uuid4())
        chunks = _chunks(messages, MAX_BATCH)
        ids: list[int] = []
        for n, chunk in enumerate(chunks):
            rid = base_id if len(chunks) == 1 else f"{base_id}.{n}"
            if not 1 <= len(rid) <= 128:
                raise InvalidArgument("must be 1 to 128 characters (including the chunk suffix)", field="request_id")
            request = submission_pb2.SubmitJobsRequest(request_id=rid, jobs=chunk)
            try:
                response = self._call(self._stub.SubmitJobs, request, idempotent=True)
            except AiluroError as exc:
                raise _shift_field(exc, n * MAX_BATCH) from None
            ids.extend(response.panda_ids)
        return ids

    def get(self, ids: Iterable[int]) -> list[job_pb2.Job]:
        """The jobs with these panda_ids, in the same order; ``NotFound`` names an unknown id."""
        wanted = list(ids)
        found: dict[int, job_pb2.Job] = {}
        # the server answers each distinct id once; ask for each once and repeat locally
        for chunk in _chunks(list(dict.fromkeys(wanted)), MAX_BATCH):
            response = self._call(self._stub.GetJobs, submission_pb2.GetJobsRequest(panda_ids=chunk), idempotent=True)
            found.update((job.panda_id, job) for job in response.jobs)
        return [found[pid] for pid in wanted]

    def list_page(
        self,
        *,
        site: str = "",
        status: str | int | Iterable[str | int] = (),
        label: str = "",
        owner: str = "",
        task_id: int = 0,
        transformation: str = "",
        vo: str = "",
        job_name: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 100,
        page_token: str = "",
        with_files: bool = False,
    ) -> JobPage:
        """One page of jobs matching the filters (newest first), with totals by state.

        ``status`` takes lowercase state names (``"failed"``) or ``JobStatus`` values; several
        mean "any of these". ``since``/``until`` bound the modification time.
        """
        statuses = [status] if isinstance(status, (str, int)) else list(status)
        request = submission_pb2.ListJobsRequest(
            computing_site=site,
            statuses=[status_value(s, field="statuses") for s in statuses],
            prod_source_label=label,
            owner=owner,
            task_id=task_id,
            transformation=transformation,
            vo=vo,
            job_name=job_name,
            since=_timestamp(since),
            until=_timestamp(until),
            page_size=page_size,
            page_token=page_token,
            with_files=with_files,
        )
        response = self._call(self._stub.ListJobs, request, idempotent=True)
        return JobPage(
            jobs=list(response.jobs),
            next_page_token=response.next_page_token,
            status_counts={status_name(c.status): c.count for c in response.state_counts},
            total=response.total,
        )

    def list_jobs(self, *, limit: int | None = None, page_size: int = 500, **filters: Any) -> Iterator[job_pb2.Job]:
        """All jobs matching the filters of :meth:`list_page`, following pagination lazily."""
        token = ""
        seen = 0
        while True:
            size = page_size if limit is None else max(1, min(page_size, limit - seen))
            page = self.list_page(page_size=size, page_token=token, **filters)
            for job in page.jobs:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield job
            token = page.next_page_token
            if not token or (limit is not None and seen >= limit):
                return

    def kill(self, ids: Iterable[int], *, reason: str = "") -> list[submission_pb2.KillResult]:
        """Kill jobs: queued ones end ``cancelled`` at once, running ones get a kill on their pilot.

        Returns one result per id; ``accepted`` is false for jobs that were already final.
        Killing twice is harmless, so the call is retried like an idempotent one.
        """
        results: list[submission_pb2.KillResult] = []
        for chunk in _chunks(list(ids), MAX_BATCH):
            request = submission_pb2.KillJobsRequest(panda_ids=chunk, reason=reason)
            results.extend(self._call(self._stub.KillJobs, request, idempotent=True).results)
        return results

    def retry(self, ids: Iterable[int]) -> list[int]:
        """Resubmit final failed/cancelled/closed jobs as new jobs; return the new panda_ids."""
        new_ids: list[int] = []
        for chunk in _chunks(list(ids), MAX_BATCH):
            request = submission_pb2.RetryJobsRequest(panda_ids=chunk)
            # not idempotent: a timed-out retry may have created jobs, so only UNAVAILABLE is retried
            new_ids.extend(self._call(self._stub.RetryJobs, request, idempotent=False).new_panda_ids)
        return new_ids

    def events(self, panda_id: int) -> list[job_pb2.JobEvent]:
        """The state history of one job, oldest first."""
        request = submission_pb2.GetJobEventsRequest(panda_id=panda_id)
        return list(self._call(self._stub.GetJobEvents, request, idempotent=True).events)

    def debug(self, panda_id: int, *, timeout_s: float = 30.0) -> submission_pb2.DebugJobResponse:
        """A snapshot of a running job's payload, taken now by its pilot (owner or admin only).

        The pilot answers with the process tree (CPU, memory, command lines) and the last bytes of
        stdout and stderr; the dispatcher waits up to ``timeout_s`` (at most 120) for it. Not
        retried: every call asks the pilot again.
        """
        request = submission_pb2.DebugJobRequest(panda_id=panda_id, timeout_s=timeout_s)
        try:
            return self._stub.DebugJob(request, timeout=timeout_s + 10.0, metadata=self._metadata)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    def job_log(self, panda_id: int, *, member: str = "") -> tuple[bytes, submission_pb2.JobLogChunk]:
        """A job's log tarball (``member=""``) or one file inside it (``"payload.stdout"``, ...).

        Returns the content and the first chunk, whose ``lfn``, ``pfn`` and ``members`` describe the
        tarball. The server checks the tarball's adler32 against the catalog before sending it.
        """
        request = submission_pb2.GetJobLogRequest(panda_id=panda_id, member=member)
        attempt = 0
        while True:
            try:
                chunks = list(self._stub.GetJobLog(request, timeout=self.timeout, metadata=self._metadata))
                return b"".join(c.data for c in chunks), chunks[0]
            except grpc.RpcError as err:
                if err.code() in _RETRY_IDEMPOTENT and attempt < self.retries:
                    self._sleep_before_retry(attempt)
                    attempt += 1
                    continue
                raise from_rpc_error(err) from None

    def queues(self) -> list[submission_pb2.QueueInfo]:
        """The configured queues (sites) with their load."""
        return list(self._call(self._stub.ListQueues, submission_pb2.ListQueuesRequest(), idempotent=True).queues)

    def watch(
        self,
        *,
        panda_ids: Iterable[int] = (),
        task_id: int = 0,
        owner: str = "",
        site: str = "",
        after_event_id: int = 0,
    ) -> Generator[job_pb2.JobEvent, None, None]:
        """Stream state changes of the matching jobs as they happen, until the caller stops.

        ``after_event_id`` > 0 first replays the matching history after that event (use the last
        ``event_id`` of :meth:`events` to miss nothing between a lookup and the watch); events at
        or before it are never yielded. When the connection drops (``UNAVAILABLE``) the stream is
        reopened from the newest event received at least ``LATE_COMMIT_S`` before (so an event
        that committed late on PostgreSQL is not skipped) and repeats are dropped; after
        ``retries`` failed reconnects in a row the error is raised. Close the generator (or break out of the loop)
        to stop watching.
        """
        ids = list(panda_ids)
        floor = after_event_id
        resume = _ResumePoint(after_event_id)
        recent: deque[int] = deque(maxlen=100_000)
        recent_set: set[int] = set()
        failures = 0
        while True:
            request = submission_pb2.WatchJobsRequest(
                panda_ids=ids,
                task_id=task_id,
                owner=owner,
                computing_site=site,
                after_event_id=resume.after_event_id(),
            )
            stream = self._stub.WatchJobs(request, metadata=self._metadata)
            try:
                for event in stream:
                    failures = 0
                    # the caller asked for events after `floor`; a replay after a reconnect may
                    # repeat what was already delivered: drop both
                    if event.event_id <= floor or event.event_id in recent_set:
                        continue
                    if len(recent) == recent.maxlen:
                        recent_set.discard(recent[0])
                    recent.append(event.event_id)
                    recent_set.add(event.event_id)
                    resume.seen(event.event_id)
                    yield event
                return
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.UNAVAILABLE and failures < self.retries:
                    self._sleep_before_retry(failures)
                    failures += 1
                    continue
                raise from_rpc_error(err) from None
            finally:
                stream.cancel()
