"""Locust scenario: submitters, pilots and watchers against a running dispatcher over gRPC.

    locust -f loadtests/locustfile.py --headless -u 16 -r 16 -t 2m --host 127.0.0.1:50051 \\
        --ailuro-jobs-per-s 35 --ailuro-db postgresql+psycopg://postgres@127.0.0.1/ailuro

(``ailuro loadtest`` starts a fresh database and dispatcher and runs exactly this.) Users are
picked by weight: ``ProductionSubmitter`` (batches, VO ``compass``, label ``managed``),
``AnalysisSubmitter`` (a few jobs per call, label ``user``), ``Pilot`` (a ``Connect`` stream that
takes jobs, heartbeats every ``--ailuro-heartbeat-s``, finishes them after ``--ailuro-job-s``,
fails ``--ailuro-fail-fraction`` of them retryably) and ``Watcher`` (``ListJobs`` pages and a
``WatchJobs`` stream, like the monitor). Submitters together aim at ``--ailuro-jobs-per-s``.

Every call is reported to locust (``events.request``): unary calls by method name, stream
traffic as ``stream`` entries (``JobRequest`` = request to assignment, ``Heartbeat`` = heartbeat
to ack, ``JobFinal`` = final to ack). When the run ends the file prints jobs/day equivalent,
RPC p50/p95/p99 and failures, then (with ``--ailuro-db``) the database consistency check, and
sets the exit code to 1 on any failure or violation.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import grpc  # noqa: E402
import grpc.experimental.gevent as grpc_gevent  # noqa: E402

grpc_gevent.init_gevent()

import random  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

import gevent  # noqa: E402
from gevent.queue import Queue  # noqa: E402
from locust import User, between, constant_throughput, events, task  # noqa: E402
from locust.env import Environment  # noqa: E402

from ailuro.credentials import bearer_metadata, resolve_token  # noqa: E402
from ailuro.v1 import job_pb2, pilot_pb2, pilot_pb2_grpc, submission_pb2, submission_pb2_grpc  # noqa: E402
from ailuro.vocabulary import USER_METADATA_KEY, VO_METADATA_KEY  # noqa: E402
from loadtests._harness import channel as token_channel  # noqa: E402
from loadtests._harness import role_token  # noqa: E402

T = TypeVar("T")
QUEUE = "LOCAL"
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class Ledger:
    """What clients were told, for the consistency check at the end (one locust process)."""

    submitted: list[int] = []
    unanswered: dict[str, str] = {}
    """request_id -> owner of SubmitJobs calls without a reply yet (still in flight when the run
    stops, or out of retries): they may have committed, and the check finds their jobs by id."""
    assignments: list[tuple[int, int]] = []
    finished_acked: list[int] = []
    started = 0.0
    calls: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
    """Response times per (kind, name), in whole milliseconds: bounded for a day-long run, and
    our own, so the report never depends on when locust resets or hands over its statistics."""
    failed: Counter[tuple[str, str]] = Counter()


def _percentile(times: Counter[int], q: float) -> int:
    """The ``q`` quantile (0-1) of a histogram of milliseconds."""
    rank = q * (sum(times.values()) - 1)
    seen = 0
    for ms in sorted(times):
        seen += times[ms]
        if seen > rank:
            return ms
    return 0


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    g = parser.add_argument_group("ailuro")
    g.add_argument("--ailuro-jobs-per-s", type=float, default=35.0, help="submitted jobs/s over all submitters")
    g.add_argument("--ailuro-prod-batch", type=int, default=100, help="jobs per production SubmitJobs")
    g.add_argument("--ailuro-analysis-batch", type=int, default=5, help="jobs per analysis SubmitJobs")
    g.add_argument("--ailuro-analysis-share", type=float, default=0.2, help="share of jobs from analysis users")
    g.add_argument("--ailuro-slots", type=int, default=8, help="jobs a pilot runs at once")
    g.add_argument("--ailuro-job-s", type=float, default=3.0, help="seconds a job 'runs' on a pilot")
    g.add_argument("--ailuro-heartbeat-s", type=float, default=1.0, help="pilot heartbeat period")
    g.add_argument("--ailuro-fail-fraction", type=float, default=0.02, help="jobs the pilot fails (retryable)")
    g.add_argument("--ailuro-timeout-s", type=float, default=10.0, help="deadline of each unary call")
    g.add_argument("--ailuro-db", default="", help="database URL for the consistency check at the end")
    g.add_argument("--ailuro-pilots", type=int, default=0, help="Pilot users (0: by weight)")
    g.add_argument("--ailuro-prod-submitters", type=int, default=0, help="ProductionSubmitter users (0: by weight)")
    g.add_argument("--ailuro-analysis-submitters", type=int, default=0, help="AnalysisSubmitter users (0: by weight)")
    g.add_argument("--ailuro-watchers", type=int, default=0, help="Watcher users (0: by weight)")


@events.init.add_listener
def _fixed_counts(environment: Environment, **_: Any) -> None:
    """Exact user counts per class when given (``-u`` should then be their sum)."""
    opts = environment.parsed_options
    if opts is None:
        return
    for cls, name in (
        (Pilot, "ailuro_pilots"),
        (ProductionSubmitter, "ailuro_prod_submitters"),
        (AnalysisSubmitter, "ailuro_analysis_submitters"),
        (Watcher, "ailuro_watchers"),
    ):
        if getattr(opts, name, 0):
            cls.fixed_count = getattr(opts, name)


def _opt(env: Environment | None, name: str) -> Any:
    assert env is not None and env.parsed_options is not None
    return getattr(env.parsed_options, name)


def _fire(env: Environment, kind: str, name: str, t0: float, exc: BaseException | None, size: int = 0) -> None:
    elapsed_ms = (time.perf_counter() - t0) * 1000
    Ledger.calls[(kind, name)][round(elapsed_ms)] += 1
    if exc is not None:
        Ledger.failed[(kind, name)] += 1
    env.events.request.fire(
        request_type=kind,
        name=name,
        response_time=elapsed_ms,
        response_length=size,
        exception=exc,
        context={},
    )


class GrpcUser(User):
    """Base: one channel per user; :meth:`call` reports each unary call and retries retryable ones."""

    abstract = True

    def on_start(self) -> None:
        # each user sends its own token (see metadata()), so no channel-wide one
        self.channel = grpc.insecure_channel(self.host or "127.0.0.1:50051")
        self.submission = submission_pb2_grpc.SubmissionServiceStub(self.channel)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """A user token of the load issuer (token mode), else ``$AILURO_TOKEN`` when set."""
        return bearer_metadata(role_token("watcher", "compass", "user") or resolve_token())

    def on_stop(self) -> None:
        self.channel.close()

    def call(self, name: str, fn: Callable[..., T], request: Any, *, retries: int = 0, **kw: Any) -> T | None:
        """Call ``fn(request)``; report it; retry UNAVAILABLE/DEADLINE_EXCEEDED ``retries`` times."""
        timeout = _opt(self.environment, "ailuro_timeout_s")
        for attempt in range(retries + 1):
            t0 = time.perf_counter()
            try:
                resp = fn(request, timeout=timeout, **kw)
            except grpc.RpcError as exc:
                _fire(self.environment, "grpc", name, t0, exc)
                if exc.code() in _RETRYABLE and attempt < retries:
                    gevent.sleep(min(0.2 * 2**attempt, 2.0))
                    continue
                return None
            _fire(self.environment, "grpc", name, t0, None, resp.ByteSize())
            return resp
        return None


class _Submitter(GrpcUser):
    abstract = True
    label = "user"
    vo = ""
    owner = "anonymous"

    def batch(self) -> int:
        raise NotImplementedError

    @task
    def submit(self) -> None:
        n = self.batch()
        jobs = [
            job_pb2.Job(
                job_name=f"lt.{uuid.uuid4().hex[:12]}",
                transformation="/bin/true",
                job_parameters="--events 100",
                computing_site=QUEUE,
                prod_source_label=self.label,
                vo=self.vo,
                max_attempt=3,
            )
            for _ in range(n)
        ]
        # One request_id for all attempts: a retry after a timeout must not create duplicates.
        req = submission_pb2.SubmitJobsRequest(request_id=uuid.uuid4().hex, jobs=jobs)
        Ledger.unanswered[req.request_id] = self.owner
        resp = self.call("SubmitJobs", self.submission.SubmitJobs, req, retries=5, metadata=self.metadata())
        if resp is not None:
            Ledger.submitted.extend(resp.panda_ids)
            del Ledger.unanswered[req.request_id]

    def metadata(self) -> tuple[tuple[str, str], ...]:
        # a token of this owner's own role when the load issuer is known (token mode), so owners and
        # VOs are what the consistency check expects; the identity metadata serves the dev mode
        token = role_token(self.owner, self.vo, "production" if self.label == "managed" else "user")
        user = ((USER_METADATA_KEY, self.owner), *bearer_metadata(token or resolve_token()))
        return (*user, (VO_METADATA_KEY, self.vo)) if self.vo else user


def _per_user_rate(env: Environment | None, share: float, batch: int, users: int) -> float:
    """SubmitJobs calls/s one user makes so that all users together reach their share of jobs/s."""
    rate = _opt(env, "ailuro_jobs_per_s") * share
    return max(rate / max(batch, 1) / max(users, 1), 1e-3)


class ProductionSubmitter(_Submitter):
    """A production system submitting batches (VO compass, label managed)."""

    weight = 1
    label = "managed"
    vo = "compass"
    owner = "prodsys"

    def batch(self) -> int:
        return _opt(self.environment, "ailuro_prod_batch")

    def wait_time(self) -> float:
        env = self.environment
        share = 1 - _opt(env, "ailuro_analysis_share")
        users = max(1, env.runner.user_classes_count.get(type(self).__name__, 1)) if env.runner else 1
        return constant_throughput(_per_user_rate(env, share, self.batch(), users))(self)


class AnalysisSubmitter(_Submitter):
    """Analysis users submitting a few jobs at a time (label user)."""

    weight = 2
    owner = "analyst"

    def batch(self) -> int:
        return max(1, random.randint(1, 2 * _opt(self.environment, "ailuro_analysis_batch") - 1))

    def wait_time(self) -> float:
        env = self.environment
        share = _opt(env, "ailuro_analysis_share")
        users = max(1, env.runner.user_classes_count.get(type(self).__name__, 1)) if env.runner else 1
        return constant_throughput(_per_user_rate(env, share, _opt(env, "ailuro_analysis_batch"), users))(self)


class Watcher(GrpcUser):
    """A monitor: pages through ListJobs and follows WatchJobs for a while."""

    weight = 1
    wait_time = between(1.0, 3.0)

    @task(3)
    def list_jobs(self) -> None:
        req = submission_pb2.ListJobsRequest(page_size=100)
        self.call("ListJobs", self.submission.ListJobs, req, metadata=self.metadata())

    @task(1)
    def watch(self) -> None:
        t0 = time.perf_counter()
        call = self.submission.WatchJobs(submission_pb2.WatchJobsRequest(), timeout=3.0, metadata=self.metadata())
        n = 0
        try:
            for _ in call:
                n += 1
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:  # the deadline is how a watch ends here
                _fire(self.environment, "stream", "WatchJobs", t0, exc)
                return
        _fire(self.environment, "stream", "WatchJobs", t0, None, n)


class Pilot(User):
    """A pilot on one Connect stream: takes jobs, heartbeats, finishes or fails them."""

    weight = 4
    wait_time = between(0.2, 0.3)

    def on_start(self) -> None:
        env = self.environment
        self.slots: int = _opt(env, "ailuro_slots")
        self.channel = token_channel(self.host or "127.0.0.1:50051", token=role_token("", "", "pilot", QUEUE))
        self.pilot_id = f"locust-{uuid.uuid4().hex[:12]}"
        self.out: Queue[pilot_pb2.PilotMessage | None] = Queue()
        self.jobs: dict[int, dict[str, Any]] = {}
        self.asked: list[float] = []
        self.beats: dict[int, float] = {}
        self.finals: dict[int, tuple[float, int]] = {}
        self.idle_until = 0.0
        self.closed = False
        self.out.put(pilot_pb2.PilotMessage(hello=pilot_pb2.Hello(pilot_id=self.pilot_id, queue=QUEUE, node="lt")))
        self.call = pilot_pb2_grpc.PilotServiceStub(self.channel).Connect(self._outgoing())
        self.reader = gevent.spawn(self._read)

    def _outgoing(self) -> Iterator[pilot_pb2.PilotMessage]:
        while True:
            msg = self.out.get()
            if msg is None:
                return
            yield msg

    def _read(self) -> None:
        env = self.environment
        try:
            for msg in self.call:
                kind = msg.WhichOneof("msg")
                if kind == "assignment" and self.asked:
                    _fire(env, "stream", "JobRequest", self.asked.pop(0), None)
                    a = msg.assignment
                    now = time.monotonic()
                    Ledger.assignments.append((a.job.panda_id, a.lease_epoch))
                    self.jobs[a.job.panda_id] = {"epoch": a.lease_epoch, "start": now, "beat": 0.0, "acked": True}
                elif kind == "no_job" and self.asked:
                    _fire(env, "stream", "JobRequest", self.asked.pop(0), None)
                    self.idle_until = time.monotonic() + min(msg.no_job.retry_after_s, 2.0)
                elif kind == "command":
                    job = self.jobs.get(msg.command.panda_id)
                    if job is not None:
                        self._final(msg.command.panda_id, job, job_pb2.JOB_STATUS_CANCELLED)
                elif kind == "acks":
                    for ack in msg.acks.acks:
                        self._ack(ack)
        except grpc.RpcError as exc:
            if not self.closed:
                _fire(env, "stream", "Connect", time.perf_counter(), exc)
        self.closed = True

    def _ack(self, ack: pilot_pb2.Ack) -> None:
        env = self.environment
        ok = ack.result == pilot_pb2.ACK_RESULT_OK
        err = None if ok else RuntimeError(pilot_pb2.AckResult.Name(ack.result) + ": " + ack.message)
        if ack.is_final:
            sent = self.finals.pop(ack.panda_id, None)
            if sent is not None:
                _fire(env, "stream", "JobFinal", sent[0], err)
                if ok and sent[1] == job_pb2.JOB_STATUS_FINISHED:
                    Ledger.finished_acked.append(ack.panda_id)
            return
        t0 = self.beats.pop(ack.panda_id, None)
        if t0 is not None:
            job = self.jobs.get(ack.panda_id)
            stale_after_kill = job is None and ack.result == pilot_pb2.ACK_RESULT_STALE_EPOCH
            _fire(env, "stream", "Heartbeat", t0, None if stale_after_kill else err)
            if job is not None:
                job["acked"] = True

    def _final(self, pid: int, job: dict[str, Any], status: int) -> None:
        del self.jobs[pid]
        final = pilot_pb2.JobFinal(panda_id=pid, lease_epoch=job["epoch"], status=status)
        if status == job_pb2.JOB_STATUS_FAILED:
            final.retryable = True
            final.errors.add(component=job_pb2.ERROR_COMPONENT_PAYLOAD, code=1, diag="loadtest failure")
        self.finals[pid] = (time.perf_counter(), status)
        self.out.put(pilot_pb2.PilotMessage(final=final))

    @task
    def step(self) -> None:
        """One pass: finish due jobs, heartbeat due ones, ask for work for free slots."""
        if self.closed:
            raise RuntimeError("stream closed")
        env = self.environment
        now = time.monotonic()
        job_s, period = _opt(env, "ailuro_job_s"), _opt(env, "ailuro_heartbeat_s")
        beats = []
        for pid, job in list(self.jobs.items()):
            if now - job["start"] >= job_s and job["acked"] and job["beat"]:
                failed = random.random() < _opt(env, "ailuro_fail_fraction")
                self._final(pid, job, job_pb2.JOB_STATUS_FAILED if failed else job_pb2.JOB_STATUS_FINISHED)
            elif job["acked"] and now - job["beat"] >= period:
                status = job_pb2.JOB_STATUS_RUNNING if job["beat"] else job_pb2.JOB_STATUS_STARTING
                beats.append(pilot_pb2.Heartbeat(panda_id=pid, lease_epoch=job["epoch"], status=status))
                job["beat"], job["acked"] = now, False
                self.beats[pid] = time.perf_counter()
        if beats:
            self.out.put(pilot_pb2.PilotMessage(heartbeats=pilot_pb2.HeartbeatBatch(heartbeats=beats)))
        free = self.slots - len(self.jobs) - len(self.asked)
        if free > 0 and now >= self.idle_until:
            for _ in range(free):
                self.asked.append(time.perf_counter())
                self.out.put(pilot_pb2.PilotMessage(job_request=pilot_pb2.JobRequest(n=1)))

    def on_stop(self) -> None:
        """Finish what it holds (bounded), then half-close the stream."""
        for pid, job in list(self.jobs.items()):
            self._final(pid, job, job_pb2.JOB_STATUS_FINISHED)
        deadline = time.monotonic() + 10
        while self.finals and not self.closed and time.monotonic() < deadline:
            gevent.sleep(0.05)
        self.closed = True
        self.out.put(None)
        self.reader.join(timeout=10)
        self.channel.close()


@events.test_start.add_listener
def _started(environment: Environment, **_: Any) -> None:
    Ledger.started = time.monotonic()


@events.quitting.add_listener
def _report(environment: Environment, **_: Any) -> None:
    """Print the Ailuro summary and the consistency check; a failure sets the exit code."""
    elapsed = max(time.monotonic() - Ledger.started, 1e-9) if Ledger.started else 0.0
    stats = environment.stats
    lines = ["", "== Ailuro load test report"]
    if elapsed:
        done = len(Ledger.finished_acked)
        lines.append(
            f"submitted {len(Ledger.submitted):,} jobs, {len(Ledger.assignments):,} dispatches, "
            f"{done:,} finished in {elapsed:.0f} s: {len(Ledger.submitted) / elapsed:.1f} submitted/s = "
            f"{len(Ledger.submitted) / elapsed * 86400:,.0f} jobs/day, "
            f"{done / elapsed:.1f} finished/s = {done / elapsed * 86400:,.0f} jobs/day"
        )
    lines.append(f"{'call':<24}{'count':>9}{'fail':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for (kind, name), times in sorted(Ledger.calls.items()):
        lines.append(
            f"{kind + ' ' + name:<24}{sum(times.values()):>9,}{Ledger.failed[(kind, name)]:>7,}"
            f"{_percentile(times, 0.5):>9}{_percentile(times, 0.95):>9}{_percentile(times, 0.99):>9}"
        )
    failures = max(stats.total.num_failures, sum(Ledger.failed.values()))
    lines.append(f"failures: {failures}")
    ok = failures == 0
    db = _opt(environment, "ailuro_db")
    if db:
        from loadtests import consistency

        res = consistency.check(
            db,
            submitted=Ledger.submitted,
            assignments=Ledger.assignments,
            unanswered=[(owner, rid) for rid, owner in Ledger.unanswered.items()],
        )
        finished = set(Ledger.finished_acked)
        lines.append(res.summary())
        ok = ok and res.ok
        from sqlalchemy import create_engine, text

        engine = create_engine(db)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT panda_id FROM jobs WHERE status = 'finished'"))
            in_db = {int(r[0]) for r in rows}
        engine.dispose()
        lost = finished - in_db
        if lost:
            lines.append(f"consistency: VIOLATION {len(lost)} jobs acked as finished are not finished in the database")
            ok = False
    print("\n".join(lines), flush=True)
    if not ok:
        environment.process_exit_code = 1
