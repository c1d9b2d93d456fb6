"""Resource usage of a process tree, read from Linux's /proc.

The payload runs in its own session, led by its guard (:mod:`pilot.guard`), so its tree is every
process whose session id is the guard's pid, plus any descendant (by parent pid) that left the
session with ``setsid`` (the guard is a subreaper, so orphans stay its descendants).
CPU time counts each live process's own time and that of its already-reaped children
(``cutime``/``cstime``), so time spent in short-lived children is not lost.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass(frozen=True, kw_only=True)
class ProcInfo:
    """One process as /proc/<pid>/stat describes it."""

    pid: int
    ppid: int
    pgrp: int
    session: int
    state: str
    cpu_s: float
    """utime + stime + cutime + cstime, in seconds."""
    own_cpu_s: float
    """utime + stime only: the process's own CPU, without its reaped children."""
    rss_kb: int


@dataclass(frozen=True, kw_only=True)
class TreeUsage:
    """Usage summed over a process tree at one instant."""

    pids: tuple[int, ...]
    cpu_s: float
    rss_kb: int


def _read_stat(pid: int | str) -> str | None:
    """The raw text of /proc/<pid>/stat (plain ``os`` calls: a tree walk reads hundreds of them)."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 4096).decode(errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def read_proc(pid: int) -> ProcInfo | None:
    """Parse /proc/<pid>/stat; ``None`` when the process is gone or unreadable."""
    raw = _read_stat(pid)
    return None if raw is None else _parse(pid, raw)


def _parse(pid: int, raw: str) -> ProcInfo | None:
    # the command name is in parentheses and may itself contain spaces or parentheses
    tail = raw[raw.rfind(")") + 2 :].split()
    try:
        return ProcInfo(
            pid=pid,
            state=tail[0],
            ppid=int(tail[1]),
            pgrp=int(tail[2]),
            session=int(tail[3]),
            cpu_s=(int(tail[11]) + int(tail[12]) + int(tail[13]) + int(tail[14])) / _CLK_TCK,
            own_cpu_s=(int(tail[11]) + int(tail[12])) / _CLK_TCK,
            rss_kb=int(tail[21]) * _PAGE_KB,
        )
    except (IndexError, ValueError):
        return None


def all_processes() -> dict[int, ProcInfo]:
    """Every process currently visible in /proc."""
    procs: dict[int, ProcInfo] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = read_proc(int(name))
            if info is not None:
                procs[info.pid] = info
    return procs


def process_tree(root_pid: int, procs: dict[int, ProcInfo] | None = None) -> list[ProcInfo]:
    """The processes of ``root_pid``'s tree: its session plus its descendants by parent pid.

    Without ``procs`` it reads every /proc/<pid>/stat once but parses in full only the tree's
    members (the rest of a busy node is hundreds of processes).
    """
    if procs is not None:
        links = {p.pid: (p.ppid, p.session) for p in procs.values()}
    else:
        raws: dict[int, str] = {}
        links = {}
        for name in os.listdir("/proc"):
            if name.isdigit() and (raw := _read_stat(name)) is not None:
                fields = raw[raw.rfind(")") + 2 :].split(maxsplit=5)
                if len(fields) > 4 and fields[1].isdigit() and fields[3].isdigit():
                    raws[int(name)] = raw
                    links[int(name)] = (int(fields[1]), int(fields[3]))
    members = {pid for pid, (_, session) in links.items() if session == root_pid}
    if root_pid in links:
        members.add(root_pid)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in links.items():
        children.setdefault(ppid, []).append(pid)
    stack = list(members)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in members:
                members.add(child)
                stack.append(child)
    if procs is not None:
        return [procs[pid] for pid in sorted(members)]
    parsed = (_parse(pid, raws[pid]) for pid in sorted(members))
    return [p for p in parsed if p is not None]


def tree_usage(root_pid: int, *, exclude_root: bool = False) -> TreeUsage:
    """CPU time and resident memory of ``root_pid``'s tree right now (zombies count as 0 RSS).

    With ``exclude_root`` the root's own CPU and RSS are left out but the CPU of children it
    reaped is kept: that is how the payload guard (the root) stays out of the payload's figures.
    """
    tree = process_tree(root_pid)
    cpu_s = sum(p.cpu_s for p in tree)
    rss_kb = sum(p.rss_kb for p in tree)
    if exclude_root:
        for p in tree:
            if p.pid == root_pid:
                cpu_s -= p.own_cpu_s
                rss_kb -= p.rss_kb
    return TreeUsage(pids=tuple(p.pid for p in tree), cpu_s=cpu_s, rss_kb=rss_kb)


def cmdline(pid: int, limit: int = 200) -> str:
    """The process's command line (NULs as spaces, cut at ``limit``); empty when unreadable."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read(limit + 1)
    except OSError:
        return ""
    text = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."


def describe_tree(root_pid: int) -> str:
    """A ``ps``-like listing of ``root_pid``'s tree: pid, ppid, state, CPU, RSS, command line."""
    lines = [f"{'PID':>8} {'PPID':>8} S {'CPU_S':>9} {'RSS_KB':>10}  COMMAND"]
    for p in process_tree(root_pid):
        lines.append(f"{p.pid:>8} {p.ppid:>8} {p.state} {p.cpu_s:>9.2f} {p.rss_kb:>10}  {cmdline(p.pid)}")
    return "\n".join(lines)
