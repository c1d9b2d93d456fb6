"""An opt-in event-loop lag monitor: how long the loop was held before a due timer could run.

Why: the hot path (JobRequests, kills, acks) shares one asyncio loop with bulk work; any callback
that holds the loop for tens of milliseconds shows up directly in GetJob and kill latency. Load
figures on a shared machine are noisy; the loop's own lag is not hidden by them.

How (cheap enough for production, unlike asyncio's debug mode): a task sleeps ``TICK_S`` again
and again and records how late each wake-up came (the time the loop was busy elsewhere) in a
fixed histogram. A daemon thread looks every few milliseconds whether the last wake-up is older
than the stall threshold; if so, the loop is held right now and it records the loop thread's
Python stack (a sampled profile of the stalls only). Lag is wall time, so on a busy machine it
also counts the time the process waited for a core or the loop thread for the GIL; to measure
the hold itself, every callback of the loop is timed in loop-thread CPU time (``Handle._run``
wrapped, two clock reads per callback) and the ones over the threshold are named (for a task
step: its coroutine and where it paused next). Every ``REPORT_S`` the thread writes the
histogram and the most frequent stall stacks as JSON to ``<dir>/looplag-<pid>.json`` (one file
per process, so ``--workers`` processes do not collide) and logs a warning when stalls occurred.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import IO, Protocol

from dispatcher.config import LoopLagConfig

log = logging.getLogger(__name__)

TICK_S = 0.01
"""Period of the lag probe: one timer per tick, so about a hundred cheap wake-ups per second."""
REPORT_S = 1.0
"""How often the report file is rewritten (and stalls logged, at most every ``LOG_EVERY_S``)."""
LOG_EVERY_S = 10.0
"""At most one stall warning per this many seconds."""
MAX_STACKS = 200
"""Distinct stall stacks remembered; further new ones are counted under ``"(other)"``."""
STACK_DEPTH = 14
"""Innermost frames kept per sampled stack."""
_FINE = 1000
"""Histogram buckets of 0.1 ms (0-100 ms), then buckets of 1 ms up to 10 s, then one overflow."""


def bucket(lag_ms: float) -> int:
    """The histogram bucket of a lag in milliseconds."""
    if lag_ms < 100.0:
        return max(0, int(lag_ms * 10))
    return min(_FINE + int(lag_ms - 100.0), _FINE + 9_900)


def bucket_ms(index: int) -> float:
    """The upper edge of a bucket in milliseconds (percentiles are read as this edge)."""
    return (index + 1) / 10 if index < _FINE else 100.0 + (index - _FINE + 1)


def percentile_ms(hist: dict[int, int], q: float) -> float:
    """The q-th percentile (0-100) of a sparse histogram ``{bucket: count}``, as a bucket's upper edge."""
    total = sum(hist.values())
    if not total:
        return 0.0
    rank = max(1, math.ceil(q / 100 * total))  # nearest rank
    seen = 0
    for index in sorted(hist):
        seen += hist[index]
        if seen >= rank:
            return bucket_ms(index)
    return bucket_ms(max(hist))


_THREAD_HEADER = re.compile(r"^(?:Current thread|Thread) 0x([0-9a-f]+)")
_FRAME_LINE = re.compile(r'^  File "(.*)", line (\S+) in (.*)$')


def thread_stack(dump: str, ident: int) -> tuple[str, ...]:
    """Thread ``ident``'s innermost ``STACK_DEPTH`` frames in a ``faulthandler`` dump of all
    threads, as ``file:line function``, innermost first (empty if the dump does not show it)."""
    out: list[str] = []
    mine = False
    for line in dump.splitlines():
        head = _THREAD_HEADER.match(line)
        if head:
            if mine:
                break
            mine = int(head.group(1), 16) == ident
            continue
        frame = _FRAME_LINE.match(line) if mine else None
        if frame and len(out) < STACK_DEPTH:
            short = "/".join(frame.group(1).split("/")[-2:])
            out.append(f"{short}:{frame.group(2)} {frame.group(3)}")
    return tuple(out)


def describe_callback(handle: asyncio.Handle) -> str:
    """A name for what a loop callback ran: a task step names the task's coroutine and the line it
    paused at next (the end of the slice); anything else its callable. Only called for slow ones."""
    callback = getattr(handle, "_callback", None)
    task = next((r for r in gc.get_referents(callback) if isinstance(r, asyncio.Task)), None)
    if task is None and isinstance(getattr(callback, "__self__", None), asyncio.Task):
        task = callback.__self__  # type: ignore[union-attr]
    if task is not None:
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        where = f" (paused at {frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno})" if frame else " (done)"
        return f"task {getattr(coro, '__qualname__', repr(coro))}{where}"
    return getattr(callback, "__qualname__", None) or repr(callback)[:120]


class CallbackTimer:
    """Times every callback of one loop in loop-thread CPU (waiting for the GIL or a core is not
    counted: that is the machine, not the callback); the slow ones are named. Installed by wrapping
    ``asyncio.Handle._run`` (two clock reads per callback), for the monitored loop only."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stall_ms: float) -> None:
        self.loop = loop
        self.stall_s = stall_ms / 1e3
        self.hist: dict[int, int] = {}
        self.slow: dict[str, list[float]] = {}
        """Callbacks that held the loop longer than the threshold: name -> [count, total ms, max ms, GC ms]."""
        self.gc_s = 0.0
        """CPU seconds spent in garbage collection so far (any thread)."""
        self.gc_pauses: dict[int, list[float]] = {}
        """Collections by generation: [count, total ms, max ms]."""
        self._gc_start = 0.0
        self._original: Callable[[asyncio.Handle], None] | None = None

    def install(self) -> None:
        """Wrap ``Handle._run`` (the loop runs every callback through it)."""
        original = self._original = asyncio.events.Handle._run
        timer = self

        def timed_run(handle: asyncio.Handle) -> None:
            if handle._loop is not timer.loop:  # type: ignore[attr-defined]
                original(handle)
                return
            start, gc_before = time.thread_time(), timer.gc_s
            try:
                original(handle)
            finally:
                timer.record(handle, time.thread_time() - start, timer.gc_s - gc_before)

        asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]
        gc.callbacks.append(self._gc_phase)

    def _gc_phase(self, phase: str, info: dict[str, int]) -> None:
        """Time each garbage collection in CPU (it runs in the thread that triggered it, holding the
        GIL: every thread, the loop included, waits for it)."""
        if phase == "start":
            self._gc_start = time.thread_time()
            return
        took = time.thread_time() - self._gc_start  # the collecting thread's CPU: waiting for a core is not counted
        self.gc_s += took
        entry = self.gc_pauses.setdefault(info.get("generation", -1), [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += took * 1e3
        entry[2] = max(entry[2], took * 1e3)

    def uninstall(self) -> None:
        """Put ``Handle._run`` back."""
        if self._original is not None:
            asyncio.events.Handle._run = self._original  # type: ignore[method-assign]
            self._original = None
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._gc_phase)

    def record(self, handle: asyncio.Handle, cpu_s: float, gc_s: float = 0.0) -> None:
        """Count one callback's CPU time; name it when it is over the threshold (with the garbage
        collection time that fell into it: a collection runs in whichever callback allocates)."""
        index = bucket(cpu_s * 1e3)
        self.hist[index] = self.hist.get(index, 0) + 1
        if cpu_s > self.stall_s:
            name = describe_callback(handle)
            entry = self.slow.get(name)
            if entry is None:
                if len(self.slow) >= MAX_STACKS:
                    name = "(other)"
                entry = self.slow.setdefault(name, [0, 0.0, 0.0, 0.0])
            entry[0] += 1
            entry[1] += cpu_s * 1e3
            entry[2] = max(entry[2], cpu_s * 1e3)
            entry[3] += gc_s * 1e3


class DbTimesLike(Protocol):
    """What the report reads of ``dispatcher.services.runtime.DbTimes`` (which imports this module)."""

    def peaks(self) -> dict[str, int]:
        """Largest values by name."""
        ...

    def snapshot(self) -> dict[str, dict[int, int]]:
        """Histograms by name."""
        ...


class LoopLagMonitor:
    """Measures the lag of the running loop; :meth:`start` in the loop, :meth:`stop` at shutdown."""

    def __init__(self, config: LoopLagConfig, *, db_times: DbTimesLike | None = None) -> None:
        self.config = config
        self._db_times = db_times
        """Database waits, batch times and peaks (``Runtime.db_times``), written with the report."""
        self.hist: dict[int, int] = {}
        self.max_ms = 0.0
        self.stalls = 0
        self.stacks: Counter[tuple[str, ...]] = Counter()
        self._last_wake = time.perf_counter()
        self._loop_thread = 0
        self._loop_native = 0
        self._task: asyncio.Task[None] | None = None
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._logged_stalls = 0
        self._next_log = 0.0
        self.callbacks: CallbackTimer | None = None
        self._scratch: IO[bytes] | None = None
        """Where the sampler has ``faulthandler`` write the threads' stacks (a temporary file)."""

    def start(self) -> None:
        """Start the probe task on the running loop and the sampling thread."""
        self._loop_thread = threading.get_ident()
        self._loop_native = threading.get_native_id()
        self._last_wake = time.perf_counter()
        self.callbacks = CallbackTimer(asyncio.get_running_loop(), self.config.stall_ms)
        self.callbacks.install()
        self._task = asyncio.create_task(self._probe(), name="loop-lag-probe")
        self._thread = threading.Thread(target=self._watch, name="loop-lag-watch", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop both, writing the report one last time."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.callbacks is not None:
            self.callbacks.uninstall()
        self._halt.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
        if self._scratch is not None and (self._thread is None or not self._thread.is_alive()):
            self._scratch.close()
        self.write_report()

    async def _probe(self) -> None:
        while True:
            due = time.perf_counter() + TICK_S
            await asyncio.sleep(TICK_S)
            now = time.perf_counter()
            self._last_wake = now
            lag_ms = (now - due) * 1e3
            index = bucket(lag_ms)
            with self._lock:
                self.hist[index] = self.hist.get(index, 0) + 1
                if lag_ms > self.max_ms:
                    self.max_ms = lag_ms
                if lag_ms > self.config.stall_ms:
                    self.stalls += 1

    def _watch(self) -> None:
        """Sample the loop thread's stack while it is stalled; write the report every ``REPORT_S``."""
        period = max(self.config.stall_ms / 2e3, 0.002)
        threshold = self.config.stall_ms / 1e3 + TICK_S
        next_report = time.perf_counter() + REPORT_S
        while not self._halt.wait(period):
            now = time.perf_counter()
            if now - self._last_wake > threshold:
                key = self._sample_loop_stack()
                if key:
                    with self._lock:
                        if key in self.stacks or len(self.stacks) < MAX_STACKS:
                            self.stacks[key] += 1
                        else:
                            self.stacks[("(other)",)] += 1
            if now >= next_report:
                next_report = now + REPORT_S
                self.write_report()
                self._log_stalls(now)

    def _sample_loop_stack(self) -> tuple[str, ...]:
        """The loop thread's stack now, read by ``faulthandler`` (C code that walks the interpreter's
        frames in one go while this thread holds the GIL) into a scratch file.

        Why not ``sys._current_frames()``: walking another thread's frame objects in Python
        (``f_back``, ``f_lineno``) can lose the GIL between two steps, and the loop thread then pops
        the frames being walked. On CPython 3.11.7 that crashed a dispatcher under benchmark load
        (SIGSEGV in ``PyFrame_GetBack``, 2026-12-07)."""
        if self._scratch is None:
            self._scratch = tempfile.TemporaryFile()  # noqa: SIM115 (kept open until stop)
        fd = self._scratch.fileno()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        faulthandler.dump_traceback(fd, all_threads=True)
        size = os.lseek(fd, 0, os.SEEK_CUR)
        os.lseek(fd, 0, os.SEEK_SET)
        return thread_stack(os.read(fd, size).decode("utf-8", "replace"), self._loop_thread)

    def _log_stalls(self, now: float) -> None:
        if self.stalls == self._logged_stalls or now < self._next_log:
            return
        self._next_log = now + LOG_EVERY_S
        with self._lock:
            top = self.stacks.most_common(1)
        log.warning(
            "event loop stalled > %.0f ms %d times (worst %.0f ms so far); most sampled stack: %s",
            self.config.stall_ms,
            self.stalls - self._logged_stalls,
            self.max_ms,
            " <- ".join(top[0][0][:6]) if top else "none sampled",
        )
        self._logged_stalls = self.stalls

    def snapshot(self) -> dict[str, object]:
        """The figures so far, as written to the report file."""
        with self._lock:
            hist = dict(self.hist)
            stacks = self.stacks.most_common(30)
            stalls, max_ms = self.stalls, self.max_ms
        cb_hist = dict(self.callbacks.hist) if self.callbacks is not None else {}
        gc_pauses = {k: list(v) for k, v in self.callbacks.gc_pauses.items()} if self.callbacks is not None else {}
        slow = sorted((self.callbacks.slow.items() if self.callbacks is not None else ()), key=lambda kv: -kv[1][1])[
            :30
        ]
        return {
            "pid": os.getpid(),
            "clock_s": time.perf_counter(),
            "loop_thread": self._thread_times(),
            "tick_ms": TICK_S * 1e3,
            "stall_ms": self.config.stall_ms,
            "samples": sum(hist.values()),
            "p50_ms": percentile_ms(hist, 50),
            "p99_ms": percentile_ms(hist, 99),
            "max_ms": round(max_ms, 2),
            "stalls": stalls,
            "hist": {str(k): v for k, v in sorted(hist.items())},
            "stacks": [{"samples": n, "stack": list(s)} for s, n in stacks],
            "callback_cpu_hist": {str(k): v for k, v in sorted(cb_hist.items())},
            "slow_callbacks": [
                {"name": name, "count": int(c), "total_ms": round(t, 1), "max_ms": round(m, 1), "gc_ms": round(g, 1)}
                for name, (c, t, m, g) in slow
            ],
            "gc": {
                str(gen): {"count": int(c), "total_ms": round(t, 1), "max_ms": round(m, 1)}
                for gen, (c, t, m) in sorted(gc_pauses.items())
            },
            "db_times": {
                name: {str(k): v for k, v in sorted(h.items())}
                for name, h in (self._db_times.snapshot() if self._db_times is not None else {}).items()
            },
            "db_peaks": self._db_times.peaks() if self._db_times is not None else {},
        }

    def _thread_times(self) -> dict[str, float]:
        """The loop thread's CPU seconds and the seconds it waited runnable for a core (Linux
        schedstat: the machine's load, not the dispatcher); empty where not available."""
        try:
            cpu_ns, wait_ns = open(f"/proc/self/task/{self._loop_native}/schedstat").read().split()[:2]  # noqa: SIM115
        except (OSError, ValueError):
            return {}
        return {"cpu_s": int(cpu_ns) / 1e9, "runqueue_s": int(wait_ns) / 1e9}

    def write_report(self) -> None:
        """Write ``looplag-<pid>.json`` atomically (nothing without a report directory)."""
        directory = self.config.report_dir
        if directory is None:
            return
        target = directory / f"looplag-{os.getpid()}.json"
        tmp = target.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.snapshot()))
            tmp.replace(target)
        except OSError as exc:
            log.warning("loop lag report %s not written: %s", target, exc)
