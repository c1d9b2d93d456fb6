"""Parsing ``bsub`` / ``bjobs`` output and mapping LSF job states to worker states (pure functions).

Batch ids: ``<jobid>[<index>]`` for array elements (LSF indices start at 1), ``<jobid>`` otherwise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from backends.base import PILOT_CLEAN_EXIT_CODES, WorkerState, WorkerStatus, describe_exit_code, translate_state

LSF_STATES: Mapping[str, WorkerState] = {
    "PEND": WorkerState.IDLE,
    "WAIT": WorkerState.IDLE,
    "PROV": WorkerState.IDLE,
    "RUN": WorkerState.RUNNING,
    "DONE": WorkerState.FINISHED,
    "EXIT": WorkerState.FAILED,
    "PSUSP": WorkerState.HELD,
    "USUSP": WorkerState.HELD,
    "SSUSP": WorkerState.HELD,
    "UNKWN": WorkerState.UNKNOWN,
    "ZOMBI": WorkerState.FAILED,
}
"""LSF job states (``STAT``). UNKWN (the master lost contact with the execution host) is a
known state whose outcome is open: ``unknown``, counted as queued, never guessed."""

BJOBS_FIELDS = "jobid jobindex stat exit_code exit_reason pend_reason"
"""The ``-o`` fields the adapter asks for."""

_SUBMITTED = re.compile(r"Job <(\d+)> is submitted to (?:default )?queue <([^>]*)>")
_MONTHS = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}


@dataclass(frozen=True, kw_only=True)
class LSFRecord:
    """One job element as ``bjobs`` reported it."""

    stat: str
    exit_code: int | None = None
    reason: str = ""


def parse_bsub(stdout: str) -> str:
    """The job id from ``Job <1234> is submitted to queue <8nh>.``"""
    m = _SUBMITTED.search(stdout)
    if m is None:
        raise ValueError(f"bsub printed no job id: {stdout!r}")
    return m.group(1)


def batch_key(jobid: str, index: str | int | None) -> str:
    """``1234[3]`` for an array element, ``1234`` otherwise."""
    idx = str(index or "0").strip() or "0"
    return f"{jobid}[{idx}]" if idx != "0" else str(jobid)


def parse_bjobs_json(text: str) -> tuple[dict[str, LSFRecord], list[str]]:
    """Records keyed by batch id from ``bjobs -o "<BJOBS_FIELDS>" -json``, and the ids LSF did not find."""
    data = json.loads(text)
    out: dict[str, LSFRecord] = {}
    missing: list[str] = []
    for rec in data.get("RECORDS", []):
        jobid = str(rec.get("JOBID", ""))
        if rec.get("ERROR"):
            missing.append(jobid)
            continue
        code = str(rec.get("EXIT_CODE", "") or "").strip()
        out[batch_key(jobid, rec.get("JOBINDEX"))] = LSFRecord(
            stat=str(rec.get("STAT", "")).strip().upper(),
            exit_code=int(code) if code.lstrip("-").isdigit() else None,
            reason=str(rec.get("EXIT_REASON") or rec.get("PEND_REASON") or "").strip(),
        )
    return out, missing


def parse_bjobs_table(text: str) -> dict[str, LSFRecord]:
    """Records from the default ``bjobs [-w]`` table (no exit codes in this format).

    Columns: ``JOBID USER STAT QUEUE FROM_HOST EXEC_HOST JOB_NAME SUBMIT_TIME``. EXEC_HOST is
    empty for pending jobs, SUBMIT_TIME (``Sep 29 16:53``) may be missing, and an array element's
    index is the ``[i]`` suffix of JOB_NAME. A name LSF truncated (leading ``*``, no ``-w``) has
    lost its index: such a row is keyed by the bare job id.
    """
    out: dict[str, LSFRecord] = {}
    for line in text.splitlines():
        tokens = line.split()
        if len(tokens) < 5 or not tokens[0].isdigit():
            continue  # header, blank, or a message
        jobid, stat = tokens[0], tokens[2].upper()
        rest = tokens[4:]
        while rest and rest[-1] == "-":
            rest.pop()
        for i, tok in enumerate(rest):
            if tok in _MONTHS and i >= 1:
                rest = rest[:i]
                break
        name = rest[-1] if len(rest) >= 2 else ""
        m = re.search(r"\[(\d+)\]$", name)
        out[batch_key(jobid, m.group(1) if m and not name.startswith("*") else None)] = LSFRecord(stat=stat)
    return out


def classify(record: LSFRecord, *, cancelled: bool = False) -> WorkerStatus:
    """The worker status of an LSF record (EXIT is split by the pilot's exit code and our cancels)."""
    stat = record.stat
    state = translate_state(stat, LSF_STATES, backend="lsf")
    diag = record.reason
    if stat in ("EXIT", "ZOMBI") and cancelled:
        state, diag = WorkerState.CANCELLED, "killed by the factory"
    elif stat == "EXIT":
        if record.exit_code is not None and record.exit_code in PILOT_CLEAN_EXIT_CODES:
            state = WorkerState.FINISHED
        diag = describe_exit_code(record.exit_code) + (f"; {record.reason}" if record.reason else "")
    elif stat == "DONE":
        diag = describe_exit_code(record.exit_code if record.exit_code is not None else 0)
    exit_code = record.exit_code
    if stat == "DONE" and exit_code is None:
        exit_code = 0
    return WorkerStatus(state=state, native_state=stat, exit_code=exit_code if state.is_final else None, diag=diag)
