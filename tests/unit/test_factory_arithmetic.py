"""The factory's pure decisions: how many pilots (every limit), worker counting, and backoff."""

from __future__ import annotations

import pytest

from ailuro.queues import FactoryLimits
from ailuro.v1 import factory_pb2
from backends.factory import Backoff
from backends.planning import QueueCounts, compute_new_pilots

LIMITS = FactoryLimits(max_queued=10, max_total=50, max_per_cycle=5)


def n(*, activated: int, idle: int = 0, queued: int = 0, running: int = 0, limits: FactoryLimits = LIMITS) -> int:
    return compute_new_pilots(activated=activated, idle_pilots=idle, queued=queued, running=running, limits=limits)


def test_no_pilots_for_an_empty_queue_whatever_the_room() -> None:
    assert n(activated=0) == 0
    assert n(activated=0, limits=FactoryLimits(max_queued=100, max_total=100, max_per_cycle=100)) == 0
    assert n(activated=-3) == 0


def test_activated_minus_idle_limits() -> None:
    assert n(activated=3) == 3
    assert n(activated=3, idle=1) == 2
    assert n(activated=3, idle=3) == 0
    assert n(activated=3, idle=7) == 0  # more idle pilots than work: never negative


def test_max_per_cycle_limits() -> None:
    assert n(activated=1000) == 5
    assert n(activated=1000, limits=FactoryLimits(max_queued=10, max_total=50, max_per_cycle=2)) == 2


def test_max_queued_limits() -> None:
    # 8 already waiting in the batch system: room for 2 more even though 5 per cycle are allowed.
    # (idle=0 to isolate the limit; in practice queued workers also count as idle pilots)
    assert n(activated=1000, queued=8) == 2
    assert n(activated=1000, queued=10) == 0
    assert n(activated=1000, queued=12) == 0


def test_max_total_limits() -> None:
    assert n(activated=1000, running=47) == 3
    assert n(activated=1000, queued=2, running=47) == 1
    assert n(activated=1000, queued=0, running=50) == 0
    assert n(activated=1000, queued=0, running=60) == 0


def test_zero_limits_stop_submission() -> None:
    assert n(activated=10, limits=FactoryLimits(max_queued=0, max_total=50, max_per_cycle=5)) == 0
    assert n(activated=10, limits=FactoryLimits(max_queued=10, max_total=0, max_per_cycle=5)) == 0
    assert n(activated=10, limits=FactoryLimits(max_queued=10, max_total=50, max_per_cycle=0)) == 0


@pytest.mark.parametrize(
    ("activated", "idle", "queued", "running", "expected"),
    [
        (4, 1, 0, 0, 3),  # activated - idle is the tightest
        (100, 0, 7, 0, 3),  # max_queued - queued
        (100, 0, 1, 46, 3),  # max_total - (queued + running)
        (100, 0, 0, 0, 5),  # max_per_cycle
    ],
)
def test_the_smallest_limit_wins(activated: int, idle: int, queued: int, running: int, expected: int) -> None:
    assert n(activated=activated, idle=idle, queued=queued, running=running) == expected


def test_queue_counts_from_dispatcher_stats() -> None:
    stats = factory_pb2.QueueStats(
        queue="Q",
        activated_jobs=20,
        connected_pilots=3,
        idle_pilots=1,
        workers={"submitted": 1, "idle": 2, "held": 1, "unknown": 1, "running": 5},
    )
    counts = QueueCounts.from_stats(stats)
    assert counts.activated == 20
    # submitted + idle + unknown; a held worker runs nothing and must not block a replacement (#19.6)
    assert counts.queued == 4
    assert counts.running == 5
    # 1 connected idle + 4 queued + 2 running in the batch system whose pilot has not connected yet
    assert counts.idle_pilots == 7


def test_queue_counts_when_more_pilots_connected_than_workers_running() -> None:
    # pilots started by hand (no worker record) do not make the "starting" count negative
    stats = factory_pb2.QueueStats(queue="Q", activated_jobs=2, connected_pilots=4, idle_pilots=0, workers={})
    counts = QueueCounts.from_stats(stats)
    assert (counts.queued, counts.running, counts.idle_pilots) == (0, 0, 0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_caps_and_clears() -> None:
    clock = FakeClock()
    b = Backoff(base_s=10, factor=2, max_s=35, clock=clock)
    assert b.blocked_for("Q") == 0
    assert b.failed("Q") == 10
    assert b.blocked_for("Q") == 10
    assert b.blocked_for("OTHER") == 0  # per queue
    clock.now += 4
    assert b.blocked_for("Q") == pytest.approx(6)
    assert b.failed("Q") == 20
    assert b.failed("Q") == 35  # capped (would be 40)
    assert b.failed("Q") == 35
    assert b.failures("Q") == 4
    clock.now += 35
    assert b.blocked_for("Q") == 0
    b.succeeded("Q")
    assert b.failures("Q") == 0
    assert b.failed("Q") == 10  # starts over after a success
