"""LSF parsers. Real LSF cannot run here: the JSON is recorded from the emulator
(tests/lsf_emulator), the tables follow the layout of the COMPASS ``bjobs`` listing (PEND jobs on
``2nw`` with truncated job names and empty EXEC_HOST, RUN jobs on ``8nh``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from backends.base import WorkerState
from backends.lsf.parse import LSFRecord, classify, parse_bjobs_json, parse_bjobs_table, parse_bsub

DATA = Path(__file__).parent / "data" / "lsf"


def test_bsub_output() -> None:
    assert parse_bsub("Job <703638624> is submitted to queue <2nw>.\n") == "703638624"
    assert parse_bsub("Job <12> is submitted to default queue <normal>.\n") == "12"
    with pytest.raises(ValueError):
        parse_bsub("Request aborted by esub. Job not submitted.\n")


def test_bjobs_json_array_done_exit_psusp_killed_and_not_found() -> None:
    recs, missing = parse_bjobs_json((DATA / "bjobs_emulator.json").read_text())
    assert missing == ["4242"]
    assert classify(recs["1001[1]"]).state is WorkerState.FINISHED and classify(recs["1001[1]"]).exit_code == 0
    failed = classify(recs["1001[2]"])
    assert failed.state is WorkerState.FAILED and failed.exit_code == 3
    held = classify(recs["1002"])
    assert held.state is WorkerState.HELD and "suspended" in held.diag
    killed = recs["1003"]
    assert killed.exit_code == 130
    assert classify(killed, cancelled=True).state is WorkerState.CANCELLED
    other = classify(killed)  # killed by someone else: a failure, with LSF's reason
    assert other.state is WorkerState.FAILED and "TERM_OWNER" in other.diag


def test_bjobs_table_pending_listing() -> None:
    recs = parse_bjobs_table((DATA / "bjobs_table_pend.txt").read_text())
    assert recs["703638624"].stat == "PEND" and recs["703638631"].stat == "PEND" and "703638663" in recs
    assert classify(recs["703638624"]).state is WorkerState.IDLE
    assert classify(recs["703516433"]).state is WorkerState.RUNNING


def test_bjobs_wide_table_array_elements() -> None:
    recs = parse_bjobs_table((DATA / "bjobs_table_wide.txt").read_text())
    assert classify(recs["1001[1]"]).state is WorkerState.RUNNING
    assert classify(recs["1001[2]"]).state is WorkerState.HELD  # PSUSP
    assert classify(recs["1001[3]"]).state is WorkerState.HELD  # SSUSP
    st = classify(recs["1002"])
    assert st.state is WorkerState.FAILED and st.exit_code is None  # the table has no exit code


def test_exit_82_is_finished_unkwn_is_unknown_and_new_states_warn(caplog: pytest.LogCaptureFixture) -> None:
    assert classify(LSFRecord(stat="EXIT", exit_code=82)).state is WorkerState.FINISHED
    assert classify(LSFRecord(stat="UNKWN")).state is WorkerState.UNKNOWN
    assert classify(LSFRecord(stat="USUSP")).state is WorkerState.HELD
    assert classify(LSFRecord(stat="ZOMBI")).state is WorkerState.FAILED
    with caplog.at_level(logging.WARNING):
        assert classify(LSFRecord(stat="NEWSTATE")).state is WorkerState.UNKNOWN
    assert "unknown native worker state" in caplog.text
