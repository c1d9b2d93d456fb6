"""Shared fixtures: databases (SQLite and a fresh PostgreSQL database) and in-process dispatchers.

- ``db_url``: parametrized ``sqlite`` (a file in tmp_path) and ``postgres`` (a fresh database
  ``ailuro_test_<random>`` on ``AILURO_TEST_PG_URL``, dropped afterwards). An unreachable
  PostgreSQL FAILS the postgres case unless ``AILURO_ALLOW_NO_PG=1`` (then it skips); CI must
  run it.
- ``pg_url``: PostgreSQL only.
- ``make_dispatcher(**config_overrides)``: start a dispatcher on port 0 over ``db_url`` with short
  test timeouts (:data:`TEST_TIMEOUTS`); all are stopped at teardown. It runs in the explicit
  loopback development mode (:data:`DEV_AUTH`, trusted metadata) because most tests are about
  other features and speak as several users through ``ailuro-user`` metadata; tests about what
  users run (demo, factory, pilot, load tests) pass ``auth=AuthConfig(state_dir=...)`` (token
  mode) and send tokens.
- ``dispatcher``: ``make_dispatcher()`` with the defaults.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from dispatcher.auth.config import TRUSTED_METADATA_MODE, AuthConfig
from dispatcher.config import DispatcherConfig
from dispatcher.server import RunningDispatcher, run_in_thread

# Factories keep their secrets in a per-user state dir: tests use their own, never the home's.
os.environ.setdefault("AILURO_STATE_DIR", tempfile.mkdtemp(prefix="ailuro-test-state-"))
# A token-mode dispatcher a test starts without --auth-dir makes its issuer here, never in ~/.ailuro.
os.environ.setdefault("AILURO_AUTH_DIR", tempfile.mkdtemp(prefix="ailuro-test-auth-"))

DEV_AUTH = AuthConfig(mode=TRUSTED_METADATA_MODE)
"""The explicit development mode (loopback only): callers' ``ailuro-user`` metadata is believed."""

PG_URL_ENV = "AILURO_TEST_PG_URL"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ALLOW_NO_PG_ENV = "AILURO_ALLOW_NO_PG"

TEST_TIMEOUTS: dict[str, Any] = {
    "lease_s": 10.0,
    "sent_timeout_s": 10.0,
    "heartbeat_flush_s": 0.05,
    "watchdog_interval_s": 0.2,
    "no_job_retry_s": 0.2,
    "command_poll_s": 0.05,
    "pilot_stale_s": 5.0,
    "grace_s": 0.5,
    "db_threads": 4,
}
"""Config overrides every test dispatcher gets (tests can override them again)."""


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """Create ``ailuro_test_<random>`` on the test server, yield its URL, drop it afterwards."""
    admin_url = os.environ.get(PG_URL_ENV, DEFAULT_PG_URL)
    name = f"ailuro_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        message = f"PostgreSQL at {admin_url} is unreachable: {exc.orig}"
        if os.environ.get(ALLOW_NO_PG_ENV) == "1":
            pytest.skip(message)
        pytest.fail(f"{message} (set {ALLOW_NO_PG_ENV}=1 to skip PostgreSQL tests locally)")
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ailuro-test.db'}"
    else:
        with fresh_pg_database() as url:
            yield url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database URL."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture
def make_dispatcher(db_url: str) -> Iterator[Callable[..., RunningDispatcher]]:
    """Factory: ``make_dispatcher(**config_overrides)`` starts a dispatcher over ``db_url`` on port 0."""
    started: list[RunningDispatcher] = []

    def make(**overrides: Any) -> RunningDispatcher:
        values: dict[str, Any] = {"db_url": db_url, "port": 0, "auth": DEV_AUTH, **TEST_TIMEOUTS, **overrides}
        d = run_in_thread(DispatcherConfig(**values))
        started.append(d)
        return d

    yield make
    for d in reversed(started):
        # A bound on the wait for the stop, not a timing check: a dispatcher closing 4,000 streams
        # beside stress-ng took 29.8 s of the 30 s default (test_reconnect_storm.py).
        d.stop(timeout=120)


@pytest.fixture
def dispatcher(make_dispatcher: Callable[..., RunningDispatcher]) -> RunningDispatcher:
    """A running dispatcher (port 0, short timeouts) over ``db_url``."""
    return make_dispatcher()


class RawPilot:
    """A pilot speaking the Connect protocol directly (no pilot package), for dispatcher tests.

    Messages from the dispatcher are read by a background thread; :meth:`expect` returns the
    next message of a kind (``assignment``, ``no_job``, ``command``, ``acks``), keeping others.
    """

    def __init__(self, address: str, *, pilot_id: str, queue: str = "LOCAL", held: Any = (), hello: Any = None) -> None:
        import queue as _queue
        import threading

        import grpc

        from ailuro.v1 import pilot_pb2, pilot_pb2_grpc

        self.pb = pilot_pb2
        self.pilot_id = pilot_id
        self._out: _queue.Queue[Any] = _queue.Queue()
        self._in: _queue.Queue[Any] = _queue.Queue()
        self._kept: list[Any] = []
        self.channel = grpc.insecure_channel(address)
        fields = dict(hello or {})  # e.g. cores/memory_mb/tags the pilot advertises
        self._out.put(
            pilot_pb2.PilotMessage(hello=pilot_pb2.Hello(pilot_id=pilot_id, queue=queue, held_jobs=held, **fields))
        )

        def requests() -> Iterator[Any]:
            while True:
                msg = self._out.get()
                if msg is None:
                    return
                yield msg

        self.call = pilot_pb2_grpc.PilotServiceStub(self.channel).Connect(requests())

        def pump() -> None:
            try:
                for msg in self.call:
                    self._in.put(msg)
            except grpc.RpcError as exc:
                self._in.put(exc)
            self._in.put(None)

        self._thread = threading.Thread(target=pump, daemon=True)
        self._thread.start()

    def send(self, msg: Any) -> None:
        """Send one PilotMessage."""
        self._out.put(msg)

    def request(self, n: int = 1) -> None:
        """Ask for ``n`` jobs."""
        self.send(self.pb.PilotMessage(job_request=self.pb.JobRequest(n=n)))

    def heartbeat(self, panda_id: int, epoch: int, status: int, **metrics: Any) -> None:
        """Send one heartbeat."""
        from ailuro.v1 import job_pb2

        hb = self.pb.Heartbeat(
            panda_id=panda_id, lease_epoch=epoch, status=status, metrics=job_pb2.JobMetrics(**metrics)
        )
        self.send(self.pb.PilotMessage(heartbeats=self.pb.HeartbeatBatch(heartbeats=[hb])))

    def final(self, panda_id: int, epoch: int, status: int, **fields: Any) -> None:
        """Send a final report."""
        self.send(
            self.pb.PilotMessage(final=self.pb.JobFinal(panda_id=panda_id, lease_epoch=epoch, status=status, **fields))
        )

    def expect(self, kind: str, timeout: float = 10.0) -> Any:
        """The next message whose oneof is ``kind`` (its payload); raises on stream end or timeout."""
        import queue as _queue
        import time

        for i, msg in enumerate(self._kept):
            if msg.WhichOneof("msg") == kind:
                del self._kept[i]
                return getattr(msg, kind)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind} within {timeout} s (kept: {self._kept})")
            try:
                msg = self._in.get(timeout=left)
            except _queue.Empty:
                continue
            if msg is None:
                raise EOFError("stream ended")
            if isinstance(msg, BaseException):
                raise msg
            if msg.WhichOneof("msg") == kind:
                return getattr(msg, kind)
            self._kept.append(msg)

    def ack_for(self, panda_id: int, *, final: bool = False, timeout: float = 10.0) -> Any:
        """The next Ack about ``panda_id`` (a final's ack when ``final``)."""
        import time

        deadline = time.monotonic() + timeout
        pending: list[Any] = []
        while True:
            for i, ack in enumerate(pending):
                if ack.panda_id == panda_id and ack.is_final == final:
                    rest = pending[:i] + pending[i + 1 :]
                    if rest:
                        self._kept.append(self.pb.DispatcherMessage(acks=self.pb.AckBatch(acks=rest)))
                    return ack
            batch = self.expect("acks", timeout=max(0.01, deadline - time.monotonic()))
            pending.extend(batch.acks)

    def close(self) -> None:
        """Half-close and wait for the stream to end."""
        self._out.put(None)
        self._thread.join(10)
        self.channel.close()


@pytest.fixture
def raw_pilot() -> Iterator[Callable[..., RawPilot]]:
    """Factory: ``raw_pilot(address, pilot_id=..., queue=...)``; closed at teardown."""
    made: list[RawPilot] = []

    def make(address: str, **kwargs: Any) -> RawPilot:
        p = RawPilot(address, **kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()
