"""``run_isolated``: a failing batch is split until its bad items stand alone; an outage is not split."""

from __future__ import annotations

import asyncio
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
