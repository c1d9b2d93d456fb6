"""``run_isolated``: a failing batch is split until its bad items stand alone; an outage is not split."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from ailuro.errors import Unavailable
from dispatcher.config import DispatcherConfig
from dispatcher.services.batching import GroupCommitter, run_isolated
from dispatcher.services.runtime import Runtime
from dispatcher.store.engine import Database


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    rt = Runtime(DispatcherConfig(db_url=url, db_threads=2), Database(url))
    yield rt
    rt.close()


class Process:
    """Doubles each item; a batch holding a bad item fails as a whole, like a transaction."""

    def __init__(self, bad: set[int], error: Exception | None = None) -> None:
        self.bad = bad
        self.error = error
        self.calls: list[list[int]] = []
        self.committed: list[int] = []

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.calls.append(list(items))
        if self.bad & set(items):
            raise self.error or ValueError("bad item")
        self.committed += items
        return [2 * i for i in items]


def test_bad_items_fail_alone(runtime: Runtime) -> None:
    proc = Process(bad={3, 11})
    results = asyncio.run(run_isolated(runtime, proc, list(range(16)), name="t"))
    assert [r for r in results if isinstance(r, Exception)] == [results[3], results[11]]
    assert all(isinstance(results[i], ValueError) for i in (3, 11))
    assert {i: results[i] for i in range(16) if i not in (3, 11)} == {i: 2 * i for i in range(16) if i not in (3, 11)}
    assert sorted(proc.committed) == [i for i in range(16) if i not in (3, 11)]  # each good item committed once
    assert len(proc.calls) <= 1 + 2 * 2 * 4  # about 2 k log2(n) extra transactions


def test_an_outage_is_not_split(runtime: Runtime) -> None:
    proc = Process(bad=set(range(100)), error=Unavailable("database unavailable"))
    results = asyncio.run(run_isolated(runtime, proc, list(range(100)), name="t"))
    assert len(proc.calls) == 1
    assert all(isinstance(r, Unavailable) for r in results)


def test_group_committer_answers_each_caller(runtime: Runtime) -> None:
    proc = Process(bad={5})

    async def main() -> list[object]:
        gc: GroupCommitter[int, int] = GroupCommitter(runtime, proc, name="t")
        gc.start()
        try:
            return await asyncio.gather(*(gc.submit(i) for i in range(10)), return_exceptions=True)
        finally:
            await gc.stop()

    results = asyncio.run(main())
    assert isinstance(results[5], ValueError)
    assert [r for i, r in enumerate(results) if i != 5] == [2 * i for i in range(10) if i != 5]


class Gate:
    """A batch process that blocks until released, counting how many batches are inside at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.peak = 0
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def __call__(self, items: Sequence[int]) -> list[int]:
        with self.lock:
            self.inside += 1
            self.peak = max(self.peak, self.inside)
        self.entered.release()
        self.release.wait(timeout=30)
        with self.lock:
            self.inside -= 1
        return [2 * i for i in items]


@pytest.mark.parametrize("in_flight", [1, 2, 3])
def test_group_committer_runs_up_to_in_flight_batches_at_once(tmp_path: Path, in_flight: int) -> None:
    """With ``in_flight`` = n, n batches are in the database together and a further one waits;
    every caller still gets its own result once the batches are released."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    rt = Runtime(DispatcherConfig(db_url=url, db_threads=2, urgent_db_threads=4), Database(url))
    gate = Gate()

    async def main() -> list[int]:
        gc: GroupCommitter[int, int] = GroupCommitter(rt, gate, name="t", in_flight=in_flight, urgent=True)
        gc.start()
        try:
            calls = []
            for i in range(in_flight + 1):  # one batch each: submitted after the previous one entered
                calls.append(asyncio.create_task(gc.submit(i)))
                if i < in_flight:
                    await asyncio.to_thread(gate.entered.acquire, True, 30)
            await asyncio.sleep(0.2)  # give a wrongly admitted extra batch the time to enter
            assert gate.peak == in_flight
            gate.release.set()
            return await asyncio.gather(*calls)
        finally:
            gate.release.set()
            await gc.stop()

    try:
        assert asyncio.run(main()) == [2 * i for i in range(in_flight + 1)]
        assert gate.peak == in_flight
        assert rt.db_times.peaks()["t: batches in flight"] == in_flight
    finally:
        rt.close()
