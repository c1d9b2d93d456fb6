"""HTCondor job ads to worker states (pure; tested against recorded ``query``/``history`` ads).

``JobStatus``: 1 Idle, 2 Running, 3 Removed, 4 Completed, 5 Held, 6 Transferring Output,
7 Suspended. A completed job is finished or failed by the pilot's exit code (``ExitCode``, or
``ExitSignal`` when ``ExitBySignal``); a removed one is cancelled, or failed when the factory
removed it for staying held too long (the hold reason is kept as the diag).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backends.base import PILOT_CLEAN_EXIT_CODES, WorkerState, WorkerStatus, describe_exit_code, translate_state

JOB_STATUS_NAMES: Mapping[int, str] = {
    1: "Idle",
    2: "Running",
    3: "Removed",
    4: "Completed",
    5: "Held",
    6: "Transferring Output",
    7: "Suspended",
}

HTCONDOR_STATES: Mapping[str, WorkerState] = {
    "Idle": WorkerState.IDLE,
    "Running": WorkerState.RUNNING,
    "Removed": WorkerState.CANCELLED,
    "Completed": WorkerState.FINISHED,
    "Held": WorkerState.HELD,
    "Transferring Output": WorkerState.RUNNING,
    "Suspended": WorkerState.HELD,
}
"""Native state names (from :data:`JOB_STATUS_NAMES`) to worker states."""

PROJECTION = (
    "ClusterId",
    "ProcId",
    "JobStatus",
    "HoldReason",
    "HoldReasonCode",
    "EnteredCurrentStatus",
    "ExitCode",
    "ExitBySignal",
    "ExitSignal",
    "RemoveReason",
    "LastJobStatus",
    "AiluroWorker",
)
"""Attributes the backend asks the schedd for."""


def batch_id(ad: Mapping[str, Any]) -> str:
    """``<ClusterId>.<ProcId>``, the worker's batch id."""
    return f"{int(ad['ClusterId'])}.{int(ad['ProcId'])}"


def native_state(ad: Mapping[str, Any]) -> str:
    """The JobStatus name (``Held``), or ``JobStatus=<n>`` for a number HTCondor added later."""
    status = ad.get("JobStatus")
    try:
        return JOB_STATUS_NAMES.get(int(status), f"JobStatus={status}")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return f"JobStatus={status}"


def classify(ad: Mapping[str, Any], *, cancelled: bool = False, removed_for_hold: str = "") -> WorkerStatus:
    """The worker status of one job ad (from the queue or the history)."""
    native = native_state(ad)
    state = translate_state(native, HTCONDOR_STATES, backend="htcondor")
    if native == "Completed":
        if ad.get("ExitBySignal"):
            sig = int(ad.get("ExitSignal") or 0)
            return WorkerStatus(
                state=WorkerState.FAILED,
                native_state=native,
                exit_code=-sig or None,
                diag=describe_exit_code(-sig) if sig else "killed by a signal",
            )
        rc = ad.get("ExitCode")
        rc = int(rc) if rc is not None else None
        ok = rc is not None and rc in PILOT_CLEAN_EXIT_CODES
        return WorkerStatus(
            state=WorkerState.FINISHED if ok else WorkerState.FAILED,
            native_state=native,
            exit_code=rc,
            diag=describe_exit_code(rc),
        )
    if native == "Removed":
        if removed_for_hold:
            return WorkerStatus(state=WorkerState.FAILED, native_state=native, diag=removed_for_hold)
        reason = str(ad.get("RemoveReason") or "")
        who = "removed by the factory" if cancelled else "removed (not by this factory)"
        return WorkerStatus(
            state=WorkerState.CANCELLED,
            native_state=native,
            diag=who + (f": {reason}" if reason and not cancelled else ""),
        )
    if native == "Held":
        reason = str(ad.get("HoldReason") or "held")
        return WorkerStatus(state=WorkerState.HELD, native_state=native, diag=reason)
    return WorkerStatus(state=state, native_state=native)
