"""Parsing what Slurm's commands print, and mapping Slurm job states to worker states.

Pure functions over text, so they are tested against recorded output (``tests/unit/data/slurm``).
Ids: an array element is ``<array job id>_<task id>`` (the batch id the factory keeps); every
element also has its own numeric job id (the *native* id), which is all ``sacct -c``
(jobcomp/filetxt) knows about it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from backends.base import PILOT_CLEAN_EXIT_CODES, WorkerState, WorkerStatus, describe_exit_code, translate_state

log = logging.getLogger(__name__)

SLURM_STATES: Mapping[str, WorkerState] = {
    "PENDING": WorkerState.IDLE,
    "CONFIGURING": WorkerState.IDLE,
    "REQUEUED": WorkerState.IDLE,
    "REQUEUE_FED": WorkerState.IDLE,
    "RESV_DEL_HOLD": WorkerState.HELD,
    "REQUEUE_HOLD": WorkerState.HELD,
    "SUSPENDED": WorkerState.HELD,
    "STOPPED": WorkerState.HELD,
    "RUNNING": WorkerState.RUNNING,
    "COMPLETING": WorkerState.RUNNING,
    "RESIZING": WorkerState.RUNNING,
    "SIGNALING": WorkerState.RUNNING,
    "STAGE_OUT": WorkerState.RUNNING,
    "COMPLETED": WorkerState.FINISHED,
    "FAILED": WorkerState.FAILED,
    "TIMEOUT": WorkerState.FAILED,
    "NODE_FAIL": WorkerState.FAILED,
    "BOOT_FAIL": WorkerState.FAILED,
    "OUT_OF_MEMORY": WorkerState.FAILED,
    "PREEMPTED": WorkerState.FAILED,
    "DEADLINE": WorkerState.FAILED,
    "SPECIAL_EXIT": WorkerState.FAILED,
    "CANCELLED": WorkerState.CANCELLED,
    "REVOKED": WorkerState.CANCELLED,
}
"""Slurm job states (long names, as ``squeue --json``, ``%T`` and ``sacct`` print them)."""

SHORT_STATES: Mapping[str, str] = {
    "PD": "PENDING",
    "CF": "CONFIGURING",
    "RQ": "REQUEUED",
    "RF": "REQUEUE_FED",
    "RD": "RESV_DEL_HOLD",
    "RH": "REQUEUE_HOLD",
    "S": "SUSPENDED",
    "ST": "STOPPED",
    "R": "RUNNING",
    "CG": "COMPLETING",
    "RS": "RESIZING",
    "SI": "SIGNALING",
    "SO": "STAGE_OUT",
    "CD": "COMPLETED",
    "F": "FAILED",
    "TO": "TIMEOUT",
    "NF": "NODE_FAIL",
    "BF": "BOOT_FAIL",
    "OOM": "OUT_OF_MEMORY",
    "PR": "PREEMPTED",
    "DL": "DEADLINE",
    "SE": "SPECIAL_EXIT",
    "CA": "CANCELLED",
    "RV": "REVOKED",
}
"""``squeue -o %t`` codes to long names."""

HELD_REASONS = ("JobHeldUser", "JobHeldAdmin")
"""A PENDING job with one of these reasons waits for a release: held, not queued."""


@dataclass(frozen=True, kw_only=True)
class SlurmRecord:
    """One job (or array element) as a Slurm command reported it."""

    native_id: str
    """The element's own numeric job id."""
    state: str
    """Long state name (``COMPLETED``)."""
    reason: str = ""
    exit_code: int | None = None
    signal: int | None = None


def parse_sbatch(stdout: str) -> str:
    """The job id from ``sbatch --parsable`` (``1234`` or ``1234;cluster``)."""
    first = stdout.strip().splitlines()[0] if stdout.strip() else ""
    job_id = first.split(";", 1)[0].strip()
    if not job_id.isdigit():
        raise ValueError(f"sbatch --parsable printed no job id: {stdout!r}")
    return job_id


def expand_array_tasks(spec: str) -> list[int]:
    """Task ids of an array range string (``0-3,7,10-20:5%4`` -> 0,1,2,3,7,10,15,20)."""
    spec = spec.split("%", 1)[0].strip().strip("[]")
    tasks: list[int] = []
    for part in filter(None, spec.split(",")):
        step = 1
        if ":" in part:
            part, step_text = part.split(":", 1)
            step = int(step_text)
        if "-" in part:
            lo, hi = part.split("-", 1)
            tasks.extend(range(int(lo), int(hi) + 1, step))
        else:
            tasks.append(int(part))
    return tasks


def split_wait_status(status: int | None) -> tuple[int | None, int | None]:
    """``(exit code, signal)`` from the raw wait status ``squeue --json`` reports (768 -> (3, None))."""
    if status is None:
        return None, None
    if status & 0x7F:
        return None, status & 0x7F
    return (status >> 8) & 0xFF, None


def parse_squeue_json(text: str) -> dict[str, SlurmRecord]:
    """Records keyed by batch id (``A_i`` for array elements, ``J`` otherwise) from ``squeue --json``.

    A still-pending array is one record with ``array_task_string`` (``"2-4"``): every element
    it names gets its own entry.
    """
    data = json.loads(text)
    out: dict[str, SlurmRecord] = {}
    for job in data.get("jobs", []):
        raw_state = job.get("job_state", "")
        if isinstance(raw_state, list):  # Slurm 23.02+: a list of the state and its flags
            raw_state = raw_state[0] if raw_state else ""
        state = str(raw_state).upper()
        reason = str(job.get("state_reason", "") or "")
        rc, sig = _exit_code(job.get("exit_code"))
        native = str(job.get("job_id", ""))
        array_id = _int(job.get("array_job_id")) or 0
        task = _int(job.get("array_task_id"))
        task_string = str(job.get("array_task_string", "") or "")
        if array_id and task is not None:
            keys = [f"{array_id}_{task}"]
        elif array_id and task_string:
            keys = [f"{array_id}_{t}" for t in expand_array_tasks(task_string)]
            native = ""  # pending elements have no job id of their own yet
        else:
            keys = [native]
        for key in keys:
            out[key] = SlurmRecord(native_id=native, state=state, reason=reason, exit_code=rc, signal=sig)
    return out


def parse_squeue_text(text: str) -> dict[str, SlurmRecord]:
    """Records from ``squeue -h -t all -o '%i|%A|%T|%r'`` (the fallback without JSON support).

    ``%i`` is ``A_i`` (or ``A_[2-4]`` for pending elements), ``%A`` the element's own job id.
    The text format has no exit codes: final states come with ``exit_code=None``.
    """
    out: dict[str, SlurmRecord] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 3:
            continue
        job, native, state = fields[0], fields[1], SHORT_STATES.get(fields[2], fields[2]).upper()
        reason = fields[3] if len(fields) > 3 else ""
        if "_[" in job:
            array_id, tasks = job.split("_[", 1)
            for t in expand_array_tasks(tasks.rstrip("]")):
                out[f"{array_id}_{t}"] = SlurmRecord(native_id="", state=state, reason=reason)
        else:
            out[job] = SlurmRecord(native_id=native, state=state, reason=reason)
    return out


_EXIT = re.compile(r"^(\d+):(\d+)$")


def parse_sacct(text: str) -> dict[str, SlurmRecord]:
    """Records keyed by job id from ``sacct [-c] -P -n -o jobid,state,exitcode``.

    ``state`` may read ``CANCELLED by 0``; ``exitcode`` is ``<code>:<signal>``. Job steps
    (``1234.batch``) are skipped: the job's own line is what counts.
    """
    out: dict[str, SlurmRecord] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 3 or not fields[0] or "." in fields[0]:
            continue
        job_id, state = fields[0], (fields[1].split() or [""])[0].upper()
        m = _EXIT.match(fields[2].strip())
        rc = int(m.group(1)) if m else None
        sig = int(m.group(2)) if m and m.group(2) != "0" else None
        out[job_id] = SlurmRecord(native_id=job_id, state=state, exit_code=rc, signal=sig)
    return out


def classify(record: SlurmRecord, *, cancelled: bool = False) -> WorkerStatus:
    """The worker status of a Slurm record.

    COMPLETED and FAILED are told apart by the pilot's exit code: a pilot that found no work
    (exit 82) ended as designed, though Slurm calls any non-zero exit FAILED. An unknown state
    becomes ``unknown`` with a warning.
    """
    native = record.state
    if native == "PENDING" and record.reason in HELD_REASONS:
        return WorkerStatus(state=WorkerState.HELD, native_state=native, diag=record.reason)
    state = translate_state(native, SLURM_STATES, backend="slurm")
    diag = ""
    if state in (WorkerState.FINISHED, WorkerState.FAILED):
        if record.signal:
            diag = describe_exit_code(-record.signal)
        elif record.exit_code is not None:
            diag = describe_exit_code(record.exit_code)
        if native in ("COMPLETED", "FAILED") and record.exit_code is not None and not record.signal:
            state = WorkerState.FINISHED if record.exit_code in PILOT_CLEAN_EXIT_CODES else WorkerState.FAILED
        elif native not in ("COMPLETED", "FAILED"):
            diag = f"{native}" + (f" ({record.reason})" if record.reason and record.reason != "None" else "")
            diag += f", {describe_exit_code(-record.signal)}" if record.signal else ""
    elif state is WorkerState.CANCELLED:
        diag = "cancelled by the factory" if cancelled else "cancelled (not by this factory)"
    elif state is WorkerState.HELD:
        diag = native + (f" ({record.reason})" if record.reason and record.reason != "None" else "")
    elif state is WorkerState.IDLE and record.reason not in ("", "None"):
        diag = record.reason
    exit_code = record.exit_code if state.is_final else None
    return WorkerStatus(state=state, native_state=native, exit_code=exit_code, diag=diag)


def _exit_code(value: Any) -> tuple[int | None, int | None]:
    """``(exit code, signal)`` from an ``exit_code`` field: a raw wait status (Slurm 22.05) or, in
    newer versions, ``{"return_code": {...}, "signal": {"id": {...}}}``."""
    if isinstance(value, dict) and ("return_code" in value or "signal" in value):
        sig_field = value.get("signal", {})
        sig = _int(sig_field.get("id")) if isinstance(sig_field, dict) else None
        return _int(value.get("return_code")), sig or None
    return split_wait_status(_int(value))


def _int(value: Any) -> int | None:
    """An int from a JSON field that may be a number, null, or (in newer Slurm) ``{"set":..,"number":..}``."""
    if isinstance(value, dict):
        if not value.get("set", True):
            return None
        value = value.get("number")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None
