"""Tape recall decisions (``ddm.staging``) and the reading of XRootD's ``query prepare`` answer."""

from __future__ import annotations

import json

import pytest

from ddm import staging
from ddm.protocols.base import StageStatus, TransferError
from ddm.protocols.xrootd import parse_prepare_answer

OFFLINE = StageStatus(exists=True, online=False, on_tape=True)


def test_an_online_file_is_read_whatever_else_is_said() -> None:
    status = StageStatus(exists=True, online=True, on_tape=True, error="stale")
    decision = staging.judge_stage(status, waited_s=10**6, timeout_s=1, first_poll_s=1)
    assert decision.action == staging.ONLINE


def test_a_file_that_does_not_exist_is_lost_with_the_tape_systems_reason() -> None:
    status = StageStatus(exists=False, online=False, on_tape=False, error="no such file on tape")
    decision = staging.judge_stage(status, waited_s=0, timeout_s=60, first_poll_s=1)
    assert (decision.action, decision.message) == (staging.LOST, "no such file on tape")


def test_a_failed_recall_or_a_too_long_wait_is_a_failed_attempt() -> None:
    failed = StageStatus(exists=True, online=False, on_tape=True, error="drive error")
    assert staging.judge_stage(failed, waited_s=0, timeout_s=60, first_poll_s=1).action == staging.FAILED
    late = staging.judge_stage(OFFLINE, waited_s=61, timeout_s=60, first_poll_s=1)
    assert late.action == staging.FAILED and "staging_timeout_s" in late.message


def test_polls_start_at_the_first_interval_grow_with_the_wait_and_are_capped() -> None:
    delays = [
        staging.judge_stage(OFFLINE, waited_s=w, timeout_s=10**6, first_poll_s=30).delay_s for w in (0, 100, 200, 10**5)
    ]
    assert delays == [30, 50, 100, 300]
    assert staging.judge_stage(OFFLINE, waited_s=0, timeout_s=60, first_poll_s=30).action == staging.POLL


def _answer(**entry: object) -> str:
    base = {"path": "/t/a.raw", "path_exists": True, "on_tape": True, "online": False, "error_text": ""}
    return json.dumps({"request_id": "r1", "responses": [{"path": "/t/other"}, {**base, **entry}]})


def test_the_entry_for_the_path_is_read() -> None:
    assert parse_prepare_answer(_answer(), "/t/a.raw", url="u") == OFFLINE
    gone = parse_prepare_answer(_answer(path_exists=False, on_tape=False, error_text="lost"), "/t/a.raw", url="u")
    assert (gone.exists, gone.error) == (False, "lost")


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("Request * queued.", "not a JSON answer"),  # a server whose prepare plug-in has no query
        (json.dumps({"request_id": "r1"}), "no 'responses' list"),
        (json.dumps({"responses": [{"path": "/t/b.raw", "online": True}]}), "does not mention /t/a.raw"),
        (_answer(online="yes"), "must be booleans"),
    ],
)
def test_an_answer_that_is_not_a_prepare_status_is_an_error_naming_what_is_wrong(text: str, what: str) -> None:
    with pytest.raises(TransferError, match=what):
        parse_prepare_answer(text, "/t/a.raw", url="u")
