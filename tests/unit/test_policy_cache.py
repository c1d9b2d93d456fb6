"""``ClaimPolicyCache`` shared by claim batches on several database threads (issue #18)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.config import DispatcherConfig
from dispatcher.matching import QueueStatus
from dispatcher.services.policy import ClaimPolicyCache
from dispatcher.services.runtime import Runtime
from dispatcher.store.engine import open_database

LEAVES = [("vo1", "managed", "alice"), ("vo1", "user", "bob"), ("vo2", "managed", "carol")]


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    rt = Runtime(DispatcherConfig(db_url=url, db_threads=2, share_refresh_s=0.0), open_database(url))
    yield rt
    rt.close()


def test_concurrent_charges_reads_and_refreshes_lose_nothing(runtime: Runtime) -> None:
    """Threads charging, reading snapshots and refreshing at once: every charge is counted once,
    in the usage and in the node sums, and a snapshot never changes under its reader."""
    cache = ClaimPolicyCache(runtime)
    n_threads, rounds = 6, 300
    errors: list[BaseException] = []
    start = threading.Barrier(n_threads + 2)

    def charger(k: int) -> None:
        start.wait()
        for i in range(rounds):
            cache.charge({LEAVES[(k + i) % len(LEAVES)]: 1.0})

    def reader() -> None:
        start.wait()
        for _ in range(rounds):
            policy = cache.policy()
            before = dict(policy.usage)
            total = sum(policy.usage.values())  # iterating while others charge must not fail
            assert dict(policy.usage) == before and total == sum(before.values())

    def refresher() -> None:
        start.wait()
        for _ in range(20):
            cache.refresh_if_due(runtime.db, runtime.now())

    def guard(fn: object, *args: object) -> threading.Thread:
        def run() -> None:
            try:
                fn(*args)  # type: ignore[operator]
            except BaseException as exc:  # reported below
                errors.append(exc)

        return threading.Thread(target=run)

    threads = [guard(charger, k) for k in range(n_threads)] + [guard(reader), guard(refresher)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    cache.refresh(runtime.db, runtime.now())  # everything pending is written and read back
    policy = cache.policy()
    total = n_threads * rounds
    assert sum(policy.usage.values()) == pytest.approx(total, rel=1e-3)  # decay over the test is tiny
    root_sum = sum(v for node, v in (policy.sums or {}).items() if len(node) == 1)
    assert root_sum == pytest.approx(total, rel=1e-3)


def test_status_set_on_the_loop_is_seen_by_the_next_snapshot(runtime: Runtime) -> None:
    cache = ClaimPolicyCache(runtime)
    old = cache.policy()
    cache.set_status("LOCAL", QueueStatus.OFFLINE)
    assert cache.offline("LOCAL") and cache.policy().status("LOCAL") is QueueStatus.OFFLINE
    assert old.status("LOCAL") is QueueStatus.ONLINE  # a snapshot taken before is not changed under its reader


def test_the_claim_path_refreshes_only_when_the_background_refresh_fell_behind(tmp_path: Path) -> None:
    """The hub refreshes the policy every ``share_refresh_s`` off the claim path; a claim batch
    refreshes it itself only once it is twice that old (or was never read)."""
    url = f"sqlite:///{tmp_path / 'y.db'}"
    rt = Runtime(DispatcherConfig(db_url=url, db_threads=2, share_refresh_s=5.0), open_database(url))
    try:
        cache = ClaimPolicyCache(rt)
        refreshed: list[float] = []
        real = cache.refresh

        def counting(db: object, now: float) -> None:
            refreshed.append(now)
            real(db, now)  # type: ignore[arg-type]

        cache.refresh = counting  # type: ignore[method-assign]
        cache.refresh_if_stale(rt.db, 1000.0)  # never read: the claim reads it
        cache.refresh_if_stale(rt.db, 1006.0)  # due, but the background refresh's turn
        cache.refresh_if_due(rt.db, 1006.0)  # the background refresh
        cache.refresh_if_stale(rt.db, 1015.9)
        cache.refresh_if_stale(rt.db, 1016.0)  # 10 s old: the background refresh fell behind
        assert refreshed == [1000.0, 1006.0, 1016.0]
    finally:
        rt.close()
