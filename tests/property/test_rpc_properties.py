"""Property tests: every RPC, with requests built from the proto descriptors, against a real dispatcher.

For each RPC of every service in ``protos/ailuro/v1/`` (found from the descriptors, so a new RPC is
covered without touching this file), hypothesis draws valid, boundary and hostile requests and
identities; each call must end with a status from :mod:`contract` (never INTERNAL or UNKNOWN).
After each RPC's run the dispatcher must answer health and a ListJobs within a second, and the
database must pass the load tests' consistency check.

The bulk runs on SQLite in-process; the same suite runs on PostgreSQL with a quarter of the examples.
CI uses the derandomised ``ci`` profile; ``AILURO_PROPERTY_PROFILE=long`` (and/or
``AILURO_PROPERTY_EXAMPLES=N``) runs longer with fresh randomness.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prop_contract import ANSWERS, NEVER, STREAM_ANSWERS
from prop_harness import PilotSession, Target, examples, private_pg_database, settle, wait_for_channel
from prop_requests import identities, pilot_messages, pilot_reports, requests_for
from protostrategies import rpc_methods

from ailuro.v1 import brokerage_pb2, factory_pb2, pilot_pb2, submission_pb2
from dispatcher.auth.config import TRUSTED_METADATA_MODE, AuthConfig
from dispatcher.config import DispatcherConfig
from dispatcher.server import run_in_thread

pytestmark = [pytest.mark.property, pytest.mark.timeout(900)]

METHODS = rpc_methods(submission_pb2, pilot_pb2, factory_pb2, brokerage_pb2)

CONFIG: dict[str, Any] = {
    "lease_s": 10.0,
    "sent_timeout_s": 10.0,
    "heartbeat_flush_s": 0.05,
    "watchdog_interval_s": 0.2,
    "no_job_retry_s": 0.2,
    "command_poll_s": 0.05,
    "pilot_stale_s": 5.0,
    "grace_s": 0.5,
    "db_threads": 4,
    # generated identity metadata must reach the services: the explicit loopback development mode
    "auth": AuthConfig(mode=TRUSTED_METADATA_MODE),
}

SCALE = {"sqlite": 1.0, "postgres": 0.25}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One dispatcher per database for the whole module, seeded with 40 plain jobs."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("prop") / "ailuro.db"
        yield from _serve(f"sqlite:///{path}", request.param)
    else:
        with private_pg_database() as url:
            yield from _serve(url, request.param)


def _serve(db_url: str, kind: str) -> Iterator[Target]:
    d = run_in_thread(DispatcherConfig(db_url=db_url, port=0, **CONFIG))
    channel = grpc.insecure_channel(d.address)
    try:
        wait_for_channel(channel)
        t = Target(address=d.address, db_url=db_url, channel=channel, kind=kind)
        t.submit(40)
        yield t
    finally:
        channel.close()
        d.stop()


def test_every_rpc_is_covered() -> None:
    """The descriptors list every service's RPCs (a service without RPCs here would be a broken import)."""
    names = {name for name, _ in METHODS}
    assert {"SubmissionService.SubmitJobs", "PilotService.Connect", "FactoryService.ListWorkers"} <= names
    assert len(names) == sum(
        len(s.methods)
        for m in (submission_pb2, pilot_pb2, factory_pb2, brokerage_pb2)
        for s in m.DESCRIPTOR.services_by_name.values()
    )


@pytest.mark.parametrize("method", [m for _, m in METHODS], ids=[n for n, _ in METHODS])
def test_rpc_answers_with_a_documented_status(target: Target, method: Any) -> None:
    """Any request, any identity: a documented status, never INTERNAL/UNKNOWN; alive and consistent after."""
    allowed = STREAM_ANSWERS if method.server_streaming and not method.client_streaming else ANSWERS
    seen: dict[str, int] = {}

    @settings(max_examples=examples(SCALE[target.kind]))
    @given(request=requests_for(method), metadata=identities())
    def run(request: Any, metadata: list[tuple[str, str]]) -> None:
        out = target.call(method, request, metadata=metadata)
        seen[out.code.name] = seen.get(out.code.name, 0) + 1
        assert out.code not in NEVER, f"{method.name} -> {out.code.name}: {out.details}"
        assert out.code in allowed, f"{method.name} -> {out.code.name} (not documented): {out.details}"
        if out.code == grpc.StatusCode.INVALID_ARGUMENT:
            assert out.details, "INVALID_ARGUMENT must say what is wrong"

    run()
    print(f"\n{method.full_name}: {seen}")
    settle(0.3)
    target.assert_alive()
    target.assert_consistent()


def _bind(msg: Any, held: list[tuple[int, int]], pick: int) -> Any:
    """Point a heartbeat/final at a job the pilot holds (its real panda_id and epoch), if it holds any."""
    if not held:
        return msg
    kind = msg.WhichOneof("msg")
    pid, epoch = held[pick % len(held)]
    if kind == "final":
        msg.final.panda_id, msg.final.lease_epoch = pid, epoch
    elif kind == "heartbeats":
        for hb in msg.heartbeats.heartbeats:
            hb.panda_id, hb.lease_epoch = pid, epoch
    return msg


def test_pilot_sessions_answer_with_a_documented_status(target: Target) -> None:
    """Random sequences of pilot messages on one stream, reports bound to jobs really held (finals, bad metrics)."""
    step = st.one_of(
        st.tuples(st.sampled_from(["ask", "report", "raw"]), pilot_messages(), st.integers(0, 3)),
        st.tuples(st.just("report"), pilot_reports(), st.integers(0, 3)),
    )

    @settings(max_examples=examples(SCALE[target.kind]))
    @given(script=st.lists(step, max_size=8), pilot=st.sampled_from(["prop-s1", "prop-s2", "prop-s3"]))
    def run(script: list[tuple[str, Any, int]], pilot: str) -> None:
        target.submit(2)
        session = PilotSession(target, pilot)
        session.ask(2)  # hold jobs first, so reports have something real to be about
        # Messages that end the stream (a second Hello, an empty message) go last.
        for action, msg, pick in sorted(script, key=lambda step: step[0] == "raw"):
            if action == "ask":
                session.ask(1 + pick % 2)
            elif action == "report":
                session.send(_bind(msg, session.held, pick))
            else:
                session.send(msg)
        code = session.finish()
        assert code not in NEVER, f"Connect -> {code.name}: {session.details}"
        assert code in ANSWERS, f"Connect -> {code.name} (not documented): {session.details}"

    run()
    settle(0.3)
    target.assert_alive()
    target.assert_consistent()
