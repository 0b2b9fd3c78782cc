"""MinHash signatures of word 5-grams, and the Jaccard similarity they estimate.

Shingles are hashed by `ngrams` (numpy, one pass per batch); the signature is computed from those
64-bit hashes by rensa's R-MinHash (Rust), chosen by measurement (docs/dedup.md, "Measured"): on
one core it turns the hashes of ~500,000 paragraphs a second into signatures, against ~13,000 for a
vectorised numpy MinHash (a*x+b over 128 hash functions) and ~7,000 for datasketch. What remains is
normalisation and shingle hashing, both vectorised or byte-level.

Determinism: the signature depends only on the normalised text, the shingle size, `num_perm`, the
seed and rensa's algorithm version (`rensa.RMinHash.ALGORITHM_VERSION`, recorded by `describe()`):
rensa 0.5 changed its algorithm, so signatures from different algorithm versions must never be
compared. R-MinHash (after Fast Similarity Sketching) gives the same signature whatever the order or
repetition of shingles, on every SIMD kernel.

rensa spreads very large batches over a Rayon thread pool, which on a Beam worker that already runs
one process per core only burns CPU (measured: 4x the CPU time for the same wall time on 2 cores);
batches are therefore cut to `_RENSA_ROWS` rows, below which it stays on the calling thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import rensa

from pipeline.core.errors import ConfigError
from pipeline.dedup.ngrams import WordSpans
from pipeline.dedup.normalize import normalize_bytes

_RENSA_ROWS = 512


@dataclass(frozen=True)
class MinHashParams:
    """Near-duplicate settings; the stage's flags map one-to-one onto these fields."""

    shingle_words: int = 5  # datatrove's choice; short enough that one edit changes few shingles
    bands: int = 16
    rows: int = 8  # 16 x 8: candidate probability 0.5 at Jaccard ~0.71 (`lsh.lsh_threshold`)
    threshold: float = 0.7  # a candidate pair is a near duplicate when its estimated Jaccard is >= this
    seed: int = 1
    digits_to_zero: bool = False
    # buckets confirm candidates on 4-bit sketches of the signatures (64 bytes, `compact`), which travel
    # with the band keys; estimates are nearly as tight as from the full 512 bytes (docs/dedup.md). None: full
    sketch_bits: int | None = 4

    def __post_init__(self) -> None:
        if self.shingle_words < 1 or self.bands < 1 or self.rows < 1:
            raise ConfigError("shingle_words, bands and rows must be at least 1")
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.sketch_bits not in (None, 1, 2, 4, 8):
            raise ConfigError(f"sketch_bits must be 1, 2, 4, 8 or None (full signatures), got {self.sketch_bits}")
        if self.sketch_bits and (self.bands * self.rows * self.sketch_bits) % 8:
            raise ConfigError("bands x rows x sketch_bits must be a whole number of bytes")

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    def describe(self) -> dict[str, object]:
        """The settings plus the implementation, for the stage summary and subset manifests."""
        return {**asdict(self), "num_perm": self.num_perm, "minhash": f"rensa-rminhash-v{rensa.RMinHash.ALGORITHM_VERSION}"}


def signatures_of_normalized(normalized: Sequence[bytes], params: MinHashParams) -> tuple[np.ndarray, np.ndarray]:
    """Signatures of normalised texts: (uint32 array (n, num_perm), bool array (n,) of which are valid).

    A blank text has no shingles and no signature: its row is all zero and marked invalid.
    """
    out = np.zeros((len(normalized), params.num_perm), dtype=np.uint32)
    for lo in range(0, len(normalized), _RENSA_ROWS):
        batch = normalized[lo : lo + _RENSA_ROWS]
        hashes, offsets = WordSpans.of(batch).ngrams(params.shingle_words)
        rows = np.flatnonzero(np.diff(offsets) > 0)
        if rows.size == 0:
            continue
        # rensa takes row boundaries into one flat buffer; blank rows are left out of it
        bounds = np.concatenate(([0], np.cumsum(offsets[rows + 1] - offsets[rows]))).astype(np.uint64)
        matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(hashes, bounds, params.num_perm, params.seed)
        out[lo + rows] = np.asarray(matrix.to_rows(), dtype=np.uint32)
    valid = np.fromiter((bool(t) for t in normalized), bool, len(normalized))
    return out, valid


def signatures(texts: Sequence[str], params: MinHashParams | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Signatures of raw texts (normalised first): see `signatures_of_normalized`."""
    params = params or MinHashParams()
    return signatures_of_normalized([normalize_bytes(t, digits_to_zero=params.digits_to_zero) for t in texts], params)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of two signatures: the share of equal slots."""
    if a.shape != b.shape:
        raise ValueError(f"signatures of different sizes: {a.shape} vs {b.shape}")
    return float(np.count_nonzero(a == b)) / a.size


def similarities(sig: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity of one signature against each row of `others` (float64 array)."""
    return np.count_nonzero(others == sig[None, :], axis=1) / sig.size


def compact(signatures: np.ndarray, bits: int = 4) -> np.ndarray:
    """b-bit sketches (Li and König, 2010): the lowest `bits` bits of each slot, packed into uint8.

    128 slots at 4 bits are 64 bytes instead of 512, small enough to travel with every band record
    of the Beam stage, so a bucket can confirm its candidates without a join on the full signatures.
    """
    if bits not in (1, 2, 4, 8):
        raise ValueError("bits must be 1, 2, 4 or 8")
    sig = np.atleast_2d(signatures)
    low = (sig & ((1 << bits) - 1)).astype(np.uint8).reshape(sig.shape[0], -1, 8 // bits)
    shifts = np.arange(8 // bits, dtype=np.uint8) * bits
    return np.bitwise_or.reduce(low << shifts, axis=2).astype(np.uint8)


def expand(sketches: np.ndarray, bits: int = 4) -> np.ndarray:
    """The slot values (uint8, one per slot) of packed b-bit sketches."""
    sk = np.atleast_2d(sketches)
    shifts = np.arange(8 // bits, dtype=np.uint8) * bits
    return ((sk[:, :, None] >> shifts) & ((1 << bits) - 1)).reshape(sk.shape[0], -1)


def compact_similarities(sketch: np.ndarray, others: np.ndarray, bits: int = 4) -> np.ndarray:
    """Estimated Jaccard similarity from b-bit sketches, corrected for chance agreement of b bits:
    J = (share of equal slots - 2^-b) / (1 - 2^-b), clipped to [0, 1]."""
    a, b = expand(sketch, bits), expand(others, bits)
    chance = 2.0**-bits
    equal = np.count_nonzero(b == a, axis=1) / a.shape[1]
    return np.clip((equal - chance) / (1.0 - chance), 0.0, 1.0)


def jaccard(a: set[int] | frozenset[int], b: set[int] | frozenset[int]) -> float:
    """Exact Jaccard similarity of two shingle sets (for tests and calibration)."""
    return len(a & b) / len(a | b) if a or b else 1.0
