"""The dispatcher's own ``/metrics`` (``--metrics-port``): scraped over HTTP from a real dispatcher
while jobs run through a pilot's Connect stream, parsed with prometheus_client's text parser.

Counters are compared before and after, so each must have moved by exactly what was done: 3 jobs
dispatched, one final finished, one failed with a typed error, one kill delivered, the pilot's
stream counted while open. Families with nothing counted yet must still be announced (HELP/TYPE).
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dispatcher_procs import DispatcherProcess
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from ailuro import errorcodes
from ailuro.client import Client
from ailuro.v1 import job_pb2, pilot_pb2
from dispatcher.server import RunningDispatcher

J = job_pb2


def scrape(port: int) -> dict[str, Metric]:
    """GET /metrics and parse it: family name → family."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict[str, Metric], sample: str, **labels: str) -> float:
    """The value of the one sample named ``sample`` with exactly ``labels`` (0 when absent)."""
    family = families[sample.removesuffix("_total").removesuffix("_count").removesuffix("_sum")]
    found = [s.value for s in family.samples if s.name == sample and s.labels == labels]
    assert len(found) <= 1, found
    return found[0] if found else 0.0


def test_metrics_count_what_the_dispatcher_did(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any]
) -> None:
    d = make_dispatcher(metrics_port=0)
    assert d.metrics_port > 0
    before = scrape(d.metrics_port)
    # announced before anything happened: TYPE and HELP, no samples (a labelled family is empty)
    errors_family = before["ailuro_dispatcher_job_final_errors"]
    assert errors_family.type == "counter" and errors_family.documentation and errors_family.samples == []
    assert before["ailuro_dispatcher_dispatch_latency_seconds"].type == "histogram"
    assert value(before, "ailuro_dispatcher_dispatch_latency_seconds_count") == 0
    assert value(before, "ailuro_dispatcher_pilot_streams", queue="LOCAL") == 0
    assert value(before, "process_cpu_seconds_total") > 0

    with Client(d.address, identity="alice") as client:
        ids = client.submit([{"job_name": f"m-{i}", "transformation": "t.sh"} for i in range(3)])
        p = raw_pilot(d.address, pilot_id="pilot-metrics", queue="LOCAL")
        p.request(3)
        got = [p.expect("assignment") for _ in range(3)]
        assert sorted(a.job.panda_id for a in got) == sorted(ids)
        during = scrape(d.metrics_port)
        assert value(during, "ailuro_dispatcher_pilot_streams", queue="LOCAL") == 1
        ok, bad, killed = got
        p.final(ok.job.panda_id, ok.lease_epoch, J.JOB_STATUS_FINISHED)
        error = J.JobError(component=J.ERROR_COMPONENT_PAYLOAD, code=errorcodes.PAYLOAD_FAILED, diag="exit 3")
        p.final(bad.job.panda_id, bad.lease_epoch, J.JOB_STATUS_FAILED, errors=[error])
        assert p.ack_for(ok.job.panda_id, final=True).result == pilot_pb2.ACK_RESULT_OK
        assert p.ack_for(bad.job.panda_id, final=True).result == pilot_pb2.ACK_RESULT_OK
        p.final(ok.job.panda_id, ok.lease_epoch, J.JOB_STATUS_FINISHED)  # a resent final changes nothing
        p.ack_for(ok.job.panda_id, final=True)
        client.kill([killed.job.panda_id], reason="enough")
        assert p.expect("command").panda_id == killed.job.panda_id
        with pytest.raises(Exception, match="job_name"):
            client.submit([{"job_name": "x" * 100_000, "transformation": "t.sh"}])

    # grpc's context.abort() sends the status to the client before the handler's wrapper (which
    # counts the call) has finished, so a scrape right after the client saw INVALID_ARGUMENT may
    # come before that count: wait for it (bounded), then every counter must have moved exactly.
    refused = {"method": "SubmissionService/SubmitJobs", "code": "INVALID_ARGUMENT"}
    deadline = time.monotonic() + 60
    after = scrape(d.metrics_port)
    while (
        value(after, "ailuro_dispatcher_rpcs_total", **refused)
        == value(before, "ailuro_dispatcher_rpcs_total", **refused)
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
        after = scrape(d.metrics_port)

    def moved(sample: str, **labels: str) -> float:
        return value(after, sample, **labels) - value(before, sample, **labels)

    assert moved("ailuro_dispatcher_jobs_dispatched_total", queue="LOCAL") == 3
    assert moved("ailuro_dispatcher_dispatch_latency_seconds_count") == 3
    assert value(after, "ailuro_dispatcher_dispatch_latency_seconds_sum") > 0
    assert moved("ailuro_dispatcher_job_finals_total", queue="LOCAL", status="finished") == 1
    assert moved("ailuro_dispatcher_job_finals_total", queue="LOCAL", status="failed") == 1
    code = str(errorcodes.PAYLOAD_FAILED)
    assert moved("ailuro_dispatcher_job_final_errors_total", queue="LOCAL", component="payload", code=code) == 1
    assert len(after["ailuro_dispatcher_job_final_errors"].samples) == 1  # one series (_created is its own family)
    assert moved("ailuro_dispatcher_commands_delivered_total", type="kill") == 1
    assert moved("ailuro_dispatcher_rpcs_total", method="SubmissionService/SubmitJobs", code="OK") == 1
    assert moved("ailuro_dispatcher_rpcs_total", method="SubmissionService/SubmitJobs", code="INVALID_ARGUMENT") == 1
    assert moved("ailuro_dispatcher_rpc_duration_seconds_count", method="SubmissionService/SubmitJobs") == 2
    # three finals (one resent) reached the finals group commit, in one or more batches
    assert moved("ailuro_dispatcher_group_commit_size_sum", batch="finals") == 3
    assert moved("ailuro_dispatcher_group_commit_size_sum", batch="claims") == 1


def test_metrics_off_by_default(make_dispatcher: Callable[..., RunningDispatcher]) -> None:
    assert make_dispatcher().metrics_port == 0


def test_workers_serve_metrics_on_consecutive_ports(tmp_path: Path) -> None:
    """``--workers 2 --metrics-port P``: worker 0 on P, worker 1 on P+1, each its own process."""
    from loadtests._scrape import free_port_block

    base = free_port_block(2)  # P and P+1 free now
    db = f"sqlite:///{tmp_path / 'm.db'}"
    proc = DispatcherProcess(db, tmp_path, "workers", extra_args=("--workers", "2", "--metrics-port", str(base)))
    try:
        proc.wait_ready()
        ids = set()
        for i in range(2):
            families = scrape(base + i)
            assert "ailuro_dispatcher_rpcs" in families
            assert value(families, "ailuro_dispatcher_pilot_streams", queue="LOCAL") == 0
            ids |= {s.labels["dispatcher_id"] for s in families["ailuro_dispatcher_start_time_seconds"].samples}
        assert len(ids) == 2  # two processes, one endpoint each
    finally:
        proc.stop()


def test_metrics_port_past_the_range_is_refused() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dispatcher", "--workers", "4", "--metrics-port", "65534"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--metrics-port" in out.stderr and "65535" in out.stderr
