"""The payload guard: a tiny process between the pilot and the payload that dies with the pilot.

``python -m pilot.guard --parent PID --status-fd FD -- PROGRAM ARGS...``

Why: the payload runs in its own session, so when the pilot is killed with SIGKILL (batch system,
OOM killer, a human) nothing would stop it. Its lease then lapses and the dispatcher retries the
job elsewhere while the orphan still runs: the job would run twice. The guard closes that hole:

- the pilot starts it as the leader of a new session and process group; the payload runs as the
  guard's child in that same group, so the pilot's ``killpg`` still reaches the whole tree;
- ``prctl(PR_SET_PDEATHSIG)`` makes the kernel signal the guard when the pilot dies, and
  ``getppid()`` is checked right after, so a pilot that died before the ``prctl`` is noticed too
  (then the payload is never started). The guard also polls ``getppid()`` once a second, in case
  the signal was lost;
- ``prctl(PR_SET_CHILD_SUBREAPER)`` keeps orphaned descendants (double forks, daemons) under the
  guard, so its ``/proc`` tree walk finds every process the payload made;
- on the pilot's death it SIGKILLs the whole tree (several rounds, since the subreaper collects
  the children of what it just killed) and exits.

When the payload's main process ends, the guard kills whatever it left behind, reaps it, and
reports the payload's raw wait status and the guard's own CPU time on ``--status-fd`` (so the
pilot can report the payload's exit code and exclude the guard's CPU), then exits with the
payload's exit code in shell convention (128 + N for a signal). Status-fd protocol, one line each:
``started <pid>``, ``error <message>`` (the payload could not be started), ``exited <status>
<guard cpu seconds>``.

The guard ignores SIGTERM, SIGINT and SIGHUP (with handlers, which ``exec`` resets, so the payload
gets default dispositions): the pilot signals the process group to stop the payload, and the guard
must outlive the payload to report it. SIGKILL ends the guard like anything else.

Caveat: ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the guard exits, so the pilot
must start payloads from a thread that lives as long as the pilot (its event-loop thread).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import resource
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

PILOT_DEATH_SIGNAL: int = signal.SIGRTMIN + 3
"""Signal the kernel sends the guard when the pilot dies (a real-time one nobody else uses)."""

START_ERROR_EXIT = 127
"""Exit code of the guard when the payload could not be started."""

_POLL_S = 1.0
_SWEEP_ROUNDS = 20


def _prctl(option: int, arg: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    zero = ctypes.c_ulong(0)
    if libc.prctl(option, ctypes.c_ulong(arg), zero, zero, zero) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def _descendants() -> list[int]:
    """Every live process below this one (by parent pid) plus members of this session."""
    me = os.getpid()
    parent_of: dict[int, int] = {}
    session_members: set[int] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                raw = fh.read().decode(errors="replace")
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        if len(fields) < 4 or fields[0] == "Z":
            continue
        pid = int(name)
        parent_of[pid] = int(fields[1])
        if int(fields[3]) == me:
            session_members.add(pid)
    children: dict[int, list[int]] = {}
    for pid, ppid in parent_of.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set(session_members)
    stack = [me, *session_members]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    found.discard(me)
    return sorted(found)


def _reap_all() -> list[tuple[int, int]]:
    """Reap every ended child (the payload and orphans handed to us as subreaper)."""
    reaped: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append((pid, status))


def kill_tree() -> None:
    """SIGKILL everything below the guard until nothing is left (or give up after a few rounds)."""
    for _ in range(_SWEEP_ROUNDS):
        pids = _descendants()
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
        _reap_all()


def _shell_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _report(fd: int, line: str) -> None:
    with contextlib.suppress(OSError):  # the pilot is gone: nothing to tell
        os.write(fd, (line + "\n").encode())


def _self_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def run(parent: int, status_fd: int, argv: Sequence[str]) -> int:
    """Guard ``argv`` for the pilot ``parent``; returns the guard's exit code."""

    def on_pilot_death(_sig: int, _frame: FrameType | None) -> None:
        if os.getppid() == parent:
            return  # a stray signal, not the pilot's death
        kill_tree()
        os._exit(128 + signal.SIGKILL)

    def ignore(_sig: int, _frame: FrameType | None) -> None:
        pass

    signal.signal(PILOT_DEATH_SIGNAL, on_pilot_death)  # before the prctl: its default would kill us
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, ignore)
    _prctl(PR_SET_PDEATHSIG, PILOT_DEATH_SIGNAL)
    if os.getppid() != parent:  # the pilot died before the prctl: nobody wants this payload
        return 128 + signal.SIGKILL
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, close_fds=True)
    except OSError as exc:
        _report(status_fd, f"error cannot start {argv[0]!r}: {exc}")
        return START_ERROR_EXIT
    _report(status_fd, f"started {proc.pid}")
    pidfd = os.pidfd_open(proc.pid)
    status: int | None = None
    while status is None:
        select.select([pidfd], [], [], _POLL_S)
        if os.getppid() != parent:
            on_pilot_death(PILOT_DEATH_SIGNAL, None)
        for pid, st in _reap_all():
            if pid == proc.pid:
                status = st
    os.close(pidfd)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    kill_tree()  # a payload must not outlive its job
    _report(status_fd, f"exited {status} {_self_cpu_s():.3f}")
    return _shell_code(status)


def main(args: Sequence[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m pilot.guard", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--parent", type=int, required=True, help="pid of the pilot to die with")
    parser.add_argument("--status-fd", type=int, required=True, help="where to report start and exit")
    parser.add_argument("argv", nargs="+", help="the payload command (after --)")
    ns = parser.parse_args(args)
    sys.exit(run(ns.parent, ns.status_fd, ns.argv))


if __name__ == "__main__":
    main()
