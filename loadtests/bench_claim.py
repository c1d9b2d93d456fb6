"""Claim cost with a deep queue: many waiting jobs across many share leaves and mixed resources.

    python -m loadtests.bench_claim                                   # 100,000 jobs, 50 leaves, SQLite
    python -m loadtests.bench_claim --db postgresql+psycopg://u@h/db   # an EMPTY database: it is filled
    python -m loadtests.bench_claim --jobs 2000 --leaves 10 --batches 20   # a quick functional run

The store's own claim (``claim_jobs`` with the dispatcher's ``ClaimPolicyCache``), no gRPC:
``--jobs`` activated jobs on one queue, spread over ``--leaves`` share leaves (5 VOs with
weights 1..5, each with two groups by label and users under them), with cores 1/2/4/8, memory
0-16 GB and a quarter tagged ``gpu``. Then ``--batches`` claim transactions, each serving
``--requests`` pilot requests for up to 8 jobs from a mix of 1-, 8- and 64-core pilots (every
fourth with ``gpu``), as the hub's group commit does. Each handed-out job is finished at once
in the simulation (not written) so the pilots stay hungry. The policy refresh (usage, statuses,
weights and the per-leaf demand count over all waiting jobs) runs every ``--refresh-every``
batches, as ``share_refresh_s`` makes it run in the dispatcher.

Printed: jobs handed out, claim transactions per second, mean and p99 milliseconds per claim
transaction, separately for transactions that refreshed the policy, and the share of each VO in
the jobs handed out against its target. Figures only, no assertion; on a shared machine the
milliseconds move with the load.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

from ailuro.queues import ShareEntry, SharesConfig
from ailuro.v1 import job_pb2
from dispatcher.matching import Offer
from dispatcher.services.policy import ClaimPolicyCache
from dispatcher.store import jobs as store
from dispatcher.store import pilots as pstore
from dispatcher.store.engine import Database, open_database

VOS = ("compass", "amber", "na62", "na61", "hades")
CORES = (1, 1, 1, 2, 4, 8)
PILOTS = ((1, 2000, ()), (8, 16000, ()), (64, 256000, ()), (8, 32000, ("gpu",)))


@dataclass
class _Config:
    share_refresh_s: float
    shares: SharesConfig
    vo_shares: tuple[tuple[str, float], ...] = ()


@dataclass
class _Runtime:
    config: _Config


@dataclass
class Figures:
    """What one run measured."""

    handed_out: int = 0
    plain_ms: list[float] = field(default_factory=list)
    refresh_ms: list[float] = field(default_factory=list)
    by_vo: Counter[str] = field(default_factory=Counter)


def _leaves(n: int) -> list[tuple[str, str, str]]:
    """``n`` (vo, label, owner) triples: VOs round-robin, two labels, users numbered."""
    return [(VOS[i % len(VOS)], ("managed", "user")[(i // len(VOS)) % 2], f"user{i}") for i in range(n)]


def fill(db: Database, *, jobs: int, leaves: int, seed: int) -> None:
    """Insert ``jobs`` activated jobs on queue LOCAL spread over ``leaves`` leaves."""
    rng = random.Random(seed)
    keys = _leaves(leaves)
    batch = 5000
    for start in range(0, jobs, batch):
        by_owner: dict[str, list[store.NewJob]] = {}
        for _ in range(min(batch, jobs - start)):
            vo, label, owner = rng.choice(keys)
            spec = job_pb2.Job(
                transformation="/bin/true",
                computing_site="LOCAL",
                vo=vo,
                prod_source_label=label,
                current_priority=rng.choice((0, 0, 0, 10, 100)),
                cores=rng.choice(CORES),
                memory_mb=rng.choice((0, 2000, 4000, 16000)),
                max_walltime_s=rng.choice((600, 3600, 36000)),
                tags=["gpu"] if rng.random() < 0.25 else [],
            )
            by_owner.setdefault(owner, []).append(store.NewJob(spec=spec, brokerage_reason="bench"))
        with db.write() as conn:
            for owner, new in by_owner.items():
                store.insert_jobs(conn, new, owner=owner, now=time.time())


def run(db: Database, *, batches: int, requests: int, refresh_every: int, seed: int) -> Figures:
    """``batches`` claim transactions of ``requests`` pilot requests each."""
    rng = random.Random(seed)
    shares = SharesConfig(entries=tuple(ShareEntry(path=vo, weight=i + 1) for i, vo in enumerate(VOS)))
    cache = ClaimPolicyCache(_Runtime(config=_Config(share_refresh_s=refresh_every - 0.5, shares=shares)))  # type: ignore[arg-type]
    out = Figures()
    clock = 0.0  # one "second" per batch: the policy refreshes every refresh_every batches
    for b in range(batches):
        reqs = []
        for r in range(requests):
            cores, memory, tags = PILOTS[rng.randrange(len(PILOTS))]
            pilot = pstore.PilotInfo(pilot_id=f"bench-{b}-{r}", queue="LOCAL", cores=cores, memory_mb=memory)
            reqs.append(
                pstore.ClaimRequest(pilot=pilot, n=8, offer=Offer(cores=cores, memory_mb=memory, tags=frozenset(tags)))
            )
        refreshing = cache.due(clock)
        started = time.perf_counter()
        if refreshing:
            cache.refresh(db, clock)
        with db.write() as conn:
            charged = pstore.claim_jobs(conn, reqs, lease_s=600, now=time.time(), policy=cache.policy())
        cache.charge(charged)
        elapsed = (time.perf_counter() - started) * 1000
        (out.refresh_ms if refreshing else out.plain_ms).append(elapsed)
        for req in reqs:
            out.handed_out += len(req.assignments)
            out.by_vo.update(a.job.vo for a in req.assignments)
        clock += 1.0
    return out


def _p99(values: list[float]) -> float:
    return sorted(values)[max(0, math.ceil(len(values) * 0.99) - 1)] if values else float("nan")


def report(fig: Figures, *, jobs: int, leaves: int) -> str:
    """The figures as text."""
    total = fig.plain_ms + fig.refresh_ms
    lines = [
        f"claim bench: {jobs:,} waiting jobs over {leaves} share leaves; "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        f"handed out {fig.handed_out:,} jobs in {len(total)} claim transactions "
        f"({len(total) / (sum(total) / 1000):.1f} transactions/s, {fig.handed_out / (sum(total) / 1000):.0f} jobs/s)",
    ]
    for name, values in (("without refresh", fig.plain_ms), ("with policy refresh", fig.refresh_ms)):
        if values:
            mean, p99 = statistics.fmean(values), _p99(values)
            lines.append(f"  {name}: {len(values)} transactions, mean {mean:.2f} ms, p99 {p99:.2f} ms")
    weights = {vo: i + 1 for i, vo in enumerate(VOS)}
    total_w = sum(weights.values())
    got = sum(fig.by_vo.values()) or 1
    lines.append(
        "  share of jobs handed out (target): "
        + ", ".join(f"{vo} {fig.by_vo[vo] / got:.0%} ({weights[vo] / total_w:.0%})" for vo in VOS)
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse options, fill a database, run the claims, print the figures."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default="", help="an empty database URL (default: a temporary SQLite file)")
    p.add_argument("--jobs", type=int, default=100_000, help="waiting jobs (default: %(default)s)")
    p.add_argument("--leaves", type=int, default=50, help="share leaves (default: %(default)s)")
    p.add_argument("--batches", type=int, default=500, help="claim transactions (default: %(default)s)")
    p.add_argument("--requests", type=int, default=10, help="pilot requests per transaction (default: %(default)s)")
    p.add_argument("--refresh-every", type=int, default=50, help="batches between policy refreshes")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(args.db or f"sqlite:///{tmp}/bench-claim.db")
        try:
            fill(db, jobs=args.jobs, leaves=args.leaves, seed=args.seed)
            fig = run(
                db, batches=args.batches, requests=args.requests, refresh_every=args.refresh_every, seed=args.seed
            )
        finally:
            db.dispose()
    print(report(fig, jobs=args.jobs, leaves=args.leaves))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
