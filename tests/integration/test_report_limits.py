"""Final reports are bounded and cannot amplify; failures are logged without payloads (issue 12, finding 5)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from poison import poisoned_row
from sqlalchemy import create_engine, text

from ailuro.v1 import job_pb2, pilot_pb2, submission_pb2, submission_pb2_grpc
from dispatcher.config import Limits
from dispatcher.server import RunningDispatcher
from loadtests import consistency

J = job_pb2
P = pilot_pb2
MARKER = "PAYLOAD-MARKER-"
_ERROR_KEYS = "facet, width, bucket, status, component, code, value"


def scalar(db_url: str, sql: str) -> Any:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar_one()
    finally:
        engine.dispose()


def error_counter_keys(db_url: str) -> int:
    """Distinct error-counter keys, folded or still pending as deltas."""
    return scalar(
        db_url,
        f"SELECT count(*) FROM (SELECT {_ERROR_KEYS} FROM job_error_counts "
        f"UNION SELECT {_ERROR_KEYS} FROM job_error_count_deltas) AS k",
    )


def start_jobs(d: RunningDispatcher, raw_pilot: Callable[..., Any], n: int) -> tuple[Any, dict[int, int], list[int]]:
    with grpc.insecure_channel(d.address) as ch:
        sub = submission_pb2_grpc.SubmissionServiceStub(ch)
        jobs = [J.Job(transformation="/bin/true", max_attempt=1) for _ in range(n)]
        ids = list(sub.SubmitJobs(submission_pb2.SubmitJobsRequest(jobs=jobs)).panda_ids)
    p = raw_pilot(d.address, pilot_id="limits")
    p.request(n)
    epochs = {}
    for _ in range(n):
        a = p.expect("assignment")
        epochs[a.job.panda_id] = a.lease_epoch
    for pid, epoch in epochs.items():
        p.heartbeat(pid, epoch, J.JOB_STATUS_STARTING)
        assert p.ack_for(pid).result == P.ACK_RESULT_OK
    return p, epochs, ids


def test_final_report_limits_and_no_amplification(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any], db_url: str
) -> None:
    d = make_dispatcher(limits=Limits(files_per_final=2))
    p, epochs, ids = start_jobs(d, raw_pilot, 3)
    big, ok, files = ids
    keys_before = error_counter_keys(db_url)
    events_before = scalar(db_url, "SELECT count(*) FROM job_events")

    # 5,000 errors: refused whole (it used to store a 5 MB blob and 20,006 counter rows).
    errors = [J.JobError(component=J.ERROR_COMPONENT_PAYLOAD, code=c, diag="x" * 1000) for c in range(5000)]
    p.final(big, epochs[big], J.JOB_STATUS_FAILED, errors=errors)
    ack = p.ack_for(big, final=True)
    assert ack.result == P.ACK_RESULT_REJECTED and "errors_per_final" in ack.message, ack
    assert scalar(db_url, f"SELECT count(*) FROM job_errors WHERE panda_id = {big}") == 0
    assert scalar(db_url, "SELECT count(*) FROM job_events") == events_before
    assert error_counter_keys(db_url) == keys_before

    # A diag over its limit, and too many files (a configured limit), are refused too.
    long_diag = [J.JobError(component=J.ERROR_COMPONENT_PILOT, code=1, diag="y" * 1001)]
    p.final(big, epochs[big], J.JOB_STATUS_FAILED, errors=long_diag)
    ack = p.ack_for(big, final=True)
    assert ack.result == P.ACK_RESULT_REJECTED and "diag_chars" in ack.message, ack
    three = [J.File(lfn=f"o{i}", type=J.FILE_TYPE_OUTPUT) for i in range(3)]
    p.final(files, epochs[files], J.JOB_STATUS_FINISHED, files=three)
    ack = p.ack_for(files, final=True)
    assert ack.result == P.ACK_RESULT_REJECTED and "files_per_final" in ack.message, ack

    # At the limit: accepted, and what it writes is bounded.
    limit = Limits().errors_per_final
    errors = [J.JobError(component=J.ERROR_COMPONENT_PAYLOAD, code=c, diag="z" * 1000) for c in range(limit)]
    p.final(ok, epochs[ok], J.JOB_STATUS_FAILED, errors=errors)
    assert p.ack_for(ok, final=True).result == P.ACK_RESULT_OK
    reason = scalar(db_url, f"SELECT reason FROM job_events WHERE panda_id = {ok} ORDER BY event_id DESC LIMIT 1")
    assert len(reason) <= Limits().event_reason_chars + 100 and "…" in reason  # the summary is cut, not the frame
    # each distinct error is counted per site and owner, by hour and day: 4 keys at most
    assert error_counter_keys(db_url) - keys_before <= 4 * limit

    for pid in (big, files):
        p.final(pid, epochs[pid], J.JOB_STATUS_FINISHED)
        assert p.ack_for(pid, final=True).result == P.ACK_RESULT_OK
    check = consistency.check(db_url, submitted=ids, expect_final=True)
    assert check.ok, check.summary()


def test_store_failures_are_logged_without_the_payload(
    make_dispatcher: Callable[..., RunningDispatcher],
    raw_pilot: Callable[..., Any],
    db_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    d = make_dispatcher()
    p, epochs, ids = start_jobs(d, raw_pilot, 2)
    bad, good = ids
    diag = (MARKER * 60)[:1000]
    errors = [J.JobError(component=J.ERROR_COMPONENT_PAYLOAD, code=c, diag=diag) for c in range(30)]
    caplog.set_level(logging.DEBUG)
    with poisoned_row(db_url, bad):
        p.final(bad, epochs[bad], J.JOB_STATUS_FAILED, errors=errors)
        p.final(good, epochs[good], J.JOB_STATUS_FAILED, errors=errors)
        acks = {pid: p.ack_for(pid, final=True) for pid in ids}
    assert acks[bad].result == P.ACK_RESULT_REJECTED
    assert acks[good].result == P.ACK_RESULT_OK
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    lines = [formatter.format(r) for r in caplog.records if r.name.startswith(("dispatcher", "sqlalchemy"))]
    assert any("poisoned row" in line for line in lines), "the failure was not logged at all"
    for line in lines:
        assert MARKER not in line, f"a log line carries the report's data: {line[:300]}"
        assert len(line) <= 2000, f"an unbounded log line ({len(line)} characters): {line[:300]}"
    p.final(bad, epochs[bad], J.JOB_STATUS_FINISHED)
    assert p.ack_for(bad, final=True).result == P.ACK_RESULT_OK
    check = consistency.check(db_url, submitted=ids, expect_final=True)
    assert check.ok, check.summary()
