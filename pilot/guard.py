"""The payload guard: the process between the pilot and a payload that dies with the pilot.

Why: the payload runs in its own session, so when the pilot is killed with SIGKILL (batch system,
OOM killer, a human) nothing would stop it. Its lease then lapses and the dispatcher retries the
job elsewhere while the orphan still runs: the job would run twice. The guard closes that hole:

- the payload leads a new session and process group of its own (server mode; in single mode
  the payload stays in the guard's), so the pilot's ``killpg`` reaches its whole tree; the guard
  is its parent;
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
as passed file descriptors); the server hands it to a free *job guard*, forking one from itself
when none is free (a fork of a small single-threaded process: no interpreter start per job), so
there are as many job guards as payloads ever ran at once, and each is reused for payload after
payload: a fork per job cost the guard and its payload ~2 ms of CPU, more than ``/bin/true``
itself. A job guard serves one payload at a time and does the above with the server as its
parent; whatever is below it when its payload ended is that payload's leftover. The chain holds
when the pilot dies: the server gets its parent-death signal and SIGKILLs every process below it;
a server that vanishes by SIGKILL still triggers each job guard's own parent-death signal. The
job guard keeps the job's status socket until it reaped the payload and killed its leftovers,
then closes it: the end of that stream tells the pilot that nothing of the job is left. A pilot
that closes the status socket early gives up on the job: its guard kills the tree at once.

``python -m pilot.guard --parent PID --status-fd FD -- PROGRAM ARGS...``: one guard for one
payload, started by the pilot itself (kept for wrappers and tests).

When the payload's main process ends, the guard kills whatever it left behind (it has no child
left in the common case, which costs one ``waitpid``; else the ``/proc`` walk), and reports on
the status descriptor, one line each: ``started <pid> <guard pid>``, ``error <message>`` (the
payload could not be started), ``exited <raw wait status> <guard cpu s> <payload tree cpu s>``
(this payload's share of a reused guard's figures).
Its exit code is the payload's in shell convention (128 + N for a signal).

The guard ignores SIGTERM, SIGINT and SIGHUP (with handlers, which ``exec`` resets, so the payload
gets default dispositions): the guard must outlive the payload to report it, and the pilot never
signals it (it is outside the payload's group). SIGKILL ends the guard like anything else.

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


def kill_tree() -> list[tuple[int, int]]:
    """SIGKILL everything below the guard until nothing is left (or give up after a few rounds).

    Returns the children it reaped meanwhile (pid, wait status).
    """
    reaped: list[tuple[int, int]] = []
    for _ in range(_SWEEP_ROUNDS):
        pids = _descendants()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
        reaped += _reap_all()
    return reaped + _reap_all()


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
    status = _guard_one(
        parent,
        status_fd,
        argv,
        cwd=cwd,
        env=env,
        stdout=stdout,
        stderr=stderr,
        new_session=False,
        watch_status=watch_status,
    )
    return START_ERROR_EXIT if status is None else _shell_code(status)


def _guard_one(
    parent: int,
    status_fd: int,
    argv: Sequence[str],
    *,
    cwd: str | None,
    env: Mapping[str, str] | None,
    stdout: int | None,
    stderr: int | None,
    new_session: bool,
    watch_status: bool = False,
) -> int | None:
    """Start one payload and watch it to its end and its leftovers' (the guard's parent-death
    handling is already set up); returns its wait status, ``None`` when it could not start.

    A guard serves one payload at a time, so whatever is below it when the payload's main process
    ended is that payload's leftover. CPU figures are this payload's share (a reused guard's
    totals are read before and after).
    """
    own_before, tree_before = _cpu_s(resource.RUSAGE_SELF), _cpu_s(resource.RUSAGE_CHILDREN)
    try:
        payload = _start_payload(
            argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr, keep=(status_fd,), new_session=new_session
        )
    except OSError as exc:
        _report(status_fd, f"error cannot start {argv[0]!r}: {exc}")
        return None
    _report(status_fd, f"started {payload} {os.getpid()}")
    pidfd = os.pidfd_open(payload)
    watched = [pidfd, status_fd] if watch_status else [pidfd]
    status: int | None = None
    while status is None:
        ready, _, _ = select.select(watched, [], [], _POLL_S)
        if os.getppid() != parent:
            os.kill(os.getpid(), PILOT_DEATH_SIGNAL)
        if status_fd in ready and not _read_or_eof(status_fd):
            # the pilot let go of this job: nothing of it may run on
            status = dict(kill_tree()).get(payload)
            watched = [pidfd]
        if status is None:
            with contextlib.suppress(ChildProcessError):
                pid, st = os.waitpid(payload, os.WNOHANG)
                if pid:
                    status = st
    os.close(pidfd)
    if _has_children():
        kill_tree()  # a payload must not outlive its job
    _reap_all()
    own = _cpu_s(resource.RUSAGE_SELF) - own_before
    tree = _cpu_s(resource.RUSAGE_CHILDREN) - tree_before
    _report(status_fd, f"exited {status} {own:.3f} {tree:.3f}")
    return status


def _start_payload(
    argv: Sequence[str],
    *,
    cwd: str | None,
    env: Mapping[str, str] | None,
    stdout: int | None,
    stderr: int | None,
    keep: Sequence[int],
    new_session: bool = False,
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
        os.chdir(cwd)  # posix_spawn has no chdir action here: the guard goes there for the payload
    try:
        return os.posix_spawn(
            program,
            list(argv),
            environ,
            file_actions=actions,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            setsid=new_session,
        )
    finally:
        if cwd is not None:
            os.chdir("/")  # not kept in the job's work directory, which goes away with the job


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


def _read_request(sock: socket.socket) -> tuple[bytes, list[int]] | None:
    """One request as sent (header and body) and its descriptors; ``None`` at end of stream."""
    head, fds, _flags, _addr = socket.recv_fds(sock, _HEADER.size, 3)
    if not head:
        return None
    while len(head) < _HEADER.size:
        more = sock.recv(_HEADER.size - len(head))
        if not more:
            _close_all(fds)
            return None
        head += more
    (size,) = _HEADER.unpack(head)
    if size > MAX_REQUEST_BYTES or len(fds) != 3:
        _close_all(fds)
        raise ValueError(f"bad spawn request ({size} bytes, {len(fds)} descriptors)")
    body = bytearray(head)
    while len(body) < _HEADER.size + size:
        chunk = sock.recv(min(_HEADER.size + size - len(body), 1 << 20))
        if not chunk:
            _close_all(fds)
            return None
        body += chunk
    return bytes(body), fds


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _serve_job(server: int, raw: bytes, fds: list[int], conn: socket.socket) -> None:
    """In a job guard: run one request's payload in a new session, report, close the job's descriptors.

    The guard tells the server it is free (a byte on ``conn``) *before* it closes the job's status
    socket: the pilot's next request, which follows that end of stream, then never finds this
    guard still marked busy (which would fork a needless new one).
    """
    out, err, status_fd = fds
    try:
        request = json.loads(raw[_HEADER.size :])
        argv = [str(a) for a in request["argv"]]
        env = {str(k): str(v) for k, v in request["env"].items()}
        _guard_one(
            server,
            status_fd,
            argv,
            cwd=str(request["cwd"]),
            env=env,
            stdout=out,
            stderr=err,
            new_session=True,
            watch_status=True,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        _report(status_fd, f"error bad spawn request: {exc}")
    finally:
        with contextlib.suppress(OSError):  # a server that is gone: the next read says so
            conn.send(b"\0")
        _close_all(fds)  # the end of the status stream: nothing of the job is left


def _job_guard(server: int, conn: socket.socket) -> int:
    """In a forked child: a job guard serving one payload at a time, as the server hands them over.

    It is reused for job after job (a fork per job cost more CPU than a short payload), and stays
    each payload's parent and subreaper, with its parent-death signal on the server. At the end of
    each job it writes one byte on ``conn``: free again. Returns when the server closes ``conn``.
    """
    if not _watch_parent(server):
        return 128 + signal.SIGKILL
    while True:
        ready, _, _ = select.select([conn], [], [], _POLL_S)
        if os.getppid() != server:
            os.kill(os.getpid(), PILOT_DEATH_SIGNAL)
        if not ready:
            continue
        try:
            got = _read_request(conn)
        except (OSError, ValueError) as exc:
            print(f"payload guard: bad spawn request: {exc}", file=sys.stderr)
            got = None
        if got is None:
            kill_tree()
            return 0
        _serve_job(server, *got, conn)


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


class _Guard:
    """The server's handle on one job guard: its pid, pidfd and the socket jobs go through."""

    def __init__(self, pid: int, pidfd: int, conn: socket.socket) -> None:
        self.pid, self.pidfd, self.conn = pid, pidfd, conn
        self.busy = False


def _fork_guard(me: int, control: socket.socket, guards: list[_Guard], pending: Sequence[int]) -> _Guard:
    """Fork a new job guard; ``pending`` (the request being handed over) is not inherited: a copy
    of a job's status socket left in its guard would keep the stream from ending."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            mine.close()
            control.close()
            _close_all(pending)
            for g in guards:
                os.close(g.pidfd)
                g.conn.close()
            code = _job_guard(me, theirs)
        finally:
            os._exit(code)
    theirs.close()
    return _Guard(pid, os.pidfd_open(pid), mine)


def _dispatch(me: int, control: socket.socket, guards: list[_Guard]) -> bool:
    """Hand one request to a free job guard (forked if none is); ``False`` when the pilot closed."""
    try:
        got = _read_request(control)
    except (OSError, ValueError) as exc:
        print(f"payload guard: bad spawn request: {exc}", file=sys.stderr)
        return True
    if got is None:
        return False
    raw, fds = got
    try:
        guard = next((g for g in guards if not g.busy), None)
        if guard is None:
            guard = _fork_guard(me, control, guards, fds)
            guards.append(guard)
        socket.send_fds(guard.conn, [raw], fds)
        guard.busy = True
    except OSError as exc:  # the pilot sees its status socket closed without a word: a start error
        print(f"payload guard: cannot hand over a spawn request: {exc}", file=sys.stderr)
    finally:
        _close_all(fds)
    return True


def serve(parent: int, control_fd: int) -> int:
    """Server mode: have a job guard start each request on ``control_fd`` until the pilot closes it."""
    me = os.getpid()
    if not _watch_parent(parent):
        return 128 + signal.SIGKILL
    control = socket.socket(fileno=control_fd)
    guards: list[_Guard] = []
    ended: dict[int, int] = {}  # reaped pid -> wait status
    while True:
        watched = [control.fileno(), *(g.pidfd for g in guards), *(g.conn.fileno() for g in guards if g.busy)]
        ready, _, _ = select.select(watched, [], [], _POLL_S)
        if os.getppid() != parent:
            os.kill(me, PILOT_DEATH_SIGNAL)
        for g in [g for g in guards if g.busy and g.conn.fileno() in ready]:
            with contextlib.suppress(OSError):
                if g.conn.recv(64):
                    g.busy = False  # done with its job (a dead guard is handled by its pidfd)
        dead = [g for g in guards if g.pidfd in ready]
        if dead:
            ended.update(_reap_all())
            for g in dead:
                guards.remove(g)
                os.close(g.pidfd)
                g.conn.close()
            if any(os.WIFSIGNALED(ended.get(g.pid, 0)) for g in dead):
                # killed before it could clean up after its payload: what it left came to us
                _sweep_orphans(me, {g.pid for g in guards}, ended)
            ended.clear()
        if control.fileno() in ready and not _dispatch(me, control, guards):
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
