"""Exact duplicates: a 64-bit fingerprint of a paragraph's normalised text, and of an article's body.

The fingerprint is the first 8 bytes of BLAKE2b over the normalised UTF-8 text, read as a signed
big-endian int64 (Parquet and DuckDB have no unsigned 64-bit type that every reader handles). It is
the same on every machine and in every process (no Python `hash()`). At 140M paragraphs the chance
that two different texts share a fingerprint is about n^2 / 2^65 = 5e-4 for the whole corpus.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from pipeline.dedup.normalize import normalize_bytes


def fingerprint(data: bytes) -> int:
    """Signed 64-bit BLAKE2b fingerprint of bytes."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big", signed=True)


def exact_hash(text: str, *, digits_to_zero: bool = False) -> int | None:
    """Fingerprint of the normalised text; None when nothing is left after normalisation."""
    data = normalize_bytes(text, digits_to_zero=digits_to_zero)
    return fingerprint(data) if data else None


def article_hash(paragraph_hashes: Iterable[int | None]) -> int | None:
    """Fingerprint of an article body from its paragraphs' `exact_hash` values, in any order.

    Order-free (the sorted multiset is hashed) so that a Beam stage can group an article's paragraphs
    without sorting them by path first; an article whose paragraphs are a permutation of another's is
    therefore the same body. Blank paragraphs (None) are ignored; None when no paragraph is left.
    """
    values = sorted(h for h in paragraph_hashes if h is not None)
    if not values:
        return None
    return fingerprint(np.asarray(values, dtype=">i8").tobytes())
