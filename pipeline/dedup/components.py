"""Groups of duplicates as connected components, without ever collecting all pairs on one machine.

The near-duplicate stage runs, per paragraph: signature -> band keys; per band key (a bucket, after
a group-by): `bucket_edges` confirms which members really are similar and links each to the
smallest id it is connected to inside the bucket; then the edges of all buckets are merged into
components by alternating `large_star` and `small_star` (Kiveris et al., "Connected Components in
MapReduce and Beyond", SoCC 2014), each a group-by-key over edges that touches every edge once, until
a round changes nothing (O(log^2 n) rounds in the worst case; a handful in practice, as bucket edges
are stars already). The converged edges are (node, smallest id of its component): the group id.

Every function here gives the same result whatever the order of its input (members are sorted by
id, and components are identified by their smallest id), so the groups do not depend on the runner,
the sharding or the input order. `UnionFind` and `star_rounds` compute the same components in memory,
for tests and for small inputs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from pipeline.dedup.minhash import expand

N = TypeVar("N", str, int)  # node ids: paragraph ids, or int64 surrogates; comparable within one run


class UnionFind(Generic[N]):
    """Union-find whose root is always the smallest member, so a component's id is order-independent."""

    def __init__(self, nodes: Iterable[N] = ()) -> None:
        self._parent: dict[N, N] = {}
        for n in nodes:
            self.add(n)

    def add(self, node: N) -> None:
        self._parent.setdefault(node, node)

    def find(self, node: N) -> N:
        """The smallest id in the node's component (adds the node if unseen)."""
        parent = self._parent
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]  # path halving
            node = parent[node]
        return node

    def union(self, a: N, b: N) -> N:
        """Join the components of a and b; returns the root, the smaller of the two roots."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        lo, hi = (ra, rb) if ra < rb else (rb, ra)
        self._parent[hi] = lo
        return lo

    def components(self) -> dict[N, N]:
        """Every node -> the smallest id of its component."""
        return {n: self.find(n) for n in list(self._parent)}

    def groups(self) -> dict[N, list[N]]:
        """Root -> sorted members, for components of two or more nodes."""
        out: dict[N, list[N]] = defaultdict(list)
        for n, root in self.components().items():
            out[root].append(n)
        return {r: sorted(m) for r, m in out.items() if len(m) > 1}


def connected_components(edges: Iterable[tuple[N, N]], nodes: Iterable[N] = ()) -> dict[N, N]:
    """Node -> smallest id of its component, in memory (`nodes` adds isolated nodes)."""
    uf: UnionFind[N] = UnionFind(nodes)
    for a, b in edges:
        uf.union(a, b)
    return uf.components()


def star_edges(members: Iterable[N]) -> list[tuple[N, N]]:
    """Unconfirmed candidate edges of a bucket: (member, smallest member) for every other member."""
    ids = sorted(set(members))
    return [(m, ids[0]) for m in ids[1:]]


def bucket_edges(
    ids: Sequence[N], signatures: np.ndarray, threshold: float, *, max_pairwise: int = 64, bits: int | None = None
) -> list[tuple[N, N]]:
    """Confirmed edges of one LSH bucket: (member, smallest id it is linked to in this bucket).

    Members are compared by estimated Jaccard similarity (`threshold`, inclusive), from full
    signatures, or from b-bit sketches (`minhash.compact`) when `bits` is given. Up to `max_pairwise`
    members every pair is compared; beyond, each member (in id order) is compared with the bucket's
    leaders only, the members that matched no earlier leader, and joins all leaders it matches, so a
    bucket of 100,000 copies of one template costs ~100,000 comparisons, not 5e9. A pair that is
    similar but matched no common leader is linked through another band, or not at all. Duplicate
    ids are compared once.
    """
    if len(ids) != signatures.shape[0]:
        raise ValueError(f"{len(ids)} ids but {signatures.shape[0]} signatures")
    first: dict[N, int] = {}
    for i, node in enumerate(ids):
        first.setdefault(node, i)
    order = sorted(first)
    if len(order) < 2:
        return []
    rows = signatures[[first[n] for n in order]]
    values = expand(rows, bits) if bits else rows
    chance = 2.0**-bits if bits else 0.0
    # compare shares of equal slots: share >= t + (1 - t) * chance  <=>  corrected estimate >= t
    need = threshold + (1.0 - threshold) * chance
    uf: UnionFind[N] = UnionFind(order)
    if len(order) <= max_pairwise:
        equal = (values[:, None, :] == values[None, :, :]).mean(axis=2)
        for i, j in zip(*np.nonzero(np.triu(equal >= need, k=1)), strict=True):
            uf.union(order[i], order[j])
    else:
        leaders: list[int] = []
        for i in range(len(order)):
            hits = []
            if leaders:
                equal = np.count_nonzero(values[leaders] == values[i][None, :], axis=1) / values.shape[1]
                hits = [leaders[k] for k in np.flatnonzero(equal >= need)]
            for k in hits:
                uf.union(order[k], order[i])
            if not hits:
                leaders.append(i)
    return [(n, root) for n, root in uf.components().items() if n != root]


def large_star(node: N, neighbours: Iterable[N]) -> list[tuple[N, N]]:
    """One large-star step for a node and all its neighbours: link each larger neighbour to the minimum.

    The stage's input for a node is every edge touching it, both directions; the outputs, taken as
    undirected edges, are the next step's input.
    """
    nb = set(neighbours)
    low = min(nb | {node})
    return [(v, low) for v in nb if v > node]


def small_star(node: N, smaller_neighbours: Iterable[N]) -> list[tuple[N, N]]:
    """One small-star step: `smaller_neighbours` are the node's neighbours with ids <= node (each edge
    is keyed by its larger end). Links the node and those neighbours to their minimum."""
    group = set(smaller_neighbours) | {node}
    low = min(group)
    return [(v, low) for v in group if v != low]


def _undirected(edges: Iterable[tuple[N, N]]) -> set[tuple[N, N]]:
    return {(a, b) if a > b else (b, a) for a, b in edges if a != b}


def star_rounds(edges: Iterable[tuple[N, N]], *, max_rounds: int = 100) -> tuple[dict[N, N], int]:
    """Components by alternating large-star and small-star, exactly as the stage does with group-bys.

    Returns (node -> smallest id of its component, rounds until nothing changed). Nodes without
    edges are not in the result. Raises RuntimeError if `max_rounds` is not enough.
    """
    current = _undirected(edges)
    for rounds in range(1, max_rounds + 1):
        around: dict[Any, set[Any]] = defaultdict(set)
        for a, b in current:
            around[a].add(b)
            around[b].add(a)
        large = _undirected(e for u, nb in around.items() for e in large_star(u, nb))
        below: dict[Any, set[Any]] = defaultdict(set)
        for hi, lo in large:  # edges are stored (larger, smaller)
            below[hi].add(lo)
        small = _undirected(e for u, nb in below.items() for e in small_star(u, nb))
        if small == current:
            labels = {v: low for v, low in current}
            labels.update({low: low for low in list(labels.values())})
            return labels, rounds
        current = small
    raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")


def group_sizes(labels: dict[Hashable, Hashable]) -> dict[Hashable, int]:
    """Group id -> number of members, from node -> group id."""
    out: dict[Hashable, int] = defaultdict(int)
    for g in labels.values():
        out[g] += 1
    return dict(out)
