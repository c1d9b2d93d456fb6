"""Queue status and resource matching (dispatcher/matching.py), with hand-computed expectations."""

from __future__ import annotations

from dispatcher.matching import (
    Needs,
    Offer,
    QueueStatus,
    broker_refusal,
    claim_refusal,
    consume,
    format_tags,
    misfit,
    parse_tags,
    partition,
)


def test_queue_status_claim_and_brokerage() -> None:
    assert claim_refusal(QueueStatus.ONLINE, "user") == ""
    assert "offline" in claim_refusal(QueueStatus.OFFLINE, "test")
    assert claim_refusal(QueueStatus.TEST, "test") == ""
    assert "only prod_source_label=test" in claim_refusal(QueueStatus.TEST, "managed")
    assert claim_refusal(QueueStatus.BROKEROFF, "user") == ""  # pilots still served
    assert "brokeroff" in broker_refusal(QueueStatus.BROKEROFF, "user")
    assert "offline" in broker_refusal(QueueStatus.OFFLINE, "user")
    assert broker_refusal(QueueStatus.TEST, "test") == ""
    assert broker_refusal(QueueStatus.TEST, "user") != ""


def test_misfit_each_resource() -> None:
    offer = Offer(cores=4, memory_mb=8000, walltime_s=3600, disk_mb=10000, tags=frozenset({"gpu"}))
    assert misfit(Needs(cores=4, memory_mb=8000, walltime_s=3600, disk_mb=10000, tags=frozenset({"gpu"})), offer) == ""
    assert misfit(Needs(cores=8), offer) == "needs 8 cores, the pilot has 4 free"
    assert misfit(Needs(memory_mb=16000), offer) == "needs 16000 MiB memory, the pilot has 8000 MiB free"
    assert misfit(Needs(walltime_s=7200), offer) == "needs 7200 s walltime, the pilot has 3600 s left"
    assert misfit(Needs(disk_mb=20000), offer) == "needs 20000 MiB disk, the pilot has 10000 MiB free"
    assert misfit(Needs(tags=frozenset({"gpu", "cvmfs:21.0"})), offer) == (
        "needs tag(s) cvmfs:21.0 the pilot does not have"
    )


def test_unknown_offer_limits_nothing_but_tags() -> None:
    assert misfit(Needs(cores=64, memory_mb=10**6, walltime_s=10**6, disk_mb=10**6), Offer()) == ""
    assert misfit(Needs(tags=frozenset({"gpu"})), Offer()) != ""
    assert misfit(Needs(cores=0), Offer(cores=1)) == ""  # 0 cores counts as 1


def test_consume_and_exhaustion() -> None:
    left = consume(Offer(cores=8, memory_mb=16000), Needs(cores=3, memory_mb=4000))
    assert (left.cores, left.memory_mb, left.disk_mb) == (5, 12000, 0)
    full = consume(Offer(cores=8), Needs(cores=8))
    assert full.cores == -1  # all used: not "unknown"
    assert misfit(Needs(cores=1), full) != ""


def test_partition_narrow_jobs_fill_a_wide_pilot() -> None:
    # 8 cores, 16 GB: 1-core 2 GB jobs -> memory runs out after 8 (8*2000=16000), cores too
    jobs = [Needs(cores=1, memory_mb=2000)] * 10
    assert partition(Offer(cores=8, memory_mb=16000), jobs, n=100) == list(range(8))
    assert partition(Offer(cores=8, memory_mb=16000), jobs, n=3) == [0, 1, 2]


def test_partition_one_wide_job_or_skips_what_does_not_fit() -> None:
    jobs = [Needs(cores=8), Needs(cores=4), Needs(cores=2), Needs(cores=4), Needs(cores=1)]
    # 8 cores: the 8-core job takes everything
    assert partition(Offer(cores=8), jobs, n=10) == [0]
    # 6 cores: skip the 8, take 4 (2 left), take 2 (0 left -> stop)
    assert partition(Offer(cores=6), jobs, n=10) == [1, 2]
    # 7 cores: 4 (3 left), 2 (1 left), skip 4, 1 (0 left)
    assert partition(Offer(cores=7), jobs, n=10) == [1, 2, 4]


def test_tags_round_trip() -> None:
    assert format_tags(["gpu", "avx2", "gpu"]) == "avx2,gpu"
    assert parse_tags("avx2,gpu") == frozenset({"avx2", "gpu"})
    assert parse_tags("") == frozenset()
