"""The opt-in event-loop lag monitor: a callback that holds the loop shows up as lag, a stall and a stack."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from dispatcher.config import LoopLagConfig
from dispatcher.services.looplag import LoopLagMonitor, bucket, bucket_ms, percentile_ms
from loadtests import _looplag


def _hold_the_loop(seconds: float) -> None:
    """A deliberately blocking callback (what the monitor exists to find): it spins for ``seconds``
    of this thread's CPU, so it holds the loop at least that long in wall time too."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_histogram_buckets_and_percentiles() -> None:
    assert bucket(-1.0) == 0 and bucket_ms(bucket(0.05)) == 0.1
    assert bucket_ms(bucket(12.34)) == 12.4 and bucket_ms(bucket(250.2)) == 251.0
    assert bucket(1e9) == bucket(20_000.0)  # one overflow bucket: the histogram is bounded
    hist = {bucket(0.3): 98, bucket(40.0): 1, bucket(900.0): 1}
    assert percentile_ms(hist, 50) == 0.4 and percentile_ms(hist, 99) == 40.1 and percentile_ms(hist, 100) == 901.0
    assert percentile_ms({}, 99) == 0.0


def test_a_blocking_callback_is_measured_sampled_and_reported(tmp_path: Path) -> None:
    monitor = LoopLagMonitor(LoopLagConfig(stall_ms=5.0, report_dir=tmp_path))

    async def scenario() -> dict[int, dict[str, object]]:
        monitor.start()
        await asyncio.sleep(0.2)
        before = _looplag.read(tmp_path)  # nothing written yet, or the quiet start
        asyncio.get_running_loop().call_soon(_hold_the_loop, 0.3)
        await asyncio.sleep(0.2)
        await monitor.stop()
        return before

    before = asyncio.run(scenario())
    report = json.loads((tmp_path / f"looplag-{monitor.snapshot()['pid']}.json").read_text())
    assert report["max_ms"] >= 250 and report["stalls"] >= 1
    sampled = [" ".join(entry["stack"]) for entry in report["stacks"]]
    assert any("_hold_the_loop" in stack for stack in sampled), sampled
    (lag,) = _looplag.during(before, _looplag.read(tmp_path))
    assert lag.max_ms >= 250 and lag.stalls >= 1 and lag.samples >= 1
    slow = {name: (count, total) for name, count, total, _gc in lag.slow_callbacks}
    assert any("_hold_the_loop" in name and total >= 300 for name, (_, total) in slow.items()), slow
    assert lag.callback_max_ms >= 300 and lag.callbacks > 10
    assert asyncio.events.Handle._run.__name__ == "_run"  # put back at stop


def test_another_threads_stack_is_read_from_a_faulthandler_dump(tmp_path: Path) -> None:
    """The stall sampler reads the loop thread's stack from ``faulthandler`` (walked in C under the
    GIL), not by walking another thread's frame objects in Python (a SIGSEGV on CPython 3.11.7)."""
    import faulthandler
    import threading

    from dispatcher.services.looplag import STACK_DEPTH, thread_stack

    started, release = threading.Event(), threading.Event()

    def _parked_in_a_named_function(depth: int) -> None:
        if depth:
            _parked_in_a_named_function(depth - 1)
            return
        started.set()
        release.wait(30)

    worker = threading.Thread(target=_parked_in_a_named_function, args=(STACK_DEPTH + 5,))
    worker.start()
    try:
        assert started.wait(30)
        with (tmp_path / "dump").open("w+b") as f:
            faulthandler.dump_traceback(f.fileno(), all_threads=True)
            f.seek(0)
            dump = f.read().decode()
        assert worker.ident is not None
        stack = thread_stack(dump, worker.ident)
        assert len(stack) == STACK_DEPTH  # bounded, innermost first
        assert "wait" in stack[0] and all(" " in s and ":" in s for s in stack)
        assert sum("_parked_in_a_named_function" in s for s in stack) >= STACK_DEPTH - 3
        assert thread_stack(dump, 12345) == ()  # a thread the dump does not show
    finally:
        release.set()
        worker.join(30)
