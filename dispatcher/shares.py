"""Fair share as pure functions: the share tree, decayed usage and the claim order.

The tree has three levels, VO → group (activity) → user, like PanDA's global shares and a Slurm
fair-share tree. Each node has a weight (configured in the queue file's ``[[share]]`` tables,
editable live by admins); users nobody configured weigh :attr:`ShareTree.default_weight`, so a
group's users split it evenly. A job's leaf is ``(vo, group, owner)`` where the group is the
VO's first group whose ``labels`` include the job's ``prod_source_label`` (a group without
labels takes the rest; no match: the group ``""``).

Usage is core-seconds charged when a job is handed to a pilot (its cores times its walltime
limit, or :attr:`ShareTree.charge_s` without a limit), so running work counts at once. It is
stored per leaf with the time it was last written and decays on read with a half-life
(HTCondor's ``PRIORITY_HALFLIFE``, default one day): a VO that ran flat out all night starts the
morning behind one that ran nothing.

The claim order (:class:`ShareOrder`) walks the tree from the root and at each level takes the
child with waiting work that is furthest below its target (lowest usage / weight among siblings
that have work), then the highest-priority oldest job of the chosen leaf. With no usage at all
this is the plain priority order.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from dispatcher.matching import Needs, Offer, consume, exhausted, misfit

if TYPE_CHECKING:
    from ailuro.queues import SharesConfig

Leaf = tuple[str, str, str]
"""``(vo, group, user)``; ``group`` is ``""`` for a VO without groups."""

DAY_S = 86400.0


@dataclass(frozen=True, kw_only=True)
class ShareGroup:
    """A group (activity) of one VO: which labels it covers."""

    name: str
    """Group name, e.g. ``production``."""
    labels: tuple[str, ...] = ()
    """``prod_source_label`` values whose jobs belong here (empty: every label no other group takes)."""


@dataclass(frozen=True, kw_only=True)
class ShareTree:
    """The configured tree: weights by path and the groups of each VO."""

    weights: Mapping[str, float] = field(default_factory=dict)
    """Weight per path: ``vo``, ``vo/group``, ``vo/group/user`` (``vo//user`` for a VO without groups)."""
    groups: Mapping[str, tuple[ShareGroup, ...]] = field(default_factory=dict)
    """Groups per VO, in configuration order (first match wins)."""
    default_weight: float = 1.0
    """Weight of a node not configured (users split their group evenly)."""
    half_life_s: float = DAY_S
    """Usage halves in this many seconds."""
    charge_s: float = 3600.0
    """Seconds charged per core for a job without a walltime limit."""

    def leaf(self, *, vo: str, label: str, user: str) -> Leaf:
        """The leaf a job of ``vo``/``label`` owned by ``user`` is charged to."""
        fallback = ""
        for g in self.groups.get(vo, ()):
            if label in g.labels:
                return (vo, g.name, user)
            if not g.labels and not fallback:
                fallback = g.name
        return (vo, fallback, user)

    def weight(self, path: str) -> float:
        """The weight of a node by its path."""
        return self.weights.get(path, self.default_weight)

    def with_weights(self, overrides: Mapping[str, float]) -> ShareTree:
        """This tree with some weights replaced (the admins' live edits over the configuration)."""
        return ShareTree(
            weights={**self.weights, **overrides},
            groups=self.groups,
            default_weight=self.default_weight,
            half_life_s=self.half_life_s,
            charge_s=self.charge_s,
        )


def tree_from_config(cfg: SharesConfig, vo_weights: Iterable[tuple[str, float]] = ()) -> ShareTree:
    """The share tree of a queue file's ``[shares]``/``[[share]]`` (``vo_weights``: older per-VO weights)."""
    weights = {vo: float(w) for vo, w in vo_weights}
    groups: dict[str, list[ShareGroup]] = defaultdict(list)
    for e in cfg.entries:
        weights[e.path] = e.weight
        parts = e.path.split("/")
        if len(parts) == 2:
            groups[parts[0]].append(ShareGroup(name=parts[1], labels=e.labels))
    return ShareTree(
        weights=weights,
        groups={vo: tuple(gs) for vo, gs in groups.items()},
        default_weight=cfg.default_weight,
        half_life_s=cfg.half_life_s,
        charge_s=cfg.charge_s,
    )


def node_path(node: tuple[str, ...]) -> str:
    """A node's path string: ``vo``, ``vo/group`` or ``vo/group/user``."""
    return "/".join(node)


def decayed(usage: float, *, since: float, now: float, half_life_s: float) -> float:
    """``usage`` recorded at ``since`` as seen at ``now`` (halved every ``half_life_s``)."""
    if half_life_s <= 0 or now <= since:
        return usage
    return usage * math.pow(0.5, (now - since) / half_life_s)


def charge(needs: Needs, tree: ShareTree) -> float:
    """Core-seconds a job is charged when it is handed out."""
    return max(1, needs.cores) * (needs.walltime_s or tree.charge_s)


class Candidate(NamedTuple):
    """A waiting job as the claim order sees it.

    A NamedTuple rather than a frozen dataclass: the claim builds one per candidate row on the
    hot path, and a tuple is the cheapest immutable typed record to create.
    """

    key: int
    """The job's panda id (older first on equal priority)."""
    leaf: Leaf
    """Where its usage is charged."""
    priority: int
    """``current_priority``: higher first within its leaf."""
    needs: Needs
    """Its resources (for matching and its charge)."""


def _prefixes(leaf: Leaf) -> tuple[tuple[str, ...], ...]:
    return ((leaf[0],), leaf[:2], leaf)


def subtree_usage(usage: Mapping[Leaf, float]) -> dict[tuple[str, ...], float]:
    """Usage of every node: the sum over its leaves."""
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for leaf, u in usage.items():
        for p in _prefixes(leaf):
            out[p] += u
    return out


class ShareOrder:
    """The claim order over a set of candidates: :meth:`next` the job to consider, :meth:`take` or skip it.

    Usage is charged only for taken jobs, so a job no pilot can run does not cost its leaf.
    Each step costs time proportional to the number of siblings on the chosen path.
    """

    def __init__(
        self,
        tree: ShareTree,
        usage: Mapping[Leaf, float],
        cands: Iterable[Candidate],
        *,
        sums: Mapping[tuple[str, ...], float] | None = None,
    ) -> None:
        """``sums``: :func:`subtree_usage` of ``usage`` when the caller keeps it (read, never
        written): summing every leaf ever charged cost ~0.9 ms per 1,000 leaves (getrusage), twice
        per queue and claim batch. This order's own charges are kept apart in ``_charged``."""
        self.tree = tree
        self._base = subtree_usage(usage) if sums is None else sums
        self._charged: dict[tuple[str, ...], float] = {}
        self._weights: dict[tuple[str, ...], float] = {}
        by_leaf: dict[Leaf, list[Candidate]] = defaultdict(list)
        for c in cands:
            by_leaf[c.leaf].append(c)
        # each leaf is a stack: its best job (highest priority, then oldest) last
        self._stacks = {leaf: sorted(cs, key=lambda c: (c.priority, -c.key)) for leaf, cs in by_leaf.items()}
        self._children: dict[tuple[str, ...], set[tuple[str, ...]]] = defaultdict(set)
        for leaf in self._stacks:
            self._children[()].add(leaf[:1])
            self._children[leaf[:1]].add(leaf[:2])
            self._children[leaf[:2]].add(leaf)
        self._head: dict[tuple[str, ...], tuple[int, int]] = {}
        for leaf in self._stacks:
            for p in reversed(_prefixes(leaf)):
                self._refresh(p)
        self._current: Candidate | None = None

    def _refresh(self, node: tuple[str, ...]) -> None:
        """Recompute a node's best head job key ``(-priority, panda_id)``; drop it when empty."""
        if len(node) == 3:
            stack = self._stacks.get(node)  # type: ignore[call-overload]
            if stack:
                self._head[node] = (-stack[-1].priority, stack[-1].key)
            else:
                self._head.pop(node, None)
            return
        kids = self._children[node]
        if len(kids) == 1:
            (only,) = kids
            if only in self._head:
                self._head[node] = self._head[only]
            else:
                self._head.pop(node, None)
            return
        heads = [self._head[c] for c in kids if c in self._head]
        if heads:
            self._head[node] = min(heads)
        else:
            self._head.pop(node, None)

    def ratio(self, node: tuple[str, ...]) -> float:
        """A node's usage over its weight: the lower, the further below target."""
        used = self._base.get(node, 0.0) + self._charged.get(node, 0.0)
        weight = self._weights.get(node)
        if weight is None:  # each sibling's path string and weight once per order, not per step
            weight = self._weights[node] = max(self.tree.weight(node_path(node)), 1e-9)
        return used / weight

    def next(self) -> Candidate | None:
        """The job to consider next (None: no candidates left); call :meth:`take` or :meth:`skip` after."""
        node: tuple[str, ...] = ()
        head = self._head
        while len(node) < 3:
            kids = self._children[node]
            if len(kids) == 1:  # the common case (one VO, group or user waiting): nothing to compare
                (node,) = kids
                if node not in head:
                    return None
                continue
            live = [c for c in kids if c in head]
            if not live:
                return None
            node = min(live, key=lambda c: (self.ratio(c), head[c]))
        self._current = self._stacks[node][-1]  # type: ignore[index]
        return self._current

    def _pop(self) -> Candidate:
        cand = self._current
        assert cand is not None, "next() first"
        self._current = None
        self._stacks[cand.leaf].pop()
        for p in reversed(_prefixes(cand.leaf)):
            self._refresh(p)
        return cand

    def take(self) -> Candidate:
        """The job from :meth:`next` was handed out: charge its leaf."""
        cand = self._pop()
        cost = charge(cand.needs, self.tree)
        for p in _prefixes(cand.leaf):
            self._charged[p] = self._charged.get(p, 0.0) + cost
        return cand

    def skip(self) -> Candidate:
        """The job from :meth:`next` fits no pilot now: leave it waiting, uncharged."""
        return self._pop()


def assign(so: ShareOrder, requests: Sequence[tuple[int, Offer]]) -> list[tuple[int, Candidate]]:
    """Hand out jobs in claim order: ``(request index, job)`` pairs.

    ``requests`` are ``(n, offer)`` per pilot request, served in order: each job in share order
    goes to the first request that still wants jobs and whose remaining offer it fits (a
    partitionable pilot's offer shrinks with each job); a job no request fits is skipped,
    uncharged. Stops when every request is served.
    """
    wants = [n for n, _ in requests]
    offers = [offer for _, offer in requests]
    open_reqs = [i for i, n in enumerate(wants) if n > 0]
    out: list[tuple[int, Candidate]] = []
    while open_reqs:
        cand = so.next()
        if cand is None:
            break
        for i in open_reqs:
            if not misfit(cand.needs, offers[i]):
                out.append((i, so.take()))
                wants[i] -= 1
                if wants[i] > 0:
                    offers[i] = consume(offers[i], cand.needs)
                if wants[i] <= 0 or exhausted(offers[i]):
                    open_reqs.remove(i)
                break
        else:
            so.skip()
    return out


def order(tree: ShareTree, usage: Mapping[Leaf, float], cands: Iterable[Candidate]) -> list[Candidate]:
    """Every candidate in claim order, each taken in turn (what ``job why`` ranks by)."""
    so = ShareOrder(tree, usage, cands)
    out: list[Candidate] = []
    while so.next() is not None:
        out.append(so.take())
    return out


@dataclass(frozen=True, kw_only=True)
class ShareLine:
    """One node of ``ailuro shares``."""

    path: str
    """``vo``, ``vo/group`` or ``vo/group/user``."""
    weight: float
    """Its weight."""
    target: float
    """Its configured fraction of the whole (product of weight / siblings' weights down the path)."""
    usage: float
    """Decayed usage, core-seconds."""
    usage_fraction: float
    """Its fraction of all decayed usage."""
    priority: float
    """Effective priority: usage fraction / target (below 1: under target, served first)."""


def report(tree: ShareTree, usage: Mapping[Leaf, float], known: Sequence[Leaf] = ()) -> list[ShareLine]:
    """Target, decayed usage and effective priority of every node with usage, a weight or in ``known``."""
    leaves = set(usage) | set(known)
    for path in tree.weights:
        parts = path.split("/")
        if len(parts) == 3:
            leaves.add((parts[0], parts[1], parts[2]))
    nodes: set[tuple[str, ...]] = {p for leaf in leaves for p in _prefixes(leaf)}
    for path in tree.weights:
        parts = tuple(path.split("/"))
        nodes.update(parts[:i] for i in range(1, len(parts) + 1))
    for vo, groups in tree.groups.items():
        nodes.add((vo,))
        nodes.update((vo, g.name) for g in groups)
    sums = subtree_usage(usage)
    total = sum(usage.values())
    siblings: dict[tuple[str, ...], list[tuple[str, ...]]] = defaultdict(list)
    for n in nodes:
        siblings[n[:-1]].append(n)

    def target(n: tuple[str, ...]) -> float:
        if not n:
            return 1.0
        share = tree.weight(node_path(n)) / sum(tree.weight(node_path(s)) for s in siblings[n[:-1]])
        return target(n[:-1]) * share

    lines = []
    for n in sorted(nodes):
        t = target(n)
        u = sums.get(n, 0.0)
        frac = u / total if total else 0.0
        lines.append(
            ShareLine(
                path=node_path(n),
                weight=tree.weight(node_path(n)),
                target=t,
                usage=u,
                usage_fraction=frac,
                priority=frac / t if t else math.inf,
            )
        )
    return lines
