#!/usr/bin/env python3
"""A command-level LSF emulator for tests: ``bsub``, ``bjobs``, ``bkill`` (stdlib only).

It implements the documented behaviour and output formats the Ailuro LSF adapter relies on, and
runs jobs as local processes. It is NOT LSF: scheduling, hosts, limits (-n, -M, -W are recorded,
not enforced) and most options are absent. State lives in ``$LSF_EMU_DIR`` (default
``/tmp/ailuro-lsf-emu``): one JSON file per job element, guarded by a lock file.

- ``bsub [-J name[1-N]] [-q queue] [-n n] [-M mem] [-W [hh:]mm] [-o file] [-e file] [-H] [-cwd dir] cmd...``
  prints ``Job <id> is submitted to queue <queue>.``; ``%J`` / ``%I`` in -o/-e become the job
  id / array index. ``-H`` submits held (PSUSP). Each element waits ``$LSF_EMU_PEND_S``
  (default 0.5) in PEND, then runs with ``LSB_JOBID``, ``LSB_JOBINDEX``, ``LSB_JOBNAME``,
  ``LSB_QUEUE`` set; it ends DONE (exit 0) or EXIT (with its exit code).
- ``bjobs [-a] [-w] [-noheader] [-o "field ..."] [-json] [id | id[i] ...]``: the default table
  (``JOBID USER STAT QUEUE FROM_HOST EXEC_HOST JOB_NAME SUBMIT_TIME``), ``-o`` columns, or
  ``{"COMMAND": "bjobs", "JOBS": n, "RECORDS": [...]}``; unknown ids give ``Job <id> is not found``.
- ``bkill id | id[i] ...``: ``Job <id> is being terminated``; a running job gets SIGINT, then
  SIGTERM after 2 s and SIGKILL after 6 s (LSF's default sequence, shortened); a pending or held
  job ends EXIT at once. Killing an ended job: ``Job has already finished``.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

STATE = Path(os.environ.get("LSF_EMU_DIR", "/tmp/ailuro-lsf-emu"))
FIELDS = {
    "jobid": "JOBID",
    "jobindex": "JOBINDEX",
    "stat": "STAT",
    "exit_code": "EXIT_CODE",
    "queue": "QUEUE",
    "user": "USER",
    "job_name": "JOB_NAME",
    "from_host": "FROM_HOST",
    "exec_host": "EXEC_HOST",
    "submit_time": "SUBMIT_TIME",
    "start_time": "START_TIME",
    "finish_time": "FINISH_TIME",
    "exit_reason": "EXIT_REASON",
    "pend_reason": "PEND_REASON",
}
FINAL = ("DONE", "EXIT")


@contextmanager
def locked() -> Any:
    (STATE / "jobs").mkdir(parents=True, exist_ok=True)
    with open(STATE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _path(jobid: int, index: int) -> Path:
    return STATE / "jobs" / f"{jobid}.{index}.json"


def load(jobid: int, index: int) -> dict[str, Any] | None:
    try:
        return json.loads(_path(jobid, index).read_text())
    except (OSError, ValueError):
        return None


def save(job: dict[str, Any]) -> None:
    p = _path(job["jobid"], job["jobindex"])
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(job))
    tmp.replace(p)


def all_jobs() -> list[dict[str, Any]]:
    jobs = []
    for p in sorted((STATE / "jobs").glob("*.json")):
        try:
            jobs.append(json.loads(p.read_text()))
        except ValueError:
            continue
    return sorted(jobs, key=lambda j: (j["jobid"], j["jobindex"]))


def lsf_time(t: float | None) -> str:
    return time.strftime("%b %d %H:%M", time.localtime(t)) if t else "-"


# --- bsub ------------------------------------------------------------------------------------


def bsub(argv: list[str]) -> int:
    opts: dict[str, str] = {}
    hold = False
    i = 0
    with_value = {"-J", "-q", "-n", "-M", "-W", "-o", "-e", "-cwd", "-R", "-P", "-G"}
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] == "-H":
            hold = True
            i += 1
        elif argv[i] in with_value and i + 1 < len(argv):
            opts[argv[i]] = argv[i + 1]
            i += 2
        else:
            print(f"{argv[i]}: Illegal option", file=sys.stderr)
            return 255
    command = argv[i:]
    if not command:
        print("Job not submitted: no command", file=sys.stderr)
        return 255
    name = opts.get("-J", os.path.basename(command[0]))
    indices = [0]
    m = re.fullmatch(r"(.*)\[(\d+)-(\d+)\](?:%\d+)?", name)
    if m:
        name, lo, hi = m.group(1), int(m.group(2)), int(m.group(3))
        if lo < 1 or hi < lo:
            print("Bad job array index list. Job not submitted.", file=sys.stderr)
            return 255
        indices = list(range(lo, hi + 1))
    queue = opts.get("-q", "normal")
    with locked():
        counter = STATE / "next_id"
        jobid = int(counter.read_text()) if counter.exists() else 1001
        counter.write_text(str(jobid + 1))
        now = time.time()
        for index in indices:
            subst = {"%J": str(jobid), "%I": str(index)}
            out = _subst(opts.get("-o", ""), subst)
            err = _subst(opts.get("-e", ""), subst)
            save(
                {
                    "jobid": jobid,
                    "jobindex": index,
                    "name": f"{name}[{index}]" if index else name,
                    "queue": queue,
                    "user": getpass.getuser(),
                    "from_host": socket.gethostname(),
                    "exec_host": "",
                    "stat": "PSUSP" if hold else "PEND",
                    "exit_code": None,
                    "exit_reason": "",
                    "pend_reason": "Job was suspended by the user while pending"
                    if hold
                    else "New job is waiting for scheduling",
                    "submit_time": now,
                    "start_time": None,
                    "finish_time": None,
                    "command": command,
                    "cwd": opts.get("-cwd", os.getcwd()),
                    "out": out,
                    "err": err,
                    "slots": opts.get("-n", "1"),
                    "mem": opts.get("-M", ""),
                    "runlimit": opts.get("-W", ""),
                    "pid": None,
                    "kill_requested": None,
                }
            )
    for index in indices:
        subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "run", str(jobid), str(index)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
    print(f"Job <{jobid}> is submitted to queue <{queue}>.")
    return 0


def _subst(text: str, values: dict[str, str]) -> str:
    for k, v in values.items():
        text = text.replace(k, v)
    return text


def run(jobid: int, index: int) -> int:
    """The per-element runner: PEND for a while, then RUN the command, then DONE/EXIT."""
    pend_s = float(os.environ.get("LSF_EMU_PEND_S", "0.5"))
    deadline = time.time() + pend_s
    while True:
        with locked():
            job = load(jobid, index)
            if job is None or job["stat"] in FINAL:
                return 0
            if job["stat"] == "PEND" and time.time() >= deadline:
                break
        time.sleep(0.1)
    env = {
        **os.environ,
        "LSB_JOBID": str(jobid),
        "LSB_JOBINDEX": str(index),
        "LSB_JOBNAME": job["name"],
        "LSB_QUEUE": job["queue"],
    }
    # the runner lives exactly as long as the job: its log handles close when it exits
    out = open(job["out"], "ab") if job["out"] else subprocess.DEVNULL  # noqa: SIM115
    err = (
        open(job["err"], "ab")  # noqa: SIM115
        if job["err"] and job["err"] != job["out"]
        else (subprocess.STDOUT if job["out"] else subprocess.DEVNULL)
    )
    proc = subprocess.Popen(
        job["command"],
        cwd=job["cwd"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        start_new_session=True,
    )
    with locked():
        job = load(jobid, index) or job
        job.update(stat="RUN", pid=proc.pid, start_time=time.time(), exec_host=socket.gethostname(), pend_reason="")
        save(job)
    escalated = 0
    while proc.poll() is None:
        time.sleep(0.1)
        current = load(jobid, index) or {}
        asked = current.get("kill_requested")
        if asked:
            for after, sig in ((2.0, signal.SIGTERM), (6.0, signal.SIGKILL))[escalated:]:
                if time.time() - asked >= after:
                    _killpg(proc.pid, sig)
                    escalated += 1
    rc = proc.returncode
    with locked():
        job = load(jobid, index) or job
        code = rc if rc >= 0 else 128 - rc
        job.update(stat="DONE" if rc == 0 else "EXIT", exit_code=None if rc == 0 else code, finish_time=time.time())
        if job.get("kill_requested"):
            job.update(stat="EXIT", exit_reason="TERM_OWNER: job killed by owner", exit_code=code)
        save(job)
    return 0


def _killpg(pid: int, sig: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# --- job selection -----------------------------------------------------------------------------


def select(ids: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Jobs named by ``id`` or ``id[i]`` (all elements of an array for a bare id), and the unknown ids."""
    jobs = all_jobs()
    found: list[dict[str, Any]] = []
    missing: list[str] = []
    for spec in ids:
        m = re.fullmatch(r"(\d+)(?:\[(\d+)\])?", spec)
        hits = []
        if m:
            jobid, index = int(m.group(1)), m.group(2)
            hits = [j for j in jobs if j["jobid"] == jobid and (index is None or j["jobindex"] == int(index))]
        if hits:
            found.extend(h for h in hits if h not in found)
        else:
            missing.append(spec)
    return found, missing


def _label(job: dict[str, Any]) -> str:
    return f"{job['jobid']}[{job['jobindex']}]" if job["jobindex"] else str(job["jobid"])


# --- bjobs ---------------------------------------------------------------------------------------


def bjobs(argv: list[str]) -> int:
    show_all = wide = noheader = as_json = False
    fields: list[str] | None = None
    ids: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-a":
            show_all = True
        elif a == "-w":
            wide = True
        elif a == "-noheader":
            noheader = True
        elif a == "-json":
            as_json = True
        elif a == "-o" and i + 1 < len(argv):
            fields = [f.split(":", 1)[0].lower() for f in argv[i + 1].split() if not f.startswith("delimiter=")]
            i += 1
        elif a.startswith("-"):
            print(f"{a}: Illegal option", file=sys.stderr)
            return 255
        else:
            ids.append(a)
        i += 1
    if as_json and fields is None:
        print("-json must be used with -o", file=sys.stderr)
        return 255
    for f in fields or []:
        if f not in FIELDS:
            print(f"{f}: Illegal field name", file=sys.stderr)
            return 255
    with locked():
        if ids:
            jobs, missing = select(ids)
        else:
            jobs = [j for j in all_jobs() if show_all or j["stat"] not in FINAL]
            missing = []
    rc = 255 if missing and not jobs else 0
    if as_json:
        records: list[dict[str, Any]] = [{FIELDS[f]: _value(j, f) for f in fields or []} for j in jobs]
        records += [{"JOBID": m, "ERROR": f"Job <{m}> is not found"} for m in missing]
        print(json.dumps({"COMMAND": "bjobs", "JOBS": len(records), "RECORDS": records}, indent=2))
        return rc
    for m in missing:
        print(f"Job <{m}> is not found", file=sys.stderr)
    if not jobs:
        if not ids:
            print("No job found" if show_all else "No unfinished job found", file=sys.stderr)
        return rc
    if fields is not None:
        rows = [[FIELDS[f] for f in fields]] if not noheader else []
        rows += [[_value(j, f) or "-" for f in fields] for j in jobs]
        for row in rows:
            print(" ".join(f"{c:<12}" for c in row).rstrip())
        return rc
    if not noheader:
        print("JOBID   USER    STAT  QUEUE      FROM_HOST   EXEC_HOST   JOB_NAME   SUBMIT_TIME")
    for j in jobs:
        name, from_host, exec_host = j["name"], j["from_host"], j["exec_host"]
        if not wide:  # LSF truncates long columns, keeping the end of a job name after a '*'
            name = name if len(name) <= 10 else "*" + name[-9:]
            from_host, exec_host = from_host[:11], exec_host[:11]
        print(
            f"{j['jobid']:<7} {j['user']:<7} {j['stat']:<5} {j['queue']:<10} {from_host:<11} {exec_host:<11} "
            f"{name:<10} {lsf_time(j['submit_time'])}"
        )
    return rc


def _value(job: dict[str, Any], field: str) -> str:
    if field == "jobid":
        return str(job["jobid"])
    if field == "jobindex":
        return str(job["jobindex"])
    if field == "job_name":
        return job["name"]
    if field == "exit_code":
        return "" if job["exit_code"] is None else str(job["exit_code"])
    if field in ("submit_time", "start_time", "finish_time"):
        return lsf_time(job[field]) if job[field] else ""
    return str(job.get(field) or "")


# --- bkill ---------------------------------------------------------------------------------------


def bkill(argv: list[str]) -> int:
    ids = [a for a in argv if not a.startswith("-")]
    if not ids:
        print("Job ID must be specified", file=sys.stderr)
        return 255
    rc = 0
    with locked():
        jobs, missing = select(ids)
        for m in missing:
            print(f"Job <{m}>: No matching job found", file=sys.stderr)
            rc = 255
        for job in jobs:
            if job["stat"] in FINAL:
                print(f"Job <{_label(job)}>: Job has already finished", file=sys.stderr)
                rc = 255
                continue
            if job["stat"] == "RUN" and job["pid"]:
                job["kill_requested"] = time.time()
                _killpg(job["pid"], signal.SIGINT)
            else:  # never started: it ends at once
                job.update(
                    stat="EXIT",
                    exit_reason="TERM_OWNER: job killed by owner",
                    finish_time=time.time(),
                    kill_requested=time.time(),
                )
            save(job)
            print(f"Job <{_label(job)}> is being terminated")
    return rc


def main() -> int:
    """Dispatch on the program name (bsub, bjobs, bkill) or ``lsfemu.py run ID INDEX``."""
    prog = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    if prog.endswith(".py") and args and args[0] == "run":
        return run(int(args[1]), int(args[2]))
    if prog.endswith(".py") and args:
        prog, args = args[0], args[1:]
    commands = {"bsub": bsub, "bjobs": bjobs, "bkill": bkill}
    if prog not in commands:
        print(f"lsfemu: unknown command {prog}", file=sys.stderr)
        return 2
    return commands[prog](args)


if __name__ == "__main__":
    sys.exit(main())
