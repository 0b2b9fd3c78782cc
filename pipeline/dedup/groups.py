"""Duplicate groups of a small collection in memory: the reference the Beam stage must reproduce.

Each function runs the same per-element, per-bucket and per-key steps as the stage, in the same
order, with dicts standing in for group-by-key, so a stage test can compare its output with these
on any fixture.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from pipeline.dedup.components import bucket_edges, star_rounds
from pipeline.dedup.exact import exact_hash
from pipeline.dedup.lsh import band_keys
from pipeline.dedup.minhash import MinHashParams, compact, signatures


def exact_groups(ids: Sequence[str], texts: Sequence[str], *, digits_to_zero: bool = False) -> dict[str, str]:
    """Paragraph id -> group id (the smallest id with the same `exact_hash`), for groups of two or more."""
    by_hash: dict[int, list[str]] = defaultdict(list)
    for pid, text in zip(ids, texts, strict=True):
        h = exact_hash(text, digits_to_zero=digits_to_zero)
        if h is not None:
            by_hash[h].append(pid)
    return {pid: min(members) for members in by_hash.values() if len(set(members)) > 1 for pid in members}


def near_groups(ids: Sequence[str], texts: Sequence[str], params: MinHashParams | None = None) -> dict[str, str]:
    """Paragraph id -> group id (smallest id of its connected component) for near-duplicate groups.

    Signatures -> band keys (each with the signature's b-bit sketch) -> buckets -> confirmed bucket
    edges -> large/small-star rounds.
    """
    p = params or MinHashParams()
    sigs, valid = signatures(texts, p)
    keys = band_keys(sigs, p.bands, p.rows)
    confirm = compact(sigs, p.sketch_bits) if p.sketch_bits else sigs
    buckets: dict[int, list[int]] = defaultdict(list)
    for row in range(len(ids)):
        if valid[row]:
            for key in keys[row].tolist():
                buckets[key].append(row)
    edges = []
    for rows in buckets.values():
        if len(rows) > 1:
            edges += bucket_edges([ids[r] for r in rows], confirm[rows], p.threshold, bits=p.sketch_bits)
    labels, _ = star_rounds(edges)
    return labels
