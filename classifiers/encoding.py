"""What the student sees beyond its tokens: length features the encoder cannot count past its max length.

A teacher reads the whole paragraph; the student reads at most `max_length` tokens. A label that depends
on the paragraph's length (or on how much of it the student cannot see) is invisible to a truncated
encoder but not to TF-IDF, which reads every word (issue 24: TF-IDF beat the student's score head,
r 0.75 vs 0.55, at --max-length 128). With `--length-features` the heads also read:

    log1p(tokens of the whole paragraph) / LOG_SCALE
    1 if the paragraph was cut at max_length, else 0
    log1p(tokens cut off) / LOG_SCALE

computed from one tokenizer pass, identically at training and at inference (classifiers.predict).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

N_LENGTH_FEATURES = 3
LOG_SCALE = math.log1p(4096)  # a 4,096-token paragraph maps to 1.0


def length_features(full_lengths: Sequence[int] | np.ndarray, max_length: int) -> np.ndarray:
    """[N, N_LENGTH_FEATURES] float32 from each paragraph's token count before truncation."""
    n = np.asarray(full_lengths, dtype=np.float64)
    cut = np.maximum(n - max_length, 0.0)
    return np.stack([np.log1p(n) / LOG_SCALE, (cut > 0).astype(np.float64), np.log1p(cut) / LOG_SCALE],
                    axis=1).astype(np.float32)


def full_lengths(tokenizer: object, texts: Sequence[str], ids: Sequence[Sequence[int]], max_length: int) -> np.ndarray:
    """Token counts without truncation: the truncated ids' lengths, re-counted only for the texts that
    filled max_length (the only ones that can have been cut)."""
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    full = [i for i, x in enumerate(ids) if len(x) >= max_length]
    if full:
        counted = tokenizer([texts[i] for i in full], truncation=False, padding=False)["input_ids"]  # type: ignore[operator]
        for i, x in zip(full, counted, strict=True):
            lengths[i] = len(x)
    return lengths
