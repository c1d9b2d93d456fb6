"""The state machine: every allowed and every forbidden pair of the 12x12 table."""

from __future__ import annotations

import itertools

import pytest

from ailuro.errors import FailedPrecondition
from ailuro.v1 import job_pb2
from dispatcher.decisions import should_retry
from dispatcher.states import (
    FINAL_STATES,
    ON_PILOT_STATES,
    QUEUED_STATES,
    TRANSITIONS,
    JobState,
    check_transition,
    is_allowed,
)

S = JobState

# The table of DESIGN.md section 3, written out independently of dispatcher/states.py.
ALLOWED = {
    (S.DEFINED, S.ASSIGNED), (S.DEFINED, S.ACTIVATED), (S.DEFINED, S.FAILED),
    (S.ASSIGNED, S.ACTIVATED), (S.ASSIGNED, S.FAILED),
    (S.ACTIVATED, S.SENT), (S.ACTIVATED, S.ASSIGNED),
    (S.SENT, S.STARTING), (S.SENT, S.RUNNING), (S.SENT, S.HOLDING), (S.SENT, S.ACTIVATED), (S.SENT, S.FAILED),
    (S.STARTING, S.RUNNING), (S.STARTING, S.HOLDING), (S.STARTING, S.ACTIVATED), (S.STARTING, S.FAILED),
    (S.RUNNING, S.HOLDING), (S.RUNNING, S.ACTIVATED), (S.RUNNING, S.FAILED),
    (S.HOLDING, S.TRANSFERRING), (S.HOLDING, S.FINISHED), (S.HOLDING, S.ACTIVATED), (S.HOLDING, S.FAILED),
    (S.TRANSFERRING, S.FINISHED), (S.TRANSFERRING, S.ACTIVATED), (S.TRANSFERRING, S.FAILED),
}  # fmt: skip
ALLOWED |= {(src, dst) for src in S if not src.is_final for dst in (S.CANCELLED, S.CLOSED)}
ALL_PAIRS = list(itertools.product(S, S))


def test_table_covers_all_twelve_states() -> None:
    assert len(S) == 12 and set(TRANSITIONS) == set(S)


@pytest.mark.parametrize(("src", "dst"), sorted(ALLOWED), ids=lambda s: s.value)
def test_allowed_pair(src: JobState, dst: JobState) -> None:
    assert is_allowed(src, dst)
    check_transition(1, src, dst)


@pytest.mark.parametrize(("src", "dst"), [p for p in ALL_PAIRS if p not in ALLOWED], ids=lambda s: s.value)
def test_forbidden_pair(src: JobState, dst: JobState) -> None:
    assert not is_allowed(src, dst)
    with pytest.raises(FailedPrecondition) as info:
        check_transition(42, src, dst)
    assert "42" in str(info.value) and src.value in str(info.value)


def test_counts() -> None:
    assert len(ALL_PAIRS) == 144 and len(ALLOWED) == 42


@pytest.mark.parametrize("final", sorted(FINAL_STATES))
def test_final_states_never_change(final: JobState) -> None:
    assert final.is_final and TRANSITIONS[final] == frozenset()
    for dst in S:
        with pytest.raises(FailedPrecondition, match="final state"):
            check_transition(1, final, dst)


def test_state_groups_partition_the_live_states() -> None:
    assert set(S) == QUEUED_STATES | ON_PILOT_STATES | FINAL_STATES
    assert not (QUEUED_STATES & ON_PILOT_STATES) and not (ON_PILOT_STATES & FINAL_STATES)


@pytest.mark.parametrize("state", list(S))
def test_proto_round_trip(state: JobState) -> None:
    value = state.to_proto()
    assert job_pb2.JobStatus.Name(value) == f"JOB_STATUS_{state.name}"
    assert JobState.from_proto(value) is state
    assert state.value == state.name.lower()


@pytest.mark.parametrize("value", [job_pb2.JOB_STATUS_UNSPECIFIED, 99, -1])
def test_from_proto_rejects_unspecified_and_unknown(value: int) -> None:
    with pytest.raises(ValueError):
        JobState.from_proto(value)


@pytest.mark.parametrize(
    ("attempt", "max_attempt", "retryable", "expected"),
    [(1, 3, True, True), (2, 3, True, True), (3, 3, True, False), (4, 3, True, False), (1, 3, False, False),
     (1, 1, True, False), (99, 100, True, True)],
)  # fmt: skip
def test_should_retry(attempt: int, max_attempt: int, retryable: bool, expected: bool) -> None:
    assert should_retry(attempt_nr=attempt, max_attempt=max_attempt, retryable=retryable) is expected


def test_path_takes_the_shortest_allowed_chain_from_the_table() -> None:
    from dispatcher.states import path

    assert path(S.SENT, S.FINISHED) == [(S.SENT, S.HOLDING), (S.HOLDING, S.FINISHED)]
    assert path(S.RUNNING, S.TRANSFERRING) == [(S.RUNNING, S.HOLDING), (S.HOLDING, S.TRANSFERRING)]
    assert path(S.HOLDING, S.FINISHED) == [(S.HOLDING, S.FINISHED)]
    assert path(S.TRANSFERRING, S.TRANSFERRING) == []
    for src in S:
        for dst in S:
            try:
                steps = path(src, dst)
            except ValueError:  # final states end every path; nothing leads back to defined
                assert (src.is_final or dst == S.DEFINED) and src != dst
                continue
            assert all(is_allowed(a, b) for a, b in steps)
