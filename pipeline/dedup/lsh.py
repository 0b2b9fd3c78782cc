"""Locality-sensitive hashing: the band keys under which near-duplicate candidates meet.

A signature of bands x rows slots is cut into `bands` runs of `rows` slots; two texts become a
candidate pair when all `rows` slots of at least one band are equal, which happens with probability
1 - (1 - J^rows)^bands for Jaccard similarity J (`candidate_probability`). Each band becomes one
64-bit key that also encodes the band's index, so the stage can group all bands of all paragraphs
by one key column: 16 keys of 8 bytes per paragraph with the default 16 x 8.
"""

from __future__ import annotations

import numpy as np

from pipeline.dedup.ngrams import fmix64

_K = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier (golden ratio) between mixing rounds


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Band keys of signatures: int64 array (n, bands) from uint32 signatures (n, bands * rows).

    Key j of a row depends only on j and the row's slots j*rows .. (j+1)*rows - 1, so two rows share
    key j exactly when that band is equal (barring a 64-bit collision, which confirmation catches).
    """
    sig = np.atleast_2d(signatures)
    if sig.shape[1] != bands * rows:
        raise ValueError(f"signature has {sig.shape[1]} slots, expected bands x rows = {bands * rows}")
    slots = sig.reshape(sig.shape[0], bands, rows).astype(np.uint64)
    h = np.broadcast_to(np.arange(1, bands + 1, dtype=np.uint64), (sig.shape[0], bands))
    for r in range(rows):
        h = fmix64(h * _K + slots[:, :, r])
    return h.view(np.int64)


def candidate_probability(jaccard: float, bands: int = 16, rows: int = 8) -> float:
    """Probability that a pair with this Jaccard similarity shares at least one band key."""
    return 1.0 - (1.0 - jaccard**rows) ** bands


def lsh_threshold(bands: int = 16, rows: int = 8) -> float:
    """The similarity at which the candidate curve is steepest, about (1/bands)^(1/rows) (0.707 for 16 x 8)."""
    return (1.0 / bands) ** (1.0 / rows)
