"""The payload guard: the process between the pilot and a payload that dies with the pilot.

Why: the payload runs in its own session, so when the pilot is killed with SIGKILL (batch system,
OOM killer, a human) nothing would stop it. Its lease then lapses and the dispatcher retries the
job elsewhere while the orphan still runs: the job would run twice. The guard closes that hole:

- a job's guard leads a new session and process group; the payload runs as the guard's child in
  that same group, so the pilot's ``killpg`` still reaches the whole tree;
- ``prctl(PR_SET_PDEATHSIG)`` makes the kernel signal the guard when its parent dies, and
  ``getppid()`` is checked right after, so a parent that died before the ``prctl`` is noticed too
  (then the payload is never started). The guard also polls ``getppid()`` once a second, in case
  the signal was lost;
- ``prctl(PR_SET_CHILD_SUBREAPER)`` keeps orphaned descendants (double forks, daemons) under the
  guard, so its ``/proc`` tree walk finds every process the payload made;
- on its parent's death it SIGKILLs the whole tree (several rounds, since the subreaper collects
  the children of what it just killed) and exits.

Two ways to run it:

``python -m pilot.guard --serve --parent PID --control-fd FD`` (what the pilot uses): one *guard
server* per pilot, started once. For each payload the pilot sends it a request on the control
socket (:func:`encode_request`: argv, cwd, environment, plus stdout, stderr and a status socket
as passed file descriptors); the server forks a job guard from itself (a fork of a small
single-threaded process: no interpreter start per job) which does the above with the server as
its parent. The chain holds when the pilot dies: the server gets its parent-death signal and
SIGKILLs every process below it; a server that vanishes by SIGKILL still triggers each job guard's
own parent-death signal. The server keeps its copy of the job's status socket until it reaped the
job guard and then writes ``reaped <wait status>``: the end of that stream tells the pilot that
nothing of the job is left. A pilot that closes the status socket early gives up on the job: its
guard kills the tree at once.

``python -m pilot.guard --parent PID --status-fd FD -- PROGRAM ARGS...``: one guard for one
payload, started by the pilot itself (kept for wrappers and tests).

When the payload's main process ends, the guard kills whatever it left behind (it has no child
left in the common case, which costs one ``waitpid``; else the ``/proc`` walk), and reports on
the status descriptor, one line each: ``started <pid> <guard pid>``, ``error <message>`` (the
payload could not be started), ``exited <raw wait status> <guard cpu s> <payload tree cpu s>``.
Its exit code is the payload's in shell convention (128 + N for a signal).

The guard ignores SIGTERM, SIGINT and SIGHUP (with handlers, which ``exec`` resets, so the payload
gets default dispositions): the pilot signals the process group to stop the payload, and the guard
must outlive the payload to report it. SIGKILL ends the guard like anything else.

Caveat: ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the process exits, so the pilot
must start its guard server from a thread that lives as long as the pilot (its event-loop thread).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import json
import os
import resource
import select
import shutil
import signal
import socket
import struct
import sys
import time
from collections.abc import Mapping, Sequence
from types import FrameType

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

PILOT_DEATH_SIGNAL: int = signal.SIGRTMIN + 3
"""Signal the kernel sends a guard when its parent dies (a real-time one nobody else uses)."""

START_ERROR_EXIT = 127
"""Exit code of the guard when the payload could not be started."""

MAX_REQUEST_BYTES = 8 * 1024 * 1024
"""Largest spawn request the server reads (argv and environment of one payload)."""

_HEADER = struct.Struct("!I")
_POLL_S = 1.0
_SWEEP_ROUNDS = 20
_LIBC: ctypes.CDLL | None = None


def _prctl(option: int, arg: int) -> None:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    zero = ctypes.c_ulong(0)
    if _LIBC.prctl(option, ctypes.c_ulong(arg), zero, zero, zero) != 0:
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


def _has_children() -> bool:
    """Whether any child (live or not yet reaped) is left: one syscall, no /proc walk."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


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


def _cpu_s(who: int) -> float:
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def _ignore(_sig: int, _frame: FrameType | None) -> None:
    pass


def _watch_parent(parent: int) -> bool:
    """Die with ``parent`` from now on (kill the tree first); whether it is still alive."""

    def on_parent_death(_sig: int, _frame: FrameType | None) -> None:
        if os.getppid() == parent:
            return  # a stray signal, not the parent's death
        kill_tree()
        os._exit(128 + signal.SIGKILL)

    signal.signal(PILOT_DEATH_SIGNAL, on_parent_death)  # before the prctl: its default would kill us
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _ignore)
    _prctl(PR_SET_PDEATHSIG, PILOT_DEATH_SIGNAL)
    if os.getppid() != parent:  # died before the prctl: nobody wants this payload
        return False
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    return True


def guard_payload(
    parent: int,
    status_fd: int,
    argv: Sequence[str],
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    watch_status: bool = False,
) -> int:
    """Guard ``argv`` for ``parent`` (see the module docstring); returns the guard's exit code.

    With ``watch_status`` (a status *socket*, server mode) the pilot closing its end means it gave
    up on the job: the tree is killed at once.
    """
    if not _watch_parent(parent):
        return 128 + signal.SIGKILL
    try:
        payload = _start_payload(argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr, keep=(status_fd,))
    except OSError as exc:
        _report(status_fd, f"error cannot start {argv[0]!r}: {exc}")
        return START_ERROR_EXIT
    _report(status_fd, f"started {payload} {os.getpid()}")
    pidfd = os.pidfd_open(payload)
    watched = [pidfd, status_fd] if watch_status else [pidfd]
    status: int | None = None
    while status is None:
        ready, _, _ = select.select(watched, [], [], _POLL_S)
        if os.getppid() != parent:
            os.kill(os.getpid(), PILOT_DEATH_SIGNAL)
        if status_fd in ready and not _read_or_eof(status_fd):
            kill_tree()  # the pilot let go of this job: nothing of it may run on
            watched = [pidfd]
        with contextlib.suppress(ChildProcessError):
            pid, st = os.waitpid(payload, os.WNOHANG)
            if pid:
                status = st
    os.close(pidfd)
    if _has_children():
        kill_tree()  # a payload must not outlive its job
    _reap_all()
    own = _cpu_s(resource.RUSAGE_SELF)
    _report(status_fd, f"exited {status} {own:.3f} {_cpu_s(resource.RUSAGE_CHILDREN):.3f}")
    return _shell_code(status)


def _start_payload(
    argv: Sequence[str],
    *,
    cwd: str | None,
    env: Mapping[str, str] | None,
    stdout: int | None,
    stderr: int | None,
    keep: Sequence[int],
) -> int:
    """Start the payload with ``posix_spawn`` (a vfork: no copy of the guard); its pid.

    stdin is /dev/null, stdout/stderr the given descriptors, no other descriptor of the guard's is
    inherited (``keep`` are made close-on-exec), SIGPIPE and SIGXFSZ get their default action
    back (Python ignores them). A bare program name is looked up on the payload's ``PATH``.
    """
    environ = os.environ if env is None else env
    program = argv[0]
    if "/" not in program:
        found = shutil.which(program, path=environ.get("PATH", os.defpath))
        if found is None:
            raise FileNotFoundError(errno.ENOENT, "not found on PATH", program)
        program = found
    for fd in (*keep, *(f for f in (stdout, stderr) if f is not None)):
        os.set_inheritable(fd, False)
    actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)
    ]
    if stdout is not None:
        actions.append((os.POSIX_SPAWN_DUP2, stdout, 1))
    if stderr is not None:
        actions.append((os.POSIX_SPAWN_DUP2, stderr, 2))
    if cwd is not None:
        os.chdir(cwd)  # the guard serves this one payload: its directory may as well be the payload's
    return os.posix_spawn(
        program, list(argv), environ, file_actions=actions, setsigdef=(signal.SIGPIPE, signal.SIGXFSZ)
    )


def _read_or_eof(fd: int) -> bool:
    """Drain what the pilot wrote on ``fd``; ``False`` once it closed its end."""
    try:
        return bool(os.read(fd, 4096))
    except BlockingIOError:
        return True
    except OSError:
        return False


def run(parent: int, status_fd: int, argv: Sequence[str]) -> int:
    """Single mode: guard ``argv`` for the pilot ``parent``; returns the guard's exit code."""
    return guard_payload(parent, status_fd, argv)


# --- the guard server -----------------------------------------------------------------------


def encode_request(argv: Sequence[str], cwd: str, env: Mapping[str, str]) -> bytes:
    """A spawn request (without its file descriptors), as :func:`serve` reads it."""
    body = json.dumps({"argv": list(argv), "cwd": cwd, "env": dict(env)}).encode()
    return _HEADER.pack(len(body)) + body


def _read_request(sock: socket.socket) -> tuple[dict[str, object], list[int]] | None:
    """One request and its descriptors (stdout, stderr, status); ``None`` at end of stream."""
    head, fds, _flags, _addr = socket.recv_fds(sock, _HEADER.size, 3)
    if not head:
        return None
    while len(head) < _HEADER.size:
        more = sock.recv(_HEADER.size - len(head))
        if not more:
            return None
        head += more
    (size,) = _HEADER.unpack(head)
    if size > MAX_REQUEST_BYTES or len(fds) != 3:
        raise ValueError(f"bad spawn request ({size} bytes, {len(fds)} descriptors)")
    body = bytearray()
    while len(body) < size:
        chunk = sock.recv(min(size - len(body), 1 << 20))
        if not chunk:
            return None
        body += chunk
    return json.loads(body), fds


def _job_guard(parent: int, request: dict[str, object], fds: list[int]) -> int:
    """In the forked child: become the job's guard; returns the exit code."""
    out, err, status_fd = fds
    os.setsid()
    argv = [str(a) for a in request["argv"]]  # type: ignore[attr-defined]
    env = {str(k): str(v) for k, v in request["env"].items()}  # type: ignore[attr-defined]
    return guard_payload(
        parent, status_fd, argv, cwd=str(request["cwd"]), env=env, stdout=out, stderr=err, watch_status=True
    )


def _children_of(me: int, skip: set[int]) -> list[int]:
    """Live children of ``me`` not in ``skip`` (a /proc walk)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in skip:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                raw = fh.read().decode(errors="replace")
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        if int(fields[1]) == me and fields[0] != "Z":
            found.append(int(name))
    return found


def _sweep_orphans(me: int, guards: set[int], ended: dict[int, int]) -> None:
    """Kill children that are no job guard: leftovers of a job guard that was SIGKILLed."""
    for _ in range(_SWEEP_ROUNDS):
        orphans = _children_of(me, guards)
        if not orphans:
            return
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
        ended.update(_reap_all())


def _spawn(me: int, control: socket.socket, guards: dict[int, tuple[int, int]]) -> bool:
    """Read one request and fork its job guard; ``False`` when the pilot closed the socket."""
    try:
        got = _read_request(control)
    except (OSError, ValueError) as exc:
        print(f"payload guard: bad spawn request: {exc}", file=sys.stderr)
        return True
    if got is None:
        return False
    request, fds = got
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            control.close()
            for pidfd, (_, status_fd) in guards.items():
                os.close(pidfd)
                os.close(status_fd)
            code = _job_guard(me, request, fds)
        finally:
            os._exit(code)
    os.close(fds[0])
    os.close(fds[1])
    # the status socket stays open here until the job guard is reaped: the pilot's end of
    # stream then means its pid is free, and nothing of the job is left
    guards[os.pidfd_open(pid)] = (pid, fds[2])
    return True


def serve(parent: int, control_fd: int) -> int:
    """Server mode: start a job guard per request on ``control_fd`` until the pilot closes it."""
    me = os.getpid()
    if not _watch_parent(parent):
        return 128 + signal.SIGKILL
    control = socket.socket(fileno=control_fd)
    guards: dict[int, tuple[int, int]] = {}  # pidfd -> (job guard pid, its status socket)
    ended: dict[int, int] = {}  # reaped pid -> wait status
    while True:
        ready, _, _ = select.select([control.fileno(), *guards], [], [], _POLL_S)
        if os.getppid() != parent:
            os.kill(me, PILOT_DEATH_SIGNAL)
        done = [fd for fd in ready if fd in guards]
        if done:
            ended.update(_reap_all())
            finished = [(guards.pop(fd), fd) for fd in done]
            if any(os.WIFSIGNALED(ended.get(pid, 0)) for (pid, _), _ in finished):
                # killed before it could clean up after its payload: what it left came to us
                _sweep_orphans(me, {pid for pid, _ in guards.values()}, ended)
            for (pid, status_fd), pidfd in finished:
                os.close(pidfd)
                _report(status_fd, f"reaped {ended.pop(pid, 0)}")
                os.close(status_fd)
            live = {pid for pid, _ in guards.values()}
            ended = {pid: st for pid, st in ended.items() if pid in live}
        if control.fileno() in ready and not _spawn(me, control, guards):
            kill_tree()  # the pilot let go: nothing of its payloads may outlive it
            return 0


def main(args: Sequence[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m pilot.guard", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--parent", type=int, required=True, help="pid of the pilot to die with")
    parser.add_argument("--status-fd", type=int, help="single mode: where to report start and exit")
    parser.add_argument("--serve", action="store_true", help="server mode: start payloads on request")
    parser.add_argument("--control-fd", type=int, help="server mode: the socket requests arrive on")
    parser.add_argument("argv", nargs="*", help="single mode: the payload command (after --)")
    ns = parser.parse_args(args)
    if ns.serve:
        if ns.control_fd is None:
            parser.error("--serve needs --control-fd")
        sys.exit(serve(ns.parent, ns.control_fd))
    if ns.status_fd is None or not ns.argv:
        parser.error("single mode needs --status-fd and a command")
    sys.exit(run(ns.parent, ns.status_fd, ns.argv))


if __name__ == "__main__":
    main()
