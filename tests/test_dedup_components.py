"""Connected components: union-find, the large/small-star rounds the stage runs, and per-bucket edges."""

from __future__ import annotations

import random

import numpy as np
import pytest

from pipeline.dedup.components import (
    UnionFind,
    bucket_edges,
    connected_components,
    group_sizes,
    large_star,
    small_star,
    star_edges,
    star_rounds,
)
from pipeline.dedup.lsh import band_keys, candidate_probability, lsh_threshold
from pipeline.dedup.minhash import compact, compact_similarities, expand, similarities


def test_union_find_root_is_the_smallest_id_whatever_the_union_order() -> None:
    edges = [("p9", "p3"), ("p3", "p7"), ("p1", "p8"), ("p8", "p7"), ("x2", "x1")]
    for seed in range(5):
        shuffled = edges[:]
        random.Random(seed).shuffle(shuffled)
        uf: UnionFind[str] = UnionFind(["lonely"])
        for a, b in shuffled:
            uf.union(b, a) if seed % 2 else uf.union(a, b)
        assert uf.components() == {"p9": "p1", "p3": "p1", "p7": "p1", "p1": "p1", "p8": "p1", "x2": "x1",
                                   "x1": "x1", "lonely": "lonely"}  # fmt: skip
        assert uf.groups() == {"p1": ["p1", "p3", "p7", "p8", "p9"], "x1": ["x1", "x2"]}


def test_star_steps() -> None:
    assert sorted(large_star(5, [2, 7, 9])) == [(7, 2), (9, 2)]
    assert sorted(large_star(2, [5, 7])) == [(5, 2), (7, 2)]
    assert large_star(9, [2, 5]) == []  # no larger neighbour: nothing to re-link
    assert sorted(small_star(9, [4, 6])) == [(6, 4), (9, 4)]
    assert star_edges(["c", "a", "b", "a"]) == [("b", "a"), ("c", "a")]


def _random_graph(rng: random.Random, n: int, m: int) -> list[tuple[int, int]]:
    return [(rng.randrange(n), rng.randrange(n)) for _ in range(m)]


@pytest.mark.parametrize("seed", range(8))
def test_star_rounds_equal_union_find_on_random_graphs(seed: int) -> None:
    rng = random.Random(seed)
    edges = _random_graph(rng, 300, rng.choice([100, 250, 400]))
    edges += [(i, i + 1) for i in range(1000, 1060)]  # a long path: the worst case for label propagation
    labels, rounds = star_rounds(edges)
    expected = connected_components(edges)
    assert labels == {n: r for n, r in expected.items() if n in labels}
    assert set(labels) == {n for e in edges for n in e if e[0] != e[1]}
    assert rounds <= 20


def test_star_rounds_independent_of_edge_order_and_direction() -> None:
    rng = random.Random(3)
    edges = _random_graph(rng, 200, 180)
    flipped = [(b, a) for a, b in reversed(edges)]
    assert star_rounds(edges)[0] == star_rounds(flipped)[0]
    assert group_sizes({"a": "a", "b": "a", "c": "c"}) == {"a": 2, "c": 1}


def _sig(rng: np.random.Generator, base: np.ndarray, same: int) -> np.ndarray:
    """A signature equal to `base` in `same` of 128 slots."""
    out = rng.integers(0, 2**32, 128, dtype=np.uint32)
    keep = rng.choice(128, same, replace=False)
    out[keep] = base[keep]
    return out


def test_bucket_edges_confirm_by_similarity_and_link_to_the_smallest_id() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**32, 128, dtype=np.uint32)
    ids = ["p5", "p2", "p9", "p7"]
    sigs = np.stack([a, _sig(rng, a, 120), _sig(rng, a, 100), _sig(rng, a, 30)])  # p7 is a false candidate
    assert sorted(bucket_edges(ids, sigs, 0.7)) == [("p5", "p2"), ("p9", "p2")]
    # without confirmation the false candidate would join the group
    assert ("p7", "p2") in star_edges(ids)
    # order of the members does not matter
    order = [3, 1, 0, 2]
    assert sorted(bucket_edges([ids[i] for i in order], sigs[order], 0.7)) == [("p5", "p2"), ("p9", "p2")]


def test_bucket_edges_large_bucket_uses_leaders() -> None:
    rng = np.random.default_rng(1)
    template = rng.integers(0, 2**32, 128, dtype=np.uint32)
    other = rng.integers(0, 2**32, 128, dtype=np.uint32)
    n = 500
    sigs = np.stack([_sig(rng, template, 118) for _ in range(n)] + [_sig(rng, other, 118) for _ in range(n)])
    ids = [f"id{i:04d}" for i in range(2 * n)]
    edges = bucket_edges(ids, sigs, 0.7, max_pairwise=64)
    roots = {r for _, r in edges}
    assert roots == {"id0000", f"id{n:04d}"}
    assert len(edges) == 2 * n - 2
    perm = rng.permutation(2 * n)
    assert sorted(bucket_edges([ids[i] for i in perm], sigs[perm], 0.7, max_pairwise=64)) == sorted(edges)


def test_bucket_edges_checks_its_input() -> None:
    with pytest.raises(ValueError, match="2 ids but 1 signatures"):
        bucket_edges(["a", "b"], np.zeros((1, 128), dtype=np.uint32), 0.7)
    assert bucket_edges(["a", "a"], np.zeros((2, 128), dtype=np.uint32), 0.7) == []


def test_band_keys_equal_exactly_when_the_band_is_equal() -> None:
    rng = np.random.default_rng(2)
    a = rng.integers(0, 2**32, 128, dtype=np.uint32)
    b = a.copy()
    b[3] ^= 1  # differs in band 0 only
    keys = band_keys(np.stack([a, b]), 16, 8)
    assert keys.shape == (2, 16) and keys.dtype == np.int64
    assert keys[0, 0] != keys[1, 0] and (keys[0, 1:] == keys[1, 1:]).all()
    assert len(set(keys[0].tolist())) == 16  # equal slot values in different bands give different keys
    same = np.zeros((1, 128), dtype=np.uint32)
    assert len(set(band_keys(same, 16, 8)[0].tolist())) == 16
    with pytest.raises(ValueError, match="expected bands x rows"):
        band_keys(np.zeros((1, 100), dtype=np.uint32), 16, 8)


def test_lsh_curve() -> None:
    assert lsh_threshold(16, 8) == pytest.approx(0.707, abs=0.001)
    assert candidate_probability(0.9) > 0.99
    assert candidate_probability(0.4) == pytest.approx(0.0104, abs=0.0001)
    assert candidate_probability(lsh_threshold()) == pytest.approx(0.64, abs=0.02)


def test_compact_sketches_round_trip_and_estimate_like_full_signatures() -> None:
    rng = np.random.default_rng(4)
    a = rng.integers(0, 2**32, 128, dtype=np.uint32)
    sigs = np.stack([a] + [_sig(rng, a, same) for same in (128, 115, 90, 64, 10)])
    for bits in (1, 2, 4, 8):
        packed = compact(sigs, bits)
        assert packed.shape == (6, 128 * bits // 8) and packed.dtype == np.uint8
        assert np.array_equal(expand(packed, bits), sigs & ((1 << bits) - 1))
    full = similarities(sigs[0], sigs)
    four = compact_similarities(compact(sigs[0], 4)[0], compact(sigs, 4), 4)
    assert four[0] == 1.0 and np.abs(four - full).max() < 0.08
    with pytest.raises(ValueError, match="bits must be"):
        compact(sigs, 3)


def test_bucket_edges_on_sketches_agree_with_full_signatures() -> None:
    rng = np.random.default_rng(5)
    a = rng.integers(0, 2**32, 128, dtype=np.uint32)
    ids = [f"p{i}" for i in range(8)]
    sigs = np.stack([a] + [_sig(rng, a, same) for same in (125, 120, 110, 100, 40, 30, 20)])
    full = sorted(bucket_edges(ids, sigs, 0.7))
    assert full == [("p1", "p0"), ("p2", "p0"), ("p3", "p0"), ("p4", "p0")]
    assert sorted(bucket_edges(ids, compact(sigs, 4), 0.7, bits=4)) == full
    assert sorted(bucket_edges(ids, compact(sigs, 4), 0.7, bits=4, max_pairwise=2)) == full


def test_settings_are_checked_at_start_up() -> None:
    from pipeline.core.errors import ConfigError
    from pipeline.dedup.boilerplate import BoilerplateParams
    from pipeline.dedup.contamination import DecontamParams
    from pipeline.dedup.minhash import MinHashParams

    with pytest.raises(ConfigError, match="threshold must be in"):
        MinHashParams(threshold=1.5)
    with pytest.raises(ConfigError, match="sketch_bits must be"):
        MinHashParams(sketch_bits=3)
    with pytest.raises(ConfigError, match="min_question_words must be between 1 and ngram_words"):
        DecontamParams(min_question_words=14)
    with pytest.raises(ConfigError, match="paragraph_share"):
        BoilerplateParams(paragraph_share=0)
    assert MinHashParams().describe()["minhash"] == "rensa-rminhash-v2"
