"""Slurm parsers against output recorded from the test cluster (Slurm 22.05.8, tests/unit/data/slurm).

The recordings hold: an array (1_0 COMPLETED, 1_1 FAILED exit 3, 1_2 COMPLETED), a job cancelled
while pending (2), a TIMEOUT (5), a held job (10, JobHeldUser), a running array with pending
elements (11_[2-4]), and ``sacct -c`` lines, which know array elements only by their own job ids.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from backends.base import WorkerState
from backends.slurm.backend import SlurmBackend
from backends.slurm.parse import (
    SlurmRecord,
    classify,
    expand_array_tasks,
    parse_sacct,
    parse_sbatch,
    parse_squeue_json,
    parse_squeue_text,
    split_wait_status,
)

DATA = Path(__file__).parent / "data" / "slurm"


def test_squeue_json_keys_array_elements_and_expands_pending_ranges() -> None:
    recs = parse_squeue_json((DATA / "squeue_all.json").read_text())
    assert recs["1_0"] == SlurmRecord(native_id="3", state="COMPLETED", reason="None", exit_code=0)
    assert recs["1_1"].native_id == "4" and recs["1_1"].exit_code == 3  # raw wait status 768
    assert recs["5"].state == "TIMEOUT" and recs["5"].signal == 15
    for task in (2, 3, 4):
        assert recs[f"11_{task}"].state == "PENDING" and recs[f"11_{task}"].native_id == ""
    assert recs["11_0"].state == "RUNNING"


def test_squeue_json_states_classify() -> None:
    recs = parse_squeue_json((DATA / "squeue_all.json").read_text())
    assert classify(recs["1_0"]).state is WorkerState.FINISHED
    failed = classify(recs["1_1"])
    assert failed.state is WorkerState.FAILED and failed.exit_code == 3 and failed.diag == "exit code 3"
    assert classify(recs["2"]).state is WorkerState.CANCELLED
    assert classify(recs["2"], cancelled=True).diag == "cancelled by the factory"
    timeout = classify(recs["5"])
    assert timeout.state is WorkerState.FAILED and "TIMEOUT" in timeout.diag and "signal 15" in timeout.diag
    held = classify(recs["10"])
    assert held.state is WorkerState.HELD and held.diag == "JobHeldUser"
    assert classify(recs["11_3"]).state is WorkerState.IDLE
    assert classify(recs["11_0"]).state is WorkerState.RUNNING and classify(recs["11_0"]).exit_code is None


def test_squeue_text_fallback() -> None:
    recs = parse_squeue_text(
        "\n".join(
            f"{i}|{i.split('_')[0]}|{s}|{r}"
            for i, s, r in (line.split("|") for line in (DATA / "squeue_text.txt").read_text().splitlines())
        )
    )
    assert recs["1_1"].state == "FAILED" and recs["1_1"].exit_code is None
    assert {f"11_{t}" for t in (2, 3, 4)} <= set(recs)
    assert recs["10"].reason == "JobHeldUser"
    assert parse_squeue_text("77_3|80|CA|None\n")["77_3"].state == "CANCELLED"  # short code


def test_sacct_jobcomp_records_by_native_id() -> None:
    recs = parse_sacct((DATA / "sacct_c.txt").read_text())
    assert recs["4"].state == "FAILED" and recs["4"].exit_code == 3
    assert recs["2"].state == "CANCELLED"
    assert classify(recs["5"]).state is WorkerState.FAILED  # TIMEOUT
    assert parse_sacct("7|CANCELLED by 0|0:15\n7.batch|CANCELLED|0:15\n")["7"].signal == 15


def test_exit_82_no_jobs_is_finished_even_when_slurm_says_failed() -> None:
    st = classify(SlurmRecord(native_id="9", state="FAILED", exit_code=82))
    assert st.state is WorkerState.FINISHED and "no jobs" in st.diag


def test_unknown_state_is_unknown_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        st = classify(SlurmRecord(native_id="1", state="LAUNCH_FAILED_NEW"))
    assert st.state is WorkerState.UNKNOWN and "unknown native worker state" in caplog.text


def test_small_parsers() -> None:
    assert parse_sbatch("1234\n") == "1234" and parse_sbatch("99;cluster\n") == "99"
    with pytest.raises(ValueError):
        parse_sbatch("sbatch: error: Batch job submission failed\n")
    assert expand_array_tasks("0-3,7,10-20:5%4") == [0, 1, 2, 3, 7, 10, 15, 20]
    assert split_wait_status(768) == (3, None) and split_wait_status(9) == (None, 9)
    newer = '{"jobs": [{"job_id": 5, "array_job_id": {"set": true, "number": 0}, "job_state": ["RUNNING"],'
    newer += ' "exit_code": {"return_code": {"set": true, "number": 0}, "signal": {"id": {"set": false}}}}]}'
    assert parse_squeue_json(newer)["5"].state == "RUNNING"


def test_job_gone_from_squeue_is_classified_from_sacct_then_wrapper_record(tmp_path: Path) -> None:
    """The reconciliation itself, with recorded outputs behind fake commands (argv checked)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "squeue").write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho \'{{"jobs": []}}\'\n')
    (bin_dir / "sacct").write_text(f'#!/bin/sh\necho "$@" >> {calls}\ncat {DATA / "sacct_c.txt"}\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    logs = tmp_path / "logs"
    logs.mkdir()
    b = SlurmBackend(workdir=tmp_path / "w", options={"bin_dir": str(bin_dir)})
    from backends.wrapper.book import BookEntry

    b.book.add(
        {
            "1_1": BookEntry(worker_id="Q-1", log_dir=str(logs), submitted_at=0, native_id="4"),  # seen in squeue
            "1_2": BookEntry(worker_id="Q-2", log_dir=str(logs), submitted_at=0),  # id from the wrapper
            "50_0": BookEntry(worker_id="Q-3", log_dir=str(logs), submitted_at=0),  # only an exit record
            "51_0": BookEntry(worker_id="Q-4", log_dir=str(logs), submitted_at=0),  # nothing at all
        }
    )
    (logs / "Q-2.batch").write_text("1\n")
    (logs / "Q-3.exit").write_text("82\n")
    st = b.status(["1_1", "1_2", "50_0", "51_0"])
    assert st["1_1"].state is WorkerState.FAILED and st["1_1"].exit_code == 3 and "sacct" in st["1_1"].diag
    assert st["1_2"].state is WorkerState.FINISHED
    assert st["50_0"].state is WorkerState.FINISHED and "wrapper record" in st["50_0"].diag
    assert st["51_0"].state is WorkerState.MISSING
    assert "-c -P -n -o jobid,state,exitcode -j 4,1" in calls.read_text()
