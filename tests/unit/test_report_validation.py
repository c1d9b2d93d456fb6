"""Per-item checks of pilot reports (issue 12): what would poison a shared transaction is refused alone."""

from __future__ import annotations

import math

import pytest

from ailuro.errors import InvalidArgument
from ailuro.v1 import job_pb2, pilot_pb2
from dispatcher import validation
from dispatcher.config import Limits

J = job_pb2
P = pilot_pb2


@pytest.mark.parametrize(
    ("metrics", "needle"),
    [
        ({"cpu_time_s": math.nan}, "metrics.cpu_time_s"),
        ({"walltime_s": math.inf}, "metrics.walltime_s"),
        ({"walltime_s": 1.7e308}, "metrics.walltime_s"),  # finite, but its derived start time was -inf
        ({"cpu_time_s": 1e9 + 1}, "metrics.cpu_time_s"),
        ({"cpu_time_s": -1.0}, "metrics.cpu_time_s"),
        ({"max_rss_kb": -5}, "metrics.max_rss_kb"),
    ],
)
def test_bad_metrics_are_refused(metrics: dict[str, float], needle: str) -> None:
    hb = P.Heartbeat(panda_id=1, lease_epoch=1, status=J.JOB_STATUS_RUNNING, metrics=J.JobMetrics(**metrics))
    assert needle in (validation.heartbeat_problem(hb) or "")
    final = P.JobFinal(panda_id=1, lease_epoch=1, status=J.JOB_STATUS_FINISHED, metrics=J.JobMetrics(**metrics))
    assert needle in (validation.final_problem(final) or "")


def test_good_reports_pass() -> None:
    m = J.JobMetrics(cpu_time_s=1.5, walltime_s=2.0, max_rss_kb=10)
    assert validation.heartbeat_problem(P.Heartbeat(panda_id=1, status=J.JOB_STATUS_RUNNING, metrics=m)) is None
    errors = [J.JobError(component=J.ERROR_COMPONENT_PAYLOAD, code=1305, diag="exit 3")]
    final = P.JobFinal(panda_id=1, status=J.JOB_STATUS_FAILED, metrics=m, errors=errors)
    assert validation.final_problem(final) is None


@pytest.mark.parametrize(
    ("errors", "needle"),
    [
        ([J.JobError(component=99, code=1)], "errors[0].component"),
        ([J.JobError(component=J.ERROR_COMPONENT_DDM, code=1, diag="a\x00b")], "NUL"),
        ([J.JobError(component=J.ERROR_COMPONENT_DDM, code=1, diag="d" * 1001)], "diag_chars"),
        ([J.JobError(component=J.ERROR_COMPONENT_DDM, code=c) for c in range(33)], "errors_per_final"),
    ],
)
def test_bad_errors_are_refused(errors: list[J.JobError], needle: str) -> None:
    final = P.JobFinal(panda_id=1, status=J.JOB_STATUS_FAILED, errors=errors)
    assert needle in (validation.final_problem(final) or "")


def test_configured_limits_apply() -> None:
    limits = Limits(files_per_final=1, heartbeats_per_message=2, held_jobs_per_hello=1)
    files = [J.File(lfn=f"f{i}", type=J.FILE_TYPE_OUTPUT) for i in range(2)]
    final = P.JobFinal(panda_id=1, status=J.JOB_STATUS_FINISHED, files=files)
    assert "files_per_final" in (validation.final_problem(final, limits) or "")
    batch = P.HeartbeatBatch(heartbeats=[P.Heartbeat(panda_id=i + 1) for i in range(3)])
    with pytest.raises(InvalidArgument, match="heartbeats_per_message") as info:
        validation.validate_heartbeat_batch(batch, limits)
    assert info.value.field == "heartbeats.heartbeats"
    hello = P.Hello(pilot_id="p", queue="Q", held_jobs=[P.HeldJob(panda_id=1), P.HeldJob(panda_id=2)])
    with pytest.raises(InvalidArgument, match="held_jobs_per_hello") as info:
        validation.validate_hello(hello, known_queues={"Q"}, limits=limits)
    assert info.value.field == "hello.held_jobs"
