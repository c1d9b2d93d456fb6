"""The share tree, decay and claim order (dispatcher/shares.py), with hand-computed expectations."""

from __future__ import annotations

import pytest

from ailuro.queues import ShareEntry, SharesConfig
from dispatcher.matching import Needs, Offer
from dispatcher.shares import (
    DAY_S,
    Candidate,
    ShareGroup,
    ShareOrder,
    ShareTree,
    assign,
    charge,
    decayed,
    order,
    report,
    subtree_usage,
    tree_from_config,
)

COMPASS = ShareTree(
    weights={"compass/production": 70, "compass/analysis": 30},
    groups={
        "compass": (
            ShareGroup(name="production", labels=("managed",)),
            ShareGroup(name="analysis", labels=("user",)),
        )
    },
)


def cand(key: int, leaf: tuple[str, str, str], priority: int = 0, cores: int = 1, wall: int = 100) -> Candidate:
    return Candidate(key=key, leaf=leaf, priority=priority, needs=Needs(cores=cores, walltime_s=wall))


def test_decay_halves_per_half_life() -> None:
    assert decayed(100.0, since=0, now=DAY_S, half_life_s=DAY_S) == pytest.approx(50.0)
    assert decayed(100.0, since=0, now=2 * DAY_S, half_life_s=DAY_S) == pytest.approx(25.0)
    assert decayed(100.0, since=10, now=10, half_life_s=DAY_S) == 100.0
    assert decayed(100.0, since=0, now=3600, half_life_s=0) == 100.0  # no decay configured


def test_leaf_follows_labels() -> None:
    assert COMPASS.leaf(vo="compass", label="managed", user="prod") == ("compass", "production", "prod")
    assert COMPASS.leaf(vo="compass", label="user", user="alice") == ("compass", "analysis", "alice")
    assert COMPASS.leaf(vo="compass", label="test", user="bob") == ("compass", "", "bob")
    assert COMPASS.leaf(vo="amber", label="user", user="carol") == ("amber", "", "carol")
    rest = ShareTree(groups={"x": (ShareGroup(name="prod", labels=("managed",)), ShareGroup(name="rest"))})
    assert rest.leaf(vo="x", label="user", user="u") == ("x", "rest", "u")


def test_charge_is_cores_times_walltime() -> None:
    assert charge(Needs(cores=8, walltime_s=600), COMPASS) == 4800
    assert charge(Needs(cores=0), COMPASS) == 3600  # one core, default charge


def test_no_usage_is_priority_then_age() -> None:
    a, b = ("v1", "", "a"), ("v2", "", "b")
    got = order(ShareTree(), {}, [cand(1, a, 5), cand(2, b, 9), cand(3, a, 9)])
    # equal ratios: the best head wins: prio 9 id 2, then the other prio 9 id 3 (v1 usage 0 < v2's), then 1
    assert [c.key for c in got] == [2, 3, 1]


def test_vo_furthest_below_target_goes_first() -> None:
    a, b = ("v1", "", "a"), ("v2", "", "b")
    tree = ShareTree(weights={"v1": 3, "v2": 1})
    # v1 used 300 with weight 3 (ratio 100), v2 used 50 with weight 1 (ratio 50): v2 first
    so = ShareOrder(tree, {a: 300.0, b: 50.0}, [cand(1, a, 9), cand(2, b, 0)])
    first = so.next()
    assert first is not None and first.key == 2
    so.take()  # v2 charged 100 -> ratio 150 > 100
    second = so.next()
    assert second is not None and second.key == 1


def test_given_node_sums_order_alike_and_are_never_written() -> None:
    a, b, c = ("v1", "g", "a"), ("v1", "g", "c"), ("v2", "", "b")
    usage = {a: 300.0, b: 20.0, c: 50.0}
    cands = [cand(i, leaf, i % 3) for leaf, base in ((a, 0), (b, 100), (c, 200)) for i in range(base, base + 20)]
    tree = ShareTree(weights={"v1": 3, "v2": 1})
    sums = subtree_usage(usage)
    kept = dict(sums)
    given = ShareOrder(tree, usage, cands, sums=sums)
    fresh = ShareOrder(tree, usage, cands)
    taken = []
    while (x := given.next()) is not None:
        y = fresh.next()
        assert y is not None and x.key == y.key
        taken.append(given.take().key)
        fresh.take()
    assert fresh.next() is None and len(taken) == 60
    assert sums == kept  # the caller's sums: read, never charged


def test_weights_give_proportional_turns() -> None:
    a, b = ("v1", "", "a"), ("v2", "", "b")
    tree = ShareTree(weights={"v1": 3, "v2": 1})
    cands = [cand(i, a) for i in range(100)] + [cand(1000 + i, b) for i in range(100)]
    first = order(tree, {}, cands)[:40]
    # each job charges 100; v1 gets 3 turns per v2 turn: 30 of the first 40
    assert sum(1 for c in first if c.leaf == a) == 30


def test_users_split_their_group_evenly_and_groups_follow_weights() -> None:
    prod = ("compass", "production", "prod")
    alice, bob = ("compass", "analysis", "alice"), ("compass", "analysis", "bob")
    cands = [cand(i, leaf) for leaf, base in ((prod, 0), (alice, 1000), (bob, 2000)) for i in range(base, base + 100)]
    first = order(COMPASS, {}, cands)[:100]
    counts = {leaf: sum(1 for c in first if c.leaf == leaf) for leaf in (prod, alice, bob)}
    assert counts == {prod: 70, alice: 15, bob: 15}


def test_skip_does_not_charge() -> None:
    a, b = ("v1", "", "a"), ("v2", "", "b")
    so = ShareOrder(ShareTree(), {}, [cand(1, a, 9, cores=8), cand(2, a, 5), cand(3, b, 1)])
    assert so.next().key == 1  # type: ignore[union-attr]
    so.skip()  # fits no pilot: v1 still at 0
    assert so.next().key == 2  # type: ignore[union-attr]
    so.take()
    assert so.next().key == 3  # type: ignore[union-attr]
    so.take()
    assert so.next() is None


def test_report_targets_usage_and_priority() -> None:
    prod = ("compass", "production", "prod")
    alice, bob = ("compass", "analysis", "alice"), ("compass", "analysis", "bob")
    lines = {x.path: x for x in report(COMPASS, {prod: 60.0, alice: 30.0, bob: 10.0})}
    assert lines["compass"].target == pytest.approx(1.0)
    assert lines["compass/production"].target == pytest.approx(0.7)
    assert lines["compass/analysis/alice"].target == pytest.approx(0.15)
    assert lines["compass/analysis/alice"].usage_fraction == pytest.approx(0.3)
    assert lines["compass/analysis/alice"].priority == pytest.approx(2.0)  # twice its target
    assert lines["compass/production"].priority == pytest.approx(0.6 / 0.7)


def test_assign_partitions_a_multicore_pilot_in_share_order() -> None:
    a, b = ("v1", "", "a"), ("v2", "", "b")
    cands = [cand(1, a, 9, cores=8), cand(2, b, 9, cores=2), cand(3, a, 5, cores=2), cand(4, b, 1, cores=1)]
    so = ShareOrder(ShareTree(), {}, cands)
    # one 4-core pilot wanting up to 10 jobs, one 8-core pilot wanting 1:
    # job 1 (8 cores) fits only the second; v1 charged 800 -> job 2 (v2) to the first (2 left),
    # v2 charged 200 < 800 -> job 4 (v2, 1 core) to the first (1 left), then job 3 (2 cores): no room
    got = assign(so, [(10, Offer(cores=4)), (1, Offer(cores=8))])
    assert [(i, c.key) for i, c in got] == [(1, 1), (0, 2), (0, 4)]


def test_tree_from_config() -> None:
    cfg = SharesConfig(
        entries=(
            ShareEntry(path="compass/production", weight=70, labels=("managed",)),
            ShareEntry(path="compass/analysis", weight=30, labels=("user",)),
        ),
        half_life_s=60,
    )
    tree = tree_from_config(cfg, [("amber", 2.0)])
    assert tree.weight("amber") == 2.0 and tree.weight("compass/analysis") == 30
    assert tree.half_life_s == 60
    assert tree.leaf(vo="compass", label="user", user="x") == ("compass", "analysis", "x")
