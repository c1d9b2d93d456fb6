"""A dispatcher under test for the property suite: generic calls by method descriptor, and the checks.

:class:`Target` calls any RPC from its descriptor alone (unary, server stream, bidirectional
stream), records what clients were handed (panda_ids, leases) for the consistency check, and
checks that the server is still alive afterwards.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, settings
from protostrategies import message_class, method_path
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from ailuro.v1 import job_pb2, submission_pb2, submission_pb2_grpc
from loadtests import consistency

PROFILE_ENV = "AILURO_PROPERTY_PROFILE"
EXAMPLES_ENV = "AILURO_PROPERTY_EXAMPLES"

settings.register_profile(
    "ci",
    derandomize=True,  # the same examples every run: CI is reproducible, failures are not flaky
    max_examples=60,
    deadline=None,  # a busy 2-core machine: no per-example time limit
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
settings.register_profile(
    "long",
    derandomize=False,
    max_examples=1000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
settings.load_profile(os.environ.get(PROFILE_ENV, "ci"))


def examples(scale: float = 1.0) -> int:
    """Examples per test: the profile's count (or ``$AILURO_PROPERTY_EXAMPLES``) times ``scale``."""
    base = int(os.environ.get(EXAMPLES_ENV, "0")) or settings().max_examples
    return max(3, int(base * scale))


UNARY_TIMEOUT_S = 60.0
"""Generous: the machine is shared; a call that takes this long is a wedge, not slowness."""
WATCH_TIMEOUT_S = 0.5
"""WatchJobs never ends by itself: the caller's deadline ends it."""
LIVENESS_DEADLINE_S = 1.0
"""After a run, health and a ListJobs must answer within this (a liveness bound, not a speed bar)."""


@dataclass
class Outcome:
    """How one call ended."""

    code: grpc.StatusCode
    details: str = ""
    responses: list[Any] = field(default_factory=list)


@dataclass
class Target:
    """A running dispatcher and what clients were handed by it."""

    address: str
    db_url: str
    channel: grpc.Channel
    kind: str = "sqlite"
    """``sqlite`` or ``postgres``: the PostgreSQL run uses fewer examples."""
    submitted: set[int] = field(default_factory=set)
    assignments: list[tuple[int, int]] = field(default_factory=list)

    def call(
        self, method: Any, request: Any, *, metadata: Sequence[tuple[str, str]] = (), timeout: float | None = None
    ) -> Outcome:
        """Call ``method`` (a MethodDescriptor) with ``request`` (a list of messages for client streams)."""
        path = method_path(method)
        out_cls = message_class(method.output_type)
        ser = message_class(method.input_type).SerializeToString
        timeout = timeout or (WATCH_TIMEOUT_S if method.server_streaming and not method.client_streaming else None)
        timeout = timeout or UNARY_TIMEOUT_S
        kw = {"timeout": timeout, "metadata": tuple(metadata)}
        responses: list[Any] = []
        try:
            if method.client_streaming:
                call = self.channel.stream_stream(path, ser, out_cls.FromString)(iter(request), **kw)
                for r in call:
                    responses.append(r)
            elif method.server_streaming:
                for r in self.channel.unary_stream(path, ser, out_cls.FromString)(request, **kw):
                    responses.append(r)
            else:
                responses.append(self.channel.unary_unary(path, ser, out_cls.FromString)(request, **kw))
        except grpc.RpcError as exc:
            self.record(method.name, responses)
            return Outcome(exc.code(), exc.details() or "", responses)
        self.record(method.name, responses)
        return Outcome(grpc.StatusCode.OK, "", responses)

    def record(self, name: str, responses: Sequence[Any]) -> None:
        """Remember panda_ids and leases handed out (for the consistency check)."""
        for r in responses:
            if name == "SubmitJobs" and not r.replayed:
                self.submitted.update(r.panda_ids)
            elif name == "RetryJobs":
                self.submitted.update(r.new_panda_ids)
            elif name == "GetJob":
                self.assignments += [(a.job.panda_id, a.lease_epoch) for a in r.assignments]
            elif name == "Connect" and r.WhichOneof("msg") == "assignment":
                self.assignments.append((r.assignment.job.panda_id, r.assignment.lease_epoch))

    def submit(self, n: int, **fields: Any) -> list[int]:
        """Submit ``n`` plain jobs (valid) and record their ids."""
        stub = submission_pb2_grpc.SubmissionServiceStub(self.channel)
        jobs = [job_pb2.Job(transformation="/bin/true", computing_site="LOCAL", **fields) for _ in range(n)]
        resp = stub.SubmitJobs(submission_pb2.SubmitJobsRequest(jobs=jobs), timeout=UNARY_TIMEOUT_S)
        self.submitted.update(resp.panda_ids)
        return list(resp.panda_ids)

    def assert_alive(self) -> None:
        """Health says SERVING and a ListJobs answers, each within :data:`LIVENESS_DEADLINE_S`."""
        health = health_pb2_grpc.HealthStub(self.channel)
        resp = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=LIVENESS_DEADLINE_S)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING, resp
        stub = submission_pb2_grpc.SubmissionServiceStub(self.channel)
        stub.ListJobs(submission_pb2.ListJobsRequest(page_size=1), timeout=LIVENESS_DEADLINE_S)

    def assert_consistent(self) -> None:
        """The load tests' consistency check: all accounted for, nothing dispatched twice, no broken history."""
        res = consistency.check(self.db_url, submitted=sorted(self.submitted), assignments=self.assignments)
        assert res.ok, res.summary()


def wait_for_channel(channel: grpc.Channel, timeout: float = 30.0) -> None:
    """Block until the channel is connected."""
    grpc.channel_ready_future(channel).result(timeout=timeout)


@contextmanager
def private_pg_database() -> Iterator[str]:
    """A fresh database on the test PostgreSQL (as ``tests/conftest.py`` makes them), dropped afterwards."""
    import pytest

    admin_url = os.environ.get("AILURO_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    name = f"ailuro_prop_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        if os.environ.get("AILURO_ALLOW_NO_PG") == "1":
            pytest.skip(f"PostgreSQL unreachable: {exc.orig}")
        pytest.fail(f"PostgreSQL at {admin_url} is unreachable: {exc.orig} (AILURO_ALLOW_NO_PG=1 skips)")
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def settle(seconds: float) -> None:
    """Give background flushes a moment (heartbeat flush, group commits) before checking the database."""
    time.sleep(seconds)


class PilotSession:
    """One Connect stream driven step by step, so reports can name the jobs the pilot really holds."""

    def __init__(self, target: Target, pilot_id: str) -> None:
        from ailuro.v1 import pilot_pb2, pilot_pb2_grpc

        self.pb = pilot_pb2
        self.target = target
        self.held: list[tuple[int, int]] = []
        self.responses: list[Any] = []
        self._out: queue.Queue[Any] = queue.Queue()
        self._in: queue.Queue[Any] = queue.Queue()
        self._out.put(pilot_pb2.PilotMessage(hello=pilot_pb2.Hello(pilot_id=pilot_id, queue="LOCAL", node="prop")))
        call = pilot_pb2_grpc.PilotServiceStub(target.channel).Connect(self._requests(), timeout=UNARY_TIMEOUT_S)
        self.code = grpc.StatusCode.OK
        self.details = ""

        def pump() -> None:
            try:
                for msg in call:
                    self._in.put(msg)
            except grpc.RpcError as exc:
                self.code, self.details = exc.code(), exc.details() or ""
            self._in.put(None)

        self._thread = threading.Thread(target=pump, daemon=True)
        self._thread.start()
        self._ended = False

    def _requests(self) -> Iterator[Any]:
        while True:
            msg = self._out.get()
            if msg is None:
                return
            yield msg

    def _take(self, timeout: float) -> Any:
        try:
            msg = self._in.get(timeout=timeout)
        except queue.Empty:
            return False
        if msg is None:
            self._ended = True
            return None
        self.responses.append(msg)
        if msg.WhichOneof("msg") == "assignment":
            a = msg.assignment
            self.held.append((a.job.panda_id, a.lease_epoch))
            self.target.assignments.append((a.job.panda_id, a.lease_epoch))
        return msg

    def send(self, msg: Any) -> None:
        """Send one PilotMessage (ignored once the stream ended)."""
        if not self._ended:
            self._out.put(msg)

    def ask(self, n: int, wait_s: float = 10.0) -> None:
        """Ask for ``n`` jobs and wait for the answer (an assignment or NoJob), or the stream's end."""
        self.send(self.pb.PilotMessage(job_request=self.pb.JobRequest(n=n)))
        end = time.monotonic() + wait_s
        while not self._ended and time.monotonic() < end:
            msg = self._take(0.1)
            if msg and msg.WhichOneof("msg") in ("assignment", "no_job"):
                return

    def finish(self) -> grpc.StatusCode:
        """Half-close, read to the end; the stream's status."""
        self._out.put(None)
        end = time.monotonic() + UNARY_TIMEOUT_S
        while not self._ended and time.monotonic() < end:
            self._take(0.2)
        self._thread.join(5)
        return self.code
