"""HTCondor job-ad classification against ads recorded from the test pool (tests/unit/data/htcondor).

Recorded: clusters 3 (exit 0) and 4 (exit 3) completed, 5 running then removed, 6 held because
its output directory does not exist (hold reason kept), then removed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from backends.base import WorkerState
from backends.htcondor.backend import _constraint
from backends.htcondor.parse import batch_id, classify

DATA = Path(__file__).parent / "data" / "htcondor"


def _ads(name: str) -> dict[str, dict[str, object]]:
    return {batch_id(ad): ad for ad in json.loads((DATA / name).read_text())}


def test_queue_idle_running_held() -> None:
    first = _ads("htc_query_1.json")
    assert {classify(ad).state for ad in first.values()} == {WorkerState.IDLE}
    later = _ads("htc_query_2.json")
    assert classify(later["5.0"]).state is WorkerState.RUNNING
    held = classify(later["6.0"])
    assert held.state is WorkerState.HELD and held.native_state == "Held"
    assert "Failed to open '/nonexistent/dir/out'" in held.diag


def test_history_completed_removed() -> None:
    hist = _ads("htc_history.json")
    ok, bad = classify(hist["3.0"]), classify(hist["4.0"])
    assert ok.state is WorkerState.FINISHED and ok.exit_code == 0
    assert bad.state is WorkerState.FAILED and bad.exit_code == 3
    assert classify(hist["5.0"], cancelled=True).state is WorkerState.CANCELLED
    assert classify(hist["5.0"]).diag.startswith("removed (not by this factory)")
    reason = "removed after 700 s on hold: Error from slot1_2@vm: Failed to open"
    gone = classify(hist["6.0"], removed_for_hold=reason)
    assert gone.state is WorkerState.FAILED and gone.diag == reason


def test_exit_by_signal_and_no_jobs_exit() -> None:
    st = classify({"ClusterId": 1, "ProcId": 0, "JobStatus": 4, "ExitBySignal": True, "ExitSignal": 9})
    assert st.state is WorkerState.FAILED and "signal 9" in st.diag
    assert classify({"ClusterId": 1, "ProcId": 0, "JobStatus": 4, "ExitCode": 82}).state is WorkerState.FINISHED
    assert classify({"ClusterId": 1, "ProcId": 0, "JobStatus": 6}).state is WorkerState.RUNNING
    assert classify({"ClusterId": 1, "ProcId": 0, "JobStatus": 7}).state is WorkerState.HELD


def test_unknown_job_status_is_unknown(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        st = classify({"ClusterId": 1, "ProcId": 0, "JobStatus": 9})
    assert st.state is WorkerState.UNKNOWN and st.native_state == "JobStatus=9" and "unknown" in caplog.text


def test_constraint_names_exactly_the_ids() -> None:
    assert _constraint(["7.0", "7.2", "8.1", "junk"]) == (
        "(ClusterId == 7 && (ProcId == 0 || ProcId == 2)) || (ClusterId == 8 && (ProcId == 1))"
    )
    assert _constraint([]) == "false"
