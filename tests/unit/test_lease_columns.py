"""A heartbeat flush reads only :data:`LEASE_COLUMNS` of a job under lock: :func:`lease_of` must
need nothing else, and every name must be a column of ``jobs``."""

from __future__ import annotations

from dispatcher.states import JobState
from dispatcher.store.leases import LEASE_COLUMNS, lease_of
from dispatcher.store.schema import jobs


def test_lease_columns_are_columns_of_jobs() -> None:
    assert set(LEASE_COLUMNS) <= set(jobs.c.keys())
    assert len(set(LEASE_COLUMNS)) == len(LEASE_COLUMNS)


def test_lease_of_reads_nothing_but_the_lease_columns() -> None:
    row = {
        "panda_id": 7,
        "status": JobState.RUNNING.value,
        "lease_epoch": 3,
        "pilot_id": "p1",
        "attempt_nr": 1,
        "max_attempt": 3,
        "start_time": 12.5,
        "kill_requested": 1,
        "kill_reason": "operator",
        "kill_delivered": 0,
        "last_final_epoch": None,
        "last_final_status": None,
    }
    assert set(row) == set(LEASE_COLUMNS)  # a plain dict: any other key would raise KeyError
    lease = lease_of(row)
    assert (lease.panda_id, lease.status, lease.lease_epoch, lease.pilot_id) == (7, JobState.RUNNING, 3, "p1")
    assert lease.started and lease.kill_requested and not lease.kill_delivered
    assert lease.kill_reason == "operator"
