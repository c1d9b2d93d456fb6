"""The monitor over a database written by a real dispatcher (SDK submit, a pilot stream, a kill).

Nothing is inserted by hand: jobs come from ``ailuro.client.Client.submit``, one is run to a
failed final report (typed error, log tarball made by the pilot's own function) over the real
Connect stream, one is killed through the SDK. The monitor must show exactly that.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from monitor_login import identities

from ailuro import errorcodes
from ailuro.client import Client
from ailuro.v1 import job_pb2, pilot_pb2
from dispatcher.server import RunningDispatcher
from monitor.app import create_app
from monitor.config import MonitorConfig
from pilot.logtar import log_lfn, make_log_tarball

J = job_pb2


def test_monitor_shows_what_the_dispatcher_did(
    dispatcher: RunningDispatcher, raw_pilot: Callable[..., Any], db_url: str, tmp_path: Path
) -> None:
    with Client(dispatcher.address, identity="alice") as client:
        ids = client.submit(
            [
                {
                    "job_name": f"mon-{i}",
                    "transformation": "reco.sh",
                    "prod_source_label": "user",
                    "files": [{"lfn": f"in-{i}.raw", "type": "input", "dataset": "compass.raw.2026", "size": 10}],
                }
                for i in range(3)
            ]
        )
        p = raw_pilot(dispatcher.address, pilot_id="pilot-mon", queue="LOCAL")
        p.request(1)
        a = p.expect("assignment")
        run_id = a.job.panda_id
        p.heartbeat(run_id, a.lease_epoch, J.JOB_STATUS_RUNNING, cpu_time_s=1.0)
        assert p.ack_for(run_id).result == pilot_pb2.ACK_RESULT_OK
        stdout = tmp_path / "payload.stdout"
        stdout.write_text("reconstructed 1000 events\n")
        lfn = log_lfn(a.job.job_name)
        tarball = make_log_tarball(tmp_path / lfn, [(stdout, "payload.stdout")])
        error = J.JobError(component=J.ERROR_COMPONENT_PAYLOAD, code=errorcodes.PAYLOAD_FAILED, diag="exit code 3")
        log = J.File(lfn=lfn, type=J.FILE_TYPE_LOG, size=tarball.stat().st_size, pfn=tarball.as_uri())
        p.final(
            run_id, a.lease_epoch, J.JOB_STATUS_FAILED, files=[log], errors=[error], metrics=J.JobMetrics(exit_code=3)
        )
        assert p.ack_for(run_id, final=True).result == pilot_pb2.ACK_RESULT_OK
        killed = next(i for i in ids if i != run_id)
        client.kill([killed], reason="not needed")

    who = identities(tmp_path)
    app = create_app(MonitorConfig(db_url=db_url, log_roots=(tmp_path,), auth=who.auth()))
    with TestClient(app, headers=who.admin()) as web:
        jobs = web.get("/jobs/?json").json()
        assert jobs["total"] == 3
        assert {f["value"]: f["count"] for f in jobs["facets"]["jobstatus"]} == {
            "activated": 1,
            "cancelled": 1,
            "failed": 1,
        }
        assert jobs["facets"]["produsername"] == [{"value": "alice", "count": 3}]
        assert {j["pandaid"] for j in jobs["jobs"]} == set(ids)

        failed = web.get(f"/job/{run_id}?json").json()
        assert failed["job"]["jobstatus"] == "failed" and failed["job"]["pilotid"] == "pilot-mon"
        assert failed["errors"] == [
            {"component": "payload", "code": 1305, "name": "payload_failed", "diag": "exit code 3"}
        ]
        assert [e["to"] for e in failed["events"]][:2] == ["defined", "activated"]
        assert failed["events"][-1]["to"] == "failed"
        assert {f["lfn"] for f in failed["files"]} == {f"in-{a.job.job_name.removeprefix('mon-')}.raw", lfn}
        assert failed["log"]["available"] is True
        assert web.get(f"/job/{run_id}/stdout?json").json()["text"] == "reconstructed 1000 events\n"
        assert web.get(f"/job/{run_id}/log").content == tarball.read_bytes()

        cancelled = web.get(f"/job/{killed}?json").json()
        assert cancelled["job"]["jobstatus"] == "cancelled"
        assert cancelled["errors"][0]["code"] == errorcodes.KILLED_BY_USER

        errors = web.get("/errors/?json").json()
        assert [(e["component"], e["code"], e["count"]) for e in errors["errors"]] == [("payload", 1305, 1)]
        sites = {s["computingsite"]: s for s in web.get("/sites/?json").json()["sites"]}
        assert sites["LOCAL"]["failed"] == 1 and sites["LOCAL"]["activated"] == 1
        metrics = web.get("/metrics").text
        assert 'ailuro_jobs{site="LOCAL",state="activated"} 1.0' in metrics
        assert 'ailuro_jobs_final_last_hour{site="LOCAL",state="failed"} 1.0' in metrics
        datasets = web.get("/datasets/?json").json()["datasets"]
        assert {(d["dataset"], d["type"], d["nfiles"]) for d in datasets} == {("compass.raw.2026", "input", 3)}
    app.state.db.dispose()
